import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    reporters: ['default', 'json'],
    outputFile: { json: 'test-results.json' },
    pool: 'forks',
    // Two cores: PGlite is CPU-bound, more workers only thrash.
    poolOptions: { forks: { maxForks: 2, minForks: 1 } },
  },
});
