/**
 * The optional ngrok tunnel: no token, no attempt; a missing module, an unreachable ngrok (the real
 * SDK pointed at a closed port, which fails at once) or a tunnel that does not open in time are one
 * warning line, and `start` keeps serving locally. The module is injected through the loader
 * parameter, never mocked.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config.ts';
import { startConnector, type RunningConnector } from '../../src/main.ts';
import { loadNgrok, openTunnel, type NgrokLoader, type NgrokModule } from '../../src/tunnel.ts';
import { logSink } from './helpers.ts';

/** An address nothing listens on: the real SDK fails to connect there at once. */
const CLOSED = '127.0.0.1:1';

const dirs: string[] = [];
const running: RunningConnector[] = [];
afterEach(async () => {
  for (const c of running.splice(0)) await c.stop();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A stand-in for the SDK that records what it was asked, made through the loader parameter. */
function fakeNgrok(url = 'https://abc-123.ngrok-free.app') {
  const calls = { forward: [] as Array<Record<string, unknown>>, closed: 0 };
  const module: NgrokModule = {
    forward: async (config) => {
      calls.forward.push(config);
      return { url: () => url, close: async () => void (calls.closed += 1) };
    },
  };
  return { load: (async () => module) as NgrokLoader, calls };
}

describe('openTunnel', () => {
  it('without an authtoken returns null and does not even load the module', async () => {
    let loads = 0;
    const { log, lines } = logSink();
    const tunnel = await openTunnel({ port: 8080, authtoken: undefined, log, load: async () => (loads++, ({}) as NgrokModule) });
    expect(tunnel).toBeNull();
    expect(loads).toBe(0);
    expect(lines).toEqual([]);
  });

  it('with the module missing: one warning line saying webhooks only reach the local URL', async () => {
    const { log, lines } = logSink();
    const missing: NgrokLoader = () => import('@ngrok/no-such-package' as string) as Promise<NgrokModule>;
    expect(await openTunnel({ port: 8123, authtoken: 'fake', log, load: missing })).toBeNull();
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ level: 'warn', msg: expect.stringContaining('the optional package @ngrok/ngrok is not installed') });
    expect(lines[0]?.msg).toContain('webhooks will only reach the local URL http://127.0.0.1:8123');
  });

  it('offline: the real SDK fails to connect (GenericFailure) quickly; a warning, not a throw', async () => {
    const { log, lines } = logSink();
    const started = Date.now();
    expect(await openTunnel({ port: 8124, authtoken: 'not-a-real-token', log, serverAddr: CLOSED })).toBeNull();
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(lines).toHaveLength(1);
    expect(lines[0]?.msg).toMatch(/^ngrok tunnel not opened \(GenericFailure: failed to connect session/);
    expect(typeof (await loadNgrok()).forward).toBe('function');
  });

  it('opens through the module with the token and the local address, and closes once', async () => {
    const { log, lines } = logSink();
    const ngrok = fakeNgrok('https://abc-123.ngrok-free.app/');
    const tunnel = await openTunnel({ port: 9000, host: '0.0.0.0', authtoken: 'tok', log, load: ngrok.load });
    expect(tunnel?.url).toBe('https://abc-123.ngrok-free.app');
    expect(ngrok.calls.forward).toEqual([{ addr: '127.0.0.1:9000', authtoken: 'tok' }]);
    expect(lines.map((l) => l.msg)).toEqual(['ngrok tunnel open: https://abc-123.ngrok-free.app -> 127.0.0.1:9000']);
    await tunnel?.close();
    await tunnel?.close();
    expect(ngrok.calls.closed).toBe(1);
  });

  it('gives up after timeoutMs, and closes a tunnel that opens after that', async () => {
    const { log, lines } = logSink();
    let open: (() => void) | undefined;
    let closed = 0;
    const slow: NgrokModule = {
      forward: () => new Promise((resolve) => (open = () => resolve({ url: () => 'https://late.ngrok.app', close: async () => void (closed += 1) }))),
    };
    expect(await openTunnel({ port: 9001, authtoken: 'tok', log, timeoutMs: 50, load: async () => slow })).toBeNull();
    expect(lines[0]?.msg).toContain('no answer from ngrok within 50 ms');
    open?.();
    await new Promise((r) => setTimeout(r, 20));
    expect(closed).toBe(1);
  });
});

describe('start with NGROK_AUTHTOKEN', () => {
  function config(extra: Record<string, string> = {}) {
    const dir = mkdtempSync(path.join(tmpdir(), 'conn-tunnel-'));
    dirs.push(dir);
    return parseConfig({ DATA_DIR: path.join(dir, 'data'), LOG_DIR: path.join(dir, 'logs'), PORT: '0', NGROK_AUTHTOKEN: 'not-a-real-token', ...extra });
  }

  it('keeps serving on the local URL when the tunnel cannot open', async () => {
    const { log, lines } = logSink();
    const connector = await startConnector(config(), { roles: { serve: true, work: false }, log, tunnel: { serverAddr: CLOSED } });
    running.push(connector);
    expect(connector.publicUrl).toBeNull();
    expect((await fetch(`${connector.url}/health`)).status).toBe(200);
    expect(lines.filter((l) => l.level === 'warn' && l.msg.startsWith('ngrok tunnel not opened'))).toHaveLength(1);
    expect(lines.map((l) => l.msg)).toContain(`teamwork webhook URL: ${connector.url}/webhooks/teamwork`);
  });

  it("prints each source's webhook URL on the tunnel and closes it on stop", async () => {
    const { log, lines } = logSink();
    const ngrok = fakeNgrok();
    const connector = await startConnector(config({ PUBLIC_URL: 'https://ignored.example.com' }), { roles: { serve: true, work: false }, log, tunnel: { load: ngrok.load } });
    expect(connector.publicUrl).toBe('https://abc-123.ngrok-free.app');
    const port = new URL(connector.url as string).port;
    expect(ngrok.calls.forward[0]).toMatchObject({ addr: `127.0.0.1:${port}`, authtoken: 'not-a-real-token' });
    const messages = lines.map((l) => l.msg);
    expect(messages).toContain('teamwork webhook URL: https://abc-123.ngrok-free.app/webhooks/teamwork');
    expect(messages).toContain('missive webhook URL: https://abc-123.ngrok-free.app/webhooks/missive');
    expect(messages.some((m) => m.includes('npm run register-webhooks -- --url https://abc-123.ngrok-free.app'))).toBe(true);
    await connector.stop();
    expect(ngrok.calls.closed).toBe(1);
  });

  it('with POLLING_ONLY opens no tunnel and says webhooks are not expected', async () => {
    const { log, lines } = logSink();
    const ngrok = fakeNgrok();
    const connector = await startConnector(config({ POLLING_ONLY: 'true' }), { roles: { serve: true, work: false }, log, tunnel: { load: ngrok.load } });
    running.push(connector);
    expect(ngrok.calls.forward).toEqual([]);
    expect(lines.map((l) => l.msg)).toContain('POLLING_ONLY is on: webhooks are not expected (the endpoints still answer) and no tunnel is opened; the worker reconciles every 2 minutes');
    expect(lines.some((l) => l.msg.includes('webhook URL'))).toBe(false);
  });
});
