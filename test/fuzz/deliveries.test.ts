/**
 * The fuzz suite of issue 14: signed and unsigned deliveries of every shape (deliveries.ts) to both
 * webhook endpoints of the real connector running in this process (world.ts), with webhook secrets
 * configured and without them under WEBHOOKS_ALLOW_UNSIGNED=true (without secrets and that opt-out
 * every delivery is refused: nothing to fuzz past the door). What must hold (runner.ts has the exact rules):
 * - no answer is a 5xx, and nothing uncaught (exception or rejection) happens;
 * - with secrets set, a delivery not signed correctly is refused and enqueues nothing; a 200 says how
 *   many events it enqueued, and one without events carries a note;
 * - every event of a 200 is done within a bound and ends as its row or a dead letter naming its cause;
 * - after each batch, a normal signed delivery of each vendor is processed into its row;
 * - heap growth over the whole run stays under a bound.
 *
 * Settings: FUZZ_SEED (default fixed, printed on failure), FUZZ_RUNS (cases in all, half with secrets
 * and half with WEBHOOKS_ALLOW_UNSIGNED=true; default 3,000; `npm run test:fuzz` runs 100,000), FUZZ_BATCH (cases sent
 * before each drain, default 25), FUZZ_HEAP_MB (the heap bound, default 48), FUZZ_SHRINK_SECONDS (time
 * given to shrinking each failing property, default 60).
 *
 * A failing property is replayed from the first run that broke it, on a fresh connector, and shrunk by
 * fast-check; the test's error is the minimal case, its seed and path.
 */
import v8 from 'node:v8';
import vm from 'node:vm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { collectPass, kindOf, PROPERTIES, shrinkFailure, type PassResult, type PropertyId } from './runner.ts';

const SEED = Number(process.env.FUZZ_SEED ?? 1414);
/** Cases per secrets setting: half of FUZZ_RUNS each. */
const RUNS = Math.ceil(Number(process.env.FUZZ_RUNS ?? 3000) / 2);
const BATCH = Number(process.env.FUZZ_BATCH ?? 25);
const HEAP_BOUND_MB = Number(process.env.FUZZ_HEAP_MB ?? 48);
const SHRINK_MS = Number(process.env.FUZZ_SHRINK_SECONDS ?? 60) * 1000;
/** Kinds of failure of one property shrunk and shown. */
const MAX_KINDS = 4;
/** Rough cost of a case on a loaded 2-core machine, for the tests' own timeouts. */
const PASS_TIMEOUT_MS = 60_000 + RUNS * 40;

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

function heapMb(): number {
  gc();
  gc();
  return process.memoryUsage().heapUsed / 2 ** 20;
}

for (const secrets of [true, false]) {
  describe(`fuzzed deliveries to both endpoints, ${secrets ? 'with webhook secrets' : 'with WEBHOOKS_ALLOW_UNSIGNED=true'} (FUZZ_SEED=${SEED}, ${RUNS} cases)`, () => {
    const seed = SEED + (secrets ? 0 : 1);
    let result: PassResult;
    const uncaught: string[] = [];
    const heap: { warm?: number; end?: number } = {};
    const onUncaught = (err: unknown) => void uncaught.push(`uncaught exception: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    const onRejection = (err: unknown) => void uncaught.push(`unhandled rejection: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);

    beforeAll(async () => {
      process.on('uncaughtException', onUncaught);
      process.on('unhandledRejection', onRejection);
      result = await collectPass({ secrets, seed, runs: RUNS, batch: BATCH, onCheckpoint: (when) => void (heap[when] = heapMb()) });
      const byProperty = Object.entries(PROPERTIES).map(([id]) => `${id}: ${result.failures.filter((f) => f.property === id).length}`);
      console.info(
        `fuzz (${secrets ? 'secrets' : 'WEBHOOKS_ALLOW_UNSIGNED'}, FUZZ_SEED=${seed}): ${result.cases} cases, ${result.events} events, ${result.batches} batches in ${(result.ms / 1000).toFixed(1)} s; ` +
          `answers ${JSON.stringify(result.statuses)}; failures ${byProperty.join(', ')}; worlds rebuilt ${result.rebuilds}; heap ${heap.warm?.toFixed(1)} -> ${heap.end?.toFixed(1)} MB`,
      );
    }, PASS_TIMEOUT_MS);

    afterAll(() => {
      process.off('uncaughtException', onUncaught);
      process.off('unhandledRejection', onRejection);
    });

    const properties = Object.keys(PROPERTIES) as PropertyId[];
    for (const property of properties) {
      if (!secrets && property === 'unsigned-refused') continue;
      it(PROPERTIES[property], async () => {
        const failures = result.failures.filter((f) => f.property === property);
        if (failures.length === 0) return;
        // One shrunk counterexample per kind of failure (up to MAX_KINDS), from the first run that showed
        // it; a batch-level failure names the runs of its batch, the likeliest culprits first.
        const kinds = new Map<string, typeof failures>();
        for (const f of failures) kinds.set(kindOf(f), [...(kinds.get(kindOf(f)) ?? []), f]);
        const shown = [...kinds].slice(0, MAX_KINDS);
        const reports: string[] = [];
        for (const [kind, ofKind] of shown) {
          const candidates = [...new Set(ofKind.flatMap((f) => f.runs))].slice(0, 6);
          const report = await shrinkFailure({ secrets, seed, runs: RUNS, property, candidates, timeLimitMs: SHRINK_MS / shown.length });
          const first = ofKind.slice(0, 2).map((f) => `    run ${f.runs[0]}: ${f.message.slice(0, 500)}`).join('\n');
          reports.push(
            `- ${ofKind.length} x "${kind}"\n` +
              `${report ?? 'No single case reproduces it on a fresh connector (it needs the cases before it).'}\n` +
              `  As first seen in the pass:\n${first}`,
          );
        }
        throw new Error(
          `${failures.length} failure(s) of "${PROPERTIES[property]}" in ${result.cases} cases (FUZZ_SEED=${seed}), ${kinds.size} kind(s):\n` +
            `${[...kinds].map(([k, v]) => `  ${v.length} x ${k}`).join('\n')}\n\n${reports.join('\n\n')}`,
        );
      }, SHRINK_MS + 60_000);
    }

    it('nothing uncaught: no exception or rejection escapes', () => {
      expect(uncaught.slice(0, 5)).toEqual([]);
    });

    it(`heap growth over the run stays under ${HEAP_BOUND_MB} MB`, () => {
      expect(heap.warm).toBeTypeOf('number');
      expect(heap.end).toBeTypeOf('number');
      expect((heap.end as number) - (heap.warm as number)).toBeLessThan(HEAP_BOUND_MB);
    });
  });
}
