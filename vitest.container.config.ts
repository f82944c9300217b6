// scripts/container-test.sh: the image built by a real Docker engine, run against the
// PostgreSQL at DATABASE_URL and a real SMTP peer. Not part of `npm test`: it needs an engine
// and an image built beforehand (ASSENT_IMAGE).
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/container/**/*.test.ts'],
    globalSetup: ['test/helpers/global-setup.ts'],
    testTimeout: 240_000,
    hookTimeout: 120_000,
    pool: 'forks',
  },
});
