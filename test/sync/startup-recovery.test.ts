/**
 * Issue 8: webhooks sent while the connector was down are lost to it (the vendors' retries are off
 * here), and the start-up backfill recovers every change: tasks renamed, created and deleted in
 * Teamwork, and in Missive a new email and a label on a conversation. Real connector, real simulators,
 * SQLite and the file queue in one data directory across the restart.
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { startMissiveSimulator } from '../../simulators/missive/index.ts';
import { startTeamworkSimulator } from '../../simulators/teamwork/index.ts';
import { mirrorMatches, removeTempDirs, startSystem, stopAllSystems, tempDir, waitFor } from '../system/harness.ts';
import { emailMatches } from '../system/missive-expect.ts';
import { rowMatches } from '../system/teamwork-expect.ts';

const TW_TOKEN = 'startup-recovery-tw';
const MV_SECRET = 'startup-recovery-mv';
const stops: Array<() => Promise<void>> = [];

afterEach(async () => {
  await stopAllSystems();
  for (const stop of stops.splice(0)) await stop();
});

afterAll(() => removeTempDirs());

describe('changes made while the connector was down', () => {
  it('are recovered by the start-up backfill', async () => {
    const tw = await startTeamworkSimulator({ seed: 'startup-recovery', data: { tasks: 30 }, limits: { perMinute: 100_000 }, webhookRetryDelaysMs: [] });
    stops.push(() => tw.stop());
    const mv = await startMissiveSimulator({ seed: 'startup-recovery', data: { conversations: 5 }, webhookRetryDelaysMs: [] });
    stops.push(() => mv.stop());
    const env = {
      TEAMWORK_BASE_URL: tw.url,
      TEAMWORK_API_KEY: tw.credentials.apiKey,
      TEAMWORK_WEBHOOK_TOKEN: TW_TOKEN,
      MISSIVE_BASE_URL: mv.credentials.baseUrl,
      MISSIVE_API_TOKEN: mv.credentials.token,
      MISSIVE_WEBHOOK_SECRET: MV_SECRET,
      BACKFILL_ON_START: 'true',
    };
    const dir = tempDir('conn-sync-startup');

    // Running: hooks registered, a task and an email arrive by webhook.
    const first = await startSystem({ dataDir: dir, env });
    await first.waitBackfillsDone('teamwork', 1);
    await first.waitBackfillsDone('missive', 1);
    tw.registerAllTaskWebhooks(`${first.url}/webhooks/teamwork`, { token: TW_TOKEN });
    await mv.createAllRules(`${first.url}/webhooks/missive`, MV_SECRET);
    const task = await tw.createTask({ name: 'Startup: before' });
    const doomed = await tw.createTask({ name: 'Startup: to be deleted' });
    const { message, conversation } = await mv.receiveEmail({ subject: 'Startup: Anfrage' });
    await waitFor('the webhooks to be stored', async () => rowMatches(tw, await first.db.getTask(String(task.id)), tw.task(task.id)!) && (await first.db.getTask(String(doomed.id))) !== null && emailMatches(mv, await first.db.getEmail(message.id), message.id));
    await first.waitIdle();
    await first.stop();

    // Down: every change's webhook fails (connection refused) and is not retried.
    const sentBefore = { tw: tw.deliveries.length, mv: mv.deliveries.length };
    await tw.updateTask(task.id, { name: 'Startup: renamed while down', progress: 70 });
    const created = await tw.createTask({ name: 'Startup: created while down' });
    await tw.deleteTask(doomed.id);
    const reply = await mv.sendEmail({ conversationId: conversation.id, html: '<p>Sent while the connector was down</p>' });
    const label = mv.data().labels[0]!;
    await mv.addLabel(conversation.id, label.id);
    const missed = [...tw.deliveries.slice(sentBefore.tw), ...mv.deliveries.slice(sentBefore.mv)];
    expect(missed.length).toBe(5);
    expect(missed.every((d) => d.outcome === 'failed')).toBe(true);

    // Up again (a new port: the old hooks still point at the dead one): the start-up backfill recovers it all.
    const second = await startSystem({ dataDir: dir, env });
    await second.waitBackfillsDone('teamwork', 1);
    await second.waitBackfillsDone('missive', 1);
    await second.waitIdle();
    for (const id of [task.id, created.id, doomed.id]) expect(rowMatches(tw, await second.db.getTask(String(id)), tw.task(id)!), `task ${id}`).toBe(true);
    expect(await second.db.getTask(String(task.id))).toMatchObject({ title: 'Startup: renamed while down', progress: 70 });
    expect(await second.db.getTask(String(doomed.id))).toMatchObject({ deleted: true, status: 'deleted' });
    for (const id of [message.id, reply.message.id]) expect(emailMatches(mv, await second.db.getEmail(id), id), `email ${id}`).toBe(true);
    expect((await second.db.getEmail(message.id))?.labels).toEqual([label.name]);
    expect((await second.db.getEmail(reply.message.id))?.bodyHtml).toBe('<p>Sent while the connector was down</p>');
    expect((await second.stats()).deadLettered).toBe(0);
    for (const source of ['teamwork', 'missive'] as const) expect(mirrorMatches(second.mirror(source), await second.db.getCheckpoint(source)), `${source} mirror`).toBe(true);
  }, 60_000);
});
