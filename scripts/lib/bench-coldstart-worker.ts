// The cold-start measurements, each inside a scratch namespace the orchestrator (bench-coldstart.ts)
// made:  ip netns exec NS node dist/scripts/lib/bench-coldstart-worker.js '<ColdstartTask as JSON>'
//   capture: the agent's full sync of N services (NftablesProxier) with the addon keeping a copy of
//            every batch it sends, written to a file for bench-replay (the kernel's floor);
//   agent:   `kubenft --kubeconfig` against an API server in this process serving N services × 3
//            endpoints (list + watch), from the process's start to the last VIP answering;
//   once:    `kubenft --manifests FILE --once`, the same.
// Every VIP and endpoint of the namespace is local (routes of type local on lo), and a listener on
// the target port accepts on every endpoint address: a VIP answers once its DNAT is in force.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { connect, createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { native, projectRoot } from '../../src/kernel/native.js';
import { NftablesProxier, servicesBackend } from '../../src/services/nftables-proxier.js';
import { PROXYABLE_SELECTOR } from '../../src/cluster/kubernetes.js';
import { LIST_PAGE_SIZE } from '../../src/cluster/list-request.js';
import { BENCH_CONFIG, POD_CIDR, SERVICE_CIDR, SERVICE_PORT, TARGET_PORT, buildClusterState, clusterIPOf } from './bench-cluster.js';
import { BENCH_NODE, apiEndpointSlice, apiNode, apiService } from './bench-coldstart-cluster.js';
import { runChecked } from './bench-command.js';
import { assertInScratchNamespace } from './bench-netns.js';
import type { ColdstartRun, ColdstartTask, FetchFloor, FullSyncCapture } from './bench-coldstart-types.js';

/** The shipped agent (the bundle); KUBENFT_BENCH_CLI names another build to compare, such as dist/src/cli/main.js. */
const CLI = process.env.KUBENFT_BENCH_CLI ?? join(projectRoot(), 'dist', 'bundle', 'main.js');
/** A source address inside the pod network: the probes' connections are not masqueraded. */
const PROBE_SOURCE = '10.244.0.1';
const POLL_MS = 2;
/** After the VIP answers: the agent's compaction after a large full sync (about a second at 100k) is over by then. */
const SETTLE_MS = 4_000;

async function capture(services: number, batchesPath: string): Promise<FullSyncCapture> {
  const state = buildClusterState(services);
  native().captureBatches(true);
  const started = performance.now();
  const result = await new NftablesProxier(servicesBackend(BENCH_CONFIG.tableName)).sync(state, BENCH_CONFIG, 'full');
  const wallMs = performance.now() - started;
  native().captureBatches(false);
  const batches = native().takeCapturedBatches();
  const framed = batches.flatMap((batch) => {
    const length = Buffer.alloc(4);
    length.writeUInt32LE(batch.length);
    return [length, batch];
  });
  writeFileSync(batchesPath, Buffer.concat(framed));
  const { planMs, recordMs = 0, serializeMs, encodeMs, kernelMs, bytes } = result;
  return { wallMs, planMs, recordMs, serializeMs, encodeMs, kernelMs, batches: batches.length, bytes };
}

// ---------------------------------------------------------------------------------------------
// A namespace where every VIP and endpoint is local

async function makeAddressesLocal(): Promise<void> {
  for (const argv of [
    ['ip', 'addr', 'add', `${PROBE_SOURCE}/32`, 'dev', 'lo'],
    ['ip', 'route', 'add', 'local', POD_CIDR, 'dev', 'lo'],
    ['ip', 'route', 'add', 'local', SERVICE_CIDR, 'dev', 'lo', 'src', PROBE_SOURCE],
  ]) await runChecked(argv, { timeoutMs: 10_000 });
}

/** Accepts on the target port of every (local) endpoint address and hangs up. */
function listenOnEndpoints(): Promise<() => void> {
  const server = createServer((socket) => socket.destroy());
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(TARGET_PORT, '0.0.0.0', () => resolve(() => server.close()));
  });
}

const answers = (address: string) => new Promise<boolean>((resolve) => {
  const socket = connect({ host: address, port: SERVICE_PORT, localAddress: PROBE_SOURCE, timeout: 500 });
  const done = (ok: boolean) => {
    socket.destroy();
    resolve(ok);
  };
  socket.once('connect', () => done(true));
  socket.once('error', () => done(false));
  socket.once('timeout', () => done(false));
});

