/**
 * The Database conformance suite: every backend (SQLite, PostgreSQL, Airtable on its simulator) runs
 * these same tests. A backend is done when this suite passes. Backend-specific behaviour (concurrent
 * writers, a server stopped mid-test) is tested beside each backend, not here.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Database } from '../../src/db/database.ts';
import { noChanges } from '../../src/model.ts';
import { later, makeEmail, makeTask } from '../fixtures/records.ts';

export interface DatabaseUnderTest {
  db: Database;
  /** Drops what the test made and closes connections. */
  cleanup(): Promise<void>;
}

export interface ConformanceOptions {
  /** Largest text the backend stores whole (Airtable cuts at 100,000 characters with a marker). */
  maxTextLength?: number;
}

export function databaseConformance(name: string, make: () => Promise<DatabaseUnderTest>, options: ConformanceOptions = {}): void {
  describe(`Database conformance: ${name}`, () => {
    let under: DatabaseUnderTest;
    let db: Database;

    beforeEach(async () => {
      under = await make();
      db = under.db;
      await db.migrate();
    });

    afterEach(async () => {
      await under.cleanup();
    });

    it('creates a task, then updates it in place', async () => {
      const task = makeTask();
      expect(await db.upsertTask(task)).toEqual({ written: 1, stale: 0 });
      expect(await db.getTask(task.id)).toEqual(task);

      const updated = makeTask({ title: 'Renamed', status: 'completed', progress: 100, completedAt: later(task.updatedAt, 60), updatedAt: later(task.updatedAt, 60), tags: ['finance'] });
      expect(await db.upsertTask(updated)).toEqual({ written: 1, stale: 0 });
      expect(await db.getTask(task.id)).toEqual(updated);
      expect((await db.counts()).tasks).toBe(1);
    });

    it('creates an email with attachments, then updates it and replaces its attachments', async () => {
      const email = makeEmail();
      expect(await db.upsertEmail(email)).toEqual({ written: 1, stale: 0 });
      expect(await db.getEmail(email.id)).toEqual(email);

      const updated = makeEmail({
        labels: ['Billing', 'Done'],
        updatedAt: later(email.updatedAt, 30),
        attachments: [{ id: 'att-2', emailId: email.id, filename: 'second.png', mediaType: 'image/png', size: 5, url: null, storedPath: 'msg-1/att-2-second.png', sha256: 'a'.repeat(64) }],
      });
      await db.upsertEmail(updated);
      expect(await db.getEmail(email.id)).toEqual(updated);
      expect((await db.counts()).attachments).toBe(1);
    });

    it('replays are idempotent: the same write twice leaves one unchanged row', async () => {
      const task = makeTask();
      const email = makeEmail();
      for (let i = 0; i < 3; i++) {
        await db.upsertTask(task);
        await db.upsertEmail(email);
      }
      expect(await db.getTask(task.id)).toEqual(task);
      expect(await db.getEmail(email.id)).toEqual(email);
      expect(await db.counts()).toEqual({ tasks: 1, emails: 1, attachments: 1 });
    });

    it('skips and counts stale writes; equal times write again', async () => {
      const newer = makeTask({ title: 'newer', updatedAt: new Date('2026-11-05T00:00:00.000Z') });
      const older = makeTask({ title: 'older', updatedAt: new Date('2026-11-04T00:00:00.000Z') });
      await db.upsertTask(newer);
      expect(await db.upsertTask(older)).toEqual({ written: 0, stale: 1 });
      expect((await db.getTask(newer.id))?.title).toBe('newer');

      const same = makeTask({ title: 'same time, new title', updatedAt: newer.updatedAt });
      expect(await db.upsertTask(same)).toEqual({ written: 1, stale: 0 });
      expect((await db.getTask(newer.id))?.title).toBe('same time, new title');

      const newEmail = makeEmail({ subject: 'newer', updatedAt: new Date('2026-11-05T00:00:00.000Z') });
      await db.upsertEmail(newEmail);
      expect(await db.upsertEmail(makeEmail({ subject: 'older', updatedAt: new Date('2026-11-01T00:00:00.000Z') }))).toEqual({ written: 0, stale: 1 });
      expect((await db.getEmail(newEmail.id))?.subject).toBe('newer');
    });

    it('a batch keeps the newest record per id and counts the rest as stale', async () => {
      const base = makeTask();
      const result = await db.apply({
        ...noChanges(),
        tasks: [makeTask({ title: 'v2', updatedAt: later(base.updatedAt, 2) }), makeTask({ title: 'v1', updatedAt: later(base.updatedAt, 1) }), makeTask({ id: '1002', title: 'other' })],
        emails: [makeEmail({ id: 'msg-2' })],
      });
      expect(result.written).toBeGreaterThanOrEqual(3);
      expect((await db.getTask(base.id))?.title).toBe('v2');
      expect((await db.getTask('1002'))?.title).toBe('other');
      expect((await db.getEmail('msg-2'))?.id).toBe('msg-2');
    });

    it('deletes softly and undeletes on a newer write; an older write after the delete is stale', async () => {
      const task = makeTask();
      await db.upsertTask(task);
      const at = later(task.updatedAt, 100);
      expect(await db.markTaskDeleted(task.id, at)).toEqual({ written: 1, stale: 0 });
      const deleted = await db.getTask(task.id);
      expect(deleted).toMatchObject({ id: task.id, title: task.title, deleted: true, deletedAt: at });
      expect((await db.counts()).tasks).toBe(1);

      // Deleting again is a no-op.
      expect(await db.markTaskDeleted(task.id, later(at, 5))).toEqual({ written: 0, stale: 0 });
      expect((await db.getTask(task.id))?.deletedAt).toEqual(at);

      // A replay of an update made before the deletion must not bring the task back.
      expect(await db.upsertTask(makeTask({ updatedAt: later(task.updatedAt, 50) }))).toEqual({ written: 0, stale: 1 });
      expect((await db.getTask(task.id))?.deleted).toBe(true);

      // A restore in Teamwork (a newer, not-deleted version) clears the flags.
      const restored = makeTask({ status: 'reopened', updatedAt: later(at, 10) });
      await db.upsertTask(restored);
      expect(await db.getTask(task.id)).toEqual(restored);
    });

    it('a deletion older than the stored update is stale', async () => {
      const task = makeTask();
      await db.upsertTask(task);
      expect(await db.markTaskDeleted(task.id, later(task.updatedAt, -10))).toEqual({ written: 0, stale: 1 });
      expect((await db.getTask(task.id))?.deleted).toBe(false);
    });

    it('a record without a version never overwrites a stored row that has one (tasks and emails, single and batch)', async () => {
      const task = makeTask({ title: 'versioned' });
      await db.upsertTask(task);
      expect(await db.upsertTask(makeTask({ title: 'no version', updatedAt: null }))).toEqual({ written: 0, stale: 1 });
      expect(await db.getTask(task.id)).toEqual(task);
      // 12:00, then no version, then 10:00: the 10:00 one is older than what is stored, so 12:00 stays.
      expect(await db.upsertTask(makeTask({ title: 'older', updatedAt: later(task.updatedAt, -7200) }))).toEqual({ written: 0, stale: 1 });
      expect((await db.getTask(task.id))?.title).toBe('versioned');

      const email = makeEmail({ subject: 'versioned' });
      await db.upsertEmail(email);
      expect(await db.upsertEmail(makeEmail({ subject: 'no version', updatedAt: null, attachments: [] }))).toEqual({ written: 0, stale: 1 });
      expect(await db.getEmail(email.id)).toEqual(email);

      // In one batch too, in either order, and against a tombstone (its version is the deletion).
      const result = await db.apply({
        ...noChanges(),
        tasks: [makeTask({ id: '2001', title: 'v', updatedAt: new Date('2026-11-05T12:00:00.000Z') }), makeTask({ id: '2001', title: 'null', updatedAt: null })],
        emails: [makeEmail({ id: 'msg-9', subject: 'null', updatedAt: null }), makeEmail({ id: 'msg-9', subject: 'v', updatedAt: new Date('2026-11-05T12:00:00.000Z') })],
      });
      // A backend that decides in order writes the email twice (nothing stored, then a newer version); one
      // that keeps the newest per id first writes it once. Either way the versioned records win.
      expect(result.written + result.stale).toBe(4);
      expect(result.stale).toBeGreaterThanOrEqual(1);
      expect((await db.getTask('2001'))?.title).toBe('v');
      expect((await db.getEmail('msg-9'))?.subject).toBe('v');
      await db.markTaskDeleted('2002', new Date('2026-11-05T12:00:00.000Z'));
      expect(await db.upsertTask(makeTask({ id: '2002', updatedAt: null }))).toEqual({ written: 0, stale: 1 });
      expect((await db.getTask('2002'))?.deleted).toBe(true);
    });

    it('a stored row without a version (written before versions were required) is overwritten by any versioned write', async () => {
      await db.upsertTask(makeTask({ title: 'legacy', updatedAt: null }));
      expect((await db.getTask('1001'))?.title).toBe('legacy');
      const versioned = makeTask({ title: 'versioned', updatedAt: new Date('2000-01-01T00:00:00.000Z') });
      expect(await db.upsertTask(versioned)).toEqual({ written: 1, stale: 0 });
      expect(await db.getTask('1001')).toEqual(versioned);

      await db.upsertEmail(makeEmail({ subject: 'legacy', updatedAt: null }));
      const email = makeEmail({ subject: 'versioned', updatedAt: new Date('2000-01-01T00:00:00.000Z') });
      expect(await db.upsertEmail(email)).toEqual({ written: 1, stale: 0 });
      expect(await db.getEmail(email.id)).toEqual(email);
    });

    it('a replayed deletion older than a restore is skipped; the restored row stays', async () => {
      const task = makeTask();
      await db.upsertTask(task);
      const deletedAt = later(task.updatedAt, 60);
      await db.markTaskDeleted(task.id, deletedAt);
      const restored = makeTask({ status: 'reopened', updatedAt: later(deletedAt, 60) });
      await db.upsertTask(restored);
      expect(await db.apply({ ...noChanges(), deletedTasks: [{ id: task.id, at: deletedAt }] })).toEqual({ written: 0, stale: 1 });
      expect(await db.getTask(task.id)).toEqual(restored);

      const email = makeEmail();
      await db.upsertEmail(email);
      const emailRestored = makeEmail({ labels: ['Back'], updatedAt: later(email.updatedAt, 120) });
      await db.upsertEmail(emailRestored);
      expect(await db.markEmailDeleted(email.id, later(email.updatedAt, 60))).toEqual({ written: 0, stale: 1 });
      expect(await db.getEmail(email.id)).toEqual(emailRestored);
    });

    it('stores a tombstone for a deletion of an id never seen, and a later create does not resurrect older data', async () => {
      const at = new Date('2026-11-10T00:00:00.000Z');
      await db.markTaskDeleted('4242', at);
      expect(await db.getTask('4242')).toMatchObject({ id: '4242', deleted: true, deletedAt: at, title: null, assignees: [], tags: [] });
      expect(await db.upsertTask(makeTask({ id: '4242', updatedAt: new Date('2026-11-09T00:00:00.000Z') }))).toEqual({ written: 0, stale: 1 });

      await db.upsertEmail(makeEmail());
      await db.markEmailDeleted('msg-1', new Date('2026-11-04T00:00:00.000Z'));
      expect(await db.getEmail('msg-1')).toMatchObject({ deleted: true, deletedAt: new Date('2026-11-04T00:00:00.000Z') });
      await db.markEmailDeleted('never-seen', at);
      expect(await db.getEmail('never-seen')).toMatchObject({ id: 'never-seen', deleted: true, to: [], attachments: [] });
    });

    it('keeps unicode, large bodies and null fields exactly', async () => {
      const max = options.maxTextLength ?? Number.POSITIVE_INFINITY;
      const big = '€𝄞 тест 中文 '.repeat(90_000).slice(0, Math.min(1_000_000, max));
      const task = makeTask({
        title: 'Überprüfung 🚀 — “quotes” \' and "double" \\ backslash',
        description: big,
        priority: null,
        progress: null,
        projectId: null,
        projectName: null,
        tasklistId: null,
        tasklistName: null,
        assignees: [{ id: null, name: 'Zoë Ångström', email: null }],
        tags: ['日本語', 'emoji 🎉'],
        startDate: null,
        dueDate: null,
        estimateMinutes: null,
        createdAt: null,
        completedAt: null,
        createdBy: null,
        updatedBy: null,
        url: null,
      });
      await db.upsertTask(task);
      expect(await db.getTask(task.id)).toEqual(task);

      const email = makeEmail({ subject: 'Ünïcödé 件名 🙂', bodyHtml: `<p>${big}</p>`.slice(0, max), bodyText: big, fromName: null, preview: null, messageIdHeader: null, to: [{ name: null, address: 'x@example.com' }], attachments: [] });
      await db.upsertEmail(email);
      expect(await db.getEmail(email.id)).toEqual(email);
    });

    it('round-trips checkpoints and never moves them backwards', async () => {
      expect(await db.getCheckpoint('teamwork')).toBeNull();
      const first = { source: 'teamwork' as const, lastEventTime: new Date('2026-11-01T00:00:00.000Z'), lastCursor: 'page-3', updatedAt: new Date('2026-11-01T00:01:00.000Z') };
      await db.setCheckpoint(first);
      expect(await db.getCheckpoint('teamwork')).toEqual(first);

      await db.setCheckpoint({ ...first, lastEventTime: new Date('2026-10-01T00:00:00.000Z'), lastCursor: 'older' });
      expect(await db.getCheckpoint('teamwork')).toEqual(first);

      const second = { ...first, lastEventTime: new Date('2026-11-02T00:00:00.000Z'), lastCursor: null, updatedAt: new Date('2026-11-02T00:01:00.000Z') };
      await db.setCheckpoint(second);
      expect(await db.getCheckpoint('teamwork')).toEqual(second);
      expect(await db.getCheckpoint('missive')).toBeNull();
    });

    it('reports health', async () => {
      expect(await db.health()).toMatchObject({ ok: true, backend: db.backend });
    });
  });
}
