import { defineConfig } from 'vitest/config';

// Relative asset paths: the same build works at /_kith/ (served by kith) and at the root
// of the desktop app's window.
export default defineConfig({
  base: './',
  build: { outDir: 'dist', emptyOutDir: true, chunkSizeWarningLimit: 300 },
  test: { environment: 'jsdom', globals: true, include: ['src/**/*.test.{ts,tsx}'] },
});
