/**
 * Webhook registration as a library function, against the Teamwork and Missive simulators (which
 * record the hooks and, for Missive, validate the URL with a signed request first), and against small
 * Fastify servers standing in for our endpoint and for a Missive without a hooks API.
 */
import Fastify, { type FastifyInstance } from 'fastify';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startMissiveSimulator, startTeamworkSimulator, type MissiveSimulator, type TeamworkSimulator } from '../../simulators/index.ts';
import { MissiveHooksApi } from '../../src/sources/missive/webhooks-admin.ts';
import { checkPublicUrl, manageWebhooks, type WebhookAdminDeps } from '../../src/admin/register-webhooks.ts';
import { renderWebhookReports } from '../../src/admin/render.ts';
import { UsageError } from '../../src/admin/usage-error.ts';
import { TeamworkClient } from '../../src/sources/teamwork/client.ts';
import { closedUrl } from './helpers.ts';

const TOKEN = 'tw-token-for-hooks';
const SECRET = 'missive-secret-for-hooks';

let teamwork: TeamworkSimulator;
let missive: MissiveSimulator;
/** Stands in for our webhook endpoint: answers 200 to every POST (Missive's validation request included). */
let endpoint: FastifyInstance;
let endpointUrl: string;
/** A Missive API without `/v1/hooks` (404), as the real one may be. */
let noHooks: FastifyInstance;
let noHooksUrl: string;
/** Signatures of the requests Missive sent to our endpoint's /webhooks/missive. */
const validations: Array<string | undefined> = [];

async function listen(app: FastifyInstance): Promise<string> {
  await app.listen({ host: '127.0.0.1', port: 0 });
  const address = app.server.address();
  return `http://127.0.0.1:${typeof address === 'object' && address !== null ? address.port : 0}`;
}

beforeAll(async () => {
  [teamwork, missive] = await Promise.all([startTeamworkSimulator({ seed: 'hooks' }), startMissiveSimulator({ seed: 'hooks' })]);
  endpoint = Fastify();
  endpoint.post('/*', async (request) => {
    if (request.url === '/webhooks/missive') validations.push(request.headers['x-hook-signature'] as string | undefined);
    return { ok: true };
  });
  endpointUrl = await listen(endpoint);
  noHooks = Fastify();
  noHooks.all('/v1/*', async (_request, reply) => reply.code(404).send({ error: 'Not found' }));
  noHooksUrl = await listen(noHooks);
});
afterAll(async () => {
  await Promise.all([teamwork.stop(), missive.stop(), endpoint.close(), noHooks.close()]);
});
beforeEach(() => {
  for (const hook of teamwork.listWebhooks()) teamwork.deleteWebhook(hook.id);
  for (const rule of missive.listRules()) missive.deleteRule(rule.id);
  validations.length = 0;
});

function deps(overrides: Partial<WebhookAdminDeps> = {}, missiveBase = missive.credentials.baseUrl, missiveToken = missive.credentials.token): WebhookAdminDeps {
  return {
    publicUrl: endpointUrl,
    teamwork: { client: new TeamworkClient({ baseUrl: teamwork.credentials.baseUrl, apiKey: teamwork.credentials.apiKey, maxAttempts: 1 }), token: TOKEN },
    missive: { api: new MissiveHooksApi({ token: missiveToken, baseUrl: missiveBase, maxAttempts: 1 }), secret: SECRET },
    ...overrides,
  };
}

describe('checkPublicUrl', () => {
  it('needs an http(s) URL and names PUBLIC_URL and --url when there is none', () => {
    expect(() => checkPublicUrl(undefined)).toThrow(new UsageError('the webhooks need the public base URL vendors reach this connector at: set PUBLIC_URL (e.g. https://connector.example.com) or pass --url'));
    expect(() => checkPublicUrl('connector.example.com')).toThrow(/is not a URL/);
    expect(() => checkPublicUrl('ftp://example.com')).toThrow(/is not an http\(s\) URL/);
    expect(checkPublicUrl(' https://example.com/ ')).toBe('https://example.com');
  });
});

