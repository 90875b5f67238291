// The agent's start path stays lean (issue 27: spawn → first API request): what the entry
// (src/cli/main.ts) reaches through static imports is what Node compiles and evaluates before the
// first lists go out. The bundle is built here as scripts/bundle.mjs builds it, with esbuild's
// metafile, and its static import graph is walked from main.js: the agent, the capabilities'
// dataplanes and the large libraries they use must be reachable only through a dynamic import.
import t from 'tap';
import { build, type Metafile } from 'esbuild';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bundleOptions } from '../../scripts/bundle.mjs';

/**
 * What the start must not reach statically: loaded after the first request by commands.ts (the agent,
 * its metrics, the dataplanes) or later (client-node, the ingress's certificate code). Each but yaml
 * is in the bundle, reached through a dynamic import; yaml (a dev dependency) is not in it at all.
 */
const OFF_THE_START_PATH: { what: string; inputs: RegExp; inBundle: boolean }[] = [
  { what: 'prom-client', inputs: /^node_modules\/prom-client\//, inBundle: true },
  { what: '@opentelemetry/api (prom-client imports it)', inputs: /^node_modules\/@opentelemetry\//, inBundle: true },
  { what: 'asn1js and @peculiar/asn1-* (the ingress\'s certificate)', inputs: /^node_modules\/(asn1js|@peculiar)\//, inBundle: true },
  { what: 'yaml', inputs: /^node_modules\/yaml\//, inBundle: false },
  { what: '@kubernetes/client-node', inputs: /^node_modules\/@kubernetes\/client-node\//, inBundle: true },
  { what: 'pino (nothing is logged before the first request)', inputs: /^node_modules\/pino\//, inBundle: true },
  { what: 'the commands (commands.ts)', inputs: /^src\/cli\/commands\.ts$/, inBundle: true },
  { what: 'the agent', inputs: /^src\/agent\/agent\.ts$/, inBundle: true },
  { what: 'the capabilities\' dataplanes', inputs: /^src\/(dns|ingress|gateway|socket-lb|services)\/dataplane\.ts$/, inBundle: true },
];

const bundle = async () => {
  const { metafile } = await build({ ...bundleOptions(join(tmpdir(), 'kubenft-start-path')), write: false, metafile: true, logLevel: 'silent' });
  return metafile;
};

/** The source files in the outputs `entry` reaches by static imports (the chunks Node loads with it), and by any import. */
function reachedInputs(metafile: Metafile, entry: string, staticOnly: boolean): Set<string> {
  const [main] = Object.entries(metafile.outputs).find(([, output]) => output.entryPoint === entry) ?? [];
  if (!main) throw new Error(`no output for ${entry}`);
  const seen = new Set<string>([main]);
  const pending = [main];
  for (let output = pending.pop(); output !== undefined; output = pending.pop()) {
    for (const { path, kind, external } of metafile.outputs[output].imports) {
      if (external || seen.has(path) || !(path in metafile.outputs)) continue;
      if (staticOnly && kind !== 'import-statement') continue;
      seen.add(path);
      pending.push(path);
    }
  }
  return new Set([...seen].flatMap((output) => Object.keys(metafile.outputs[output].inputs)));
}

t.test('the agent\'s start reaches none of what it loads after its first request', async (t) => {
  const metafile = await bundle();
  const startPath = reachedInputs(metafile, 'src/cli/main.ts', true);
  const everything = reachedInputs(metafile, 'src/cli/main.ts', false);
  t.ok(startPath.has('src/cli/options.ts') && startPath.has('src/cluster/api-lists.ts'), 'the walk sees the start path: the options and the first lists');
  for (const { what, inputs, inBundle } of OFF_THE_START_PATH) {
    // In the bundle but not on the start path: so the walk below can see it, were it imported statically.
    t.equal([...everything].some((input) => inputs.test(input)), inBundle, `${what} is ${inBundle ? '' : 'not '}in the bundle`);
    t.same([...startPath].filter((input) => inputs.test(input)), [], `${what}: not statically reachable from main.js`);
  }
});
