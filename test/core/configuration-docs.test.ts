/**
 * docs/configuration.md lists exactly the settings of the schema, each once, with the default that
 * parseConfig({}) gives: a setting added, removed or given another default without the page fails here.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigSchema, parseConfig } from '../../src/config.ts';

const page = readFileSync(new URL('../../docs/configuration.md', import.meta.url), 'utf8');

/** Rows of the page's tables whose first cell names a variable: name -> the default cell. */
function documented(): Array<{ name: string; defaultCell: string; rule: string; meaning: string }> {
  const rows: Array<{ name: string; defaultCell: string; rule: string; meaning: string }> = [];
  for (const line of page.split('\n')) {
    const match = /^\| `([A-Z][A-Z0-9_]*)` \|(.*)\|$/.exec(line.trim());
    if (match === null) continue;
    const cells = (match[2] as string).split(' | ').map((c) => c.trim());
    rows.push({ name: match[1] as string, defaultCell: cells[0] ?? '', rule: cells[1] ?? '', meaning: cells[2] ?? '' });
  }
  return rows;
}

describe('docs/configuration.md', () => {
  it('lists every setting of the schema exactly once, and nothing else', () => {
    const names = documented().map((r) => r.name);
    expect(new Set(names).size, 'a variable is listed twice').toBe(names.length);
    expect([...names].sort()).toEqual(Object.keys(ConfigSchema.shape).sort());
  });

  it('gives each the default parseConfig({}) gives (or "unset"), a rule and a meaning', () => {
    const defaults = parseConfig({}) as unknown as Record<string, unknown>;
    for (const row of documented()) {
      const value = defaults[row.name];
      if (value === undefined) {
        expect(row.defaultCell, `${row.name} has no default`).toBe('unset');
      } else {
        const shown = /^`(.*)`$/.exec(row.defaultCell)?.[1];
        expect(shown, `${row.name}: the default cell is one code span`).toBeDefined();
        // Paths are resolved against the working directory when parsed.
        const expected = row.name === 'DATA_DIR' || row.name === 'LOG_DIR' ? path.resolve(shown as string) : shown;
        expect(String(value), `${row.name} default`).toBe(expected);
      }
      expect(row.rule.length, `${row.name} rule`).toBeGreaterThan(0);
      expect(row.meaning.length, `${row.name} meaning`).toBeGreaterThan(10);
    }
  });

  it('marks as SECRET exactly the settings that are never logged', async () => {
    const { SECRET_SETTINGS } = await import('../../src/config.ts');
    const marked = documented()
      .filter((r) => /\bSECRET\b/.test(r.rule))
      .map((r) => r.name)
      .sort();
    expect(marked).toEqual([...SECRET_SETTINGS].sort());
  });
});
