import { describe, expect, it } from 'vitest';
import { generateMissiveData } from '../../simulators/generator/missive.ts';
import { createRandom } from '../../simulators/generator/random.ts';
import { generateTeamworkData } from '../../simulators/generator/teamwork.ts';

const ANCHOR = Date.UTC(2026, 10, 1, 12, 0, 0);

describe('seeded generator', () => {
  it('gives the same sequence for the same seed and a different one for another seed', () => {
    const a = createRandom('x');
    const b = createRandom('x');
    const c = createRandom('y');
    const seqA = Array.from({ length: 5 }, () => a.next());
    expect(Array.from({ length: 5 }, () => b.next())).toEqual(seqA);
    expect(Array.from({ length: 5 }, () => c.next())).not.toEqual(seqA);
    expect(createRandom(1).uuid()).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  });

  it('makes the same Teamwork site from the same seed and anchor', () => {
    const one = generateTeamworkData({ seed: 42, anchor: ANCHOR });
    expect(generateTeamworkData({ seed: 42, anchor: ANCHOR })).toEqual(one);
    expect(generateTeamworkData({ seed: 43, anchor: ANCHOR })).not.toEqual(one);
  });

  it('covers the Teamwork edge cases: subtasks, every status, unicode, long text, hidden work', () => {
    const data = generateTeamworkData({ seed: 42, anchor: ANCHOR });
    const statuses = new Set(data.tasks.map((t) => t.status));
    expect([...statuses].sort()).toEqual(['completed', 'deleted', 'new', 'reopened']);
    expect(data.tasks.some((t) => t.parentTaskId !== null)).toBe(true);
    expect(data.tasks.some((t) => t.assigneeUserIds.length === 0)).toBe(true);
    expect(data.tasks.some((t) => t.assigneeUserIds.length > 1)).toBe(true);
    expect(data.tasks.some((t) => (t.description?.length ?? 0) > 2_000)).toBe(true);
    expect(data.tasks.some((t) => t.description === null)).toBe(true);
    expect(data.tasks.some((t) => /[^ -~]/.test(t.name))).toBe(true);
    expect(data.users.some((u) => /[^ -~]/.test(u.firstName))).toBe(true);
    expect(data.projects.some((p) => p.status === 'archived')).toBe(true);
    expect(data.tasklists.some((l) => l.status === 'completed')).toBe(true);
    for (const t of data.tasks) {
      expect(t.updatedAt).toBeGreaterThanOrEqual(t.createdAt);
      expect(t.updatedAt).toBeLessThanOrEqual(ANCHOR);
      expect(t.updatedAt % 1000).toBe(0);
      if (t.dueDate !== null) expect(t.dueDate).toMatch(/^\d{4}-\d{2}-\d{2}$/);
    }
    for (const tag of data.tags) expect(tag.color).toMatch(/^[0-9a-f]{6}$/);
  });

  it('makes the same Missive organization from the same seed and anchor', () => {
    const one = generateMissiveData({ seed: 'abc', anchor: ANCHOR });
    expect(generateMissiveData({ seed: 'abc', anchor: ANCHOR })).toEqual(one);
    expect(generateMissiveData({ seed: 'abd', anchor: ANCHOR })).not.toEqual(one);
  });

  it('covers the Missive edge cases: threads, cc/bcc, null names, attachments, non-ASCII, trash, ties', () => {
    const data = generateMissiveData({ seed: 'abc', anchor: ANCHOR });
    const byId = new Map(data.messages.map((m) => [m.id, m]));
    expect(data.conversations.some((c) => c.messageIds.length > 2)).toBe(true);
    const replies = data.messages.filter((m) => m.inReplyTo.length > 0);
    expect(replies.length).toBeGreaterThan(0);
    for (const reply of replies) expect(reply.references.at(-1)).toBe(reply.inReplyTo[0]);
    expect(data.messages.some((m) => m.cc.length > 0)).toBe(true);
    expect(data.messages.some((m) => m.bcc.length > 0)).toBe(true);
    expect(data.messages.some((m) => m.from.name === null || m.to.some((a) => a.name === null))).toBe(true);
    expect(data.messages.some((m) => m.attachments.some((a) => /[^ -~]/.test(a.filename)))).toBe(true);
    expect(data.messages.some((m) => /[^ -~]/.test(m.subject ?? ''))).toBe(true);
    expect(data.messages.every((m) => /^<[^<>]+@[^<>]+>$/.test(m.emailMessageId))).toBe(true);
    expect(data.conversations.some((c) => Object.values(c.flags).every((f) => f.trashed))).toBe(true);
    const times = data.conversations.map((c) => c.lastActivityAt);
    expect(new Set(times).size).toBeLessThan(times.length); // some share a second: pagination ties
    for (const c of data.conversations) {
      const last = byId.get(c.messageIds.at(-1) as string);
      expect(last?.deliveredAt).toBe(c.lastActivityAt);
      expect(Number.isInteger(c.lastActivityAt)).toBe(true);
    }
  });
});
