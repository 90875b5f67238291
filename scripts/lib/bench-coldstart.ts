// Cold start at the kernel's limit (npm run bench -- --phases coldstart), side by side in one run:
//   limit:  kubenft's own netlink batches for N services × 3 endpoints, captured from the agent's
//           full sync and replayed by a minimal C sender (bench-replay.c, built here with cc) into
//           a fresh namespace: the kernel's cost of exactly that ruleset, nothing else;
//   full sync: the agent's full sync of the same state (state → commit) that produced them;
//   agent:  `kubenft --kubeconfig` against a local API server holding the N services, from the
//           process's start to the last VIP answering, split into start-up, list + decode, state,
//           plan, encode and kernel, with GC and RSS;
//   --once: `kubenft --manifests FILE --once` from a JSON and a YAML file, the same.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { projectRoot } from '../../src/kernel/native.js';
import { apiObjects } from './bench-coldstart-cluster.js';
import type { ColdstartRun, ColdstartTask, FullSyncCapture } from './bench-coldstart-types.js';
import { runChecked } from './bench-command.js';
import { runWorker, withScratchNamespace } from './bench-netns.js';
import { quantile } from './bench-stats.js';

const SIZES = [10_000, 100_000];
const QUICK_SIZES = [2_000];
/** Writing a YAML List of 100,000 services took 135 s: the YAML run stops here. */
const YAML_MAX_SERVICES = 10_000;
/** Full syncs and replays are short: the median of a few is worth its time. */
const REPEATS = 3;
const TIMEOUT_MS = 10 * 60_000;
/** The goals of issue 17, as multiples of the limit (the replay of the same batches). */
export const COLDSTART_TARGETS = { fullSync: 1.25, agent: 2, onceJson: 2, gcShare: 0.1, peakRssBytes: 400 * 2 ** 20, steadyRssBytes: 250 * 2 ** 20 };

export interface ColdstartSize {
  services: number;
  fullSyncs: FullSyncCapture[];
  /** Replays of the last capture's batches, each into a fresh namespace. */
  floorMs: number[];
  agent?: ColdstartRun;
  onceJson?: ColdstartRun;
  onceYaml?: ColdstartRun;
  failures: string[];
}

export interface ColdstartResults {
  sizes: ColdstartSize[];
}

const errorText = (error: unknown) => (error instanceof Error ? error.message : String(error));
export const median = (values: number[]) => quantile(values, 0.5);

function inScratchNamespace<T>(task: ColdstartTask): Promise<T> {
  return withScratchNamespace((namespace) => runWorker<T>(namespace, task, { timeoutMs: TIMEOUT_MS, program: 'bench-coldstart-worker' }));
}

async function buildReplay(directory: string): Promise<string> {
  const binary = join(directory, 'bench-replay');
  const flags = (await runChecked(['pkg-config', '--cflags', '--libs', 'libmnl'], { timeoutMs: 10_000 })).stdout.trim().split(/\s+/).filter(Boolean);
  await runChecked(['cc', '-O2', '-o', binary, join(projectRoot(), 'scripts', 'lib', 'bench-replay.c'), ...flags], { timeoutMs: 60_000 });
  return binary;
}

/** The manifests of `--once`: one List, as `kubectl get -o json` / `-o yaml` would print it. */
function writeManifests(directory: string, services: number): { json: string; yaml?: string } {
  const list = { apiVersion: 'v1', kind: 'List', metadata: {}, items: [...apiObjects(services)] };
  const json = join(directory, `cluster-${services}.json`);
  writeFileSync(json, JSON.stringify(list));
  if (services > YAML_MAX_SERVICES) return { json };
  const yaml = join(directory, `cluster-${services}.yaml`);
  writeFileSync(yaml, stringify(list));
  return { json, yaml };
}

async function measureSize(services: number, directory: string, replay: string, progress: (message: string) => void): Promise<ColdstartSize> {
  const size: ColdstartSize = { services, fullSyncs: [], floorMs: [], failures: [] };
  const attempt = async (what: string, work: () => Promise<void>) => {
    const started = performance.now();
    progress(`N=${services}: ${what} ...`);
    try {
      await work();
      progress(`N=${services}: ${what} done in ${((performance.now() - started) / 1000).toFixed(1)} s`);
    } catch (error) {
      size.failures.push(`${what}: ${errorText(error)}`);
      progress(`N=${services}: ${what} failed: ${errorText(error)}`);
    }
  };
  const batchesPath = join(directory, `batches-${services}.bin`);
  await attempt(`${REPEATS} full syncs, batches captured`, async () => {
    for (let repeat = 0; repeat < REPEATS; repeat++) size.fullSyncs.push(await inScratchNamespace<FullSyncCapture>({ kind: 'capture', services, batchesPath }));
  });
  if (size.fullSyncs.length === REPEATS) {
    await attempt(`${REPEATS} replays of the batches (the limit)`, async () => {
      for (let repeat = 0; repeat < REPEATS; repeat++) {
        const result = await withScratchNamespace((namespace) => runChecked(['ip', 'netns', 'exec', namespace, replay, batchesPath], { timeoutMs: TIMEOUT_MS }));
        size.floorMs.push((JSON.parse(result.stdout) as { ms: number }).ms);
      }
    });
  }
  await attempt('agent from the API server', async () => {
    size.agent = await inScratchNamespace<ColdstartRun>({ kind: 'agent', services, timeoutMs: TIMEOUT_MS });
  });
  let manifests: { json: string; yaml?: string } | undefined;
  await attempt('manifest files written (not timed)', async () => {
    manifests = writeManifests(directory, services);
  });
  if (manifests) {
    const { json, yaml } = manifests;
    await attempt('--once from JSON', async () => {
      size.onceJson = await inScratchNamespace<ColdstartRun>({ kind: 'once', services, manifestPath: json, timeoutMs: TIMEOUT_MS });
    });
    if (yaml) {
      await attempt('--once from YAML', async () => {
        size.onceYaml = await inScratchNamespace<ColdstartRun>({ kind: 'once', services, manifestPath: yaml, timeoutMs: TIMEOUT_MS });
      });
    }
  }
  return size;
}

