/**
 * Issue 15 item 3, through the real connector (`startConnector`, both roles, SQLite): forged deliveries.
 *
 * - Secure by default: with no TEAMWORK_WEBHOOK_TOKEN / MISSIVE_WEBHOOK_SECRET, an unsigned POST is
 *   refused 401 CONN_ERR_WEBHOOK_SIGNATURE naming the missing setting, and nothing is queued.
 * - WEBHOOKS_ALLOW_UNSIGNED=true: accepted, and start-up warns once per unsigned source, naming it.
 * - With the opt-out and the API configured, an unsigned Teamwork body's content never becomes data:
 *   the task is stored as the API (the simulator) says, not as the body claimed.
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { startTeamworkSimulator, type TeamworkSimulator } from '../../simulators/teamwork/index.ts';
import { fixtureJson } from '../sources/teamwork/fixtures.ts';
import { removeTempDirs, startSystem, stopAllSystems, waitFor } from './harness.ts';

const FORGED_TEAMWORK = JSON.stringify({ event: 'TASK.CREATED', task: { id: 999001, name: 'FORGED by anyone', dateUpdated: new Date().toISOString() } });
const FORGED_MISSIVE = JSON.stringify({ rule: { type: 'incoming_email' }, conversation: { id: 'forged-conversation' }, message: { id: 'forged-message', subject: 'FORGED by anyone' } });

const refusal = (setting: string) => `no ${setting} is set: this endpoint refuses deliveries; set it (or WEBHOOKS_ALLOW_UNSIGNED=true to accept unsigned deliveries, not recommended)`;

let sim: TeamworkSimulator | undefined;

afterEach(async () => {
  await stopAllSystems();
  await sim?.stop();
  sim = undefined;
});
afterAll(() => removeTempDirs());

async function post(url: string, body: string, headers: Record<string, string> = {}): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

describe('unsigned deliveries (issue 15 item 3)', () => {
  it('no secret set: a forged unsigned POST is refused 401 naming the setting, nothing is queued (both sources)', async () => {
    const sys = await startSystem();
    const teamwork = await post(`${sys.url}/webhooks/teamwork`, FORGED_TEAMWORK, { 'x-projects-event': 'TASK.CREATED' });
    expect(teamwork).toEqual({ status: 401, body: { error: 'CONN_ERR_WEBHOOK_SIGNATURE', message: refusal('TEAMWORK_WEBHOOK_TOKEN') } });
    const missive = await post(`${sys.url}/webhooks/missive`, FORGED_MISSIVE);
    expect(missive).toEqual({ status: 401, body: { error: 'CONN_ERR_WEBHOOK_SIGNATURE', message: refusal('MISSIVE_WEBHOOK_SECRET') } });
    // Missive's validation request (an empty body) is refused too: the rule cannot be saved unsigned.
    expect((await post(`${sys.url}/webhooks/missive`, '')).status).toBe(401);
    expect(sys.counters.appendedEvents).toBe(0);
    expect(await sys.stats()).toMatchObject({ pending: 0, inFlight: 0, delayed: 0 });
    expect(await sys.db.getTask('999001')).toBeNull();
    expect(sys.lines.filter((l) => l.unsigned === true)).toEqual([]);
  });

  it('WEBHOOKS_ALLOW_UNSIGNED=true: accepted, and start-up warns once per unsigned source, naming it', async () => {
    const sys = await startSystem({ env: { WEBHOOKS_ALLOW_UNSIGNED: 'true', MISSIVE_WEBHOOK_SECRET: 'signed-missive' } });
    const warnings = sys.lines.filter((l) => l.unsigned === true);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ level: 'warn', source: 'teamwork', msg: expect.stringContaining('TEAMWORK_WEBHOOK_TOKEN is not set: deliveries are accepted WITHOUT a signature') });
    const teamwork = await post(`${sys.url}/webhooks/teamwork`, FORGED_TEAMWORK, { 'x-projects-event': 'TASK.CREATED' });
    expect(teamwork.status).toBe(200);
    expect(teamwork.body).toMatchObject({ ok: true, events: 1 });
    // The source with a secret still checks it.
    expect((await post(`${sys.url}/webhooks/missive`, FORGED_MISSIVE)).status).toBe(401);
    await sys.stop();

    const both = await startSystem({ env: { WEBHOOKS_ALLOW_UNSIGNED: 'true' } });
    expect(both.lines.filter((l) => l.unsigned === true).map((l) => l.source)).toEqual(['teamwork', 'missive']);
  });

  it('opt-out on and the API configured: an unsigned Teamwork body is not stored as sent but as the API says', async () => {
    sim = await startTeamworkSimulator({ seed: 'unsigned', data: { tasks: 5 } });
    const real = sim.data().tasks[0];
    if (real === undefined) throw new Error('the simulator has no task');
    const sys = await startSystem({ env: { WEBHOOKS_ALLOW_UNSIGNED: 'true', TEAMWORK_BASE_URL: sim.url, TEAMWORK_API_KEY: sim.credentials.apiKey } });
    expect(sys.lines.find((l) => l.unsigned === true)?.msg).toContain('each is re-read from the API before it is stored');

    // A complete v2 body, one a signed delivery would be stored from as it is, naming a real task.
    const body = fixtureJson<{ task: Record<string, unknown> }>('v2-json-task-created.json');
    body.task = { ...body.task, id: real.id, name: 'FORGED by anyone', dateUpdated: new Date().toISOString() };
    const answer = await post(`${sys.url}/webhooks/teamwork`, JSON.stringify(body), { 'x-projects-event': 'TASK.CREATED' });
    expect(answer.status).toBe(200);
    await sys.waitIdle();
    const row = await waitFor('the task to be stored', async () => (await sys.db.getTask(String(real.id))) ?? undefined);
    expect(row.title).toBe(real.name);
    expect(row.title).not.toBe('FORGED by anyone');
    expect((await sys.stats()).deadLettered ?? 0).toBe(0);
  });
});