// ---------------------------------------------------------------------------------------------
// The API server: list bodies serialized before the clock starts, watches that stay open

interface ListedCollection {
  path: string;
  /** The list in pages of LIST_PAGE_SIZE items, as the agent asks for them; page k's continue token is "k". */
  pages: Buffer[];
  /** The whole list, serialized when a request asks without a limit (a build that does not page, named by KUBENFT_BENCH_CLI). */
  whole: () => Buffer;
}

function listed(path: string, kind: string, apiVersion: string, items: Iterable<object>): ListedCollection {
  // Items of a list carry no kind or apiVersion, as a real server sends them.
  const stripped = [...items].map((item) => {
    const { kind: _kind, apiVersion: _apiVersion, ...rest } = item as Record<string, unknown>;
    return rest;
  });
  const pages: Buffer[] = [];
  for (let start = 0; start === 0 || start < stripped.length; start += LIST_PAGE_SIZE) {
    const end = Math.min(stripped.length, start + LIST_PAGE_SIZE);
    // metadata before items, as a real server orders them: the fetch floor reads the token from the first bytes.
    const metadata = end < stripped.length ? { resourceVersion: '999999999', continue: String(pages.length + 1), remainingItemCount: stripped.length - end } : { resourceVersion: '999999999' };
    pages.push(Buffer.from(JSON.stringify({ kind: `${kind}List`, apiVersion, metadata, items: stripped.slice(start, end) })));
  }
  let whole: Buffer | undefined;
  return { path, pages, whole: () => (whole ??= Buffer.from(JSON.stringify({ kind: `${kind}List`, apiVersion, metadata: { resourceVersion: '999999999' }, items: stripped }))) };
}

function* indices(count: number): Generator<number> {
  for (let index = 0; index < count; index++) yield index;
}
const mapped = function* <T>(values: Iterable<number>, map: (index: number) => T): Generator<T> {
  for (const value of values) yield map(value);
};

class BenchApiServer {
  firstRequestAt = 0;
  private readonly server = createHttpServer((request, response) => this.handle(request, response));
  private readonly open = new Set<ServerResponse>();

  constructor(private readonly collections: ListedCollection[]) {}

  async listen(): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  close(): void {
    for (const response of this.open) response.destroy();
    this.server.close();
  }

