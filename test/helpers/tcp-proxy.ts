/**
 * A TCP proxy in front of a real service (Redis, PostgreSQL) that a test can cut off, to play a
 * network partition for one client while every other client of the shared service goes on:
 * - `blackhole()`: bytes stop flowing both ways (held back, not dropped) on open connections, and new
 *   connections are accepted but not connected through: the client's requests hang, nothing is refused;
 * - `restore()`: traffic flows again, what was held back first;
 * - `close()`: ends every connection and the listener.
 */
import net from 'node:net';

export interface TcpProxy {
  /** Give the client this address instead of the service's. */
  readonly host: string;
  readonly port: number;
  blackhole(): void;
  restore(): void;
  close(): Promise<void>;
}

interface Pair {
  client: net.Socket;
  upstream: net.Socket;
  /** Bytes held back while cut: [to upstream, to client]. */
  held: [Buffer[], Buffer[]];
}

export async function startTcpProxy(target: { host: string; port: number }): Promise<TcpProxy> {
  let cut = false;
  const pairs = new Set<Pair>();
  const server = net.createServer((client) => {
    const upstream = net.connect(target);
    const pair: Pair = { client, upstream, held: [[], []] };
    pairs.add(pair);
    const end = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
    client.on('data', (chunk: Buffer) => (cut ? pair.held[0].push(chunk) : upstream.write(chunk)));
    upstream.on('data', (chunk: Buffer) => (cut ? pair.held[1].push(chunk) : client.write(chunk)));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    host: '127.0.0.1',
    port,
    blackhole() {
      cut = true;
    },
    restore() {
      cut = false;
      for (const pair of pairs) {
        for (const chunk of pair.held[0].splice(0)) pair.upstream.write(chunk);
        for (const chunk of pair.held[1].splice(0)) pair.client.write(chunk);
      }
    },
    async close() {
      for (const pair of pairs) {
        pair.client.destroy();
        pair.upstream.destroy();
      }
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
