/**
 * The demo's command-line flags. The demo takes no settings from the environment or `.env`: it is
 * wired to its own simulators, so an operator's real credentials can never leak into it (or it into
 * their real database).
 */
import { Command, CommanderError, InvalidArgumentError } from 'commander';

export interface DemoOptions {
  /** Stop by itself after this many seconds; null runs until Ctrl-C. */
  durationSeconds: number | null;
  /** Keep the previous demo run's data instead of starting fresh. */
  keep: boolean;
  /** Store records in the Airtable simulator (DB_BACKEND=airtable) instead of SQLite. */
  airtable: boolean;
  /**
   * The connector's port (default 8080; the simulators take 4010, 4020, 4030). A busy port falls back
   * to a free one. 0 puts every service on a free port.
   */
  port: number;
  /** No running summary: only the start-up lines, warnings and the final summary. */
  quiet: boolean;
  /** Queue, checkpoints, SQLite file and attachments. Default `./data/demo`. */
  dataDir: string;
  /** `app.log`. Default `./logs/demo`. */
  logDir: string;
}

export const DEFAULT_PORTS = { connector: 8080, teamwork: 4010, missive: 4020, airtable: 4030 } as const;

const wholeNumber = (name: string, min: number, max: number) => (value: string): number => {
  const n = Number(value);
  if (!/^\d+$/.test(value.trim()) || n < min || n > max) throw new InvalidArgumentError(`${name} must be a whole number from ${min} to ${max}`);
  return n;
};

function program(): Command {
  return new Command('demo')
    .description(
      'Runs the connector against simulated Teamwork, Missive and Airtable, all in this one process, with live activity and a running summary. No credentials, no servers. Ctrl-C stops everything.',
    )
    .option('--duration <seconds>', 'stop by itself after this many seconds', wholeNumber('--duration', 1, 7 * 24 * 3600))
    .option('--keep', 'keep the data of the previous demo run instead of starting fresh')
    .option('--airtable', 'store records in the Airtable simulator instead of SQLite')
    .option('--port <port>', 'connector port; the simulators take 4010, 4020, 4030 (0: every service on a free port)', wholeNumber('--port', 0, 65535), DEFAULT_PORTS.connector)
    .option('--quiet', 'no running summary; start-up lines, warnings and the final summary only')
    .option('--data-dir <dir>', 'where the demo keeps its data', './data/demo')
    .option('--log-dir <dir>', 'where the demo writes app.log', './logs/demo')
    .allowExcessArguments(false)
    .exitOverride()
    .configureOutput({ writeOut: (s) => process.stdout.write(s), writeErr: (s) => process.stderr.write(s) });
}

/** The options, or the exit code when the arguments were `--help` (0) or wrong (2, after a message). */
export function parseDemoOptions(argv: readonly string[]): DemoOptions | { exitCode: number } {
  const command = program();
  try {
    command.parse([...argv], { from: 'user' });
  } catch (err) {
    if (err instanceof CommanderError) return { exitCode: err.exitCode === 0 ? 0 : 2 };
    throw err;
  }
  const o = command.opts<{ duration?: number; keep?: boolean; airtable?: boolean; port: number; quiet?: boolean; dataDir: string; logDir: string }>();
  return { durationSeconds: o.duration ?? null, keep: o.keep === true, airtable: o.airtable === true, port: o.port, quiet: o.quiet === true, dataDir: o.dataDir, logDir: o.logDir };
}
