/**
 * The `connector` command line. Each command is also an npm script. A bad setting stops any command
 * with one line naming the variable and the rule, exit code 2.
 */
import { Command, CommanderError } from 'commander';
import { loadConfig, type Config } from './config.ts';
import { ConnectorError } from './errors.ts';
import { createLoggerFromConfig, type Logger } from './log.ts';
import { startConnector, type Roles } from './main.ts';

/** Exit codes: 0 done, 1 failed, 2 bad settings or usage. */
export const EXIT = { ok: 0, failed: 1, usage: 2 } as const;

function settings(): Config {
  try {
    return loadConfig();
  } catch (err) {
    if (err instanceof ConnectorError && err.code === 'CONN_ERR_CONFIG_INVALID') {
      process.stderr.write(`connector: ${err.message}\n`);
      process.exit(EXIT.usage);
    }
    throw err;
  }
}

/** Runs the chosen roles until SIGINT/SIGTERM; a second signal forces the exit. */
async function run(roles: Roles): Promise<void> {
  const config = settings();
  const log = createLoggerFromConfig(config);
  let connector;
  try {
    connector = await startConnector(config, { roles, log });
  } catch (err) {
    fatal(log, err, 'could not start');
    return;
  }
  let signals = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    signals += 1;
    if (signals > 1) {
      log.warn({ signal }, 'second signal: exiting now');
      connector.abort();
      process.exit(EXIT.failed);
    }
    log.info({ signal }, 'shutting down: finishing events in flight (send the signal again to force)');
    connector.lifecycle.emit('shutdown:start', { signal });
    connector.stop().then(
      () => process.exit(EXIT.ok),
      (err: unknown) => fatal(log, err, 'shutdown failed'),
    );
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
}

function fatal(log: Logger, err: unknown, what: string): never {
  const message = err instanceof Error ? err.message : String(err);
  log.fatal({ err }, `${what}: ${message}`);
  process.exit(EXIT.failed);
}

export function buildProgram(): Command {
  const program = new Command('connector')
    .description('Teamwork & Missive Connector: keeps a database in sync with Teamwork tasks and Missive emails.')
    .showHelpAfterError()
    .exitOverride();

  program.command('start').description('receive webhooks and process events in one process (the default way to run)').action(() => run({ serve: true, work: true }));
  program.command('serve').description('receive webhooks only (run `work` in another process)').action(() => run({ serve: true, work: false }));
  program.command('work').description('process queued events only (run `serve` in another process)').action(() => run({ serve: false, work: true }));
  return program;
}

async function main(argv: string[]): Promise<void> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) process.exit(err.exitCode === 0 ? EXIT.ok : EXIT.usage);
    throw err;
  }
}

await main(process.argv);
