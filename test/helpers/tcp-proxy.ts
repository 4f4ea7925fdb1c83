/**
 * A TCP proxy in front of a service (Redis, PostgreSQL) that a test can cut off from its clients the
 * way a network partition does: `freeze()` stops every byte in both directions and leaves the
 * connections open (nothing is refused, nothing answers: a client learns of it only from its own
 * timeouts; new connections are accepted, their bytes held too); `thaw()` delivers what was held and
 * lets everything through again, as when the partition heals. A connection closed on one side is
 * closed on the other.
 */
import net from 'node:net';

export interface TcpProxy {
  /** The proxy's port on 127.0.0.1. */
  readonly port: number;
  freeze(): void;
  thaw(): void;
  close(): Promise<void>;
}

export async function startTcpProxy(target: { host: string; port: number }): Promise<TcpProxy> {
  let frozen = false;
  const sockets = new Set<net.Socket>();
  /** Bytes held while frozen, each with where it goes, in arrival order. */
  const held: Array<{ to: net.Socket; chunk: Buffer }> = [];
  const forward = (to: net.Socket) => (chunk: Buffer) => {
    if (frozen) held.push({ to, chunk });
    else to.write(chunk);
  };

  const server = net.createServer((client) => {
    const upstream = net.connect(target.port, target.host);
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('error', () => {});
      socket.on('close', () => {
        sockets.delete(socket);
        client.destroy();
        upstream.destroy();
      });
    }
    client.on('data', forward(upstream));
    upstream.on('data', forward(client));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as net.AddressInfo;

  return {
    port,
    freeze() {
      frozen = true;
    },
    thaw() {
      frozen = false;
      for (const { to, chunk } of held.splice(0)) if (!to.destroyed) to.write(chunk);
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