  private handle(request: IncomingMessage, response: ServerResponse): void {
    this.firstRequestAt ||= Date.now();
    const url = new URL(request.url ?? '/', 'http://bench');
    const collection = this.collections.find((candidate) => candidate.path === url.pathname);
    if (!collection) {
      response.writeHead(404, { 'Content-Type': 'application/json' });
      response.end(JSON.stringify({ kind: 'Status', apiVersion: 'v1', status: 'Failure', code: 404, reason: 'NotFound', message: `${url.pathname} is not served here` }));
      return;
    }
    const watch = url.searchParams.get('watch');
    if (watch === 'true' || watch === '1') {
      response.writeHead(200, { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked' });
      response.flushHeaders();
      this.open.add(response);
      response.on('close', () => this.open.delete(response));
      return;
    }
    if (url.pathname !== '/api/v1/nodes' && url.searchParams.get('labelSelector') !== PROXYABLE_SELECTOR) {
      throw new Error(`unexpected selector in ${request.url}`);
    }
    const limit = url.searchParams.get('limit');
    if (limit !== null && limit !== String(LIST_PAGE_SIZE)) throw new Error(`unexpected limit in ${request.url}`);
    const page = limit === null ? collection.whole() : collection.pages[Number(url.searchParams.get('continue') ?? 0)];
    if (!page) throw new Error(`unexpected continue in ${request.url}`);
    response.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': page.length });
    response.end(page);
  }
}

function apiCollections(services: number): ListedCollection[] {
  return [
    listed('/api/v1/services', 'Service', 'v1', mapped(indices(services), apiService)),
    listed('/apis/discovery.k8s.io/v1/endpointslices', 'EndpointSlice', 'discovery.k8s.io/v1', mapped(indices(services), apiEndpointSlice)),
    listed('/api/v1/nodes', 'Node', 'v1', [apiNode()]),
  ];
}

function kubeconfigFor(directory: string, server: string): string {
  const path = join(directory, 'kubeconfig');
  writeFileSync(path, JSON.stringify({
    apiVersion: 'v1', kind: 'Config', 'current-context': 'bench',
    clusters: [{ name: 'bench', cluster: { server, 'insecure-skip-tls-verify': true } }],
    users: [{ name: 'bench', user: { token: 'bench' } }],
    contexts: [{ name: 'bench', context: { cluster: 'bench', user: 'bench' } }],
  }));
  return path;
}

// ---------------------------------------------------------------------------------------------
// One kubenft process, from its start to the last VIP answering

/** --trace-gc's lines: "[pid:isolate]  1234 ms: Mark-Compact 80.1 (90.0) -> 60.2 (91.0) MB, pooled: 0 MB, 45.10 / 0.00 ms (+ 12.3 ms in 40 steps ...". */
const GC_LINE = /^\[\d+:0x[0-9a-f]+\]\s+(\d+) ms: ([A-Za-z -]+?)(?: \(reduce\))? [\d.]+ \([\d.]+\) -> .*?, ([\d.]+) \/ [\d.]+ ms(?:\s+\(\+ ([\d.]+) ms in \d+ steps)?/;

function gcMs(output: string, untilMs: number): { gcMs: number; collections: number } {
  let total = 0;
  let collections = 0;
  for (const line of output.split('\n')) {
    const match = GC_LINE.exec(line);
    if (!match || Number(match[1]) > untilMs) continue;
    total += Number(match[3]) + Number(match[4] ?? 0);
    collections++;
  }
  return { gcMs: total, collections };
}

const procStatusKiB = (pid: number, field: string) => {
  try {
    return Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
  } catch {
    return 0;
  }
};

interface LogLine {
  msg?: string;
  [field: string]: unknown;
}

async function runKubenft(args: string[], lastVip: string, waitForExit: boolean, timeoutMs: number): Promise<ColdstartRun> {
  const started = Date.now();
  const child = spawn(process.execPath, ['--trace-gc', CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exited = new Promise<number | null>((resolve) => child.once('close', resolve));
  let peakKiB = 0;
  const sampler = setInterval(() => (peakKiB = Math.max(peakKiB, procStatusKiB(child.pid!, 'VmHWM'))), 20);
  try {
    const deadline = started + timeoutMs;
    let vipMs = 0;
    while (!vipMs) {
      // --once exits once its rules are in: a VIP that does not answer then never will.
      if (child.exitCode !== null && !(waitForExit && await answers(lastVip))) throw new Error(`kubenft exited ${child.exitCode}: ${stderr.slice(-500)}`);
      if (Date.now() > deadline) throw new Error(`the last VIP did not answer within ${timeoutMs} ms: ${stderr.slice(-500)}`);
      if (await answers(lastVip)) vipMs = Date.now() - started;
      else await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
    let steadyKiB: number | undefined;
    if (waitForExit) {
      const code = await exited;
      if (code !== 0) throw new Error(`kubenft exited ${code}: ${stderr.slice(-500)}`);
    } else {
      // The sync's own report comes after its compaction, which on a loaded machine outlasts SETTLE_MS at 100k.
      while (!/"msg":"synced"/.test(stderr)) {
        if (Date.now() > deadline || child.exitCode !== null) break;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
      steadyKiB = procStatusKiB(child.pid!, 'VmRSS');
      peakKiB = Math.max(peakKiB, procStatusKiB(child.pid!, 'VmHWM'));
      child.kill('SIGTERM');
      await exited;
    }
    const logs = stderr.split('\n').filter((line) => line.startsWith('{')).map((line) => JSON.parse(line) as LogLine);
    const printed = stdout.split('\n').filter((line) => line.startsWith('{')).map((line) => JSON.parse(line) as LogLine);
    const listed = logs.find((line) => line.msg === 'every source has listed');
    const sync = waitForExit ? printed[0] : logs.find((line) => line.msg === 'synced');
    if (!listed || !sync) throw new Error(`kubenft did not report its first lists and sync: ${stderr.slice(-500)}`);
    const split = sync.split as ColdstartRun['split'];
    return {
      vipMs,
      listedAtMs: listed.listedAtMs as number,
      stateMs: listed.stateMs as number,
      syncMs: (waitForExit ? sync.syncMs : sync.ms) as number,
      split,
      ...gcMs(stdout, vipMs),
      peakRssBytes: peakKiB * 1024,
      steadyRssBytes: steadyKiB === undefined ? undefined : steadyKiB * 1024,
    };
  } finally {
    clearInterval(sampler);
    if (child.exitCode === null) child.kill('SIGKILL');
  }
}

const COMMON_FLAGS = [
  '--hostname-override', BENCH_NODE, '--cluster-cidr', POD_CIDR, '--service-cidr', SERVICE_CIDR,
  '--healthz-bind-address', '', '--metrics-bind-address', '',
  // The log lines below are read as JSON.
  '--logging-format', 'json',
];

async function agentRun(services: number, timeoutMs: number): Promise<ColdstartRun> {
  await makeAddressesLocal();
  const stopListening = await listenOnEndpoints();
  const api = new BenchApiServer(apiCollections(services));
  const directory = mkdtempSync(join(tmpdir(), 'kubenft-coldstart-'));
  try {
    const kubeconfig = kubeconfigFor(directory, await api.listen());
    const started = Date.now();
    const run = await runKubenft(['--kubeconfig', kubeconfig, ...COMMON_FLAGS], clusterIPOf(services - 1), false, timeoutMs);
    return { ...run, firstRequestMs: api.firstRequestAt - started };
  } finally {
    api.close();
    stopListening();
    rmSync(directory, { recursive: true, force: true });
  }
}

async function onceRun(services: number, manifestPath: string, timeoutMs: number): Promise<ColdstartRun> {
  await makeAddressesLocal();
  const stopListening = await listenOnEndpoints();
  try {
    return await runKubenft(['--manifests', manifestPath, '--once', ...COMMON_FLAGS], clusterIPOf(services - 1), true, timeoutMs);
  } finally {
    stopListening();
  }
}

/** A node process's exit, in ms from its spawn. */
function timedNode(args: string[], timeoutMs: number): Promise<{ ms: number; stdout: string }> {
  const started = performance.now();
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'], timeout: timeoutMs });
  let stdout = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  return new Promise((resolve, reject) => child.once('close', (code) => (code === 0 ? resolve({ ms: performance.now() - started, stdout }) : reject(new Error(`node ${args.join(' ')} exited ${code}`)))));
}

/** The part of the limit that is not the kernel's: node's own start, and the same process fetching both lists as the agent asks for them. */
async function fetchFloor(services: number, timeoutMs: number): Promise<FetchFloor> {
  const api = new BenchApiServer(apiCollections(services));
  try {
    const server = await api.listen();
    const selector = encodeURIComponent(PROXYABLE_SELECTOR);
    const urls = ['/api/v1/services', '/apis/discovery.k8s.io/v1/endpointslices'].map((path) => `${server}${path}?labelSelector=${selector}&limit=${LIST_PAGE_SIZE}`);
    // Each list page by page, as the agent reads it: the next token from the page's first bytes, nothing parsed.
    const script = `const http = require('node:http'); let bytes = 0;
const page = (url) => new Promise((resolve, reject) => http.get(url, (response) => { let token; response.on('data', (chunk) => { if (token === undefined) token = /"continue":"([^"]*)"/.exec(chunk.toString('latin1', 0, 300))?.[1] ?? null; bytes += chunk.length; }); response.once('end', () => resolve(token)); response.once('error', reject); }).once('error', reject));
const list = async (url) => { for (let token = await page(url); token; token = await page(url + '&continue=' + token)); };
Promise.all(${JSON.stringify(urls)}.map(list)).then(() => process.stdout.write(String(bytes)));`;
    const nodeStart = await timedNode(['-e', '0'], timeoutMs);
    const fetched = await timedNode(['-e', script], timeoutMs);
    return { nodeStartMs: nodeStart.ms, fetchListsMs: fetched.ms, listBytes: Number(fetched.stdout) };
  } finally {
    api.close();
  }
}

function run(task: ColdstartTask): Promise<unknown> {
  switch (task.kind) {
    case 'capture':
      return capture(task.services, task.batchesPath);
    case 'agent':
      return agentRun(task.services, task.timeoutMs);
    case 'once':
      return onceRun(task.services, task.manifestPath, task.timeoutMs);
    case 'fetch':
      return fetchFloor(task.services, task.timeoutMs);
  }
}

try {
  assertInScratchNamespace('bench-coldstart-worker');
  const task = JSON.parse(process.argv[2] ?? '') as ColdstartTask;
  process.stdout.write(`${JSON.stringify(await run(task))}\n`);
} catch (error) {
  process.stderr.write(`bench-coldstart-worker: ${error instanceof Error ? error.stack ?? error.message : String(error)}\n`);
  process.exitCode = 1;
}
