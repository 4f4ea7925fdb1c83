/**
 * doctor as a library function: each check against the real thing it checks (the simulators, an
 * in-process connector listening on a port, a stand-in server that is not the connector, the disk),
 * and the fix printed for each failure.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startMissiveSimulator, startTeamworkSimulator, type MissiveSimulator, type TeamworkSimulator } from '../../simulators/index.ts';
import { runDoctor, type DoctorReport } from '../../src/admin/doctor.ts';
import { renderDoctor } from '../../src/admin/render.ts';
import { parseConfig, type Env } from '../../src/config.ts';
import { startConnector, type RunningConnector } from '../../src/main.ts';
import type { NgrokModule } from '../../src/tunnel.ts';
import { BullQueue } from '../../src/queue/bull-queue.ts';
import { RedisLeases } from '../../src/sync/redis-leases.ts';
import { TEST_REDIS_URL, requireRedis } from '../helpers/services.ts';
import { closedUrl, logSink } from './helpers.ts';

const redis = await requireRedis();

let teamwork: TeamworkSimulator;
let missive: MissiveSimulator;
/** Answers like a web server that is not the connector (a default page of a proxy). */
let stranger: FastifyInstance;
let strangerUrl: string;
const dirs: string[] = [];
const running: RunningConnector[] = [];

