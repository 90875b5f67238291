#!/usr/bin/env node
import { watch } from 'node:fs';
import { hostname } from 'node:os';
import { parseArgs } from 'node:util';
import { NftablesBackend } from './backend/nftables.js';
import { DEFAULT_PROXY_CONFIG, type ProxyConfig } from './config.js';
import { planRuleset } from './plan/planner.js';
import { rulesetJson } from './plan/render-json.js';
import { rulesetText } from './plan/render-text.js';
import { readManifests } from './source/manifests.js';
import { loadState } from './state/load.js';
import { parseCIDR } from './state/normalize.js';
import { allServicePortViews } from './state/service-ports.js';

const USAGE = `Usage:
  kubenft --manifests PATH [--once]     program this network namespace from Service/EndpointSlice manifests
  kubenft render --manifests PATH [--json]   print the ruleset that would be loaded, touching nothing
  kubenft --cleanup                     remove everything kubenft loaded in this network namespace

Options:
  --manifests PATH            a YAML/JSON file (multi-document or kind: List) or a directory of them
  --once                      sync once and exit (default: keep running, re-sync when PATH changes)
  --hostname-override NAME    this node's name (default: the hostname)
  --cluster-cidr CIDR         pod network; traffic to services from outside it is masqueraded (comma-separated)
  --cleanup                   delete kubenft's tables and exit
  --json                      with render: the libnftables JSON schema instead of nft syntax
  -h, --help                  this text
`;

const OPTIONS = {
  manifests: { type: 'string' },
  once: { type: 'boolean' },
  'hostname-override': { type: 'string' },
  'cluster-cidr': { type: 'string' },
  cleanup: { type: 'boolean' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

type Options = ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true }>>['values'];

function proxyConfig(options: Options): ProxyConfig {
  const cidrs = options['cluster-cidr'] ? options['cluster-cidr'].split(',').map((cidr) => parseCIDR(cidr.trim(), '--cluster-cidr')) : [];
  return { ...DEFAULT_PROXY_CONFIG, nodeName: options['hostname-override'] ?? hostname(), localCIDRs: cidrs };
}

/** Reads the manifests and plans; reports every skipped object on stderr. */
async function planFromManifests(path: string, options: Options) {
  const manifests = await readManifests(path);
  const config = proxyConfig(options);
  const { state, errors } = loadState(manifests.objects, config.nodeName);
  for (const problem of manifests.problems) process.stderr.write(`kubenft: skipped part of ${problem.file}: ${problem.reason}\n`);
  for (const error of errors) process.stderr.write(`kubenft: skipped ${error.message}\n`);
  const ruleset = planRuleset(allServicePortViews(state), config);
  return { ruleset, state, skipped: manifests.problems.length + errors.length };
}

async function syncOnce(backend: NftablesBackend, path: string, options: Options): Promise<number> {
  const started = performance.now();
  const { ruleset, state, skipped } = await planFromManifests(path, options);
  await backend.replace(ruleset);
  const summary = { mode: 'nftables', services: state.services.size, endpoints: state.endpointCount, syncMs: Math.round((performance.now() - started) * 100) / 100 };
  process.stdout.write(`${JSON.stringify(summary)}\n`);
  return skipped > 0 ? 1 : 0;
}

/** Re-syncs whenever the manifests change; a failed sync keeps the last good ruleset loaded. */
function keepSyncing(backend: NftablesBackend, path: string, options: Options): void {
  let timer: NodeJS.Timeout | undefined;
  let running = Promise.resolve();
  const sync = () => {
    running = running.then(() => syncOnce(backend, path, options).then(() => undefined, reportFailure));
  };
  watch(path, { recursive: false }, () => {
    clearTimeout(timer);
    // Editors write files in several steps: wait for the burst to settle.
    timer = setTimeout(sync, 200);
  });
  sync();
}

function reportFailure(error: unknown): void {
  process.stderr.write(`kubenft: ${(error as Error).message}\n`);
}

export async function main(argv: string[]): Promise<number> {
  const { values: options, positionals } = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
  const command = positionals[0] ?? 'run';
  if (options.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (command === 'render') {
    if (!options.manifests) throw new Error('render needs --manifests PATH');
    const { ruleset, skipped } = await planFromManifests(options.manifests, options);
    process.stdout.write(options.json ? `${JSON.stringify(rulesetJson(ruleset))}\n` : rulesetText(ruleset));
    return skipped > 0 ? 1 : 0;
  }
  if (command !== 'run' || positionals.length > 1) throw new Error(`unknown command ${JSON.stringify(positionals.join(' '))}`);
  const backend = new NftablesBackend();
  if (options.cleanup) {
    await backend.cleanup();
    return 0;
  }
  if (!options.manifests) throw new Error('nothing to do: give --manifests PATH (or --cleanup); see --help');
  if (options.once) return syncOnce(backend, options.manifests, options);
  keepSyncing(backend, options.manifests, options);
  return new Promise<number>((resolve) => {
    for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, () => resolve(0));
  });
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: Error) => {
    process.stderr.write(`kubenft: ${error.message}\n`);
    process.exit(2);
  },
);
