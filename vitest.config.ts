import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts', 'simulators/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    pool: 'forks',
    // Tests that spawn the connector or kill processes need the whole machine less often than not;
    // two cores here, so keep file parallelism modest.
    maxWorkers: 2,
  },
});
