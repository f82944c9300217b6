// `npm run soak`: the long reliability runs under test/soak, on the same PostgreSQL set-up as
// the main suite (embedded, or DATABASE_URL). SOAK_SECONDS sets how long the load lasts.
import { defineConfig } from 'vitest/config';

const seconds = Number(process.env.SOAK_SECONDS ?? 600);

export default defineConfig({
  test: {
    include: ['test/soak/**/*.test.ts'],
    globalSetup: ['test/helpers/global-setup.ts'],
    // the load itself, then up to five minutes to drain the queues and check every row
    testTimeout: (seconds + 300) * 1000,
    hookTimeout: 120_000,
    pool: 'forks',
  },
});
