/** Pure parts of the Airtable backend: cutting long text, key formulas, reading error bodies. */
import { describe, expect, it } from 'vitest';
import { airtableErrorOf } from '../../src/db/airtable/airtable-client.ts';
import { keyFormula } from '../../src/db/airtable/airtable-database.ts';
import { cutText } from '../../src/db/airtable/schema.ts';

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

describe('airtableErrorOf', () => {
  it('reads every error body shape Airtable uses', () => {
    expect(airtableErrorOf({ error: { type: 'UNKNOWN_FIELD_NAME', message: 'Unknown field name: "X"' } })).toEqual({ type: 'UNKNOWN_FIELD_NAME', message: 'Unknown field name: "X"' });
    expect(airtableErrorOf({ error: 'NOT_FOUND' })).toEqual({ type: 'NOT_FOUND', message: undefined });
    expect(airtableErrorOf({ errors: [{ error: 'RATE_LIMIT_REACHED', message: 'Rate limit exceeded. Please try again later' }] })).toEqual({ type: 'RATE_LIMIT_REACHED', message: 'Rate limit exceeded. Please try again later' });
    expect(airtableErrorOf('<html>502</html>')).toEqual({ type: undefined, message: undefined });
    expect(airtableErrorOf(null)).toEqual({ type: undefined, message: undefined });
  });
});
