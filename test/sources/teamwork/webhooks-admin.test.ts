/** registerWebhooks / listOurWebhooks / removeOurWebhooks against the Teamwork simulator. */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { FakeClock } from '../../../src/http/index.ts';
import { TeamworkClient } from '../../../src/sources/teamwork/client.ts';
import { TASK_WEBHOOK_EVENTS } from '../../../src/sources/teamwork/webhook.ts';
import { listOurWebhooks, registerWebhooks, removeOurWebhooks, teamworkWebhookUrl } from '../../../src/sources/teamwork/webhooks-admin.ts';
import { startTeamworkSimulator, type TeamworkSimulator } from '../../../simulators/teamwork/index.ts';

const PUBLIC_URL = 'https://connector.example.com';
const OUR_URL = 'https://connector.example.com/webhooks/teamwork';

describe('webhook registration (simulator)', () => {
  let sim: TeamworkSimulator;
  let client: TeamworkClient;

  beforeAll(async () => {
    sim = await startTeamworkSimulator({ seed: 13, limits: { perMinute: 1_000_000 } });
    client = new TeamworkClient({ baseUrl: sim.url, apiKey: sim.credentials.apiKey, clock: new FakeClock({ now: Date.now(), autoAdvance: true }) });
  });
  afterAll(async () => {
    await sim.stop();
  });
  beforeEach(() => {
    for (const hook of sim.listWebhooks()) sim.deleteWebhook(hook.id);
  });

  it('builds our endpoint from PUBLIC_URL, or takes the full URL as it is', () => {
    expect(teamworkWebhookUrl(PUBLIC_URL)).toBe(OUR_URL);
    expect(teamworkWebhookUrl(`${PUBLIC_URL}/`)).toBe(OUR_URL);
    expect(teamworkWebhookUrl(`${OUR_URL}/`)).toBe(OUR_URL);
  });

  it('registers one v2 JSON hook per task event, signed with the token', async () => {
    const result = await registerWebhooks({ client, publicUrl: PUBLIC_URL, token: 'tok-xyz' });
    expect(result.existing).toEqual([]);
    expect(result.created.map((h) => h.event).sort()).toEqual([...TASK_WEBHOOK_EVENTS].sort());
    const hooks = sim.listWebhooks();
    expect(hooks).toHaveLength(8);
    for (const hook of hooks) expect(hook).toMatchObject({ url: OUR_URL, version: 2, contentType: 'application/json', token: 'tok-xyz', status: 'active' });
  });

  it('is idempotent: a second run creates nothing', async () => {
    await registerWebhooks({ client, publicUrl: PUBLIC_URL, token: 'tok' });
    const again = await registerWebhooks({ client, publicUrl: `${PUBLIC_URL}/`, token: 'tok' });
    expect(again.created).toEqual([]);
    expect(again.existing).toHaveLength(8);
    expect(sim.listWebhooks()).toHaveLength(8);
  });

  it('skips events already registered for our URL and leaves other URLs alone', async () => {
    const mine = sim.registerWebhook({ event: 'TASK.CREATED', url: OUR_URL, token: 'old' });
    const foreign = sim.registerWebhook({ event: 'TASK.UPDATED', url: 'https://other.example.com/hook' });
    const result = await registerWebhooks({ client, publicUrl: PUBLIC_URL, token: 'tok', events: ['TASK.CREATED', 'task.updated'] });
    expect(result.existing).toEqual([{ id: String(mine.id), event: 'TASK.CREATED', url: OUR_URL, status: 'active' }]);
    expect(result.created).toEqual([{ id: expect.stringMatching(/^\d+$/), event: 'TASK.UPDATED', url: OUR_URL }]);

    const ours = await listOurWebhooks({ client, publicUrl: PUBLIC_URL });
    expect(ours.map((h) => h.event).sort()).toEqual(['TASK.CREATED', 'TASK.UPDATED']);

    const removed = await removeOurWebhooks({ client, publicUrl: PUBLIC_URL });
    expect(removed).toHaveLength(2);
    expect(sim.listWebhooks().map((h) => h.id)).toEqual([foreign.id]);
  });
});
