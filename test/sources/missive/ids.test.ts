/**
 * Missive ids have one spelling: a UUID in any case or with spaces around it is the same message or
 * conversation (issue 14, item 4), so it is one row and one entity key.
 */
import { describe, expect, it } from 'vitest';
import { Id, MissiveMessage } from '../../../src/sources/missive/payloads.ts';

describe('Missive Id', () => {
  it('is trimmed and lower-cased when a UUID; other ids are only trimmed; empty is refused', () => {
    const id = '0f3a6c2e-1b7d-4c88-9e2f-5a1b2c3d4e5f';
    for (const spelling of [id, id.toUpperCase(), ` ${id}\n`, `\t${id.toUpperCase()} `]) expect(Id.parse(spelling)).toBe(id);
    expect(Id.parse(' Msg-ABC ')).toBe('Msg-ABC');
    expect(Id.parse(42)).toBe('42');
    expect(Id.safeParse('   ').success).toBe(false);
    expect(MissiveMessage.parse({ id: id.toUpperCase() }).id).toBe(id);
  });
});
