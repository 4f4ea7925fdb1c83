/**
 * Logging: JSON lines to `${LOG_DIR}/app.log` (rotated by size: app.log -> app.log.1 -> ... ), and a
 * human-readable console. Every line carries `time`, `level`, `msg`, and where it applies `source`,
 * `eventId` and `attempt` (child loggers add them).
 *
 * Secrets never reach a line: auth and signature headers are redacted by path, and every configured
 * secret value is scrubbed from the finished line, wherever it appears (a URL, an error message, a
 * stack). Email bodies are logged at debug level at most.
 */
import { mkdirSync, renameSync, existsSync, statSync, rmSync } from 'node:fs';
import path from 'node:path';
import { pino, type Logger, type DestinationStream, type StreamEntry, type Level } from 'pino';
import pretty from 'pino-pretty';
import type { Config } from './config.ts';
import { SECRET_SETTINGS } from './config.ts';

export type { Logger };

/** Header and field paths whose values are replaced by "[redacted]" in every line. */
export const REDACT_PATHS = [
  'headers.authorization',
  'headers["x-projects-signature"]',
  'headers["x-hook-signature"]',
  'headers.cookie',
  'req.headers.authorization',
  'req.headers["x-projects-signature"]',
  'req.headers["x-hook-signature"]',
  'req.headers.cookie',
  '*.apiKey',
  '*.token',
  '*.password',
  '*.secret',
  '*.authorization',
];

export interface LoggerOptions {
  level: string;
  /** Directory for app.log; omit to log to the console only. */
  logDir?: string;
  /** Write the readable console form to stderr. Default true. */
  console?: boolean;
  /** Secret values to scrub from every line. */
  secrets?: readonly string[];
  /** Extra destination (tests read lines from it). */
  destination?: DestinationStream;
  /** Rotate app.log when it passes this many bytes. Default 20 MiB. */
  maxFileBytes?: number;
  /** Rotated files kept (app.log.1 ... app.log.N). Default 5. */
  maxFiles?: number;
}

export function createLogger(options: LoggerOptions): Logger {
  const streams: StreamEntry[] = [];
  const level = options.level as Level;
  if (options.logDir !== undefined) {
    streams.push({ level, stream: new RotatingFile(path.join(options.logDir, 'app.log'), options.maxFileBytes ?? 20 * 1024 * 1024, options.maxFiles ?? 5) });
  }
  if (options.console !== false) {
    streams.push({ level, stream: pretty({ destination: 2, colorize: process.stderr.isTTY, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname', sync: true }) });
  }
  if (options.destination !== undefined) streams.push({ level, stream: options.destination });
  const scrub = makeScrubber(options.secrets ?? []);
  return pino(
    {
      level,
      base: undefined,
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      hooks: { streamWrite: scrub },
    },
    pino.multistream(streams, { dedupe: false }),
  );
}

/** The logger for this process, from its settings. */
export function createLoggerFromConfig(config: Config, overrides: Partial<LoggerOptions> = {}): Logger {
  return createLogger({ level: config.LOG_LEVEL, logDir: config.LOG_DIR, secrets: secretValues(config), ...overrides });
}

/** The values of every secret setting that is set. */
export function secretValues(config: Config): string[] {
  const values: string[] = [];
  for (const name of SECRET_SETTINGS) {
    const value = config[name];
    if (typeof value === 'string' && value.length >= 4) values.push(value);
  }
  return values;
}

/** Replaces each secret (as written, and as it looks inside a JSON string) with "[redacted]". */
export function makeScrubber(secrets: readonly string[]): (line: string) => string {
  const forms = new Set<string>();
  for (const secret of secrets) {
    if (secret.length < 4) continue;
    forms.add(secret);
    forms.add(JSON.stringify(secret).slice(1, -1));
    forms.add(encodeURIComponent(secret));
  }
  const ordered = [...forms].sort((a, b) => b.length - a.length);
  if (ordered.length === 0) return (line) => line;
  return (line) => {
    let out = line;
    for (const form of ordered) if (out.includes(form)) out = out.split(form).join('[redacted]');
    return out;
  };
}

/**
 * A size-rotated file destination. Writes are synchronous: a line is on its way to disk before the
 * logging call returns, so the last lines before a crash are not lost in a buffer.
 */
class RotatingFile implements DestinationStream {
  private stream: ReturnType<typeof pino.destination>;
  private size: number;

  constructor(
    private readonly file: string,
    private readonly maxBytes: number,
    private readonly maxFiles: number,
  ) {
    mkdirSync(path.dirname(file), { recursive: true });
    this.size = existsSync(file) ? statSync(file).size : 0;
    this.stream = pino.destination({ dest: file, sync: true, mkdir: true });
  }

  write(line: string): void {
    if (this.size > 0 && this.size + Buffer.byteLength(line) > this.maxBytes) this.rotate();
    this.stream.write(line);
    this.size += Buffer.byteLength(line);
  }

  private rotate(): void {
    this.stream.flushSync();
    rmSync(`${this.file}.${this.maxFiles}`, { force: true });
    for (let i = this.maxFiles - 1; i >= 1; i--) {
      if (existsSync(`${this.file}.${i}`)) renameSync(`${this.file}.${i}`, `${this.file}.${i + 1}`);
    }
    renameSync(this.file, `${this.file}.1`);
    this.stream.reopen();
    this.size = 0;
  }
}
