/**
 * Logging: JSON lines to `${LOG_DIR}/app.log` (rotated by size: app.log -> app.log.1 -> ... ), and a
 * human-readable console. Every line carries `time`, `level`, `msg`, and where it applies `source`,
 * `eventId` and `attempt` (child loggers add them).
 *
 * Secrets never reach a line: auth and signature headers are redacted by path, and every configured
 * secret value is scrubbed from the finished line, wherever it appears (a URL, an error message, a
 * stack). Email bodies are logged at debug level at most.
 */
import { closeSync, existsSync, fstatSync, mkdirSync, openSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import path from 'node:path';
import { pino, type Logger, type DestinationStream, type StreamEntry, type Level } from 'pino';
import { createRequire } from 'node:module';
import { Writable } from 'node:stream';
import type { Config } from './config.ts';
import { SECRET_SETTINGS } from './config.ts';
import type PinoPretty from 'pino-pretty';

/** For pino-pretty, loaded only when the console is pretty (about 10 MB a service does not need). */
const require = createRequire(import.meta.url);

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
  /** Write log lines to the console. Default true. */
  console?: boolean;
  /**
   * The console's form: `pretty` (readable, on stderr; pino-pretty is loaded only for it) or `json`
   * (the JSON lines, on stdout: containers, log collectors). Default pretty.
   */
  consoleFormat?: 'pretty' | 'json';
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
    if (options.consoleFormat === 'json') {
      streams.push({ level, stream: fdLines(1) });
    } else {
      const pretty = require('pino-pretty') as typeof PinoPretty;
      streams.push({ level, stream: guarded(pretty({ destination: fdLines(2), colorize: process.stderr.isTTY, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname', sync: true })) });
    }
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
  return createLogger({ level: config.LOG_LEVEL, logDir: config.LOG_DIR, consoleFormat: config.LOG_FORMAT, secrets: secretValues(config), ...overrides });
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
 * A size-rotated file destination. Writes are synchronous (fs.writeSync on a descriptor of its own): a
 * line is on its way to disk before the logging call returns, so the last lines before a crash are not
 * lost in a buffer.
 *
 * A log write never fails the caller: when the file cannot be written (the disk is full, the
 * directory is gone), the line is dropped and counted, nothing is kept in memory, and the file is tried
 * again (reopened) at most once every `retryMs`. The first line that can be written again is preceded
 * by one saying how many were lost and why (`lost`, `reason`). A line cut short by a failed write is
 * ended before the next one, so every later line still reads as JSON.
 *
 * States: writing (fd open, lost = 0) -> failing (lost > 0, fd maybe closed; writes only counted until
 * retryAt) -> writing, once a reopen and a write succeed.
 */
class RotatingFile implements DestinationStream {
  private fd: number | null = null;
  private size = 0;
  /** Lines dropped since writing last failed; why (an errno code). */
  private lost = 0;
  private lostReason = '';
  private retryAt = 0;
  /** The last write stopped in the middle of a line. */
  private torn = false;
  /** Inode of the open file, and when to check next that it is still at the path (a deleted LOG_DIR). */
  private ino = 0;
  private checkAt = 0;

  constructor(
    private readonly file: string,
    private readonly maxBytes: number,
    private readonly maxFiles: number,
    private readonly retryMs = 1_000,
  ) {
    try {
      this.open();
    } catch (err) {
      this.fail(err);
    }
  }

  write(line: string): void {
    if (this.lost > 0 && Date.now() < this.retryAt) {
      this.lost++;
      return;
    }
    try {
      if (this.lost > 0 || this.fd === null || this.moved()) this.open();
      if (this.lost > 0) {
        const note = { level: 'warn', time: new Date().toISOString(), component: 'log', lost: this.lost, reason: this.lostReason, msg: `${this.lost} log lines were lost: ${this.file} could not be written (${this.lostReason})` };
        this.append(`${JSON.stringify(note)}\n`);
        this.lost = 0;
      }
      if (this.size > 0 && this.size + Buffer.byteLength(line) > this.maxBytes) this.rotate();
      this.append(line);
    } catch (err) {
      this.fail(err);
    }
  }

  private append(text: string): void {
    const bytes = Buffer.from(this.torn ? `\n${text}` : text);
    let done = 0;
    while (done < bytes.length) {
      try {
        done += writeSync(this.fd as number, bytes, done);
      } catch (err) {
        if (done > 0) this.torn = true;
        throw err;
      }
    }
    this.torn = false;
    this.size += bytes.length;
  }

  private open(): void {
    this.close();
    mkdirSync(path.dirname(this.file), { recursive: true });
    this.fd = openSync(this.file, 'a');
    const stat = fstatSync(this.fd);
    this.size = stat.size;
    this.ino = stat.ino;
    this.checkAt = Date.now() + this.retryMs;
  }

  /**
   * Whether the open file is no longer at the path (deleted, or its directory: a write into an unlinked
   * file succeeds and is lost). One stat at most every `retryMs`; open() then recreates the directory.
   */
  private moved(): boolean {
    if (Date.now() < this.checkAt) return false;
    this.checkAt = Date.now() + this.retryMs;
    try {
      return statSync(this.file).ino !== this.ino;
    } catch {
      return true;
    }
  }

  private close(): void {
    if (this.fd === null) return;
    try {
      closeSync(this.fd);
    } catch {
      // already unusable
    }
    this.fd = null;
  }

  private fail(err: unknown): void {
    this.lost++;
    this.lostReason = (err as NodeJS.ErrnoException | undefined)?.code ?? (err instanceof Error ? err.message : String(err));
    this.retryAt = Date.now() + this.retryMs;
  }

  private rotate(): void {
    this.close();
    rmSync(`${this.file}.${this.maxFiles}`, { force: true });
    for (let i = this.maxFiles - 1; i >= 1; i--) {
      if (existsSync(`${this.file}.${i}`)) renameSync(`${this.file}.${i}`, `${this.file}.${i + 1}`);
    }
    renameSync(this.file, `${this.file}.1`);
    this.open();
  }
}

/**
 * Another destination (the console), made safe: a write that throws, or an error it emits later (a
 * closed pipe, a full disk behind a redirect), drops the line instead of failing the caller or the
 * process.
 */
function guarded(stream: DestinationStream): DestinationStream {
  (stream as Partial<NodeJS.EventEmitter>).on?.('error', () => {});
  return {
    write(line: string) {
      try {
        stream.write(line);
      } catch {
        // dropped: a log line never fails what is being logged
      }
    },
  };
}

/**
 * Standard output or error as a stream for the console: each chunk written synchronously (as a sync
 * SonicBoom would, so the last lines before a crash are out), and dropped, never buffered, when it
 * cannot be (a closed pipe, a redirect to a full disk).
 */
function fdLines(fd: 1 | 2): Writable {
  return new Writable({
    write(chunk: Buffer, _encoding, done) {
      let offset = 0;
      let waits = 0;
      while (offset < chunk.length) {
        try {
          offset += writeSync(fd, chunk, offset);
        } catch (err) {
          // A non-blocking pipe that is full: wait a moment, a few times, then give up on the line.
          if ((err as NodeJS.ErrnoException).code !== 'EAGAIN' || ++waits > 100) break;
          Atomics.wait(PAUSE, 0, 0, 1);
        }
      }
      done();
    },
  });
}

const PAUSE = new Int32Array(new SharedArrayBuffer(4));
