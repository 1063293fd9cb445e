import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // A native crash must stay inside one test file.
    pool: 'forks',
    globalSetup: ['test/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // CI sets TRIPDUMP_NO_SKIP=1: there every requirement is installed and a skipped test fails the run.
    reporters: process.env.TRIPDUMP_NO_SKIP === '1' ? ['default', './test/no-skip-reporter.ts'] : ['default'],
  },
});