beforeAll(async () => {
  [teamwork, missive] = await Promise.all([startTeamworkSimulator({ seed: 'doctor' }), startMissiveSimulator({ seed: 'doctor' })]);
  stranger = Fastify();
  stranger.removeAllContentTypeParsers();
  stranger.addContentTypeParser('*', (_request, _payload, done) => done(null));
  stranger.all('/*', async (_request, reply) => reply.code(404).type('text/html').send('<html><body>Welcome to nginx!</body></html>'));
  await stranger.listen({ host: '127.0.0.1', port: 0 });
  const address = stranger.server.address();
  strangerUrl = `http://127.0.0.1:${typeof address === 'object' && address !== null ? address.port : 0}`;
});
afterAll(async () => {
  await Promise.all([teamwork.stop(), missive.stop(), stranger.close()]);
});
afterEach(async () => {
  for (const c of running.splice(0)) await c.stop();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function env(extra: Env = {}): Env {
  const dir = mkdtempSync(path.join(tmpdir(), 'conn-doctor-'));
  dirs.push(dir);
  return {
    DATA_DIR: path.join(dir, 'data'),
    LOG_DIR: path.join(dir, 'logs'),
    PORT: '0',
    TEAMWORK_BASE_URL: teamwork.credentials.baseUrl,
    TEAMWORK_API_KEY: teamwork.credentials.apiKey,
    MISSIVE_BASE_URL: missive.credentials.baseUrl,
    MISSIVE_API_TOKEN: missive.credentials.token,
    BACKFILL_ON_START: 'false',
    ...extra,
  };
}

/** Starts a connector (both roles) for these settings; returns its URL. */
async function serve(settings: Env): Promise<string> {
  const connector = await startConnector(parseConfig(settings), { roles: { serve: true, work: true }, log: logSink('warn').log });
  running.push(connector);
  return connector.url as string;
}

function check(report: DoctorReport, name: string) {
  const found = report.checks.find((c) => c.name === name);
  if (found === undefined) throw new Error(`no check ${name} in ${report.checks.map((c) => c.name).join(', ')}`);
  return found;
}

describe('runDoctor', () => {
  it('bad settings: config FAILs naming the variable, everything else is skipped', async () => {
    const report = await runDoctor({ env: env({ MAX_QUEUE_ATTEMPTS: 'abc' }) });
    expect(report.ok).toBe(false);
    expect(check(report, 'config')).toMatchObject({ status: 'FAIL', detail: 'Invalid setting MAX_QUEUE_ATTEMPTS: must be a number (got "abc")' });
    expect(report.checks.slice(1).every((c) => c.status === 'SKIP')).toBe(true);
  });

  it('a misspelled setting FAILs config, naming the closest known one and never the value; the other checks still run (issue 15 item 4)', async () => {
    const report = await runDoctor({ env: env({ DB_BACKND: 'postgres', MISSIVE_WEBHOOK_SECERT: 'value-never-shown' }) });
    expect(report.ok).toBe(false);
    const config = check(report, 'config');
    expect(config.status).toBe('FAIL');
    expect(config.detail).toContain('unknown setting DB_BACKND: did you mean DB_BACKEND?');
    expect(config.detail).toContain('unknown setting MISSIVE_WEBHOOK_SECERT: did you mean MISSIVE_WEBHOOK_SECRET?');
    expect(config.fix).toContain('rename');
    expect(JSON.stringify(report)).not.toContain('value-never-shown');
    expect(check(report, 'teamwork-api').status).toBe('OK');
    expect(renderDoctor(report).at(-1)).not.toBe('all checks passed');
  });

  it('a working installation: every check OK, the webhook answering 401 to an unsigned delivery', async () => {
    const settings = env({ TEAMWORK_WEBHOOK_TOKEN: 'tw-doctor', MISSIVE_WEBHOOK_SECRET: 'mv-doctor' });
    const url = await serve(settings);
    const report = await runDoctor({ env: { ...settings, PUBLIC_URL: url } });
    expect(report.checks.map((c) => `${c.name} ${c.status}`)).toEqual([
      'config OK',
      'webhook-signatures OK',
      'database OK',
      'queue OK',
      'teamwork-api OK',
      'missive-api OK',
      'teamwork-webhook OK',
      'missive-webhook OK',
      'disk OK',
    ]);
    expect(report.ok).toBe(true);
    expect(check(report, 'queue').detail).toContain(`a worker is running (pid ${process.pid})`);
    expect(check(report, 'teamwork-webhook').detail).toBe(`${url}/webhooks/teamwork answered 401 CONN_ERR_WEBHOOK_SIGNATURE to an unsigned delivery: this connector answers there and checks signatures`);
    expect(renderDoctor(report).at(-1)).toBe('all checks passed');
  });

  it('wrong credentials, no PUBLIC_URL, and no API at all: FAIL with the fix, SKIP with the reason', async () => {
    const report = await runDoctor({ env: env({ TEAMWORK_API_KEY: 'wrong', MISSIVE_API_TOKEN: '' }) });
    expect(check(report, 'teamwork-api')).toMatchObject({ status: 'FAIL', detail: expect.stringContaining('CONN_ERR_HTTP_AUTH'), fix: expect.stringContaining('check TEAMWORK_API_KEY') });
    expect(check(report, 'missive-api')).toMatchObject({ status: 'SKIP', detail: expect.stringContaining('MISSIVE_API_TOKEN not set') });
    expect(check(report, 'teamwork-webhook')).toMatchObject({ status: 'SKIP', detail: expect.stringContaining('no PUBLIC_URL') });
    expect(report.ok).toBe(false);
    const text = renderDoctor(report).join('\n');
    expect(text).toMatch(/^teamwork-api\s+FAIL\s+CONN_ERR_HTTP_AUTH/m);
    expect(text).toMatch(/^to fix:\n(?: {2}.*\n)* {2}teamwork-api: check TEAMWORK_API_KEY/m);
    // A DATA_DIR nothing has run with: doctor creates nothing there and says so (issue 15 item 9).
    expect(check(report, 'queue')).toMatchObject({ status: 'FAIL', detail: expect.stringMatching(/^no queue at .*\(nothing was created\)$/), fix: expect.stringContaining('--data-dir') });
    expect(check(report, 'database')).toMatchObject({ status: 'FAIL', detail: expect.stringMatching(/^no database at .*connector\.db/) });
    // No webhook secrets either: every delivery would be refused (issue 15 item 3).
    expect(check(report, 'webhook-signatures')).toMatchObject({ status: 'FAIL', detail: expect.stringContaining('TEAMWORK_WEBHOOK_TOKEN and MISSIVE_WEBHOOK_SECRET not set'), fix: expect.stringContaining('POLLING_ONLY=true') });
    expect(text).toContain('4 check(s) failed');
  });

  it('PUBLIC_URL reaching something else, nothing, or a connector with another secret setting: FAIL', async () => {
    const elsewhere = await runDoctor({ env: env({ PUBLIC_URL: strangerUrl }) });
    expect(check(elsewhere, 'teamwork-webhook')).toMatchObject({ status: 'FAIL', detail: `${strangerUrl}/webhooks/teamwork answered 404 "<html><body>Welcome to nginx!</body></html>": that is not this connector` });

    const nothing = await runDoctor({ env: env({ PUBLIC_URL: await closedUrl() }) });
    expect(check(nothing, 'missive-webhook')).toMatchObject({ status: 'FAIL', detail: expect.stringContaining('ECONNREFUSED'), fix: expect.stringContaining('is `npm start` running?') });

    const unsignedServer = env({ WEBHOOKS_ALLOW_UNSIGNED: 'true' });
    const url = await serve(unsignedServer);
    const expectsSignatures = await runDoctor({ env: { ...unsignedServer, PUBLIC_URL: url, MISSIVE_WEBHOOK_SECRET: 'only-here' } });
    expect(check(expectsSignatures, 'missive-webhook')).toMatchObject({ status: 'FAIL', fix: 'set MISSIVE_WEBHOOK_SECRET for the process serving ' + url + ' too (same value), and restart it' });
    expect(check(expectsSignatures, 'teamwork-webhook')).toMatchObject({ status: 'OK', detail: expect.stringContaining('deliveries are not verified: set TEAMWORK_WEBHOOK_TOKEN') });
  });

  it('WEBHOOKS_ALLOW_UNSIGNED=true is a FAIL naming the unsigned sources; a serving connector without a secret refuses everything (issue 15 item 3)', async () => {
    const optOut = await runDoctor({ env: env({ WEBHOOKS_ALLOW_UNSIGNED: 'true', MISSIVE_WEBHOOK_SECRET: 'mv-doctor' }) });
    expect(check(optOut, 'webhook-signatures')).toEqual({
      name: 'webhook-signatures',
      status: 'FAIL',
      detail: 'WEBHOOKS_ALLOW_UNSIGNED is on: teamwork (no TEAMWORK_WEBHOOK_TOKEN) accepts deliveries WITHOUT a signature, from anyone who can reach the endpoint',
      fix: "set TEAMWORK_WEBHOOK_TOKEN (the same value as in the vendor's webhook settings) and remove WEBHOOKS_ALLOW_UNSIGNED",
    });
    expect(optOut.ok).toBe(false);
    expect(renderDoctor(optOut).join('\n')).toMatch(/^webhook-signatures\s+FAIL\s+WEBHOOKS_ALLOW_UNSIGNED is on/m);
    expect(check(await runDoctor({ env: env({ POLLING_ONLY: 'true' }) }), 'webhook-signatures')).toMatchObject({ status: 'OK' });

    // The serving process has no secret (it refuses everything); this one has it.
    const noSecret = env();
    const url = await serve(noSecret);
    const report = await runDoctor({ env: { ...noSecret, PUBLIC_URL: url, TEAMWORK_WEBHOOK_TOKEN: 'only-here' } });
    expect(check(report, 'teamwork-webhook')).toMatchObject({ status: 'FAIL', detail: expect.stringContaining('has no TEAMWORK_WEBHOOK_TOKEN and refuses every delivery') });
    expect(check(report, 'missive-webhook')).toMatchObject({ status: 'OK', detail: expect.stringContaining('refuses every delivery until MISSIVE_WEBHOOK_SECRET is set') });
  });

  it.skipIf(!redis.available)('a shared queue: names the worker that reconciles; SQLite with it is a WARN with what to do, and doctor still passes (issue 16)', async () => {
    const prefix = `doctor-${Date.now().toString(36)}`;
    const settings = env({ QUEUE_BACKEND: 'redis', REDIS_URL: TEST_REDIS_URL, REDIS_DURABILITY: 'relaxed', QUEUE_PREFIX: prefix, TEAMWORK_WEBHOOK_TOKEN: 'tw-doctor', MISSIVE_WEBHOOK_SECRET: 'mv-doctor' });
    await serve(settings);
    const leases = new RedisLeases(TEST_REDIS_URL, prefix, logSink('warn').log);
    try {
      const deadline = Date.now() + 5_000;
      while ((await leases.holder('reconciler')) === null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      const holder = (await leases.holder('reconciler'))?.holder;
      expect(holder).toMatch(/^worker@.+:\d+#[0-9a-f]{4}$/);
      const report = await runDoctor({ env: settings });
      expect(check(report, 'queue')).toMatchObject({ status: 'OK', detail: expect.stringContaining(`${holder} reconciles (holds the reconciler lease)`) });
      const database = check(report, 'database');
      expect(database.status).toBe('WARN');
      expect(database.detail).toContain('with QUEUE_BACKEND=redis, workers on other hosts would each write a SQLite file of their own');
      expect(database.fix).toContain('Run every worker on this host with this DATA_DIR, or use DB_BACKEND=postgres');
      expect(report.ok).toBe(true);
      const text = renderDoctor(report);
      expect(text).toContain('worth a look:');
      expect(text.at(-1)).toBe('all checks passed (1 warning)');
    } finally {
      await leases.close();
      for (const c of running.splice(0)) await c.stop();
      const queue = await BullQueue.open({ settings: { engine: 'redis', url: TEST_REDIS_URL, prefix }, log: logSink('warn').log });
      await queue.obliterate();
      await queue.close();
    }
  });

  it('an unreachable PostgreSQL fails the database check with the DATABASE_URL fix', async () => {
    const report = await runDoctor({ env: env({ DB_BACKEND: 'postgres', DATABASE_URL: 'postgres://postgres@127.0.0.1:1/none' }), timeoutMs: 5_000 });
    expect(check(report, 'database')).toMatchObject({ status: 'FAIL', fix: expect.stringContaining('check DATABASE_URL') });
  });

  it('disk below the floor FAILs with the fix; a tunnel module that cannot load FAILs too', async () => {
    const missing = async (): Promise<NgrokModule> => {
      throw Object.assign(new Error("Cannot find package '@ngrok/ngrok'"), { code: 'ERR_MODULE_NOT_FOUND' });
    };
    const report = await runDoctor({ env: env({ NGROK_AUTHTOKEN: 'tok' }), minFreeBytes: Number.MAX_SAFE_INTEGER, loadNgrok: missing });
    expect(check(report, 'disk')).toMatchObject({ status: 'FAIL', detail: expect.stringMatching(/free of .* below/), fix: expect.stringContaining('free space on the disk of') });
    expect(check(report, 'tunnel')).toMatchObject({ status: 'FAIL', fix: expect.stringContaining('npm install @ngrok/ngrok') });
    const withModule = await runDoctor({ env: env({ NGROK_AUTHTOKEN: 'tok' }) });
    expect(check(withModule, 'tunnel').status).toBe('OK');
    expect(check(withModule, 'disk').status).toBe('OK');
  });
});
