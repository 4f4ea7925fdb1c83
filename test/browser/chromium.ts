/**
 * Debian's Chromium, driven by playwright-core (which downloads no browser), for the console's browser
 * tests and its benchmark (bench/console/).
 *
 * Chromium starts with exactly the flags that work on this kind of machine (a closed network: without
 * the background-networking flags it keeps trying to reach Google) and a fresh profile in a temp dir:
 * `ignoreDefaultArgs` keeps Playwright's own defaults out; `--remote-debugging-pipe` is how Playwright
 * talks to it.
 *
 * Skip rule, as for the services (test/helpers/services.ts): without /usr/bin/chromium the browser tests
 * are skipped with one line saying so, except under CI=true, where they fail (`.ci/run` installs it).
 *
 * Screenshots go to CONSOLE_SCREENSHOTS_DIR, or a fresh temp folder whose path is printed.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium, type BrowserContext } from 'playwright-core';

export const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/** The flags, exactly (DEVELOPERS.md, the plan of issue 17). */
export const CHROMIUM_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'] as const;

/** Whether Chromium is here; throws under CI=true when it is not. */
export function requireChromium(): boolean {
  if (existsSync(CHROMIUM_PATH)) return true;
  if (process.env.CI === 'true') throw new Error(`Chromium is required under CI=true but missing at ${CHROMIUM_PATH} (.ci/run installs Debian's chromium)`);
  console.warn(`[tests] Chromium missing at ${CHROMIUM_PATH}; skipping the browser tests (apt-get install -y chromium). Set CI=true to fail instead.`);
  return false;
}

export interface Chromium {
  context: BrowserContext;
  /** Closes the browser and removes its profile. */
  close(): Promise<void>;
}

export async function launchChromium(): Promise<Chromium> {
  const profile = mkdtempSync(path.join(tmpdir(), 'conn-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM_PATH,
    ignoreDefaultArgs: true,
    args: [...CHROMIUM_FLAGS, `--user-data-dir=${profile}`, '--remote-debugging-pipe'],
    timeout: 30_000,
  });
  return {
    context,
    close: async () => {
      await context.close().catch(() => {});
      rmSync(profile, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
    },
  };
}

let shots: string | null = null;

/** The screenshots folder (made on first use; its path printed once). */
export function screenshotsDir(): string {
  if (shots !== null) return shots;
  const chosen = process.env.CONSOLE_SCREENSHOTS_DIR;
  if (chosen !== undefined && chosen !== '') {
    mkdirSync(chosen, { recursive: true });
    shots = chosen;
  } else {
    shots = mkdtempSync(path.join(tmpdir(), 'console-screenshots-'));
  }
  console.log(`[tests] console screenshots: ${shots}`);
  return shots;
}
