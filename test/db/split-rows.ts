/**
 * Rows of one entity split over several spellings of its id, as versions before canonical ids stored
 * them (issue 14, item 4), and what merging them must leave: the same as the live write path would
 * have made of the same writes under one id. Shared by the migration tests of every backend.
 * - A full row under `04343` and its deletion under `4343` (a tombstone): the data is kept, deleted.
 * - A full row under `0777` updated after its deletion under `777`: the deletion is stale, the row live.
 * - An email under its upper-case UUID with an attachment, deleted under its lower-case UUID: the email
 *   keeps its data and its attachment, deleted.
 * - An email stored under both cases, each version with its attachments, one attachment under both
 *   cases of its UUID: the newest version's data, the attachments of both, each once.
 */
import { expect } from 'vitest';
import type { Attachment, Email } from '../../src/model.ts';
import type { Database } from '../../src/db/database.ts';
import { later, makeEmail, makeTask } from '../fixtures/records.ts';

const t0 = new Date('2026-11-04T10:00:00.000Z');
const deletedEmail = '1a2b3c4d-0000-4000-8000-00000000000a';
const splitEmail = '1a2b3c4d-0000-4000-8000-00000000000b';
const sharedAttachment = 'aaaaaaaa-0000-4000-8000-000000000001';

const attachment = (id: string, emailId: string, filename: string): Attachment => ({ id, emailId, filename, mediaType: null, size: 1, url: null, storedPath: null, sha256: null });

export async function seedSplitRows(db: Database): Promise<void> {
  await db.upsertTasks([
    makeTask({ id: '04343', title: 'kept and deleted', description: 'the data', updatedAt: t0 }),
    makeTask({ id: '0777', title: 'restored', updatedAt: later(t0, 7200) }),
  ]);
  await db.markTaskDeleted('4343', later(t0, 60));
  await db.markTaskDeleted('777', later(t0, 60));

  const upper = deletedEmail.toUpperCase();
  await db.upsertEmail(makeEmail({ id: upper, subject: 'kept and deleted', updatedAt: t0, attachments: [attachment('att-deleted', upper, 'd.pdf')] }));
  await db.markEmailDeleted(deletedEmail, later(t0, 60));

  const splitUpper = splitEmail.toUpperCase();
  await db.upsertEmail(
    makeEmail({ id: splitUpper, subject: 'older', updatedAt: t0, attachments: [attachment('att-older', splitUpper, 'older.pdf'), attachment(sharedAttachment.toUpperCase(), splitUpper, 'shared-old.pdf')] }),
  );
  await db.upsertEmail(
    makeEmail({ id: splitEmail, subject: 'newer', updatedAt: later(t0, 60), attachments: [attachment(sharedAttachment, splitEmail, 'shared-new.pdf'), attachment('att-newer', splitEmail, 'newer.pdf')] }),
  );
}

const byId = (email: Email | null) => [...(email?.attachments ?? [])].sort((a, b) => a.id.localeCompare(b.id)).map((a) => [a.id, a.emailId, a.filename]);

export async function expectMergedSplitRows(db: Database): Promise<void> {
  expect(await db.getTask('4343')).toMatchObject({ id: '4343', title: 'kept and deleted', description: 'the data', updatedAt: t0, deleted: true, deletedAt: later(t0, 60) });
  expect(await db.getTask('04343')).toBeNull();
  expect(await db.getTask('777')).toMatchObject({ id: '777', title: 'restored', updatedAt: later(t0, 7200), deleted: false, deletedAt: null });

  const deleted = await db.getEmail(deletedEmail);
  expect(deleted).toMatchObject({ id: deletedEmail, subject: 'kept and deleted', updatedAt: t0, deleted: true, deletedAt: later(t0, 60) });
  expect(byId(deleted)).toEqual([['att-deleted', deletedEmail, 'd.pdf']]);

  const split = await db.getEmail(splitEmail);
  expect(split).toMatchObject({ id: splitEmail, subject: 'newer', updatedAt: later(t0, 60), deleted: false });
  expect(byId(split)).toEqual([
    [sharedAttachment, splitEmail, 'shared-new.pdf'],
    ['att-newer', splitEmail, 'newer.pdf'],
    ['att-older', splitEmail, 'older.pdf'],
  ]);
  expect(await db.getEmail(splitEmail.toUpperCase())).toBeNull();
}
