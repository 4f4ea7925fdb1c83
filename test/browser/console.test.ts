/**
 * The operator console in a real browser (Debian's Chromium through playwright-core; see chromium.ts):
 * the real connector (`startConnector`, serve + work, SQLite, file queue) with ADMIN_TOKEN set, fed by
 * the Teamwork simulator's webhooks. An operator logs in, watches deliveries arrive without reloading,
 * pauses while the tab is hidden, finds an event by its task id, replays a dead letter and sees it succeed, discards another after a
 * confirmation, starts a backfill and watches its bar finish, and uses every page 360 px wide. Logged
 * out, every console URL (read from the app's route table) answers 303, 401 or 404; an action without
 * the CSRF token is refused.
 *
 * Dead letters are made the way a vendor makes them: the Teamwork API refuses the task reads (400, a
 * permanent error) while `refuseTaskReads` is on, so the events dead-letter on their first attempt;
 * once it is off, a replay succeeds.
 *
 * Screenshots go to CONSOLE_SCREENSHOTS_DIR or a temp folder (its path is printed).
 */
import path from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMissiveSource } from '../../src/sources/missive/index.ts';
import { createTeamworkSource } from '../../src/sources/teamwork/index.ts';
import { startTeamworkSimulator, type TeamworkSimulator } from '../../simulators/teamwork/index.ts';
import { removeTempDirs, startSystem, stopAllSystems, waitFor, type System } from '../system/harness.ts';
import { launchChromium, requireChromium, screenshotsDir, type Chromium } from './chromium.ts';

const ADMIN_TOKEN = 'browser-test-admin-token-0123456789';
const TW_TOKEN = 'browser-test-teamwork-token';
/** How long the page may take to show a change: two polls (2 s each) and some slack. */
const LIVE_MS = 8_000;

const available = requireChromium();

let tw: TeamworkSimulator;
let sys: System;
let browser: Chromium;
let page: Page;
let refuseTaskReads = false;
const foreignRequests: string[] = [];
const pageErrors: string[] = [];

/** Teamwork's API as the connector sees it, except task reads answered 400 while `refuseTaskReads` is on. */
const teamworkFetch: typeof fetch = async (input, init) => {
  const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
  if (refuseTaskReads && /\/tasks\/\d+(\.json)?(\?|$)/.test(new URL(url).pathname + '?')) {
    return new Response(JSON.stringify({ MESSAGE: 'refused by the test' }), { status: 400, headers: { 'content-type': 'application/json' } });
  }
  return fetch(input, init);
};

async function shot(name: string): Promise<void> {
  await page.screenshot({ path: path.join(screenshotsDir(), `console-${name}.png`), fullPage: true });
}

/** Opens a console page by its hash and waits for its first data. */
async function open(hash: string): Promise<void> {
  await page.goto(`${sys.url}/dashboard#/${hash}`);
  await page.waitForSelector('body[data-ready="true"]');
}

/** The text of a fact (dt/dd) in a section. */
function fact(section: string, term: string) {
  return page.locator(`${section} dt:text-is("${term}") + dd`);
}

