/**
 * Issue 14, 3(b), through the real connector (`startSystem`: the app, the file queue and the worker on
 * SQLite), Missive without API credentials, signed deliveries: label A, then B, then A re-sent byte
 * for byte (a vendor's late retry) leaves B's labels, and still does after a restart on the same data
 * directory. The same bytes to the other source are not a duplicate.
 */
import { createHmac } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { removeTempDirs, startSystem, stopAllSystems, tempDir, waitFor, type System } from './harness.ts';

const SECRET = 'replay-window-secret-7d1e';
const CONVERSATION = '6cc35f0d-0000-4000-8000-00000000c0de';
const MESSAGE = '6cc35f0d-0000-4000-8000-00000000beef';

afterAll(async () => {
  await stopAllSystems();
  removeTempDirs();
});

/** A label_change delivery (reference 1.4) with the conversation carrying `label`. */
function labelChange(label: string): string {
  return JSON.stringify({
    rule: { id: 'r-1', description: 'Mirror', type: 'label_change' },
    conversation: { id: CONVERSATION, subject: null, latest_message_subject: 'Replays', shared_labels: [{ id: `l-${label}`, name: label }], shared_label_names: label, users: [], last_activity_at: 1764331200 },
    latest_message: { id: MESSAGE, subject: 'Replays', delivered_at: 1764331200, created_at: 1764331200, updated_at: 1764331200, from_field: { name: 'Ada', address: 'ada@example.com' }, to_fields: [] },
  });
}

async function post(sys: System, source: 'missive' | 'teamwork', body: string, headers: Record<string, string> = {}): Promise<{ status: number; json: Record<string, unknown> }> {
  const signature = `sha256=${createHmac('sha256', SECRET).update(body).digest('hex')}`;
  const response = await fetch(`${sys.url}/webhooks/${source}`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-hook-signature': signature, ...headers }, body });
  return { status: response.status, json: (await response.json()) as Record<string, unknown> };
}

async function labels(sys: System): Promise<string[] | undefined> {
  return (await sys.db.getEmail(MESSAGE))?.labels;
}

describe('the replay window through the running connector (Missive, no API)', () => {
  it('A, B, then A re-sent byte for byte ends with B; after a restart A re-sent is still recognised', async () => {
    const dataDir = tempDir('conn-replay');
    const env = { MISSIVE_WEBHOOK_SECRET: SECRET };
    let sys = await startSystem({ dataDir, env });
    const a = labelChange('A');
    const b = labelChange('B');

    expect(await post(sys, 'missive', a)).toMatchObject({ status: 200, json: { events: 1 } });
    await sys.waitIdle();
    expect(await labels(sys)).toEqual(['A']);
    await new Promise((r) => setTimeout(r, 5)); // B arrives later than A (the version is the receipt time)
    expect(await post(sys, 'missive', b)).toMatchObject({ status: 200, json: { events: 1 } });
    await sys.waitIdle();
    expect(await labels(sys)).toEqual(['B']);

    const resent = await post(sys, 'missive', a);
    expect(resent).toMatchObject({ status: 200, json: { ok: true, events: 0, duplicate: true, note: expect.stringMatching(/^duplicate of a delivery accepted at \d{4}-/) } });
    await sys.waitIdle();
    expect(await labels(sys)).toEqual(['B']);
    const metrics = await (await fetch(`${sys.url}/metrics`)).text();
    expect(metrics).toContain('connector_deliveries_duplicate_total{source="missive"} 1');

    await sys.stop();
    sys = await startSystem({ dataDir, env });
    const afterRestart = await post(sys, 'missive', a);
    expect(afterRestart).toMatchObject({ status: 200, json: { events: 0, duplicate: true } });
    await sys.waitIdle();
    expect(await labels(sys)).toEqual(['B']);
    expect(sys.counters.appendedEvents).toBe(0);

    // A new state (not a byte-identical body) is enqueued and stored as usual.
    expect(await post(sys, 'missive', labelChange('C'))).toMatchObject({ status: 200, json: { events: 1 } });
    await waitFor('label C', async () => (await labels(sys))?.[0] === 'C');
  });

  it('Teamwork: a v1 form body (ids only) is never a repeat; a v2 body with dateUpdated is, for the same event name only', async () => {
    const sys = await startSystem({ env: { TEAMWORK_WEBHOOK_TOKEN: SECRET, MISSIVE_WEBHOOK_SECRET: SECRET } });
    const send = async (body: string, event: string, type = 'application/json') => {
      const response = await fetch(`${sys.url}/webhooks/teamwork`, { method: 'POST', headers: { 'content-type': type, 'x-projects-event': event, 'x-projects-signature': createHmac('sha256', SECRET).update(body).digest('hex') }, body });
      expect(response.status).toBe(200);
      return (await response.json()) as Record<string, unknown>;
    };
    // The same user updating the same task twice sends the same v1 form body twice: two changes.
    const form = 'accountId=1234&event=TASK.UPDATED&objectId=2468013&userId=238861';
    expect(await send(form, 'TASK.UPDATED', 'application/x-www-form-urlencoded')).toMatchObject({ events: 1 });
    expect(await send(form, 'TASK.UPDATED', 'application/x-www-form-urlencoded')).toMatchObject({ events: 1 });
    const v2 = JSON.stringify({ task: { id: 4343, name: 'Versioned', dateUpdated: '2026-11-28T10:05:00Z' } });
    expect(await send(v2, 'TASK.UPDATED')).toMatchObject({ events: 1 });
    expect(await send(v2, 'TASK.UPDATED')).toMatchObject({ events: 0, duplicate: true });
    expect(await send(v2, 'TASK.COMPLETED')).toMatchObject({ events: 1 });
    expect(sys.counters.appendedEvents).toBe(4);
  });

  it('the same bytes sent to the other source are not a duplicate', async () => {
    const sys = await startSystem({ env: { TEAMWORK_WEBHOOK_TOKEN: SECRET, MISSIVE_WEBHOOK_SECRET: SECRET } });
    // One body both sources turn into an event: a Teamwork task delivery that also has a conversation.
    const body = JSON.stringify({ task: { id: 4242, name: 'Both', dateUpdated: '2026-11-28T10:05:00Z' }, conversation: { id: 'c-both' }, latest_message: { id: 'm-both' } });
    const teamwork = await fetch(`${sys.url}/webhooks/teamwork`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-projects-event': 'TASK.UPDATED', 'x-projects-signature': createHmac('sha256', SECRET).update(body).digest('hex') }, body });
    expect(teamwork.status).toBe(200);
    expect(await teamwork.json()).toMatchObject({ events: 1 });
    const missive = await post(sys, 'missive', body);
    expect(missive).toMatchObject({ status: 200, json: { events: 1 } });
    expect(missive.json.duplicate).toBeUndefined();
    expect(sys.counters.appendedEvents).toBe(2);
  });
});
