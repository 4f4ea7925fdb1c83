/**
 * `npm run sim`: starts the Teamwork (4010), Missive (4020) and Airtable (4030) simulators on fixed
 * ports, prints their URLs and credentials, and runs until SIGINT/SIGTERM. With `--connector <url>` it
 * also registers webhooks for every task event and a rule for every Missive rule type, pointing at
 * `<url>/webhooks/teamwork` and `<url>/webhooks/missive`, signed with TEAMWORK_WEBHOOK_TOKEN and
 * MISSIVE_WEBHOOK_SECRET (or the flags). With `--activity <n>` each simulator makes n random changes a
 * minute. Faults and changes can be driven at run time through each simulator's `/__sim` routes.
 */
import { Command } from 'commander';
import { startAirtableSimulator } from './airtable/index.ts';
import type { RunningSimulator } from './common.ts';
import { startMissiveSimulator } from './missive/index.ts';
import { startTeamworkSimulator } from './teamwork/index.ts';

interface CliOptions {
  host: string;
  teamworkPort: string;
  missivePort: string;
  airtablePort: string;
  seed: string;
  activity: string;
  connector?: string;
  teamworkToken: string;
  missiveSecret: string;
}

const program = new Command()
  .name('sim')
  .description('Run the Teamwork, Missive and Airtable simulators on fixed ports.')
  .option('--host <host>', 'interface to listen on', '127.0.0.1')
  .option('--teamwork-port <port>', 'Teamwork simulator port', '4010')
  .option('--missive-port <port>', 'Missive simulator port', '4020')
  .option('--airtable-port <port>', 'Airtable simulator port', '4030')
  .option('--seed <seed>', 'data seed (same seed -> same data)', '1')
  .option('--activity <perMinute>', 'random changes per minute per simulator (0 = none)', '0')
  .option('--connector <url>', 'register webhooks to this connector base URL, e.g. http://127.0.0.1:8080')
  .option('--teamwork-token <token>', 'Teamwork webhook signing token', process.env.TEAMWORK_WEBHOOK_TOKEN ?? 'tw-sim-webhook-token')
  .option('--missive-secret <secret>', 'Missive rule signing secret', process.env.MISSIVE_WEBHOOK_SECRET ?? 'missive-sim-webhook-secret');

async function main(): Promise<void> {
  const options = program.parse(process.argv).opts<CliOptions>();
  const host = options.host;
  const running: RunningSimulator[] = [];
  const stopAll = async () => {
    await Promise.allSettled(running.map((s) => s.stop()));
  };
  try {
    const teamwork = await startTeamworkSimulator({ host, port: Number(options.teamworkPort), seed: options.seed });
    running.push(teamwork);
    const missive = await startMissiveSimulator({ host, port: Number(options.missivePort), seed: options.seed });
    running.push(missive);
    const airtable = await startAirtableSimulator({ host, port: Number(options.airtablePort) });
    running.push(airtable);

    const lines = [
      'Simulators running (Ctrl-C to stop):',
      `  Teamwork  ${teamwork.url}`,
      `    TEAMWORK_BASE_URL=${teamwork.credentials.baseUrl}`,
      `    TEAMWORK_API_KEY=${teamwork.credentials.apiKey}   (HTTP Basic user name; any password)`,
      `  Missive   ${missive.url}`,
      `    MISSIVE_BASE_URL=${missive.credentials.baseUrl}`,
      `    MISSIVE_API_TOKEN=${missive.credentials.token}`,
      `  Airtable  ${airtable.url}`,
      `    AIRTABLE_TOKEN=${airtable.token}`,
      `    AIRTABLE_BASE_ID=${airtable.baseId}`,
      '  Control routes on each: /__sim/faults, /__sim/activity, /__sim/mutate, /__sim/deliveries, /__sim/data',
    ];
    process.stdout.write(`${lines.join('\n')}\n`);

    if (options.connector) {
      const base = options.connector.replace(/\/+$/, '');
      const hooks = teamwork.registerAllTaskWebhooks(`${base}/webhooks/teamwork`, { token: options.teamworkToken, version: 2, contentType: 'application/json' });
      process.stdout.write(`  Registered ${hooks.length} Teamwork webhooks -> ${base}/webhooks/teamwork (TEAMWORK_WEBHOOK_TOKEN=${options.teamworkToken})\n`);
      try {
        const rules = await missive.createAllRules(`${base}/webhooks/missive`, options.missiveSecret);
        process.stdout.write(`  Created ${rules.length} Missive rules -> ${base}/webhooks/missive (MISSIVE_WEBHOOK_SECRET=${options.missiveSecret})\n`);
      } catch (err) {
        process.stderr.write(`  Missive rules not created: ${err instanceof Error ? err.message : String(err)} (is the connector up?)\n`);
      }
    }
    const perMinute = Number(options.activity);
    if (perMinute > 0) {
      teamwork.startActivity(perMinute);
      missive.startActivity(perMinute);
      process.stdout.write(`  Activity: ${perMinute} changes/minute on each simulator\n`);
    }
  } catch (err) {
    await stopAll();
    throw err;
  }

  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await stopAll();
}

main().catch((err: unknown) => {
  process.stderr.write(`sim: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
