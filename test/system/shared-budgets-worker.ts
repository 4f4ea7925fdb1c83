/**
 * One worker process of the shared-budget system test (shared-budgets.test.ts): the real connector's
 * `work` role, built by `startConnector` from settings the product parses from this process's
 * environment, exactly as `connector work` does, plus the one thing the command line cannot pass: the
 * vendors' windows scaled down as the simulators' are, so that minutes pass in seconds. Nothing here is
 * product code; the product only offers the hook (`sourceTuning`).
 *
 * Environment (read by this script, not by the product):
 *   BUDGET_TEST_TEAMWORK_SCALE, BUDGET_TEST_TEAMWORK_MARGIN_MS   Teamwork's minute x scale, + margin
 *   BUDGET_TEST_MISSIVE_SCALE, BUDGET_TEST_MISSIVE_MARGIN_MS     Missive's windows x scale, + margin
 *
 * Logs are JSON lines on stdout (LOG_FORMAT=json). It prints `READY` once started; SIGTERM stops it
 * gracefully (exit 0).
 */
import { parseConfig } from '../../src/config.ts';
import { createLoggerFromConfig } from '../../src/log.ts';
import { startConnector } from '../../src/main.ts';

const env = process.env;
const number = (name: string): number | undefined => (env[name] === undefined ? undefined : Number(env[name]));

const config = parseConfig(env);
const log = createLoggerFromConfig(config);
const connector = await startConnector(config, {
  roles: { serve: false, work: true },
  log,
  sourceTuning: {
    teamwork: { windowScale: number('BUDGET_TEST_TEAMWORK_SCALE'), windowMarginMs: number('BUDGET_TEST_TEAMWORK_MARGIN_MS') },
    missive: { windowScale: number('BUDGET_TEST_MISSIVE_SCALE'), windowMarginMs: number('BUDGET_TEST_MISSIVE_MARGIN_MS') },
  },
});
process.stdout.write('READY\n');
process.on('SIGTERM', () => {
  connector.stop().then(
    () => process.exit(0),
    (err: unknown) => {
      process.stderr.write(`stop failed: ${String(err)}\n`);
      process.exit(1);
    },
  );
});
