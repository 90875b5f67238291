// The benchmark of issue #6, side by side in one run:  npm run bench [-- --quick] [-- --json]
//   1. cold full sync of N services: kubenft, kubenft --proxy-mode=iptables (legacy, nft), a bare
//      iptables-restore pass, upstream kube-proxy's nftables layout through nft -f
//   2. one endpoint change: kubenft partial sync vs iptables full restore
//   3. TCP connect latency to service #1 and #N through each dataplane
//   4. distribution of connections over 3, 10 and 500 endpoints
//   5. agent RSS
// Writes bench/results/<date>[-quick].md with SVG charts beside it; progress goes to stderr and,
// with --json, the figures to stdout. bench/README.md explains the method.
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { projectRoot } from '../src/kernel/native.js';
import { SERVICE_CIDR, SERVICE_PORT, TARGET_PORT, clusterIPOf } from './lib/bench-cluster.js';
import { WorkerTimeout, runWorker, withScratchNamespace } from './lib/bench-netns.js';
import { buildReport, checkTargets } from './lib/bench-report.js';
import { formatTick } from './lib/bench-svg.js';
import { goesToAlternate } from './lib/probe.js';
import { chiSquareUniform, quantile } from './lib/bench-stats.js';
import {
  type BenchResults, type ColdImplementation, type ColdResult, DATAPLANES, type Dataplane, type IncrementalResult, type LatencyFigures,
  type LoadResult, type Machine, type MemoryResult, type PartialSyncerName, type WorkerTask,
} from './lib/bench-types.js';
import { withTopology, type Topology } from './lib/topology.js';
import { runSocketLbBench, socketLbMarkdown, socketLbSizes } from './lib/bench-socket-lb.js';

const PHASES = ['cold', 'incremental', 'latency', 'distribution', 'memory', 'socket-lb', 'ingress', 'gateway', 'dns', 'coldstart'] as const;
import { ingressReport, runIngressBench } from './lib/bench-ingress.js';
import { gatewayReport, runGatewayBench } from './lib/bench-gateway.js';
import { dnsReport, runDnsBench } from './lib/bench-dns.js';
import { coldstartReport, runColdstartBench } from './lib/bench-coldstart.js';

type Phase = (typeof PHASES)[number];

interface Sizes {
  cold: number[];
  incremental: number[];
  latency: number[];
  distributionConnections: number;
  memory: number[];
  latencyConnections: number;
  kubenftChanges: number;
  iptablesChanges: number;
}

const FULL: Sizes = {
  cold: [1_000, 10_000, 30_000, 100_000],
  incremental: [10_000, 100_000],
  latency: [10, 1_000, 10_000, 30_000],
  distributionConnections: 30_000,
  memory: [10_000, 100_000],
  latencyConnections: 2_000,
  kubenftChanges: 50,
  iptablesChanges: 3,
};
const QUICK: Sizes = {
  cold: [1_000, 10_000],
  incremental: [10_000],
  latency: [10, 1_000, 10_000],
  distributionConnections: 3_000,
  memory: [10_000],
  latencyConnections: 600,
  kubenftChanges: 20,
  iptablesChanges: 2,
};

/** Upstream's layout loads in quadratic time; above this it is not even attempted. */
const UPSTREAM_MAX_SERVICES = 30_000;
const WORKER_TIMEOUT_MS = 15 * 60_000;
const WORKER_GRACE_MS = 30_000;
const DISTRIBUTION_ENDPOINTS = [3, 10, 500];
const PODS = 5;
/** 5 × 103 = 515: the 3, 10 and 500 endpoints of the distribution runs, each run on addresses of its own. */
const ADDRESSES_PER_POD = 103;
const PARTIAL_SYNCERS_MEASURED: PartialSyncerName[] = ['proxier', 'proxier-one-service-table'];

// ---------------------------------------------------------------------------------------------
// Progress on stderr

