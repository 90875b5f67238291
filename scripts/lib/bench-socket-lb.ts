// Phase socket-lb of the benchmark (issue #16), side by side in one run, from clients in the node
// namespace: (a) straight to a pod, (b) kubenft's nftables DNAT, (c) kubenft's socket LB, at
// 10, 1,000 and 10,000 services, in A B C C B A rounds (one process per run; rounds interleave so
// drift hits every variant alike). Then an endpoint change applied to the socket LB's maps at
// 10,000 services next to the nftables partial sync of the same change.
import { type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { projectRoot } from '../../src/kernel/native.js';
import { SocketLbMaps, socketLbAddon } from '../../src/socket-lb/maps.js';
import { planSocketLb } from '../../src/socket-lb/plan.js';
import { servicePortViews } from '../../src/cluster/service-ports.js';
import { BENCH_CONFIG, SERVICE_PORT, TARGET_PORT, benchServiceKey, buildClusterState, clusterIPOf, endpointChange, endpointSliceObject, serviceObject } from './bench-cluster.js';
import { runWorker, withScratchNamespace } from './bench-netns.js';
import { quantile } from './bench-stats.js';
import type { IncrementalResult, SocketLbBenchResult, SocketLbRow, SocketLbVariant } from './bench-types.js';
import { createSocketLbSandbox } from './socket-lb-sandbox.js';
import { withTopology } from './topology.js';

export interface SocketLbBenchSizes {
  services: number[];
  connections: number;
  requests: number;
  rounds: number;
  mapChanges: number;
}

const PODS = [{ name: 'pod-a', ipv4: '10.244.1.2' }, { name: 'pod-b', ipv4: '10.244.2.2' }, { name: 'pod-c', ipv4: '10.244.3.2' }];
const ORDER: SocketLbVariant[] = ['direct', 'nftables', 'socket-lb', 'socket-lb', 'nftables', 'direct'];
const CLIENT = join(projectRoot(), 'dist/scripts/lib/bench-socket-lb-client.js');
const CLI = join(projectRoot(), 'dist/src/cli/main.js');
const CHANGE_SERVICES = 10_000;
const WORKER_TIMEOUT_MS = 10 * 60_000;

function writeManifests(path: string, services: number): void {
  const endpoints = PODS.map((pod) => pod.ipv4);
  const documents: string[] = [];
  for (let index = 0; index < services; index++) documents.push(JSON.stringify(serviceObject(index)), JSON.stringify(endpointSliceObject(index, endpoints)));
  writeFileSync(path, documents.join('\n---\n'));
}

const cpuUsageUs = (cgroup: string) => Number(/^usage_usec (\d+)$/m.exec(readFileSync(join(cgroup, 'cpu.stat'), 'utf8'))?.[1] ?? NaN);

/** One client run: the cgroup's CPU is read around the measured part only. */
async function clientRun(child: ChildProcess, cgroup: string): Promise<{ result: { elapsedMs: number; completed: number; connectUs?: number[] }; cpuUs: number }> {
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  const exited = new Promise<number | null>((resolve) => child.once('close', resolve));
  const expect = async () => {
    const line = await lines.next();
    if (line.done) throw new Error(`the client exited ${await exited} early`);
    return line.value;
  };
  await expect();
  const before = cpuUsageUs(cgroup);
  child.stdin!.write('go\n');
  const result = JSON.parse(await expect());
  const cpuUs = cpuUsageUs(cgroup) - before;
  child.stdin!.end();
  await exited;
  return { result, cpuUs };
}

/** (a), (b) and (c) at each size, in rounds. */
async function measureConnections(sizes: SocketLbBenchSizes, report: (message: string) => void): Promise<SocketLbRow[]> {
  const rows: SocketLbRow[] = [];
  await withTopology({ pods: PODS, serviceCidrs: ['10.96.0.0/12'] }, async (topology) => {
    const sandbox = await createSocketLbSandbox('bench', ['plain', 'balanced']);
    const manifestsDir = mkdtempSync(join(tmpdir(), 'kubenft-bench-socket-lb-'));
    const manifests = join(manifestsDir, 'services.yaml');
    const agent = (...args: string[]) => topology.exec(topology.node, sandbox.inMountNamespace([process.execPath, CLI, '--manifests', manifests, '--socket-lb-pin-dir', sandbox.pinDir,
      '--healthz-bind-address', '', '--metrics-bind-address', '', ...args]), { timeoutMs: WORKER_TIMEOUT_MS });
    try {
      for (const services of sizes.services) {
        writeManifests(manifests, services);
        const loaded = await agent('--once', '--socket-lb', '--socket-lb-cgroup', sandbox.cgroups.balanced);
        if (loaded.code !== 0) throw new Error(`kubenft --once at ${services} services: ${loaded.stderr}`);
        report(`${services} services loaded (rules and maps): ${loaded.stdout.trim()}`);
        const target: Record<SocketLbVariant, string> = { direct: PODS[0].ipv4, nftables: clusterIPOf(services - 1), 'socket-lb': clusterIPOf(services - 1) };
        const port = (variant: SocketLbVariant) => String(variant === 'direct' ? TARGET_PORT : SERVICE_PORT);
        const cgroupOf = (variant: SocketLbVariant) => (variant === 'socket-lb' ? sandbox.cgroups.balanced : sandbox.cgroups.plain);
        const collected = new Map<SocketLbVariant, { connectUs: number[]; elapsedMs: number; completed: number; cpuUs: number; requests: number; requestMs: number }>();
        for (let round = 0; round < sizes.rounds; round++) {
          for (const variant of ORDER) {
            const entry = collected.get(variant) ?? { connectUs: [], elapsedMs: 0, completed: 0, cpuUs: 0, requests: 0, requestMs: 0 };
            collected.set(variant, entry);
            const short = await clientRun(sandbox.spawnInCgroup(cgroupOf(variant), topology.node, [process.execPath, CLIENT, 'short', target[variant], port(variant), String(sizes.connections)]), cgroupOf(variant));
            entry.connectUs.push(...short.result.connectUs!);
            entry.elapsedMs += short.result.elapsedMs;
            entry.completed += short.result.completed;
            entry.cpuUs += short.cpuUs;
            const persistent = await clientRun(sandbox.spawnInCgroup(cgroupOf(variant), topology.node, [process.execPath, CLIENT, 'persistent', target[variant], port(variant), String(sizes.requests)]), cgroupOf(variant));
            entry.requests += persistent.result.completed;
            entry.requestMs += persistent.result.elapsedMs;
          }
        }
        for (const [variant, entry] of collected) {
          const row: SocketLbRow = {
            services, variant, connections: entry.completed,
            connectP50Us: quantile(entry.connectUs, 0.5), connectP99Us: quantile(entry.connectUs, 0.99),
            shortPerSecond: (entry.completed / entry.elapsedMs) * 1000,
            cpuMsPer100k: (entry.cpuUs / 1000 / Math.max(1, entry.completed)) * 100_000,
            persistentPerSecond: (entry.requests / entry.requestMs) * 1000,
          };
          rows.push(row);
          report(`${services} services, ${variant}: connect p50 ${row.connectP50Us.toFixed(0)} µs, ${row.shortPerSecond.toFixed(0)} conn/s, ${row.cpuMsPer100k.toFixed(0)} ms CPU/100k, ${row.persistentPerSecond.toFixed(0)} req/s`);
        }
      }
    } finally {
      await agent('--cleanup');
      sandbox.destroy();
      rmSync(manifestsDir, { recursive: true, force: true });
    }
  });
  return rows;
}

/** One changed service at 10,000: the plan and map writes the agent does, on unattached maps. */
function measureMapChange(changes: number): SocketLbBenchResult['mapChange'] {
  const handle = new (socketLbAddon().SocketLb)({});
  try {
    const state = buildClusterState(CHANGE_SERVICES);
    const maps = new SocketLbMaps(handle);
    maps.apply(planSocketLb([...state.services.keys()].flatMap((key) => servicePortViews(state, key)), BENCH_CONFIG), true);
    const times: number[] = [];
    for (let change = 0; change < changes; change++) {
      const index = (change * 7919) % CHANGE_SERVICES;
      state.apply(endpointChange(index, change));
      const started = process.hrtime.bigint();
      maps.apply(planSocketLb(servicePortViews(state, benchServiceKey(index)), BENCH_CONFIG));
      times.push(Number(process.hrtime.bigint() - started) / 1000);
    }
    return { services: CHANGE_SERVICES, samples: times.length, p50Us: quantile(times, 0.5), p99Us: quantile(times, 0.99) };
  } finally {
    handle.close();
  }
}

async function measureNftablesChange(changes: number): Promise<SocketLbBenchResult['nftablesChange']> {
  const result = await withScratchNamespace((namespace) => runWorker<IncrementalResult>(namespace, { kind: 'incremental', implementation: 'proxier', services: CHANGE_SERVICES, changes }, { timeoutMs: WORKER_TIMEOUT_MS }));
  const times = result.samples.map((sample) => sample.totalMs * 1000);
  return { services: CHANGE_SERVICES, samples: times.length, p50Us: quantile(times, 0.5), p99Us: quantile(times, 0.99) };
}

export const socketLbSizes = (quick: boolean): SocketLbBenchSizes =>
  (quick ? { services: [10, 1_000, 10_000], connections: 300, requests: 2_000, rounds: 1, mapChanges: 50 }
    : { services: [10, 1_000, 10_000], connections: 1_000, requests: 10_000, rounds: 2, mapChanges: 200 });

export async function runSocketLbBench(sizes: SocketLbBenchSizes, report: (message: string) => void): Promise<SocketLbBenchResult> {
  const result: SocketLbBenchResult = { rows: [], failures: [] };
  const attempt = async (what: string, work: () => Promise<void>) => {
    try {
      await work();
    } catch (error) {
      result.failures.push(`${what}: ${(error as Error).message}`);
      report(`${what} failed: ${(error as Error).message}`);
    }
  };
  await attempt('connections', async () => { result.rows = await measureConnections(sizes, report); });
  await attempt('map change', async () => { result.mapChange = measureMapChange(sizes.mapChanges); });
  await attempt('nftables change', async () => { result.nftablesChange = await measureNftablesChange(Math.min(sizes.mapChanges, 50)); });
  return result;
}

const ratio = (value: number, reference: number) => `${value >= reference ? '+' : ''}${(((value - reference) / reference) * 100).toFixed(1)}%`;

export function socketLbMarkdown(result: SocketLbBenchResult): string {
  const lines = ['## Socket LB (issue #16)', '',
    'Clients in the node namespace, in bench cgroups: (a) straight to a pod, (b) nftables DNAT, (c) socket LB; A B C C B A rounds. Ratios are against (a) and (b) of the same run.', '',
    '| services | variant | connect p50 µs | p99 µs | short conn/s | CPU ms / 100k conn | persistent req/s | p50 vs direct | conn/s vs nftables | CPU vs nftables | req/s vs nftables |',
    '|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|'];
  for (const row of result.rows) {
    const direct = result.rows.find((other) => other.services === row.services && other.variant === 'direct')!;
    const nftables = result.rows.find((other) => other.services === row.services && other.variant === 'nftables')!;
    lines.push(`| ${row.services} | ${row.variant} | ${row.connectP50Us.toFixed(0)} | ${row.connectP99Us.toFixed(0)} | ${row.shortPerSecond.toFixed(0)} | ${row.cpuMsPer100k.toFixed(0)} | ${row.persistentPerSecond.toFixed(0)} | ` +
      `${ratio(row.connectP50Us, direct.connectP50Us)} | ${ratio(row.shortPerSecond, nftables.shortPerSecond)} | ${ratio(row.cpuMsPer100k, nftables.cpuMsPer100k)} | ${ratio(row.persistentPerSecond, nftables.persistentPerSecond)} |`);
  }
  const change = (label: string, figures?: { services: number; samples: number; p50Us: number; p99Us: number }) =>
    figures ? `| ${label} | ${figures.services} | ${figures.samples} | ${(figures.p50Us / 1000).toFixed(3)} | ${(figures.p99Us / 1000).toFixed(3)} |` : `| ${label} | not measured | | | |`;
  lines.push('', '| one endpoint change | services | samples | p50 ms | p99 ms |', '|---|---:|---:|---:|---:|',
    change('socket LB maps (plan + batched map writes)', result.mapChange), change('nftables partial sync (same run)', result.nftablesChange));
  if (result.failures.length > 0) lines.push('', ...result.failures.map((failure) => `- failed: ${failure}`));
  return `${lines.join('\n')}\n`;
}
