/**
 * The read-only commands (`check-queue`, `doctor`, `replay-dlq --dry-run`) run from a directory that is
 * not the connector's (issue 15 item 9): they create no data or log directory and migrate nothing, say
 * in one line where they looked for the queue and how to point them elsewhere (exit 2: nothing there),
 * and `--data-dir` pointed at a real queue reads it.
 */
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log.ts';
import { FileQueue } from '../../src/queue/file-queue.ts';
import { runCli } from './run-cli.ts';

let root: string;
/** An empty working directory: no .env, no data, no logs. */
let empty: string;
/** A DATA_DIR elsewhere holding a real queue with one waiting event. */
let dataDir: string;

beforeAll(async () => {
  root = mkdtempSync(path.join(tmpdir(), 'conn-cli-readonly-'));
  empty = path.join(root, 'elsewhere');
  dataDir = path.join(root, 'install', 'data');
  const { mkdirSync } = await import('node:fs');
  mkdirSync(empty, { recursive: true });
  const queue = await FileQueue.open({ dir: path.join(dataDir, 'queue'), log: createLogger({ level: 'silent', console: false }) });
  await queue.enqueue([{ id: 'ev-readonly-1', source: 'teamwork', type: 'TASK.UPDATED', entityKey: 'task:1', origin: 'webhook', receivedAt: new Date('2026-01-01T00:00:00Z'), payload: { task: { id: 1 } } }]);
  await queue.close();
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('read-only commands from another directory', { timeout: 60_000 }, () => {
  it('check-queue and replay-dlq --dry-run: one line naming where they looked and how to point elsewhere, exit 2, nothing created', async () => {
    const [check, replay] = await Promise.all([runCli(['check-queue'], { cwd: empty }), runCli(['replay-dlq', '--all', '--dry-run'], { cwd: empty })]);
    for (const [command, result] of [['check-queue', check], ['replay-dlq', replay]] as const) {
      expect(result.code, command).toBe(2);
      const lines = result.stderr.split('\n').filter((l) => l.trim() !== '');
      expect(lines, command).toHaveLength(1);
      expect(lines[0]).toContain(`connector ${command}: no queue at ${path.join(empty, 'data', 'queue')}`);
      expect(lines[0]).toContain('--data-dir');
      expect(lines[0]).toContain('DATA_DIR');
      expect(result.stdout).toBe('');
    }
    expect(readdirSync(empty)).toEqual([]);
  });

  it('doctor: fails the queue and database checks with where it looked, creates and migrates nothing', async () => {
    const result = await runCli(['doctor'], { cwd: empty });
    expect(result.code).toBe(1);
    expect(result.stdout).toMatch(new RegExp(`^queue\\s+FAIL\\s+no queue at ${path.join(empty, 'data', 'queue').replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`, 'm'));
    expect(result.stdout).toMatch(/^database\s+FAIL\s+no database at /m);
    expect(result.stdout).toContain('--data-dir');
    expect(readdirSync(empty)).toEqual([]);
  });

  it('--data-dir pointed at a real queue reads it (and still creates nothing here)', async () => {
    const [check, replay] = await Promise.all([
      runCli(['check-queue', '--json', '--data-dir', dataDir], { cwd: empty }),
      runCli(['replay-dlq', '--all', '--dry-run', '--data-dir', dataDir], { cwd: empty }),
    ]);
    expect(check.code).toBe(0);
    const report = JSON.parse(check.stdout) as { queueDir: string; stats: { pending: number } };
    expect(report.queueDir).toBe(path.join(dataDir, 'queue'));
    expect(report.stats.pending).toBe(1);
    expect(replay.code).toBe(0);
    expect(replay.stdout).toContain('no dead letter matches');
    const doctor = await runCli(['doctor', '--data-dir', dataDir], { cwd: empty });
    expect(doctor.stdout).toMatch(/^queue\s+OK\s+file queue: 1 pending/m);
    expect(readdirSync(empty)).toEqual([]);
    // Nothing was added to the real data directory either (no database created, no migration).
    expect(existsSync(path.join(dataDir, 'connector.db'))).toBe(false);
  });
});
