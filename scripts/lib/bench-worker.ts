// One measurement, run inside a network namespace the orchestrator created:
//   ip netns exec NS node dist/scripts/lib/bench-worker.js '<WorkerTask as JSON>'
// prints its result as one JSON document on stdout. A fresh process per measurement keeps the
// figures (and the memory reading) free of what earlier runs left in the heap.
import { IptablesBackend } from '../../src/services/iptables-backend.js';
import type { SyncTimings } from '../../src/kernel/nftables.js';
import { JUMP_RULES, planIptables, iptablesRestoreInput, savedJumpRule } from '../../src/services/iptables-plan.js';
import { planRuleset } from '../../src/services/nftables-plan.js';
import type { ClusterState } from '../../src/cluster/cluster-state.js';
import { allServicePortViews } from '../../src/cluster/service-ports.js';
import { BENCH_CONFIG, POD_CIDR, benchServiceKey, buildClusterState, endpointChange } from './bench-cluster.js';
import { assertInScratchNamespace } from './bench-netns.js';
import { killRunningCommands, runChecked, runCommand } from './bench-command.js';
import { PARTIAL_SYNC_CONFIGS } from './bench-partial-sync.js';
import { NftablesProxier, servicesBackend } from '../../src/services/nftables-proxier.js';
import { NftablesDataplane } from '../../src/services/dataplane.js';
import type {
  ColdResult, Dataplane, IncrementalResult, IncrementalSample, IptablesFlavor, KubenftSplit, LoadResult, MemoryResult, WorkerTask,
} from './bench-types.js';
import { upstreamNftablesText } from './bench-upstream-nft.js';

const RESTORE_TIMEOUT_MS = 600_000;
/** kube-proxy's default --min-sync-period, which kubenft shares. */
const MIN_SYNC_PERIOD_MS = 1000;

const nftablesBackend = () => servicesBackend(BENCH_CONFIG.tableName);
const iptablesFlavor = (dataplane: Dataplane): IptablesFlavor => (dataplane === 'iptables-legacy' ? 'legacy' : 'nft');

function timed<T>(work: () => T): { value: T; ms: number } {
  const started = performance.now();
  const value = work();
  return { value, ms: performance.now() - started };
}

function kubenftSplit(report: SyncTimings & { planMs: number; recordMs?: number }): KubenftSplit {
  const { planMs, recordMs = 0, serializeMs, encodeMs, kernelMs, messages, bytes } = report;
  return { planMs, recordMs, serializeMs, encodeMs, kernelMs, messages, bytes };
}

/** The agent's full sync (NftablesProxier): planning and loading, overlapped as the agent does. */
async function coldKubenft(services: number): Promise<ColdResult> {
  const { value: state, ms: ingestMs } = timed(() => buildClusterState(services));
  const started = performance.now();
  const result = await new NftablesProxier(nftablesBackend()).sync(state, BENCH_CONFIG, 'full');
  const wallMs = performance.now() - started;
  return { wallMs, ingestMs, planMs: result.planMs, loadMs: wallMs - result.planMs, split: kubenftSplit(result) };
}

function iptablesPlanInput(state: ClusterState): string {
  return iptablesRestoreInput(planIptables(allServicePortViews(state), BENCH_CONFIG, 4));
}

async function coldIptablesRestore(flavor: IptablesFlavor, services: number): Promise<ColdResult> {
  const { value: state, ms: ingestMs } = timed(() => buildClusterState(services));
  const { value: input, ms: planMs } = timed(() => iptablesPlanInput(state));
  const restore = await runChecked([`iptables-${flavor}-restore`, '--noflush'], { input, timeoutMs: RESTORE_TIMEOUT_MS });
  return { wallMs: planMs + restore.wallMs, ingestMs, planMs, loadMs: restore.wallMs };
}

/** kubenft --proxy-mode=iptables: the backend also saves, and checks the input with --test first. */
async function coldIptablesBackend(flavor: IptablesFlavor, services: number): Promise<ColdResult> {
  const { value: state, ms: ingestMs } = timed(() => buildClusterState(services));
  const { ms: planMs } = timed(() => iptablesPlanInput(state)); // for the split only
  const started = performance.now();
  await new IptablesBackend({ backend: flavor }).replace(allServicePortViews(state), BENCH_CONFIG);
  const wallMs = performance.now() - started;
  return { wallMs, ingestMs, planMs, loadMs: wallMs - planMs };
}

async function coldUpstreamNft(services: number, timeoutMs: number): Promise<ColdResult> {
  const { value: state, ms: ingestMs } = timed(() => buildClusterState(services));
  const { value: text, ms: planMs } = timed(() => upstreamNftablesText(allServicePortViews(state), POD_CIDR));
  // As knftables does: the whole transaction on nft's stdin.
  const load = await runCommand(['nft', '-f', '-'], { input: text, timeoutMs });
  if (load.timedOut) return { wallMs: planMs + load.wallMs, ingestMs, planMs, loadMs: load.wallMs, timedOut: true };
  if (load.code !== 0) throw new Error(`nft -f exited ${load.code}: ${load.stderr.trim().slice(0, 500)}`);
  return { wallMs: planMs + load.wallMs, ingestMs, planMs, loadMs: load.wallMs };
}

/** A sync after `state` changed; resolves with kubenft's split and cleanup time when there are. */
type ChangeSync = (state: ClusterState, changed: Set<string>) => Promise<{ split?: KubenftSplit; cleanupMs?: number }>;