const runStarted = performance.now();
const clock = () => {
  const total = Math.round((performance.now() - runStarted) / 1000);
  return `${String(Math.floor(total / 60)).padStart(2, '0')}:${String(total % 60).padStart(2, '0')}`;
};
const progress = (phase: string, message: string) => process.stderr.write(`[${clock()}] ${phase}: ${message}\n`);

async function step<T>(phase: string, what: string, work: () => Promise<T>): Promise<T> {
  const started = performance.now();
  progress(phase, `${what} ...`);
  const value = await work();
  progress(phase, `${what} done in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  return value;
}

const errorText = (error: unknown) => (error instanceof Error ? error.message : String(error));

// ---------------------------------------------------------------------------------------------
// Machine

function toolVersion(argv: string[]): string {
  try {
    return execFileSync(argv[0]!, argv.slice(1), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim().split('\n')[0]!;
  } catch {
    return 'not installed';
  }
}

function describeMachine(): Machine {
  return {
    date: new Date().toISOString().slice(0, 10),
    cores: os.cpus().length,
    cpuModel: os.cpus()[0]?.model.trim() ?? 'unknown',
    memoryGiB: os.totalmem() / 2 ** 30,
    kernel: os.release(),
    node: process.version,
    nft: toolVersion(['nft', '--version']),
    iptablesLegacy: toolVersion(['iptables-legacy', '--version']),
    iptablesNft: toolVersion(['iptables-nft', '--version']),
  };
}

// ---------------------------------------------------------------------------------------------
// 1. Cold full sync

const COLD_TASKS: Record<ColdImplementation, (services: number, upstreamTimeoutMs: number) => WorkerTask> = {
  kubenft: (services) => ({ kind: 'cold-kubenft', services }),
  'iptables-legacy-restore': (services) => ({ kind: 'cold-iptables-restore', flavor: 'legacy', services }),
  'iptables-nft-restore': (services) => ({ kind: 'cold-iptables-restore', flavor: 'nft', services }),
  'kubenft-iptables-legacy': (services) => ({ kind: 'cold-iptables-backend', flavor: 'legacy', services }),
  'kubenft-iptables-nft': (services) => ({ kind: 'cold-iptables-backend', flavor: 'nft', services }),
  'upstream-nft': (services, timeoutMs) => ({ kind: 'cold-upstream-nft', services, timeoutMs }),
};

/**
 * Why a cold run is not attempted at this N, judging by the same implementation's previous
 * (smaller) run. The kernel cannot be interrupted inside one huge batch, so a run far past the
 * timeout would hold its namespace long after we gave up on it: don't start what quadratic growth
 * (the worst seen here) rules out.
 */
function coldSkipReason(implementation: ColdImplementation, services: number, previous: { services: number; result: ColdResult } | undefined, timeoutMs: number): string | undefined {
  if (implementation === 'upstream-nft' && services > UPSTREAM_MAX_SERVICES) return `above ${UPSTREAM_MAX_SERVICES / 1000}k`;
  if (!previous) return undefined;
  if (previous.result.timedOut || previous.result.skipped) return `> timeout already at ${formatTick(previous.services)}`;
  const predictedMs = previous.result.wallMs * (services / previous.services) ** 2;
  if (predictedMs > 2 * timeoutMs) return `quadratic growth from ${formatTick(previous.services)} predicts ~${Math.round(predictedMs / 1000)} s`;
  return undefined;
}

const failedCold = (fields: Partial<ColdResult>): ColdResult => ({ wallMs: 0, ingestMs: 0, planMs: 0, loadMs: 0, ...fields });

async function runColdPhase(results: BenchResults, sizes: Sizes, timeoutMs: number): Promise<void> {
  for (const services of sizes.cold) {
    for (const implementation of Object.keys(COLD_TASKS) as ColdImplementation[]) {
      const label = `${implementation} N=${services}`;
      const previous = results.cold.filter((entry) => entry.implementation === implementation).at(-1);
      const skipped = coldSkipReason(implementation, services, previous, timeoutMs);
      let result: ColdResult;
      if (skipped) {
        progress('cold', `${label}: skipped (${skipped})`);
        result = failedCold({ skipped });
      } else {
        try {
          const task = COLD_TASKS[implementation](services, timeoutMs);
          // nft -f gets the timeout inside the worker; the worker itself a little more, to report it.
          result = await step('cold', label, () => withScratchNamespace((namespace) => runWorker<ColdResult>(namespace, task, { timeoutMs: timeoutMs + WORKER_GRACE_MS })));
        } catch (error) {
          progress('cold', `${label}: ${error instanceof WorkerTimeout ? 'timed out' : `failed: ${errorText(error)}`}`);
          result = failedCold(error instanceof WorkerTimeout ? { timedOut: true } : { error: errorText(error) });
        }
      }
      results.cold.push({ implementation, services, result });
    }
  }
}

// ---------------------------------------------------------------------------------------------
// 2. Incremental

/** iptables mode restores everything on a change: not worth trying where its cold sync did not finish. */
function incrementalSkipReason(results: BenchResults, implementation: PartialSyncerName | Dataplane, services: number): string | undefined {
  if (implementation !== 'iptables-legacy' && implementation !== 'iptables-nft') return undefined;
  const cold = results.cold.find((entry) => entry.implementation === `kubenft-${implementation}` && entry.services === services)?.result;
  return cold?.timedOut || cold?.skipped ? 'its full sync exceeds the timeout (section 1)' : undefined;
}

async function runIncrementalPhase(results: BenchResults, sizes: Sizes, timeoutMs: number): Promise<void> {
  const implementations: Array<{ implementation: PartialSyncerName | Dataplane; changes: number }> = [
    ...PARTIAL_SYNCERS_MEASURED.map((implementation) => ({ implementation, changes: sizes.kubenftChanges })),
    { implementation: 'iptables-legacy', changes: sizes.iptablesChanges },
    { implementation: 'iptables-nft', changes: sizes.iptablesChanges },
  ];
  for (const services of sizes.incremental) {
    for (const { implementation, changes } of implementations) {
      const label = `${implementation} N=${services}, ${changes} changes`;
      const skipped = incrementalSkipReason(results, implementation, services);
      let result: IncrementalResult;
      if (skipped) {
        progress('incremental', `${label}: skipped (${skipped})`);
        result = { initialSyncMs: 0, samples: [], skipped };
      } else {
        try {
          const task: WorkerTask = { kind: 'incremental', implementation, services, changes };
          // One full sync first, then the changes: each gets the per-run timeout.
          const budget = { timeoutMs: timeoutMs * (changes + 1) + WORKER_GRACE_MS };
          result = await step('incremental', label, () => withScratchNamespace((namespace) => runWorker<IncrementalResult>(namespace, task, budget)));
        } catch (error) {
          progress('incremental', `${label} failed: ${errorText(error)}`);
          result = { initialSyncMs: 0, samples: [], error: errorText(error) };
        }
      }
      results.incremental.push({ implementation, services, result });
    }
  }
}

// ---------------------------------------------------------------------------------------------
// 3 and 4. Data plane, in one topology: 5 pods, each with 100 addresses (the endpoints)

const podAddress = (pod: number, slot: number) => `10.244.${pod + 1}.${slot === 0 ? 2 : 9 + slot}`;

/** Endpoint addresses spread over the pods: the first PODS are the pods' primary addresses. */
const endpointAddresses = (count: number, first = 0) => Array.from({ length: count }, (_, index) => podAddress((first + index) % PODS, Math.floor((first + index) / PODS)));

async function checkedExec(topology: Topology, namespace: string, argv: string[], input?: string): Promise<void> {
  const result = await topology.exec(namespace, argv, { input });
  if (result.code !== 0) throw new Error(`${argv.join(' ')} in ${namespace}: ${result.stderr.trim()}`);
}

/** The pods' secondary addresses, and the node's host routes to them. */
async function addSecondaryAddresses(topology: Topology): Promise<void> {
  const nodeRoutes: string[] = [];
  for (const [index, pod] of topology.pods.entries()) {
    const addresses = Array.from({ length: ADDRESSES_PER_POD - 1 }, (_, slot) => podAddress(index, slot + 1));
    await checkedExec(topology, pod.ns, ['ip', '-batch', '-'], addresses.map((address) => `addr add ${address}/32 dev eth0\n`).join(''));
    nodeRoutes.push(...addresses.map((address) => `route add ${address}/32 dev ${pod.nodeInterface}\n`));
  }
  await checkedExec(topology, topology.node, ['ip', '-batch', '-'], nodeRoutes.join(''));
}

async function loadServices(topology: Topology, dataplane: Dataplane, services: number, endpoints: string[]): Promise<LoadResult> {
  return runWorker<LoadResult>(topology.node, { kind: 'load', dataplane, services, endpoints }, { timeoutMs: WORKER_TIMEOUT_MS });
}

/**
 * The first connections of a probe process pay for its own start (code compiled on first use):
 * they would make up the p99.
 */
const PROCESS_WARM_UP_CONNECTIONS = 10;

function latencyFigures(times: number[], attempted: number): LatencyFigures {
  return { samples: times.length, failures: attempted - times.length, p50Us: quantile(times, 0.5), p90Us: quantile(times, 0.9), p99Us: quantile(times, 0.99) };
}

/**
 * #1 and #N compared connection by connection: one probe process connects to them in turn (A B B A).
 * Batches from separate processes differed too much for a 5% comparison: of two batches to the
 * very same pod, the second of a pair measured 7-9% faster, and the p50 of one process moved by
 * 10-20% from one process to the next, so #1 and #N still differed by ±9% between sizes of a run.
 */
async function compareLatency(topology: Topology, first: string, last: string, connections: number): Promise<[LatencyFigures, LatencyFigures]> {
  const count = 2 * (connections + PROCESS_WARM_UP_CONNECTIONS);
  const report = await topology.probe(topology.client, {
    address: first, alternateAddress: last, port: SERVICE_PORT, protocol: 'tcp', count, timeoutMs: 1000, latency: true,
  });
  const timesOf = (alternate: boolean) => report.results.flatMap((attempt, index) =>
    (index >= 2 * PROCESS_WARM_UP_CONNECTIONS && goesToAlternate(index) === alternate && attempt.ok && attempt.latencyUs !== undefined ? [attempt.latencyUs] : []));
  return [latencyFigures(timesOf(false), connections), latencyFigures(timesOf(true), connections)];
}

async function runLatencyPhase(topology: Topology, results: BenchResults, sizes: Sizes): Promise<void> {
  const endpoints = endpointAddresses(3);
  for (const dataplane of DATAPLANES) {
    try {
      for (const services of sizes.latency) {
        const { syncMs } = await step('latency', `${dataplane}: load N=${services}`, () => loadServices(topology, dataplane, services, endpoints));
        progress('latency', `${dataplane} N=${services} loaded in ${(syncMs / 1000).toFixed(2)} s; probing #1 and #${services}`);
        const [first, last] = await compareLatency(topology, clusterIPOf(0), clusterIPOf(services - 1), sizes.latencyConnections);
        results.latency.push({ dataplane, services, first, last });
        progress('latency', `${dataplane} N=${services}: p50 #1 ${first.p50Us} µs, #${services} ${last.p50Us} µs`);
      }
    } catch (error) {
      results.failures.push({ phase: `latency ${dataplane}`, error: errorText(error) });
      progress('latency', `${dataplane} failed: ${errorText(error)}`);
    } finally {
      await runWorker(topology.node, { kind: 'unload', dataplane }, { timeoutMs: WORKER_TIMEOUT_MS });
    }
  }
}

