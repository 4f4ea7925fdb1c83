/**
 * The backfill progress view: one line rewritten in place on a terminal (bar, counts, rate, never
 * wider than the terminal), one plain line per page elsewhere.
 */
import { describe, expect, it } from 'vitest';
import { BackfillProgressView } from '../../src/admin/progress.ts';
import { formatDuration, table } from '../../src/admin/render.ts';

function output(isTTY: boolean, columns = 120) {
  const writes: string[] = [];
  return { out: { isTTY, columns, write: (text: string) => writes.push(text) }, writes };
}

const since = new Date('2026-01-01T00:00:00Z');
const DAY = 24 * 3600 * 1000;

describe('BackfillProgressView', () => {
  it('on a TTY rewrites one line with \\r: a bar of the time window covered, counts and rate', () => {
    let now = since.getTime() + 10 * DAY;
    const { out, writes } = output(true);
    const view = new BackfillProgressView(out, { now: () => now, redrawMs: 0, barWidth: 10 });
    view.start('teamwork', since);
    now += 2_000;
    view.page({ source: 'teamwork', pages: 3, events: 1_500, newestUpdate: new Date(since.getTime() + 5 * DAY), startedAt: 0 });
    view.end();
    expect(writes.at(-1)).toBe('\n');
    const frames = writes.slice(0, -1);
    expect(frames.every((f) => f.startsWith('\r\x1b[K') && !f.includes('\n'))).toBe(true);
    expect(frames.at(-1)).toBe('\r\x1b[Kteamwork [#####-----]  50%  1,500 events  750/s  3 pages  2.0 s  through 2026-01-06T00:00Z');
  });

  it('reads 100% once the source is done, though its newest item is older than the start of the run', () => {
    let now = since.getTime() + 10 * DAY;
    const { out, writes } = output(true);
    const view = new BackfillProgressView(out, { now: () => now, redrawMs: 0, barWidth: 10 });
    view.start('missive', since);
    now += 1_000;
    view.page({ source: 'missive', pages: 1, events: 10, newestUpdate: new Date(since.getTime() + 10 * DAY - 60_000), startedAt: 0 });
    view.done();
    expect(writes.at(-1)).toBe('\n');
    expect(writes.at(-2)).toContain('[##########] 100%');
    expect(writes.slice(0, -2).some((f) => f.includes(' 99%'))).toBe(true);
  });

  it('shows a moving marker when the share is unknown, redraws at most every redrawMs, and fits the terminal', () => {
    let now = 1_000_000;
    const { out, writes } = output(true, 40);
    const view = new BackfillProgressView(out, { now: () => now, redrawMs: 100 });
    view.start('missive', since);
    view.page({ source: 'missive', pages: 1, events: 50, newestUpdate: null, startedAt: 0 });
    expect(writes).toHaveLength(1); // within redrawMs of the first frame
    now += 150;
    view.page({ source: 'missive', pages: 2, events: 100, newestUpdate: null, startedAt: 0 });
    expect(writes).toHaveLength(2);
    expect(writes[1]).toContain('<=>');
    expect((writes[1] as string).replace('\r\x1b[K', '').length).toBeLessThanOrEqual(39);
  });

  it('elsewhere prints one plain line per page and no terminal codes', () => {
    let now = 0;
    const { out, writes } = output(false);
    const view = new BackfillProgressView(out, { now: () => now });
    view.start('teamwork', since);
    now = 500;
    view.page({ source: 'teamwork', pages: 1, events: 1, newestUpdate: null, startedAt: 0 });
    view.end();
    expect(writes).toEqual(['teamwork: backfill from 2026-01-01T00:00:00.000Z\n', 'teamwork: 1 event, 2/s, 1 page, 500 ms\n']);
  });
});

describe('render helpers', () => {
  it('formats durations and aligns tables', () => {
    expect([850, 12_340, 245_000, 3 * 3600_000 + 12 * 60_000, 2 * DAY + 4 * 3600_000].map(formatDuration)).toEqual(['850 ms', '12.3 s', '4m 05s', '3h 12m', '2d 4h']);
    expect(table([['a', 'bb', 'c'], ['ccc', 'd', '']])).toEqual(['a    bb  c', 'ccc  d']);
  });
});
