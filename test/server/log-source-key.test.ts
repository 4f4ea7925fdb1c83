/**
 * A log line names its source once: the sources made by createSources log JSON lines with exactly one
 * "source" key (issue 15: every Missive HTTP-retry line had two, from two child loggers).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config.ts';
import { createLogger } from '../../src/log.ts';
import { createSources } from '../../src/sources/index.ts';
import type { MissiveSource } from '../../src/sources/missive/index.ts';

let server: http.Server;
let baseUrl = '';
let calls = 0;

beforeAll(async () => {
  // 503 on the first call (the client retries and logs it), 404 afterwards.
  server = http.createServer((_req, res) => {
    calls += 1;
    res.writeHead(calls === 1 ? 503 : 404, { 'content-type': 'application/json', 'retry-after': '0' }).end('{}');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

describe('log lines of the sources', () => {
  it('a Missive HTTP-retry line has one "source" key', async () => {
    const lines: string[] = [];
    const log = createLogger({ level: 'debug', console: false, destination: { write: (line: string) => void lines.push(line) } });
    const sources = createSources(parseConfig({ MISSIVE_API_TOKEN: 'missive-token', MISSIVE_BASE_URL: baseUrl }), { log });
    const missive = sources.find((s) => s.name === 'missive') as MissiveSource;
    await missive.client?.getMessage('m-1').catch(() => null);
    const retries = lines.filter((line) => line.includes('retrying missive'));
    expect(retries.length, lines.join('')).toBeGreaterThan(0);
    for (const line of lines) {
      if (!line.includes('"source"')) continue;
      expect(line.match(/"source":/g), line).toHaveLength(1);
      expect(JSON.parse(line)).toMatchObject({ source: 'missive' });
    }
    expect(retries[0]).toContain('"source":"missive"');
  });
});