export async function runColdstartBench(options: { quick: boolean; progress: (message: string) => void }): Promise<ColdstartResults> {
  const directory = mkdtempSync(join(tmpdir(), 'kubenft-bench-coldstart-'));
  try {
    const replay = await buildReplay(directory);
    const sizes: ColdstartSize[] = [];
    for (const services of options.quick ? QUICK_SIZES : SIZES) sizes.push(await measureSize(services, directory, replay, options.progress));
    return { sizes };
  } finally {
    rmSync(directory, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------
// Report

const seconds = (ms: number | undefined) => (ms === undefined ? '–' : (ms / 1000).toFixed(3));
const ms = (value: number | undefined) => (value === undefined ? '–' : value < 10 ? value.toFixed(1) : String(Math.round(value)));
const mb = (bytes: number | undefined) => (bytes === undefined ? '–' : String(Math.round(bytes / 2 ** 20)));
const percent = (part: number, whole: number) => `${Math.round((100 * part) / whole)}%`;

function ratioRow(what: string, valueMs: number | undefined, floorMs: number, target: number | undefined): string {
  if (valueMs === undefined) return `| ${what} | – | ${seconds(floorMs)} | – | ${target ? `≤ ${target}×` : '–'} |`;
  const ratio = valueMs / floorMs;
  const verdict = target === undefined ? '' : ratio <= target ? ' (met)' : ' (not met)';
  return `| ${what} | ${seconds(valueMs)} | ${seconds(floorMs)} | ${ratio.toFixed(2)}×${verdict} | ${target ? `≤ ${target}×` : '–'} |`;
}

function splitRow(what: string, run: ColdstartRun | undefined): string {
  if (!run) return `| ${what} | not run or failed |`;
  const split = run.split;
  const beforeLists = run.listedAtMs - run.stateMs;
  return [
    what,
    run.firstRequestMs === undefined ? '–' : ms(run.firstRequestMs),
    ms(beforeLists),
    ms(run.stateMs),
    split ? ms(split.planMs + split.recordMs) : '–',
    split ? ms(split.serializeMs + split.encodeMs) : '–',
    split ? ms(split.kernelMs) : '–',
    ms(run.syncMs),
    ms(run.vipMs),
    `${ms(run.gcMs)} (${percent(run.gcMs, run.vipMs)})`,
    mb(run.peakRssBytes),
    mb(run.steadyRssBytes),
  ].join(' | ').replace(/^/, '| ').replace(/$/, ' |');
}

export function coldstartReport(results: ColdstartResults): string {
  const lines = ['', '## Cold start at the kernel\'s limit (issue 17)', '',
    'The limit: kubenft\'s own netlink batches for the same ruleset, captured from its full sync and',
    'replayed by a minimal C sender into a fresh namespace (median of 3). Full sync: the agent\'s full sync',
    '(state → commit, median of 3). Agent: `kubenft --kubeconfig` against a local API server holding the',
    'services (list + watch), from the process\'s spawn to the last VIP answering. `--once`: from a manifest',
    'file (one List). Seconds.', ''];
  for (const size of results.sizes) {
    const floor = median(size.floorMs);
    lines.push(`### ${size.services.toLocaleString('en-US')} services × 3 endpoints`, '');
    if (size.floorMs.length > 0) {
      const fullSync = median(size.fullSyncs.map((sync) => sync.wallMs));
      lines.push('| figure | kubenft | limit | ratio | target |', '|---|---|---|---|---|');
      lines.push(ratioRow('full sync (state → commit)', fullSync, floor, COLDSTART_TARGETS.fullSync));
      lines.push(ratioRow('agent: start → last VIP answering (API list included)', size.agent?.vipMs, floor, COLDSTART_TARGETS.agent));
      lines.push(ratioRow('`--once`, JSON: start → last VIP answering', size.onceJson?.vipMs, floor, size.services <= 10_000 ? COLDSTART_TARGETS.onceJson : undefined));
      lines.push(ratioRow('`--once`, YAML: start → last VIP answering', size.onceYaml?.vipMs, floor, undefined), '');
      const last = size.fullSyncs.at(-1)!;
      lines.push(`Full sync split (last run; the steps overlap): plan ${ms(last.planMs)} ms, record ${ms(last.recordMs)} ms, serialize ${ms(last.serializeMs)} ms, encode ${ms(last.encodeMs)} ms, kernel ${ms(last.kernelMs)} ms; ${last.batches} batches, ${mb(last.bytes)} MB. Full syncs ${size.fullSyncs.map((sync) => seconds(sync.wallMs)).join(', ')} s; replays ${size.floorMs.map((value) => seconds(value)).join(', ')} s.`, '');
    }
    lines.push('| run | start-up (to the first API request) | start-up + list/read + decode | state | plan + record | serialize + encode | kernel | first sync | last VIP | GC (share) | peak RSS MB | steady RSS MB |',
      '|---|---|---|---|---|---|---|---|---|---|---|---|',
      splitRow('agent, API server', size.agent), splitRow('`--once`, JSON', size.onceJson), splitRow('`--once`, YAML', size.onceYaml), '');
    for (const failure of size.failures) lines.push(`- failed: ${failure}`);
  }
  return `${lines.join('\n')}\n`;
}
