/**
 * Issue 8: the periodic reconciliation of a running connector recovers a webhook the vendor dropped,
 * with no restart and no manual backfill. BACKFILL_INTERVAL_MINUTES has whole minutes, so this test
 * waits for the real loop's next tick, about a minute: it is alone in its file so that the rest of the
 * sync suite stays fast.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { startMissiveSimulator } from '../../simulators/missive/index.ts';
import { startTeamworkSimulator } from '../../simulators/teamwork/index.ts';
import { removeTempDirs, startSystem, stopAllSystems, waitFor } from '../system/harness.ts';
import { emailMatches } from '../system/missive-expect.ts';
import { rowMatches } from '../system/teamwork-expect.ts';

const TW_TOKEN = 'reconcile-loop-tw';
const MV_SECRET = 'reconcile-loop-mv';
const stops: Array<() => Promise<void>> = [];

afterAll(async () => {
  await stopAllSystems();
  for (const stop of stops.splice(0)) await stop();
  removeTempDirs();
});

describe('the reconciliation loop', () => {
  it('recovers dropped Teamwork and Missive webhooks while the connector runs', async () => {
    const tw = await startTeamworkSimulator({ seed: 'reconcile-loop', data: { tasks: 20 }, limits: { perMinute: 100_000 }, webhookRetryDelaysMs: [] });
    stops.push(() => tw.stop());
    const mv = await startMissiveSimulator({ seed: 'reconcile-loop', data: { conversations: 4 }, webhookRetryDelaysMs: [] });
    stops.push(() => mv.stop());
    const startedAt = Date.now();
    const sys = await startSystem({
      env: {
        TEAMWORK_BASE_URL: tw.url,
        TEAMWORK_API_KEY: tw.credentials.apiKey,
        TEAMWORK_WEBHOOK_TOKEN: TW_TOKEN,
        MISSIVE_BASE_URL: mv.credentials.baseUrl,
        MISSIVE_API_TOKEN: mv.credentials.token,
        MISSIVE_WEBHOOK_SECRET: MV_SECRET,
        BACKFILL_ON_START: 'true',
        BACKFILL_INTERVAL_MINUTES: '1',
      },
    });
    await sys.waitBackfillsDone('teamwork', 1);
    await sys.waitBackfillsDone('missive', 1);
    tw.registerAllTaskWebhooks(`${sys.url}/webhooks/teamwork`, { token: TW_TOKEN });
    await mv.createAllRules(`${sys.url}/webhooks/missive`, MV_SECRET);

    const task = await tw.createTask({ name: 'Loop: before' });
    const { message, conversation } = await mv.receiveEmail({ subject: 'Loop: Anfrage' });
    await waitFor('the webhooks to be stored', async () => rowMatches(tw, await sys.db.getTask(String(task.id)), tw.task(task.id)!) && emailMatches(mv, await sys.db.getEmail(message.id), message.id));

    // The vendors drop these changes' webhooks.
    tw.faults.set({ dropRate: 1 });
    mv.faults.set({ dropRate: 1 });
    await tw.updateTask(task.id, { name: 'Loop: renamed, webhook dropped' });
    const label = mv.data().labels[0]!;
    await mv.addLabel(conversation.id, label.id);
    tw.faults.reset();
    mv.faults.reset();
    expect(tw.deliveries.at(-1)).toMatchObject({ outcome: 'dropped' });
    expect(mv.deliveries.at(-1)).toMatchObject({ outcome: 'dropped' });
    await sys.waitIdle();
    expect((await sys.db.getTask(String(task.id)))?.title).toBe('Loop: before');
    expect((await sys.db.getEmail(message.id))?.labels).toEqual([]);

    // The loop's next run (one minute after the start-up run) brings both changes in.
    await sys.waitBackfillsDone('teamwork', 2, 80_000);
    await sys.waitBackfillsDone('missive', 2, 10_000);
    expect(Date.now() - startedAt).toBeGreaterThanOrEqual(55_000);
    await waitFor('the dropped changes to be stored', async () => rowMatches(tw, await sys.db.getTask(String(task.id)), tw.task(task.id)!) && emailMatches(mv, await sys.db.getEmail(message.id), message.id));
    expect((await sys.db.getTask(String(task.id)))?.title).toBe('Loop: renamed, webhook dropped');
    expect((await sys.db.getEmail(message.id))?.labels).toEqual([label.name]);
  }, 100_000);
});
