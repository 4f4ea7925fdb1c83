/**
 * The optional ngrok tunnel, for running the connector on a machine vendors cannot reach (a laptop):
 * `start` with NGROK_AUTHTOKEN set forwards a public https URL to the local HTTP app and prints each
 * source's webhook URL on it.
 *
 * The tunnel is a convenience, never a dependency: without NGROK_AUTHTOKEN nothing is attempted (the
 * SDK would otherwise try to connect anyway); with it, any failure (the optional module missing, no
 * network, a rejected token, no answer within `timeoutMs`) is one warning line and `null`, and the
 * connector keeps serving on its local URL. `@ngrok/ngrok` is imported only when a tunnel is wanted.
 */
import type { Logger } from './log.ts';
import { SECOND } from './retry-policy.ts';

/** The part of `@ngrok/ngrok` we use (its `forward` and `disconnect`). */
export interface NgrokModule {
  forward(config: { addr: string | number; authtoken: string; server_addr?: string }): Promise<{ url(): string | null; close?(): Promise<void> }>;
  disconnect?(url?: string | null): Promise<void>;
}

/** Loads the ngrok SDK; tests pass their own to simulate a missing module. */
export type NgrokLoader = () => Promise<NgrokModule>;

export interface TunnelOptions {
  /** The local port the HTTP app listens on. */
  port: number;
  /** The local address to forward to. Default 127.0.0.1 (a wildcard listen address means loopback). */
  host?: string;
  /** NGROK_AUTHTOKEN; undefined or empty means no tunnel (and no attempt). */
  authtoken: string | undefined;
  log: Logger;
  /** How long to wait for the tunnel before giving up, ms. Default 15 s. */
  timeoutMs?: number;
  /** ngrok's ingress address (its `server_addr`); default ngrok's own. Tests point it at a closed port. */
  serverAddr?: string;
  /** Default: `import('@ngrok/ngrok')`. */
  load?: NgrokLoader;
}

export interface Tunnel {
  /** The public base URL, e.g. `https://1a2b-3c4d.ngrok-free.app` (no trailing slash). */
  url: string;
  /** Closes the tunnel; safe to call more than once, never throws. */
  close(): Promise<void>;
}

const DEFAULT_TIMEOUT_MS = 15 * SECOND;

/** The default loader: the installed SDK (an optional dependency at run time). */
export const loadNgrok: NgrokLoader = async () => {
  const module = (await import('@ngrok/ngrok')) as unknown as NgrokModule & { default?: NgrokModule };
  return typeof module.forward === 'function' ? module : (module.default as NgrokModule);
};

/**
 * Opens a tunnel to `host:port`, or returns null: at once when there is no authtoken, after one warning
 * line when anything fails.
 */
export async function openTunnel(options: TunnelOptions): Promise<Tunnel | null> {
  const { log } = options;
  if (options.authtoken === undefined || options.authtoken === '') return null;
  const addr = forwardAddress(options.host, options.port);
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  let timer: NodeJS.Timeout | undefined;
  let timedOut = false;
  let ngrok: NgrokModule | undefined;
  const attempt = (async () => {
    ngrok = await (options.load ?? loadNgrok)();
    const config: Parameters<NgrokModule['forward']>[0] = { addr, authtoken: options.authtoken as string };
    if (options.serverAddr !== undefined) config.server_addr = options.serverAddr;
    return ngrok.forward(config);
  })();
  try {
    const listener = await Promise.race([
      attempt,
      new Promise<never>((_resolve, reject) => {
        timer = setTimeout(() => {
          timedOut = true;
          reject(new Error(`no answer from ngrok within ${timeoutMs < SECOND ? `${timeoutMs} ms` : `${Math.round(timeoutMs / SECOND)} s`}`));
        }, timeoutMs);
      }),
    ]);
    const url = listener.url();
    if (url === null || url === '') throw new Error('ngrok opened a listener without a URL');
    const base = url.replace(/\/+$/, '');
    let closing: Promise<void> | null = null;
    log.info({ tunnel: base, forwardsTo: addr }, `ngrok tunnel open: ${base} -> ${addr}`);
    return {
      url: base,
      close: () => {
        closing ??= closeListener(ngrok, listener, url).catch((err: unknown) => log.warn({ err }, 'could not close the ngrok tunnel cleanly'));
        return closing;
      },
    };
  } catch (err) {
    // A tunnel that opens after we gave up must not linger unseen.
    if (timedOut) void attempt.then((late) => closeListener(ngrok, late, late.url()).catch(() => {}), () => {});
    const reason = describe(err);
    log.warn({ reason }, `ngrok tunnel not opened (${reason}): webhooks will only reach the local URL http://${addr}`);
    return null;
  } finally {
    clearTimeout(timer);
  }
}

async function closeListener(ngrok: NgrokModule | undefined, listener: { close?(): Promise<void> }, url: string | null): Promise<void> {
  if (listener.close !== undefined) await listener.close();
  else await ngrok?.disconnect?.(url);
}

/** `host:port` for ngrok's `addr`; wildcard listen addresses forward to loopback. */
function forwardAddress(host: string | undefined, port: number): string {
  if (host === undefined || host === '' || host === '0.0.0.0') return `127.0.0.1:${port}`;
  if (host === '::' || host === '[::]') return `[::1]:${port}`;
  return host.includes(':') && !host.startsWith('[') ? `[${host}]:${port}` : `${host}:${port}`;
}

function describe(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ERR_MODULE_NOT_FOUND') return 'the optional package @ngrok/ngrok is not installed';
    return code !== undefined && !err.message.includes(code) ? `${code}: ${err.message}` : err.message;
  }
  return String(err);
}
