/** The version in package.json, read once (`connector --version`, the console's overview). */
import { readFileSync } from 'node:fs';

let version: string | null = null;

export function packageVersion(): string {
  if (version === null) {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version?: unknown };
    version = typeof pkg.version === 'string' ? pkg.version : 'unknown';
  }
  return version;
}