async function runDistributionPhase(topology: Topology, results: BenchResults, sizes: Sizes): Promise<void> {
  const connections = sizes.distributionConnections;
  try {
    // A run leaves its endpoints' sockets in TIME_WAIT for a minute; a later run's SYN that meets one
    // is refused, retried and re-chosen, which skewed a run sharing addresses with the previous one
    // (measured: the 3 shared addresses of the 10-endpoint run got 6% fewer connections). So every
    // run has addresses of its own, and enough source ports not to reuse one within the run.
    await checkedExec(topology, topology.client, ['sysctl', '-q', '-w', 'net.ipv4.ip_local_port_range=1024 65535']);
    let firstAddress = 0;
    for (const endpointCount of DISTRIBUTION_ENDPOINTS) {
      const addresses = endpointAddresses(endpointCount, firstAddress);
      firstAddress += endpointCount;
      await loadServices(topology, 'kubenft', 1, addresses);
      const report = await step('distribution', `${connections} connections over ${endpointCount} endpoints`, () =>
        topology.probe(topology.client, { address: clusterIPOf(0), port: SERVICE_PORT, protocol: 'tcp', count: connections, timeoutMs: 1000 }),
      );
      const perEndpoint = new Map<string, number>();
      for (const attempt of report.results) if (attempt.ok) perEndpoint.set(attempt.local, (perEndpoint.get(attempt.local) ?? 0) + 1);
      const counts = addresses.map((address) => perEndpoint.get(address) ?? 0);
      const answered = counts.reduce((sum, value) => sum + value, 0);
      const { statistic, degreesOfFreedom, pValue } = chiSquareUniform(counts, endpointCount);
      results.distribution.push({
        endpoints: endpointCount, connections, failures: connections - answered, min: Math.min(...counts), max: Math.max(...counts),
        chiSquare: statistic, degreesOfFreedom, pValue,
      });
    }
  } finally {
    await runWorker(topology.node, { kind: 'unload', dataplane: 'kubenft' }, { timeoutMs: WORKER_TIMEOUT_MS });
  }
}

