import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    globalSetup: ["test/global-setup.ts"],
    include: ["test/**/*.test.ts"],
    // Vitest runs CPUs - 1 workers: one on the 2-core machines here. Many files mostly wait on
    // timers and sockets, so two workers halve the wall time without starving each other.
    maxWorkers: 2,
    testTimeout: 20_000,
    hookTimeout: 20_000,
  },
});