describe.skipIf(!available)('the console in a browser', () => {
  beforeAll(async () => {
    tw = await startTeamworkSimulator({ seed: 'console-browser', data: { tasks: 20 }, limits: { perMinute: 100_000 }, webhookRetryDelaysMs: [] });
    sys = await startSystem({
      env: {
        ADMIN_TOKEN,
        TEAMWORK_BASE_URL: tw.url,
        TEAMWORK_API_KEY: tw.credentials.apiKey,
        TEAMWORK_WEBHOOK_TOKEN: TW_TOKEN,
        MAX_QUEUE_ATTEMPTS: '1',
      },
      sources: (config, log) => [createTeamworkSource(config, { log: log.child({ source: 'teamwork' }), fetch: teamworkFetch }), createMissiveSource(config, { log })],
    });
    tw.registerAllTaskWebhooks(`${sys.url}/webhooks/teamwork`, { token: TW_TOKEN });
    browser = await launchChromium();
    page = await browser.context.newPage();
    page.setDefaultTimeout(10_000);
    await page.setViewportSize({ width: 1280, height: 900 });
    page.on('request', (request) => {
      if (!request.url().startsWith(`${sys.url}/`)) foreignRequests.push(request.url());
    });
    page.on('pageerror', (err) => pageErrors.push(err.message));
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await stopAllSystems();
    await tw?.stop();
    removeTempDirs();
  });

  it('logged out, every console URL answers 303, 401 or 404; the login page is the only page', async () => {
    const routes = consoleRoutes(sys);
    expect(routes.length).toBeGreaterThanOrEqual(10);
    for (const { method, url } of routes) {
      if (url === '/dashboard/login') continue;
      if (method === 'POST' && url === '/dashboard/logout') continue;
      const concrete = url.replace(/:[a-z]+/gi, 'some-id');
      const response = await fetch(`${sys.url}${concrete}`, { method, redirect: 'manual', ...(method === 'POST' ? { headers: { 'content-type': 'application/json' }, body: '{}' } : {}) });
      expect([303, 401, 404], `${method} ${concrete}`).toContain(response.status);
      if (response.status === 303) expect(response.headers.get('location'), `${method} ${concrete}`).toBe('/dashboard/login');
      if (concrete.startsWith('/dashboard/api/') || concrete.startsWith('/dashboard/assets/')) expect(response.status, `${method} ${concrete}`).not.toBe(200);
    }
  });

  it('logs in with the token and sees deliveries arrive without a reload', async () => {
    await page.goto(`${sys.url}/dashboard`);
    expect(new URL(page.url()).pathname).toBe('/dashboard/login');
    await page.locator('input[name="token"]').fill('not-the-token-at-all');
    await Promise.all([page.waitForURL(/\/dashboard\/login/), page.locator('form button[type="submit"], form input[type="submit"]').first().click()]);
    expect(await page.locator('body').innerText()).toMatch(/wrong|invalid|not/i);
    await page.locator('input[name="token"]').fill(ADMIN_TOKEN);
    await Promise.all([page.waitForURL(`${sys.url}/dashboard`), page.locator('form button[type="submit"], form input[type="submit"]').first().click()]);
    await page.waitForSelector('body[data-ready="true"]');
    await expect.poll(() => page.locator('section[data-source="teamwork"] h2').textContent()).toContain('teamwork');

    const deliveries = fact('section[data-source="teamwork"]', 'Deliveries, last hour');
    const before = Number((await deliveries.innerText()).replace(/\D/g, ''));
    await page.evaluate('window.notReloaded = true');
    const created = [await tw.createTask({ name: 'Console: live 1' }), await tw.createTask({ name: 'Console: live 2' })];
    await expect.poll(async () => Number((await deliveries.innerText()).replace(/\D/g, '')), { timeout: LIVE_MS }).toBeGreaterThanOrEqual(before + created.length);
    expect(await page.evaluate('window.notReloaded')).toBe(true);
    await expect.poll(() => fact('section[data-source="teamwork"]', 'Last delivery').innerText(), { timeout: LIVE_MS }).toMatch(/ago/);
    await shot('overview');
  });

  it('asks nothing while the tab is hidden, and catches up when it is shown again', async () => {
    await open('overview');
    const asked: string[] = [];
    const count = (request: { url(): string }) => {
      if (request.url().includes('/dashboard/api/')) asked.push(request.url());
    };
    page.on('request', count);
    try {
      await page.evaluate("Object.defineProperty(document, 'hidden', { configurable: true, get: () => true }); document.dispatchEvent(new Event('visibilitychange'))");
      expect(await page.locator('#live').innerText()).toContain('Paused');
      asked.length = 0;
      await new Promise((resolve) => setTimeout(resolve, 2 * 2000 + 500));
      expect(asked).toEqual([]);
      await page.evaluate("Object.defineProperty(document, 'hidden', { configurable: true, get: () => false }); document.dispatchEvent(new Event('visibilitychange'))");
      await expect.poll(() => asked.length, { timeout: 1000 }).toBeGreaterThan(0);
      await expect.poll(() => page.locator('#live').innerText(), { timeout: 2000 }).toContain('Live');
    } finally {
      page.off('request', count);
    }
  });

  it('finds an event by its task id and shows its payload, attempts and row', async () => {
    const task = await tw.createTask({ name: 'Console: find me' });
    await waitFor('the task to be stored', async () => (await sys.db.getTask(String(task.id))) ?? undefined);
    await open('events');
    await page.getByLabel('Entity, event or row id').fill(String(task.id));
    await page.getByRole('button', { name: 'Search' }).click();
    const row = page.locator('tbody tr', { hasText: String(task.id) }).first();
    await expect.poll(() => row.innerText(), { timeout: LIVE_MS }).toContain('succeeded');
    expect(await page.locator('tbody tr').count()).toBeGreaterThanOrEqual(1);
    for (const text of await page.locator('tbody tr').allInnerTexts()) expect(text).toContain(String(task.id));
    await shot('events');

    await row.locator('a').first().click();
    await page.waitForSelector('body[data-ready="true"]');
    await expect.poll(() => page.locator('h1').innerText()).toMatch(/^Event /);
    const detail = await page.locator('main').innerText();
    expect(detail).toContain('succeeded');
    expect(detail).toContain(`tasks ${task.id}`);
    expect(detail).toContain('Console: find me');
    expect(await page.locator('main table').first().locator('tbody tr').count()).toBeGreaterThanOrEqual(1);
    await shot('event-detail');
  });

  it('replays a dead letter and sees it succeed; discards another only after a confirmation', async () => {
    refuseTaskReads = true;
    const replayed = await tw.createTask({ name: 'Console: replay me' });
    const discarded = await tw.createTask({ name: 'Console: discard me' });
    await waitFor('two dead letters', async () => ((await sys.stats()).deadLettered >= 2 ? true : undefined));
    refuseTaskReads = false;

    await open('dead-letters');
    const replayRow = page.locator('tbody tr', { hasText: String(replayed.id) });
    const discardRow = page.locator('tbody tr', { hasText: String(discarded.id) });
    await expect.poll(() => replayRow.count(), { timeout: LIVE_MS }).toBe(1);
    expect(await discardRow.count()).toBe(1);
    expect(await replayRow.innerText()).toMatch(/CONN_ERR_/);
    await shot('dead-letters');

    await replayRow.locator('a').first().click();
    await page.waitForSelector('body[data-ready="true"]');
    await expect.poll(() => page.locator('h1').innerText()).toMatch(/^Dead letter /);
    expect(await page.locator('main').innerText()).toContain('Payload (secrets redacted)');
    await shot('dead-letter-detail');
    await page.getByRole('button', { name: 'Replay', exact: true }).click();
    await expect.poll(() => page.locator('#status').innerText(), { timeout: LIVE_MS }).toContain('Replayed 1 dead letter');
    await waitFor('the replayed task to be stored', async () => (await sys.db.getTask(String(replayed.id))) ?? undefined);
    await open(`events?q=${replayed.id}`);
    await expect.poll(() => page.locator('tbody').innerText(), { timeout: LIVE_MS }).toContain('succeeded');

    await open('dead-letters');
    await expect.poll(() => replayRow.count(), { timeout: LIVE_MS }).toBe(0);
    await discardRow.getByRole('checkbox').check();
    await page.getByRole('button', { name: 'Discard selected (1)' }).click();
    const dialog = page.locator('dialog#confirm');
    await expect.poll(() => dialog.isVisible()).toBe(true);
    expect(await dialog.innerText()).toContain('Discard 1 dead letter?');
    await shot('discard-confirmation');
    await dialog.getByRole('button', { name: 'Cancel' }).click();
    await expect.poll(() => page.locator('#status').innerText()).toContain('Nothing discarded');
    expect((await sys.stats()).deadLettered).toBe(1);

    await discardRow.getByRole('checkbox').check();
    await page.getByRole('button', { name: 'Discard selected (1)' }).click();
    await dialog.getByRole('button', { name: 'Discard' }).click();
    await expect.poll(() => page.locator('#status').innerText(), { timeout: LIVE_MS }).toContain('Discarded 1 dead letter');
    await expect.poll(() => discardRow.count(), { timeout: LIVE_MS }).toBe(0);
    expect((await sys.stats()).deadLettered).toBe(0);
    expect(await sys.db.getTask(String(discarded.id))).toBeNull();
  });

  it('refuses an action without the CSRF token, even with the session cookie', async () => {
    const cookies = await browser.context.cookies(`${sys.url}/dashboard`);
    const session = cookies.find((c) => c.name === 'connector_session');
    expect(session?.httpOnly).toBe(true);
    expect(session?.sameSite).toBe('Strict');
    const response = await fetch(`${sys.url}/dashboard/api/dead-letters/replay`, {
      method: 'POST',
      headers: { cookie: `connector_session=${session?.value}`, 'content-type': 'application/json' },
      body: JSON.stringify({ all: true, source: 'teamwork' }),
    });
    expect(response.status).toBe(403);
  });

  it('starts a backfill and watches its bar finish', async () => {
    const apiReadsBefore = tw.requests.find(() => true).length;
    await open('backfill');
    await page.getByLabel('Source').selectOption('teamwork');
    await page.getByLabel('the beginning (full)').check();
    await page.getByRole('button', { name: 'Start backfill' }).click();
    await expect.poll(() => page.locator('#status').innerText(), { timeout: LIVE_MS }).toContain('Backfill of teamwork started');
    const job = page.locator('section.job[data-source="teamwork"]').first();
    await expect.poll(() => job.count(), { timeout: LIVE_MS }).toBe(1);
    await expect.poll(() => job.getAttribute('data-state'), { timeout: 20_000 }).toBe('done');
    expect(await job.locator('progress').getAttribute('value')).toBe('100');
    expect(await job.locator('h3').innerText()).toContain('done');
    expect(Number((await fact('section.job', 'Events queued').first().innerText()).replace(/\D/g, ''))).toBeGreaterThan(0);
    expect(tw.requests.find(() => true).length).toBeGreaterThan(apiReadsBefore);
    await shot('backfill');
  });

  it('every page fits a 360 px wide screen with every field labelled, and nothing is loaded from elsewhere', async () => {
    await page.setViewportSize({ width: 360, height: 780 });
    for (const hash of ['overview', 'events', 'dead-letters', 'backfill']) {
      await open(hash);
      const { scroll, client } = await page.evaluate<{ scroll: number; client: number }>('({ scroll: document.documentElement.scrollWidth, client: document.documentElement.clientWidth })');
      expect(scroll, `${hash} at 360 px`).toBeLessThanOrEqual(client);
      // Every field has a label, every button a name.
      const unnamed = await page.evaluate<string[]>(
        "[...document.querySelectorAll('input:not([type=hidden]), select, textarea, button')].filter((e) => !((e.labels && e.labels.length > 0) || e.getAttribute('aria-label') || (e.tagName === 'BUTTON' && e.textContent.trim() !== ''))).map((e) => e.outerHTML)",
      );
      expect(unnamed, hash).toEqual([]);
      await shot(`${hash}-360`);
    }
    expect(foreignRequests).toEqual([]);
    expect(pageErrors).toEqual([]);
  });
});

/**
 * The console's routes, from the app's route table (so that a new route cannot escape the check).
 * `printRoutes` draws a tree, four characters per level, each node's text continuing its parent's path.
 */
function consoleRoutes(system: System): Array<{ method: string; url: string }> {
  const app = system.connector.app;
  if (app === null) throw new Error('the connector serves no HTTP');
  const routes: Array<{ method: string; url: string }> = [];
  const stack: string[] = [];
  for (const line of app.printRoutes({ commonPrefix: false }).split('\n')) {
    const match = /^([\s│├└─]*)(\S+)(?: \(([A-Z, ]+)\))?$/.exec(line.trimEnd());
    if (match === null) continue;
    const depth = Math.max(0, (match[1] as string).length / 4 - 1);
    stack.length = depth;
    stack.push(match[2] as string);
    const url = stack.join('').replace(/(.)\/$/, '$1');
    if (match[3] === undefined || !url.startsWith('/dashboard')) continue;
    for (const method of match[3].split(', ')) if (method !== 'HEAD') routes.push({ method, url });
  }
  return routes;
}