async function runDataplanePhases(results: BenchResults, sizes: Sizes, phases: Set<Phase>): Promise<void> {
  const pods = Array.from({ length: PODS }, (_, index) => ({ name: `pod${index}`, ipv4: podAddress(index, 0), ports: [TARGET_PORT], udp: false }));
  await step('dataplane', `topology: client, node, ${PODS} pods × ${ADDRESSES_PER_POD} addresses`, async () => {
    await withTopology({ pods, serviceCidrs: [SERVICE_CIDR] }, async (topology) => {
      await addSecondaryAddresses(topology);
      if (phases.has('latency')) await runLatencyPhase(topology, results, sizes);
      if (phases.has('distribution')) {
        await runDistributionPhase(topology, results, sizes).catch((error: unknown) => {
          results.failures.push({ phase: 'distribution', error: errorText(error) });
        });
      }
    });
  });
}

// ---------------------------------------------------------------------------------------------
// 5. Memory

async function runMemoryPhase(results: BenchResults, sizes: Sizes): Promise<void> {
  for (const services of sizes.memory) {
    const result = await step('memory', `agent RSS at N=${services}`, () =>
      withScratchNamespace((namespace) => runWorker<MemoryResult>(namespace, { kind: 'memory', services }, { timeoutMs: WORKER_TIMEOUT_MS })),
    );
    results.memory.push({ services, result });
  }
}

