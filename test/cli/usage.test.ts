/**
 * Every operator command answers --help (exit 0) and refuses an unknown flag (exit 2, naming it), as
 * separate processes with no settings at all.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli, type CliResult } from './run-cli.ts';

const COMMANDS = ['check-queue', 'backfill', 'replay-dlq', 'register-webhooks', 'airtable-setup', 'doctor', 'discard-dlq'] as const;
const cwd = mkdtempSync(path.join(tmpdir(), 'conn-cli-usage-'));
afterAll(() => rmSync(cwd, { recursive: true, force: true }));

/** Runs the calls two at a time (the machine has two cores). */
async function inPairs<T>(items: readonly T[], fn: (item: T) => Promise<CliResult>): Promise<CliResult[]> {
  const results: CliResult[] = [];
  for (let i = 0; i < items.length; i += 2) results.push(...(await Promise.all(items.slice(i, i + 2).map(fn))));
  return results;
}

describe('usage of every operator command', { timeout: 60_000 }, () => {
  it('--help prints the usage and the options, exit 0', async () => {
    const results = await inPairs(COMMANDS, (command) => runCli([command, '--help'], { cwd }));
    results.forEach((result, i) => {
      const command = COMMANDS[i] as string;
      expect(result.code, `${command} --help`).toBe(0);
      expect(result.stdout).toContain(`Usage: connector ${command} [options]`);
      expect(result.stdout).toContain('-h, --help');
    });
    expect(results[0]?.stdout).toContain('--last <n>');
    expect(results[1]?.stdout).toMatch(/--source <name>[\s\S]*--since <time>[\s\S]*--full/);
    expect(results[2]?.stdout).toMatch(/--id <id\.\.\.>[\s\S]*--all[\s\S]*--dry-run/);
    expect(results[3]?.stdout).toMatch(/--url <url>[\s\S]*--list[\s\S]*--remove/);
  });

  it('an unknown flag fails with exit 2 and names the flag', async () => {
    const results = await inPairs(COMMANDS, (command) => runCli([command, '--no-such-flag'], { cwd }));
    results.forEach((result, i) => {
      expect(result.code, `${COMMANDS[i]} --no-such-flag`).toBe(2);
      expect(result.stderr).toContain("unknown option '--no-such-flag'");
      expect(result.stdout).toBe('');
    });
  });

  it('refuses bad values and contradictions with exit 2 before doing anything', async () => {
    const [since, both, last, choice] = await inPairs(
      [
        ['backfill', '--since', 'yesterday'],
        ['backfill', '--since', '2025-01-01', '--full'],
        ['check-queue', '--last', '-3'],
        ['replay-dlq', '--source', 'jira'],
      ],
      (args) => runCli(args, { cwd }),
    );
    expect(since).toMatchObject({ code: 2, stderr: expect.stringContaining("argument 'yesterday' is invalid") });
    expect(both).toMatchObject({ code: 2, stderr: expect.stringContaining("option '--full' cannot be used with option '--since <time>'") });
    expect(last?.code).toBe(2);
    expect(choice).toMatchObject({ code: 2, stderr: expect.stringContaining('Allowed choices are teamwork, missive') });
  });
});