async function incremental(implementation: WorkerTask & { kind: 'incremental' }): Promise<IncrementalResult> {
  const { services, changes } = implementation;
  const state = buildClusterState(services);
  const changedIndex = Math.floor(services / 2);
  const initialStarted = performance.now();
  let syncChange: ChangeSync;
  if (implementation.implementation === 'proxier' || implementation.implementation === 'proxier-one-service-table') {
    const proxier = new NftablesProxier(nftablesBackend());
    const config = PARTIAL_SYNC_CONFIGS[implementation.implementation](BENCH_CONFIG);
    await proxier.sync(state, config, 'full');
    syncChange = async (current, changed) => {
      const result = await proxier.sync(current, config, changed);
      return { split: kubenftSplit(result), cleanupMs: result.cleanupMs };
    };
  } else if (implementation.implementation === 'kubenft') {
    throw new Error('kubenft incremental runs name a proxier configuration (proxier, proxier-one-service-table)');
  } else {
    // iptables-restore has no partial mode: every change is a full restore, as in kube-proxy.
    const backend = new IptablesBackend({ backend: iptablesFlavor(implementation.implementation) });
    await backend.replace(allServicePortViews(state), BENCH_CONFIG);
    syncChange = async (current) => {
      await backend.replace(allServicePortViews(current), BENCH_CONFIG);
      return {};
    };
  }
  const initialSyncMs = performance.now() - initialStarted;
  const samples: IncrementalSample[] = [];
  for (let change = 0; change < changes; change++) {
    const started = performance.now();
    state.apply(endpointChange(changedIndex, change));
    const changed = state.takeChanges().services;
    if (!changed.has(benchServiceKey(changedIndex))) throw new Error('the endpoint change did not mark its service as changed');
    const { split, cleanupMs } = await syncChange(state, changed);
    // The change is in force at its commit; the cleanup transaction after it is reported apart.
    samples.push({ totalMs: performance.now() - started - (cleanupMs ?? 0), split, cleanupMs });
  }
  return { initialSyncMs, samples };
}

/**
 * The restore input hooking our chains into the built-in ones. The backend adds these one by one
 * (iptables -C / -I); the data-plane runs restore them in one go.
 */
function jumpRulesInput(): string {
  const tables = [...new Set(JUMP_RULES.map((jump) => jump.table))];
  return tables.map((table) => [`*${table}`, ...JUMP_RULES.filter((jump) => jump.table === table).map(savedJumpRule), 'COMMIT'].join('\n')).join('\n') + '\n';
}

/**
 * Rules for the packet-path runs. Only the resulting rules matter there, so iptables gets them the
 * fast way: a flush-mode restore (the node namespace is ours alone; iptables-nft-restore --noflush
 * is quadratic, see section 1), then the jump rules.
 */
async function load(dataplane: Dataplane, services: number, endpoints: string[]): Promise<LoadResult> {
  const state = buildClusterState(services, () => endpoints);
  const started = performance.now();
  if (dataplane === 'kubenft') {
    await nftablesBackend().replace(planRuleset(allServicePortViews(state), BENCH_CONFIG).tables);
  } else {
    const restore = `iptables-${iptablesFlavor(dataplane)}-restore`;
    await runChecked([restore], { input: iptablesPlanInput(state), timeoutMs: RESTORE_TIMEOUT_MS });
    await runChecked([restore, '--noflush'], { input: jumpRulesInput(), timeoutMs: RESTORE_TIMEOUT_MS });
  }
  return { syncMs: performance.now() - started };
}

async function unload(dataplane: Dataplane): Promise<Record<string, never>> {
  if (dataplane === 'kubenft') await nftablesBackend().cleanup();
  else await new IptablesBackend({ backend: iptablesFlavor(dataplane) }).cleanup();
  return {};
}

/** The agent's steady state: its ClusterState and what its nftables dataplane keeps after a full sync. */
async function memory(services: number): Promise<MemoryResult> {
  const state = buildClusterState(services);
  const dataplane = new NftablesDataplane(nftablesBackend());
  await dataplane.sync(state, BENCH_CONFIG, 'full');
  // The agent then idles for at least --min-sync-period before its next sync; meanwhile background
  // threads hand freed pages back to the system.
  await new Promise((resolve) => setTimeout(resolve, MIN_SYNC_PERIOD_MS));
  const usage = process.memoryUsage();
  const result = { rssBytes: usage.rss, heapUsedBytes: usage.heapUsed, maxRssBytes: process.resourceUsage().maxRSS * 1024 };
  // Keeps both alive up to the reading, as a running agent would.
  if (state.services.size !== services || dataplane === undefined) throw new Error('state lost services');
  return result;
}

function run(task: WorkerTask): Promise<unknown> {
  switch (task.kind) {
    case 'cold-kubenft':
      return coldKubenft(task.services);
    case 'cold-iptables-restore':
      return coldIptablesRestore(task.flavor, task.services);
    case 'cold-iptables-backend':
      return coldIptablesBackend(task.flavor, task.services);
    case 'cold-upstream-nft':
      return coldUpstreamNft(task.services, task.timeoutMs);
    case 'incremental':
      return incremental(task);
    case 'load':
      return load(task.dataplane, task.services, task.endpoints);
    case 'unload':
      return unload(task.dataplane);
    case 'memory':
      return memory(task.services);
  }
}

// The orchestrator stops an overdue worker with SIGTERM: end our own children first, by PID.
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.on(signal, () => {
    killRunningCommands();
    process.exit(128 + (signal === 'SIGTERM' ? 15 : 2));
  });
}

try {
  assertInScratchNamespace('bench-worker');
  const task = JSON.parse(process.argv[2] ?? '') as WorkerTask;
  process.stdout.write(`${JSON.stringify(await run(task))}\n`);
} catch (error) {
  process.stderr.write(`bench-worker: ${error instanceof Error ? error.stack ?? error.message : String(error)}\n`);
  process.exitCode = 1;
}
