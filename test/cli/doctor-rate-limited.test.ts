/**
 * `doctor` against a vendor API that answers 429: the check says the API is rate-limited and until
 * when, not "check the token" (the token was not refused).
 */
import http from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runDoctor } from '../../src/admin/doctor.ts';

const dir = mkdtempSync(path.join(tmpdir(), 'conn-doctor-429-'));
let server: http.Server;
let baseUrl = '';

beforeAll(async () => {
  server = http.createServer((_req, res) => res.writeHead(429, { 'content-type': 'application/json', 'retry-after': '600' }).end('{"error":"rate limited"}'));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
  rmSync(dir, { recursive: true, force: true });
});

describe('doctor and a rate-limited vendor', () => {
  it('a 429 from Missive says "rate-limited until <time>", not to check the token', async () => {
    const before = Date.now();
    const report = await runDoctor({ env: { DATA_DIR: path.join(dir, 'data'), LOG_DIR: path.join(dir, 'logs'), MISSIVE_API_TOKEN: 'missive-token', MISSIVE_BASE_URL: baseUrl, POLLING_ONLY: 'true' }, timeoutMs: 10_000 });
    const check = report.checks.find((c) => c.name === 'missive-api');
    expect(check?.status).toBe('FAIL');
    const text = `${check?.detail ?? ''} ${check?.fix ?? ''}`;
    expect(text).not.toMatch(/check MISSIVE_API_TOKEN/);
    const until = /rate-limited until (\S+)/.exec(text)?.[1];
    expect(until, text).toBeDefined();
    const at = Date.parse(until as string);
    expect(at).toBeGreaterThanOrEqual(before + 590_000);
    expect(at).toBeLessThanOrEqual(Date.now() + 610_000);
  });
});
