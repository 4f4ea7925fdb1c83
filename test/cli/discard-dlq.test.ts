/**
 * `connector discard-dlq` as an operator runs it (a child process) on a file queue with real dead
 * letters: refused without a filter or without --yes (exit 2, nothing changed), listed with
 * --dry-run, discarded with --yes (gone from the queue for good), an id that is not a dead letter
 * named (exit 1).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config.ts';
import { Lifecycle } from '../../src/lifecycle.ts';
import { createLogger } from '../../src/log.ts';
import type { QueueEvent } from '../../src/model.ts';
import { createQueue } from '../../src/queue/create-queue.ts';
import { runCli } from './run-cli.ts';

const cwd = mkdtempSync(path.join(tmpdir(), 'conn-cli-discard-'));
const config = parseConfig({ DATA_DIR: path.join(cwd, 'data') });
const log = createLogger({ level: 'silent', console: false });
afterAll(() => rmSync(cwd, { recursive: true, force: true }));

const event = (id: string, source: QueueEvent['source']): QueueEvent => ({ id, source, type: source === 'teamwork' ? 'TASK.UPDATED' : 'incoming_email', entityKey: `k:${id}`, origin: 'webhook', receivedAt: new Date(), payload: { id } });

async function deadLetterIds(): Promise<string[]> {
  const queue = await createQueue(config, { log, lifecycle: new Lifecycle() });
  try {
    return (await queue.listDeadLetters()).map((d) => d.event.id).sort();
  } finally {
    await queue.close();
  }
}

beforeAll(async () => {
  const queue = await createQueue(config, { log, lifecycle: new Lifecycle() });
  await queue.enqueue([event('tw-1', 'teamwork'), event('tw-2', 'teamwork'), event('mi-3', 'missive')]);
  for (const c of await queue.claim({ limit: 3 })) await queue.deadLetter(c.event.id, { code: 'CONN_ERR_EVENT_INVALID', message: 'no task id', retryable: false });
  await queue.close();
});

describe('discard-dlq', { timeout: 60_000 }, () => {
  it('refuses without a filter or without --yes, lists with --dry-run, discards with --yes, names a missing id', async () => {
    const cli = (...args: string[]) => runCli(['discard-dlq', ...args, '--data-dir', config.DATA_DIR], { cwd });
    const [none, unconfirmed] = await Promise.all([cli(), cli('--source', 'teamwork')]);
    expect(none).toMatchObject({ code: 2, stderr: expect.stringContaining('say which dead letters to discard: --source <name>, --id <id...>, or --all') });
    expect(unconfirmed).toMatchObject({ code: 2, stderr: expect.stringContaining('add --yes to confirm') });
    expect(await deadLetterIds()).toEqual(['mi-3', 'tw-1', 'tw-2']);

    const dry = await cli('--source', 'teamwork', '--dry-run');
    expect(dry.code).toBe(0);
    expect(dry.stdout).toContain('2 dead letter(s) would be discarded (dry run; nothing changed)');
    expect(dry.stdout).toMatch(/tw-1\s+teamwork\s+TASK\.UPDATED\s+1\s+\S+\s+CONN_ERR_EVENT_INVALID: no task id/);
    expect(await deadLetterIds()).toEqual(['mi-3', 'tw-1', 'tw-2']);

    const discarded = await cli('--id', 'tw-1', 'gone-1', '--yes');
    expect(discarded.code).toBe(1);
    expect(discarded.stdout).toContain('discarded 1 dead letter(s) for good');
    expect(discarded.stdout).toContain('not among the dead letters: gone-1');
    expect(await deadLetterIds()).toEqual(['mi-3', 'tw-2']);

    const rest = await cli('--all', '--yes');
    expect(rest.code).toBe(0);
    expect(rest.stdout).toContain('discarded 2 dead letter(s) for good');
    expect(await deadLetterIds()).toEqual([]);
    // Nothing discarded went back to the queue.
    const queue = await createQueue(config, { log, lifecycle: new Lifecycle() });
    try {
      expect(await queue.stats()).toMatchObject({ pending: 0, inFlight: 0, delayed: 0, deadLettered: 0 });
    } finally {
      await queue.close();
    }
  });
});
