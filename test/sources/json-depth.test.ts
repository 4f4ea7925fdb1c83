/**
 * The byte scanner that measures JSON nesting before anything parses a delivery (src/sources/json-depth.ts):
 * exact on valid JSON of any shape (checked against the parsed value), blind to brackets inside strings
 * (escapes included), and stopping early on a hostile body.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MAX_JSON_DEPTH, jsonDepth, jsonTooDeep } from '../../src/sources/json-depth.ts';

const bytes = (text: string) => Buffer.from(text, 'utf8');

/** The nesting of a parsed value, counted the slow way. */
function depthOf(value: unknown): number {
  if (typeof value !== 'object' || value === null) return 0;
  const children = Array.isArray(value) ? value : Object.values(value);
  return 1 + children.reduce<number>((max, child) => Math.max(max, depthOf(child)), 0);
}

describe('jsonDepth', () => {
  it('counts objects and arrays', () => {
    expect(jsonDepth(bytes('1'))).toBe(0);
    expect(jsonDepth(bytes('"x"'))).toBe(0);
    expect(jsonDepth(bytes('{}'))).toBe(1);
    expect(jsonDepth(bytes('{"a":[1,{"b":[]}],"c":{}}'))).toBe(4);
    expect(jsonDepth(bytes('[[],[[]],[]]'))).toBe(3);
  });

  it('ignores brackets inside strings, escaped quotes and backslashes included', () => {
    expect(jsonDepth(bytes('{"a":"[[[[{{{{"}'))).toBe(1);
    expect(jsonDepth(bytes('{"a":"\\"[[[[","b":"\\\\","c":[1]}'))).toBe(2);
    expect(jsonDepth(bytes('{"[[[":"}}}"}'))).toBe(1);
    expect(jsonDepth(bytes('{"a":"\\u005b\\\\\\"{"}'))).toBe(1);
  });

  it('reads multi-byte UTF-8 as it is', () => {
    expect(jsonDepth(bytes('{"é€😀":["日本",{"x":"[ü]"}]}'))).toBe(3);
  });

  it('stops once the limit is passed', () => {
    const deep = bytes(`${'['.repeat(100_000)}${']'.repeat(100_000)}`);
    expect(jsonDepth(deep)).toBe(100_000);
    expect(jsonDepth(deep, 10)).toBe(11);
    expect(jsonTooDeep(deep)).toBe(true);
  });

  it('takes MAX_JSON_DEPTH levels and refuses one more', () => {
    const nest = (n: number) => bytes(`${'{"a":'.repeat(n - 1)}{}${'}'.repeat(n - 1)}`);
    expect(jsonDepth(nest(MAX_JSON_DEPTH))).toBe(MAX_JSON_DEPTH);
    expect(jsonTooDeep(nest(MAX_JSON_DEPTH))).toBe(false);
    expect(jsonTooDeep(nest(MAX_JSON_DEPTH + 1))).toBe(true);
  });

  it('is exact on any JSON value, compact or pretty-printed (fixed seed)', () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 12 }), fc.boolean(), (value, pretty) => {
        const text = JSON.stringify(value, null, pretty ? 2 : undefined);
        expect(jsonDepth(bytes(text))).toBe(depthOf(JSON.parse(text)));
      }),
      { seed: 14, numRuns: 2_000 },
    );
  });

  it('measures a slice of a buffer', () => {
    const buf = bytes('xx[[[]]]yy{}');
    expect(jsonDepth(buf, undefined, 2, 8)).toBe(3);
    expect(jsonDepth(buf, undefined, 10, 12)).toBe(1);
  });
});
