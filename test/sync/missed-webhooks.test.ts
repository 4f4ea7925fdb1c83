/**
 * Missed-webhook detection (src/sync/missed-webhooks.ts) against the simulators: a reconciliation
 * counts the changes whose webhooks the vendor dropped, and none when every webhook arrived. The grace
 * time is 0 so that changes made a moment ago are judged.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import type { LifecycleEvents } from '../../src/lifecycle.ts';
import { startMissiveSimulator } from '../../simulators/missive/index.ts';
import { startTeamworkSimulator } from '../../simulators/teamwork/index.ts';
import { removeTempDirs, startSystem, stopAllSystems, waitFor } from '../system/harness.ts';
import { emailMatches } from '../system/missive-expect.ts';
import { rowMatches } from '../system/teamwork-expect.ts';

const TW_TOKEN = 'missed-webhooks-tw';
const MV_SECRET = 'missed-webhooks-mv';
const stops: Array<() => Promise<void>> = [];

afterAll(async () => {
  await stopAllSystems();
  for (const stop of stops.splice(0)) await stop();
  removeTempDirs();
});

/** A local ALERT_WEBHOOK_URL receiver (generic JSON), keeping each message's body. */
async function alertReceiver(): Promise<{ url: string; bodies: Array<Record<string, unknown>> }> {
  const bodies: Array<Record<string, unknown>> = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      bodies.push(JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>);
      res.writeHead(200).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  stops.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/alerts`, bodies };
}

const missedAlerts = (bodies: ReadonlyArray<Record<string, unknown>>) => bodies.filter((b) => b.condition === 'missed_webhooks');

async function setUp(env: Record<string, string> = {}) {
  const receiver = await alertReceiver();
  const tw = await startTeamworkSimulator({ seed: 'missed-webhooks', data: { tasks: 5 }, limits: { perMinute: 100_000 }, webhookRetryDelaysMs: [] });
  stops.push(() => tw.stop());
  const mv = await startMissiveSimulator({ seed: 'missed-webhooks', data: { conversations: 3 }, webhookRetryDelaysMs: [] });
  stops.push(() => mv.stop());
  const sys = await startSystem({
    env: {
      TEAMWORK_BASE_URL: tw.url,
      TEAMWORK_API_KEY: tw.credentials.apiKey,
      TEAMWORK_WEBHOOK_TOKEN: TW_TOKEN,
      MISSIVE_BASE_URL: mv.credentials.baseUrl,
      MISSIVE_API_TOKEN: mv.credentials.token,
      MISSIVE_WEBHOOK_SECRET: MV_SECRET,
      BACKFILL_ON_START: 'true',
      MISSED_WEBHOOKS_GRACE_SECONDS: '0',
      ALERT_WEBHOOK_URL: receiver.url,
      ALERT_WEBHOOK_FORMAT: 'json',
      MISSED_WEBHOOKS_ALERT_COUNT: '2',
      ...env,
    },
  });
  await sys.waitBackfillsDone('teamwork', 1);
  await sys.waitBackfillsDone('missive', 1);
  tw.registerAllTaskWebhooks(`${sys.url}/webhooks/teamwork`, { token: TW_TOKEN });
  await mv.createAllRules(`${sys.url}/webhooks/missive`, MV_SECRET);
  const judged: Array<LifecycleEvents['reconcile:judged']> = [];
  const done: Array<LifecycleEvents['backfill:done']> = [];
  sys.connector.lifecycle.on('reconcile:judged', (j) => judged.push(j));
  sys.connector.lifecycle.on('backfill:done', (d) => done.push(d));
  return { tw, mv, sys, judged, done, alerts: receiver.bodies };
}

const total = (judged: ReadonlyArray<LifecycleEvents['reconcile:judged']>, source: string) =>
  judged.filter((j) => j.source === source).reduce((sum, j) => ({ judged: sum.judged + j.judged, missed: sum.missed + j.missed }), { judged: 0, missed: 0 });

describe('missed-webhook detection', () => {
  it('counts the changes whose webhooks were dropped, names them in the log, and alerts once', async () => {
    const { tw, mv, sys, judged, done, alerts } = await setUp();
    const delivered = await tw.createTask({ name: 'Missed: delivered' });
    await waitFor('the delivered webhook to be stored', async () => rowMatches(tw, await sys.db.getTask(String(delivered.id)), tw.task(delivered.id)!));

    tw.faults.set({ dropRate: 1 });
    mv.faults.set({ dropRate: 1 });
    const dropped = await tw.createTask({ name: 'Missed: created, webhook dropped' });
    // A task changed before (not `delivered`: a change in the same second as its stored version is not
    // newer to the stale-write guard either, so it cannot count as missed).
    const earlier = tw.data().tasks[0]!;
    await tw.updateTask(earlier.id, { name: 'Missed: renamed, webhook dropped' });
    const { message } = await mv.receiveEmail({ subject: 'Missed: Anfrage' });
    tw.faults.reset();
    mv.faults.reset();
    await sys.waitIdle();

    await sys.connector.reconcile();
    await waitFor('the dropped changes to be stored', async () => rowMatches(tw, await sys.db.getTask(String(dropped.id)), tw.task(dropped.id)!) && emailMatches(mv, await sys.db.getEmail(message.id), message.id));
    expect(total(judged, 'teamwork')).toMatchObject({ missed: 2 });
    expect(total(judged, 'missive')).toMatchObject({ missed: 1 });
    expect(done.find((d) => d.source === 'teamwork')?.missed).toBe(2);
    const line = sys.lines.find((l) => l.source === 'teamwork' && typeof l.msg === 'string' && l.judged !== undefined);
    expect(line?.msg).toContain(`task ${dropped.id}`);
    // Two Teamwork changes reach MISSED_WEBHOOKS_ALERT_COUNT=2: one "started" message for teamwork;
    // Missive's one does not.
    await waitFor('the missed-webhooks alert', () => missedAlerts(alerts).length >= 1);
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(missedAlerts(alerts)).toEqual([expect.objectContaining({ alert: 'started', source: 'teamwork' })]);
  }, 60_000);

  it('counts nothing and alerts nothing when every webhook arrived, and judges nothing with POLLING_ONLY', async () => {
    const { tw, mv, sys, judged, alerts } = await setUp();
    const task = await tw.createTask({ name: 'Delivered: created' });
    await tw.updateTask(task.id, { name: 'Delivered: renamed' });
    const { message } = await mv.receiveEmail({ subject: 'Delivered: Anfrage' });
    await waitFor('the webhooks to be stored', async () => rowMatches(tw, await sys.db.getTask(String(task.id)), tw.task(task.id)!) && emailMatches(mv, await sys.db.getEmail(message.id), message.id));
    await sys.waitIdle();
    await sys.connector.reconcile();
    expect(total(judged, 'teamwork').judged).toBeGreaterThanOrEqual(1);
    expect(total(judged, 'missive').judged).toBeGreaterThanOrEqual(1);
    expect(total(judged, 'teamwork').missed + total(judged, 'missive').missed).toBe(0);
    expect(missedAlerts(alerts)).toEqual([]);

    const polling = await setUp({ POLLING_ONLY: 'true' });
    polling.tw.faults.set({ dropRate: 1 });
    await polling.tw.createTask({ name: 'Polling: never delivered' });
    polling.tw.faults.reset();
    await polling.sys.connector.reconcile();
    expect(polling.judged).toEqual([]);
  }, 60_000);
});