describe('manageWebhooks', () => {
  it('registers one signed hook per event at both vendors, idempotently, lists them, and removes only ours', async () => {
    const foreignTw = teamwork.registerWebhook({ event: 'TASK.CREATED', url: 'https://someone-else.example.com/hook' });
    const foreignMv = await new MissiveHooksApi({ token: missive.credentials.token, baseUrl: missive.credentials.baseUrl }).create({ type: 'incoming_email', url: `${endpointUrl}/elsewhere` });

    const [tw, mv] = await manageWebhooks('register', deps());
    expect(tw).toMatchObject({ source: 'teamwork', status: 'ok', endpoint: `${endpointUrl}/webhooks/teamwork` });
    expect(tw?.created).toHaveLength(8);
    expect(mv).toMatchObject({ source: 'missive', status: 'ok', endpoint: `${endpointUrl}/webhooks/missive` });
    expect(mv?.created.map((h) => h.event)).toEqual(['incoming_email', 'outgoing_email', 'label_change', 'conversation_assignee_change', 'conversation_closed', 'conversation_reopened']);
    expect(teamwork.listWebhooks().filter((h) => h.token === TOKEN)).toHaveLength(8);
    const ours = missive.listRules().filter((r) => r.url === `${endpointUrl}/webhooks/missive`);
    expect(ours.map((r) => r.secret)).toEqual(Array(6).fill(SECRET));
    // Missive validated each URL with a request signed by the secret we gave it.
    expect(validations).toHaveLength(6);
    expect(validations.every((v) => typeof v === 'string' && v.startsWith('sha256='))).toBe(true);
    expect(mv?.notes.some((n) => n.includes('127.0.0.1 is not reachable from the internet'))).toBe(true);

    const again = await manageWebhooks('register', deps());
    expect(again.map((r) => [r.created.length, r.existing.length])).toEqual([
      [0, 8],
      [0, 6],
    ]);

    const listed = await manageWebhooks('list', deps());
    expect(listed.map((r) => r.existing.length)).toEqual([8, 6]);
    const text = renderWebhookReports('list', listed).join('\n');
    expect(text).toContain(`teamwork (${endpointUrl}/webhooks/teamwork): 8 hook(s)`);
    expect(text).toMatch(/^ {2}hook\s+TASK\.CREATED\s+\d+$/m);

    const removed = await manageWebhooks('remove', deps());
    expect(removed.map((r) => r.removed.length)).toEqual([8, 6]);
    expect(teamwork.listWebhooks().map((h) => h.id)).toEqual([foreignTw.id]);
    expect(missive.listRules().map((r) => r.id)).toEqual([foreignMv.id]);
  });

  it('Missive refusing the hook (its validation request failed) -> the manual steps, with the reason', async () => {
    const closed = await closedUrl();
    const [tw, mv] = await manageWebhooks('register', deps({ publicUrl: closed }));
    expect(tw?.status).toBe('ok');
    expect(mv?.status).toBe('manual');
    expect(mv?.error).toContain('CONN_ERR_HTTP_CLIENT (HTTP 422)');
    expect(mv?.fix).toContain(`its validation request to ${closed}/webhooks/missive failed`);
    expect(mv?.manualSteps?.join('\n')).toContain(`Action: Webhook, URL ${closed}/webhooks/missive`);
    expect(missive.listRules()).toEqual([]);
  });

  it('a Missive without a hooks API -> manual steps to register; list fails with a fix', async () => {
    const noApi = deps({ sources: ['missive'] }, `${noHooksUrl}/v1`);
    const [registered] = await manageWebhooks('register', noApi);
    expect(registered).toMatchObject({ status: 'manual', fix: 'Missive has no hooks API for this token or account; create the rule by hand' });
    expect(registered?.manualSteps?.[0]).toContain('Settings > Rules > New rule');
    const [listed] = await manageWebhooks('list', noApi);
    expect(listed?.status).toBe('failed');
    expect(listed?.fix).toContain("manage the rule in Missive's settings");
  });

  it('a wrong Missive token fails with the fix, and Teamwork still registers', async () => {
    const [tw, mv] = await manageWebhooks('register', deps({}, missive.credentials.baseUrl, 'wrong-token'));
    expect(tw?.status).toBe('ok');
    expect(mv).toMatchObject({ status: 'failed', fix: 'check MISSIVE_API_TOKEN (Missive: Preferences > API)' });
    expect(mv?.error).toContain('CONN_ERR_HTTP_AUTH');
  });

  it('without credentials: manual steps to register, nothing to list; without a token or secret: unsigned, and said so', async () => {
    const none = deps({ teamwork: { client: null }, missive: { api: null } });
    const [tw, mv] = await manageWebhooks('register', none);
    expect(tw?.status).toBe('manual');
    expect(tw?.manualSteps?.join('\n')).toContain('generate one (e.g. `openssl rand -hex 32`), enter it on every hook AND set TEAMWORK_WEBHOOK_TOKEN');
    expect(mv?.status).toBe('manual');
    expect((await manageWebhooks('list', none)).map((r) => r.status)).toEqual(['skipped', 'skipped']);

    const unsigned = deps();
    unsigned.teamwork = { client: unsigned.teamwork.client };
    unsigned.missive = { api: unsigned.missive.api };
    const [twUnsigned, mvUnsigned] = await manageWebhooks('register', unsigned);
    expect(twUnsigned?.notes[0]).toContain('TEAMWORK_WEBHOOK_TOKEN is not set: the hooks are made unsigned');
    expect(mvUnsigned?.notes[0]).toContain('MISSIVE_WEBHOOK_SECRET is not set');
    expect(teamwork.listWebhooks().every((h) => h.token === '')).toBe(true);
    expect(missive.listRules().every((r) => r.secret === null)).toBe(true);
    expect(validations.every((v) => v === undefined)).toBe(true);
  });
});
