/**
 * The console's alert banner, health card and webhook registrations in a browser, fed through the
 * console's provider interfaces (`health`, `alerts`, `webhooks` of ConsoleOptions) with the shapes the
 * health checks and alerts give (src/server/health.ts, src/alerts/): the real app and console routes
 * (test/server/console-harness.ts) listening on a port, Chromium logged in. The banner appears with the
 * alert's words, is announced as a region, and goes away live when the condition clears; failing checks
 * and a missing registration read as words, not colour alone.
 */
import path from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { consoleHarness, TOKEN, type ConsoleHarness } from '../server/console-harness.ts';
import { launchChromium, requireChromium, screenshotsDir, type Chromium } from './chromium.ts';

/** Two polls of 2 s and some slack. */
const LIVE_MS = 8_000;

const available = requireChromium();

let harness: ConsoleHarness;
let url: string;
let browser: Chromium;
let page: Page;
const active: Array<Record<string, unknown>> = [];
const checks: Record<string, { ok: boolean; reason?: string; detail?: string }> = {};

describe.skipIf(!available)('the console\'s alerts and health in a browser', () => {
  beforeAll(async () => {
    harness = await consoleHarness({
      env: { TEAMWORK_WEBHOOK_TOKEN: 'alerts-test-token' },
      console: {
        health: { evaluate: async () => ({ healthy: Object.values(checks).every((c) => c.ok), at: Date.now(), checks }) },
        alerts: { active: () => active },
        webhooks: {
          registrations: () => ({
            checkedAt: new Date(Date.now() - 60_000).toISOString(),
            sources: [
              { source: 'teamwork', state: 'ok', endpoint: 'https://connector.example/webhooks/teamwork', hooks: 7, detail: '' },
              { source: 'missive', state: 'missing', endpoint: 'https://connector.example/webhooks/missive', hooks: 0, detail: 'no rule posts to our endpoint' },
            ],
          }),
        },
      },
    });
    await harness.app.listen({ host: '127.0.0.1', port: 0 });
    const address = harness.app.server.address();
    url = `http://127.0.0.1:${typeof address === 'object' && address !== null ? address.port : 0}`;
    browser = await launchChromium();
    page = await browser.context.newPage();
    page.setDefaultTimeout(10_000);
    await page.setViewportSize({ width: 1280, height: 900 });
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await harness?.close();
  });

  it('shows active alerts in a banner with their words, and removes it live when they clear', async () => {
    checks.queueWritable = { ok: true };
    checks.deadLetters = { ok: false, reason: '12 dead letters, more than HEALTH_MAX_DEAD_LETTERS (10)' };
    checks.workerStalled = { ok: true, detail: 'no worker in this process' };
    active.push(
      { condition: 'dead-letters', source: null, title: 'Dead letters added', summary: '12 dead letters', since: new Date(Date.now() - 300_000).toISOString() },
      { condition: 'missed-webhooks', source: 'teamwork', title: 'Missed webhooks', summary: '4 changes no webhook delivered in the last hour', since: new Date().toISOString() },
    );

    await page.goto(`${url}/dashboard/login`);
    await page.locator('input[name="token"]').fill(TOKEN);
    await Promise.all([page.waitForURL(`${url}/dashboard`), page.locator('form button[type="submit"]').first().click()]);
    await page.waitForSelector('body[data-ready="true"]');

    const banner = page.getByRole('region', { name: 'Active alerts' });
    await expect.poll(() => banner.isVisible()).toBe(true);
    const text = await banner.innerText();
    expect(text).toContain('2 active alerts');
    expect(text).toContain('Dead letters added: 12 dead letters');
    expect(text).toContain('Missed webhooks (teamwork): 4 changes no webhook delivered in the last hour');

    const health = page.locator('section[aria-labelledby="h-health"]');
    expect(await health.innerText()).toContain('unhealthy');
    expect(await health.locator('li[data-check="deadLetters"]').innerText()).toContain('deadLetters: failing — 12 dead letters, more than HEALTH_MAX_DEAD_LETTERS (10)');
    expect(await health.locator('li[data-check="queueWritable"]').innerText()).toContain('queueWritable: ok');
    expect(await health.locator('li[data-check="workerStalled"]').innerText()).toContain('ok — no worker in this process');

    const missive = page.locator('section[data-source="missive"]');
    expect(await missive.innerText()).toContain('0 hooks: missing — no rule posts to our endpoint');
    expect(await page.locator('section[data-source="teamwork"]').innerText()).toContain('7 hooks: ok');
    await page.screenshot({ path: path.join(screenshotsDir(), 'console-alerts.png'), fullPage: true });

    // The conditions clear: the banner goes, and health reads healthy, without a reload.
    active.length = 0;
    checks.deadLetters = { ok: true };
    await expect.poll(() => banner.isVisible(), { timeout: LIVE_MS }).toBe(false);
    await expect.poll(() => health.innerText(), { timeout: LIVE_MS }).toMatch(/✓ healthy/);
    expect(await health.innerText()).not.toContain('failing');
  });

  it('shows the banner on the other pages too', async () => {
    active.push({ condition: 'worker-stalled', source: null, title: 'Worker stalled', summary: 'no claim for 5 minutes while 3 events wait', since: new Date().toISOString() });
    await page.goto(`${url}/dashboard#/dead-letters`);
    await page.waitForSelector('body[data-ready="true"]');
    const banner = page.getByRole('region', { name: 'Active alerts' });
    await expect.poll(() => banner.innerText(), { timeout: LIVE_MS }).toContain('Worker stalled: no claim for 5 minutes while 3 events wait');
  });
});
