/**
 * A deleted LOG_DIR is recreated (issue 15 item 6): the rotating file writer notices, within a second,
 * that its file is no longer at the path (a descriptor keeps writing into the unlinked file without an
 * error) and opens it again, creating the directory.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { expect, it } from 'vitest';
import { createLogger } from '../../src/log.ts';

it('a LOG_DIR deleted under the running process is recreated and written again', async () => {
  const root = mkdtempSync(path.join(tmpdir(), 'conn-logdir-'));
  try {
    const dir = path.join(root, 'logs');
    const log = createLogger({ level: 'info', logDir: dir, console: false });
    log.info('before');
    rmSync(dir, { recursive: true, force: true });
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    log.info('after');
    const file = path.join(dir, 'app.log');
    expect(existsSync(file)).toBe(true);
    expect(readFileSync(file, 'utf8')).toContain('"msg":"after"');
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
