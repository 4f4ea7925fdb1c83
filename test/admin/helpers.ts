/** Test helpers for the admin tests: a logger whose JSON lines a test can read; a closed loopback URL. */
import { createLogger, type Logger } from '../../src/log.ts';

export interface LogLine {
  level: string;
  msg: string;
  [key: string]: unknown;
}

export function logSink(level = 'info'): { log: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const log = createLogger({ level, console: false, destination: { write: (line: string) => void lines.push(JSON.parse(line) as LogLine) } });
  return { log, lines };
}

/** A loopback URL where nothing listens (a port that was free a moment ago). */
export async function closedUrl(): Promise<string> {
  const net = await import('node:net');
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `http://127.0.0.1:${port}`;
}
