/**
 * Pure parts of the Airtable backend: cutting long text, key formulas and their grouping, the version
 * cache, reading error bodies.
 */
import { describe, expect, it } from 'vitest';
import { airtableErrorOf } from '../../src/db/airtable/airtable-client.ts';
import { MAX_FORMULA_LENGTH, MAX_IDS_PER_READ, keyFormula, keyGroups } from '../../src/db/airtable/airtable-database.ts';
import { cutText, filesFingerprint, versionFromRecord, type StoredVersion } from '../../src/db/airtable/schema.ts';
import { VersionCache } from '../../src/db/airtable/version-cache.ts';

describe('cutText', () => {
  it('keeps text up to the limit whole', () => {
    expect(cutText('abc', 3)).toBe('abc');
    const exactly = 'x'.repeat(100_000);
    expect(cutText(exactly)).toBe(exactly);
  });

  it('cuts longer text to exactly the limit, ending with how much was left out', () => {
    const cut = cutText('x'.repeat(100_001));
    expect(cut).toHaveLength(100_000);
    const kept = cut.indexOf('…');
    expect(cut.slice(kept)).toBe(`… [truncated by connector: ${100_001 - kept} characters omitted]`);
    expect(cut.slice(0, kept)).toBe('x'.repeat(kept));
  });

  it('never splits a surrogate pair', () => {
    for (let limit = 60; limit < 70; limit++) {
      const cut = cutText('😀'.repeat(100), limit);
      expect(cut.length).toBeLessThanOrEqual(limit);
      expect(() => encodeURIComponent(cut)).not.toThrow();
      const kept = cut.indexOf('…');
      expect(Number(/(\d+) characters omitted/.exec(cut)?.[1])).toBe(200 - kept);
    }
  });
});

describe('keyFormula', () => {
  it('matches one key, or any of several, escaping quotes and backslashes', () => {
    expect(keyFormula('Task ID', ['1'])).toBe("{Task ID}='1'");
    expect(keyFormula('Email ID', ['a', "it's", 'back\\slash'])).toBe("OR({Email ID}='a',{Email ID}='it\\'s',{Email ID}='back\\\\slash')");
  });
});

describe('keyGroups', () => {
  it('puts up to 100 ids in one read', () => {
    const ids = Array.from({ length: 250 }, (_, i) => String(i));
    const groups = keyGroups('Task ID', ids);
    expect(groups.map((g) => g.length)).toEqual([MAX_IDS_PER_READ, MAX_IDS_PER_READ, 50]);
    expect(groups.flat()).toEqual(ids);
    expect(keyGroups('Task ID', [])).toEqual([]);
  });

  it('keeps every formula within MAX_FORMULA_LENGTH characters, and a too-long id alone', () => {
    const ids = Array.from({ length: 100 }, (_, i) => `${i}-${'x'.repeat(300)}`);
    const groups = keyGroups('Email ID', ids);
    expect(groups.length).toBeGreaterThan(3);
    expect(groups.flat()).toEqual(ids);
    for (const group of groups) expect(keyFormula('Email ID', group).length).toBeLessThanOrEqual(MAX_FORMULA_LENGTH);
    const huge = 'y'.repeat(MAX_FORMULA_LENGTH);
    expect(keyGroups('Email ID', ['a', huge, 'b'])).toEqual([['a'], [huge], ['b']]);
  });
});

describe('VersionCache', () => {
  const version = (updatedAt: number): StoredVersion => ({ updatedAt, deleted: false, deletedAt: null, files: null });

  it('keeps tables apart and drops the least recently used past its capacity', () => {
    const cache = new VersionCache(3);
    cache.set('Tasks', '1', version(1));
    cache.set('Emails', '1', version(2));
    cache.set('Tasks', '2', version(3));
    expect(cache.get('Tasks', '1')).toEqual(version(1)); // now the most recently used
    cache.set('Tasks', '3', version(4));
    expect(cache.size).toBe(3);
    expect(cache.get('Emails', '1')).toBeUndefined();
    expect(cache.get('Tasks', '1')).toEqual(version(1));
    expect(cache.get('Tasks', '2')).toEqual(version(3));
    cache.set('Tasks', '2', version(5));
    expect(cache.get('Tasks', '2')).toEqual(version(5));
    cache.delete('Tasks', '2');
    expect(cache.get('Tasks', '2')).toBeUndefined();
    cache.clear();
    expect(cache.size).toBe(0);
  });

  it('remembers nothing with capacity 0 and refuses a negative one', () => {
    const cache = new VersionCache(0);
    cache.set('Tasks', '1', version(1));
    expect(cache.get('Tasks', '1')).toBeUndefined();
    expect(() => new VersionCache(-1)).toThrow(RangeError);
  });
});

describe('versionFromRecord', () => {
  it('reads times as epoch ms and fingerprints the stored files', () => {
    const attachments = [{ id: 'att-1', url: 'https://files.example/a' }, { id: 'att-2', url: null }];
    expect(versionFromRecord({ 'Updated At': '2026-11-02T10:00:00.000Z', Deleted: true, 'Deleted At': '2026-11-03T00:00:00.000Z', 'Attachment Details': JSON.stringify(attachments) })).toEqual({
      updatedAt: Date.parse('2026-11-02T10:00:00.000Z'),
      deleted: true,
      deletedAt: Date.parse('2026-11-03T00:00:00.000Z'),
      files: filesFingerprint(attachments),
    });
    expect(versionFromRecord({})).toEqual({ updatedAt: null, deleted: false, deletedAt: null, files: null });
    expect(filesFingerprint(attachments)).toBe(filesFingerprint([{ id: 'att-1', url: 'https://files.example/a' }]));
    expect(filesFingerprint(attachments)).not.toBe(filesFingerprint([{ id: 'att-1', url: 'https://files.example/b' }]));
    expect(filesFingerprint([{ id: 'a', url: `https://files.example/${'z'.repeat(5_000)}` }])).toHaveLength(43);
  });
});

describe('airtableErrorOf', () => {
  it('reads every error body shape Airtable uses', () => {
    expect(airtableErrorOf({ error: { type: 'UNKNOWN_FIELD_NAME', message: 'Unknown field name: "X"' } })).toEqual({ type: 'UNKNOWN_FIELD_NAME', message: 'Unknown field name: "X"' });
    expect(airtableErrorOf({ error: 'NOT_FOUND' })).toEqual({ type: 'NOT_FOUND', message: undefined });
    expect(airtableErrorOf({ errors: [{ error: 'RATE_LIMIT_REACHED', message: 'Rate limit exceeded. Please try again later' }] })).toEqual({ type: 'RATE_LIMIT_REACHED', message: 'Rate limit exceeded. Please try again later' });
    expect(airtableErrorOf('<html>502</html>')).toEqual({ type: undefined, message: undefined });
    expect(airtableErrorOf(null)).toEqual({ type: undefined, message: undefined });
  });
});