// ---------------------------------------------------------------------------------------------

function parseOptions() {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
      phases: { type: 'string', default: PHASES.join(',') },
      'timeout-s': { type: 'string', default: '120' },
      out: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    process.stdout.write('usage: npm run bench -- [--quick] [--json] [--phases cold,incremental,latency,distribution,memory,socket-lb,ingress,gateway,dns,coldstart] [--timeout-s 120] [--out DIR]\n');
    process.exit(0);
  }
  const phases = new Set(values.phases.split(',').map((phase) => phase.trim()));
  for (const phase of phases) if (!PHASES.includes(phase as Phase)) throw new Error(`unknown phase ${phase}; phases are ${PHASES.join(', ')}`);
  const timeoutMs = Number(values['timeout-s']) * 1000;
  if (!(timeoutMs > 0)) throw new Error('--timeout-s must be a positive number');
  return { quick: values.quick, json: values.json, phases: phases as Set<Phase>, timeoutMs, out: values.out ?? join(projectRoot(), 'bench', 'results') };
}

/** The Markdown of the phases that report on their own, each from its figures in the results (and so in --json). */
function phaseSections(results: BenchResults): string {
  return (results.socketLb ? `\n${socketLbMarkdown(results.socketLb)}` : '')
    + (results.ingress ? ingressReport(results.ingress) : '')
    + (results.gateway ? gatewayReport(results.gateway) : '')
    + (results.dns ? dnsReport(results.dns) : '')
    + (results.coldstart ? coldstartReport(results.coldstart) : '');
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('the benchmark creates network namespaces: run it as root');
  const options = parseOptions();
  const sizes = options.quick ? QUICK : FULL;
  const results: BenchResults = {
    machine: describeMachine(), quick: options.quick, cold: [], incremental: [], latency: [], distribution: [], memory: [], failures: [], elapsedSeconds: 0,
  };
  progress('bench', `${results.machine.cores} cores, kernel ${results.machine.kernel}; phases ${[...options.phases].join(', ')}${options.quick ? ' (--quick)' : ''}`);
  const phaseRunners: Array<[Phase, () => Promise<void>]> = [
    ['cold', () => runColdPhase(results, sizes, options.timeoutMs)],
    ['incremental', () => runIncrementalPhase(results, sizes, options.timeoutMs)],
    ['memory', () => runMemoryPhase(results, sizes)],
    ['socket-lb', async () => { results.socketLb = await runSocketLbBench(socketLbSizes(options.quick), (message) => progress('socket-lb', message)); }],
    ['ingress', async () => { results.ingress = await runIngressBench({ quick: options.quick, progress: (message) => progress('ingress', message) }); }],
    ['gateway', async () => { results.gateway = await runGatewayBench({ quick: options.quick, progress: (message) => progress('gateway', message) }); }],
    ['dns', async () => { results.dns = await runDnsBench({ quick: options.quick, progress: (message) => progress('dns', message) }); }],
    ['coldstart', async () => { results.coldstart = await runColdstartBench({ quick: options.quick, progress: (message) => progress('coldstart', message) }); }],
  ];
  for (const [phase, run] of phaseRunners) {
    if (!options.phases.has(phase)) continue;
    await run().catch((error: unknown) => {
      results.failures.push({ phase, error: errorText(error) });
      progress(phase, `failed: ${errorText(error)}`);
    });
  }
  if (options.phases.has('latency') || options.phases.has('distribution')) {
    await runDataplanePhases(results, sizes, options.phases).catch((error: unknown) => {
      results.failures.push({ phase: 'dataplane', error: errorText(error) });
      progress('dataplane', `failed: ${errorText(error)}`);
    });
  }
  results.elapsedSeconds = (performance.now() - runStarted) / 1000;

  const stem = `${results.machine.date}${options.quick ? '-quick' : ''}`;
  const report = buildReport(results, stem, options.timeoutMs);
  mkdirSync(options.out, { recursive: true });
  writeFileSync(join(options.out, `${stem}.md`), report.markdown + phaseSections(results));
  writeFileSync(join(options.out, `${stem}.json`), `${JSON.stringify(results, null, 2)}\n`);
  for (const [name, svg] of report.charts) writeFileSync(join(options.out, name), svg);
  progress('bench', `report: ${join(options.out, `${stem}.md`)}`);
  for (const check of checkTargets(results)) progress('targets', `${check.status.padEnd(12)} ${check.target}: ${check.detail}`);
  if (options.json) process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
  if (results.failures.length > 0) process.exitCode = 1;
}

main().catch((error: unknown) => {
  process.stderr.write(`bench failed: ${error instanceof Error ? error.stack : String(error)}\n`);
  process.exit(1);
});
