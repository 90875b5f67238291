// The shipped agent: src/ bundled by esbuild into dist/bundle/, one file per program (the CLI, the
// cluster DNS worker thread, the ingress proxy's cluster worker) and chunks they share or load
// lazily (client-node only when the API is the source). Node's ES module loader resolves, reads
// and compiles each of the ~650 files the unbundled agent loads one at a time; in one file the
// start path is one read and one compile. Same-directory names keep `new URL('./server.js',
// import.meta.url)` and the proxy worker's path working, and projectRoot() finds package.json
// from dist/bundle/ as it does from dist/src/<folder>/.
import { build } from 'esbuild';
import { rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

/** esbuild's options for the bundle in `outdir`; test/unit/start-path.test.ts builds with the same. */
export const bundleOptions = (outdir) => ({
  absWorkingDir: root,
  entryPoints: ['src/cli/main.ts', 'src/dns/server.ts', 'src/ingress/proxy-worker.ts'],
  outdir,
  entryNames: '[name]',
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  sourcemap: 'linked',
  // ws's optional native helpers: absent, and ws works without them.
  external: ['bufferutil', 'utf-8-validate'],
  // CommonJS dependencies bundled into an ES module still call require() for Node's built-ins.
  banner: { js: "import { createRequire as __kubenftCreateRequire } from 'node:module'; const require = __kubenftCreateRequire(import.meta.url);" },
  logLevel: 'warning',
});

// Run as a script (npm run build), not imported for its options.
if (process.argv[1] && fileURLToPath(import.meta.url) === resolve(process.argv[1])) {
  const outdir = join(root, 'dist', 'bundle');
  rmSync(outdir, { recursive: true, force: true });
  await build(bundleOptions(outdir));
}
