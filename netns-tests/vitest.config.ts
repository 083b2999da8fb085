import { defineConfig } from "vitest/config";

// Namespace tests share kernel state (interfaces, the multicast port), so they run one file at a time.
export default defineConfig({
  test: {
    globalSetup: ["test/global-setup.ts"],
    include: ["netns-tests/**/*.test.ts"],
    fileParallelism: false,
    testTimeout: 180_000,
    hookTimeout: 60_000,
  },
});
