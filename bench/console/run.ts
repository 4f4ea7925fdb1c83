/**
 * `npm run bench:console`: the console's overview under load, in headless Chromium (Debian's, through
 * playwright-core, as the browser tests drive it). The queue holds BENCH_CONSOLE_EVENTS pending events
 * (default 100,000) and BENCH_CONSOLE_DEAD_LETTERS dead letters (default 1,000), on the embedded
 * default (file queue, SQLite); the connector runs `serve` only, so nothing drains them.
 *
 * Measured over BENCH_CONSOLE_LOADS cold loads of /dashboard (browser cache off, logged in):
 * - transfer: bytes received over the network until the overview first shows its data (page, style
 *   sheet, script, icon and the JSON it asked for; Chromium's encoded lengths, headers included);
 * - first render: ms from the start of the navigation to the page's `console:first-render` mark (the
 *   overview drawn with its data), and the browser's first contentful paint;
 * - one poll: the bytes and time of one later GET /dashboard/api/overview from the page.
 * Goals (issue 17): transfer under 300 KB and first render under 1 s on this machine.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseConfig } from '../../src/config.ts';
import { Lifecycle } from '../../src/lifecycle.ts';
import { createLogger } from '../../src/log.ts';
import { startConnector } from '../../src/main.ts';
import type { QueueEvent } from '../../src/model.ts';
import { createQueue } from '../../src/queue/create-queue.ts';
import { launchChromium, requireChromium } from '../../test/browser/chromium.ts';

const EVENTS = Number(process.env.BENCH_CONSOLE_EVENTS ?? 100_000);
const DEAD_LETTERS = Number(process.env.BENCH_CONSOLE_DEAD_LETTERS ?? 1_000);
const LOADS = Number(process.env.BENCH_CONSOLE_LOADS ?? 5);
const GOAL_BYTES = 300 * 1024;
const GOAL_MS = 1000;
const ADMIN_TOKEN = 'bench-console-admin-token-0123456789';
const BATCH = 1000;

if (process.argv.includes('--help') || process.argv.includes('-h')) {
  console.log('Usage: npm run bench:console\n\nThe overview page\'s transfer and time to first render in headless Chromium with a full queue.\nBENCH_CONSOLE_EVENTS (default 100000), BENCH_CONSOLE_DEAD_LETTERS (default 1000), BENCH_CONSOLE_LOADS (default 5).');
  process.exit(0);
}
if (!requireChromium()) process.exit(1);

function event(i: number): QueueEvent {
  const task = 1_000_000 + i;
  return {
    id: `bench-${i}`,
    source: 'teamwork',
    type: 'TASK.UPDATED',
    entityKey: `task:${task}`,
    origin: 'webhook',
    receivedAt: new Date(Date.now() - (EVENTS + DEAD_LETTERS - i) * 10),
    payload: { format: 'v2-json', taskId: String(task), body: { task: { id: task, name: `Bench task ${i}`, status: 'new', description: 'x'.repeat(120) } } },
  };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
const kb = (n: number) => `${(n / 1024).toFixed(1)} KB`;

const dir = mkdtempSync(path.join(tmpdir(), 'bench-console-'));
const log = createLogger({ level: 'warn', console: false });
const config = parseConfig({
  PORT: '0',
  HOST: '127.0.0.1',
  DATA_DIR: path.join(dir, 'data'),
  LOG_DIR: path.join(dir, 'logs'),
  ADMIN_TOKEN,
  BACKFILL_ON_START: 'false',
  BACKFILL_INTERVAL_MINUTES: '0',
});

try {
  // Fill the queue: dead letters first (claimed and dead-lettered), then the pending events.
  const started = Date.now();
  const queue = await createQueue(config, { log, lifecycle: new Lifecycle() });
  for (let i = 0; i < DEAD_LETTERS; i += BATCH) await queue.enqueue(Array.from({ length: Math.min(BATCH, DEAD_LETTERS - i) }, (_, k) => event(i + k)));
  for (let left = DEAD_LETTERS; left > 0; ) {
    const claimed = await queue.claim({ limit: Math.min(left, 100) });
    if (claimed.length === 0) break;
    for (const c of claimed) await queue.deadLetter(c.event.id, { code: 'CONN_ERR_HTTP_CLIENT', message: 'teamwork GET /projects/api/v3/tasks/1.json answered 400', retryable: false, status: 400 });
    left -= claimed.length;
  }
  for (let i = 0; i < EVENTS; i += BATCH) await queue.enqueue(Array.from({ length: Math.min(BATCH, EVENTS - i) }, (_, k) => event(DEAD_LETTERS + i + k)));
  const filled = await queue.stats();
  await queue.close();
  console.log(`queue: ${filled.pending.toLocaleString()} pending, ${filled.deadLettered.toLocaleString()} dead letters (filled in ${((Date.now() - started) / 1000).toFixed(1)} s)`);

  const connector = await startConnector(config, { roles: { serve: true, work: false }, log });
  const browser = await launchChromium();
  try {
    const url = connector.url as string;
    const page = await browser.context.newPage();
    await page.setViewportSize({ width: 1280, height: 900 });
    await page.goto(`${url}/dashboard/login`);
    await page.locator('input[name="token"]').fill(ADMIN_TOKEN);
    await Promise.all([page.waitForURL(`${url}/dashboard`), page.locator('form button[type="submit"]').first().click()]);
    await page.waitForSelector('body[data-ready="true"]');

    const cdp = await browser.context.newCDPSession(page);
    await cdp.send('Network.enable');
    await cdp.send('Network.setCacheDisabled', { cacheDisabled: true });
    let bytes = 0;
    const sizes = new Map<string, number>();
    const urls = new Map<string, string>();
    cdp.on('Network.requestWillBeSent', (e) => urls.set(e.requestId, e.request.url));
    cdp.on('Network.loadingFinished', (e) => {
      bytes += e.encodedDataLength;
      const name = new URL(urls.get(e.requestId) ?? 'http://x/?').pathname;
      sizes.set(name, (sizes.get(name) ?? 0) + e.encodedDataLength);
    });

    const transfers: number[] = [];
    const renders: number[] = [];
    const paints: number[] = [];
    for (let i = 0; i < LOADS; i++) {
      await page.goto('about:blank');
      bytes = 0;
      sizes.clear();
      await page.goto(`${url}/dashboard#/overview`);
      await page.waitForSelector('body[data-rendered="true"]');
      const timing = await page.evaluate<{ render: number; fcp: number | null }>(
        "({ render: performance.getEntriesByName('console:first-render')[0].startTime, fcp: performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? null })",
      );
      transfers.push(bytes);
      renders.push(timing.render);
      if (timing.fcp !== null) paints.push(timing.fcp);
      if (i === 0) console.log(`load 1 by request: ${[...sizes].map(([name, n]) => `${name} ${kb(n)}`).join(', ')}`);
    }

    // One poll, as the page makes it every 2 s.
    const poll = await page.evaluate<{ bytes: number; ms: number }>(
      "(async () => { const t = performance.now(); const r = await fetch('/dashboard/api/overview'); const text = await r.text(); return { bytes: text.length, ms: performance.now() - t }; })()",
    );

    const transfer = Math.max(...transfers);
    const render = median(renders);
    console.log(`\nconsole overview, ${filled.pending.toLocaleString()} events and ${filled.deadLettered.toLocaleString()} dead letters in the queue, ${LOADS} cold loads (cache off):`);
    console.log(`  transfer until first render: ${kb(transfer)} (largest of ${LOADS}); goal < ${kb(GOAL_BYTES)}: ${transfer < GOAL_BYTES ? 'met' : 'NOT met'}`);
    console.log(`  first render: median ${render.toFixed(0)} ms, max ${Math.max(...renders).toFixed(0)} ms; goal < ${GOAL_MS} ms: ${render < GOAL_MS ? 'met' : 'NOT met'}`);
    if (paints.length > 0) console.log(`  first contentful paint: median ${median(paints).toFixed(0)} ms`);
    console.log(`  one poll of /dashboard/api/overview: ${kb(poll.bytes)} body, ${poll.ms.toFixed(0)} ms`);
    if (!(transfer < GOAL_BYTES && render < GOAL_MS)) process.exitCode = 1;
  } finally {
    await browser.close();
    await connector.stop();
  }
} finally {
  rmSync(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
}
