// The cluster DNS benchmark, side by side in one run: dnsperf (Debian's) on a mix of cluster names
// against kubenft's DNS server and against unbound serving the same names as local data. Each
// server gets one core (taskset -c 1; kubenft: the whole agent, its DNS worker included), dnsperf
// the other, from the topology's client namespace. Then, in-process in the node namespace
// (bench-dns-worker.ts): how long an EndpointSlice change takes to be answered, and the agent's RSS
// with cluster DNS on and off. Bench-only packages (dnsperf, unbound) are installed here.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { projectRoot } from '../../src/kernel/native.js';
import { reverseName } from '../../src/dns/records.js';
import type { KubeObject } from '../../src/cluster/cluster-state.js';
import { quantile } from './bench-stats.js';
import { type Topology, withTopology } from './topology.js';

export const DNS_NAMESPACE = 'bench';
export const ZONE = 'cluster.local';
const KUBENFT_ADDRESS = '169.254.20.10';
const SERVER_CORE = '1';
const DNSPERF_CORE = '0';
/** dnsperf's sockets: queries come from this many source ports, as from several pods. */
const DNSPERF_CLIENTS = 8;
const DNSPERF_OUTSTANDING = 1000;
/** The loss a rate may show and still count as served (< 0.1%). */
const MAX_LOSS = 0.001;
/** A rate dnsperf could not even send (its outstanding queries stuck at the limit) is not served either. */
const MIN_SENT_RATIO = 0.95;
const RATE_STEPS = 8;
const PACKAGES: [command: string, name: string][] = [['dnsperf', 'dnsperf'], ['unbound', 'unbound']];

export interface RateStep { offeredQps: number; sentQps: number; completedQps: number; loss: number; served: boolean }
export interface ServerFigures {
  server: string;
  /** dnsperf unthrottled (closed loop, 1000 outstanding): where the search starts. */
  unthrottledQps: number;
  steps: RateStep[];
  /** The highest offered rate served with < 0.1% loss. */
  maxQps: number;
  halfLoad: { offeredQps: number; answered: number; lost: number; p50Ms: number; p99Ms: number; maxMs: number };
}
export interface ChangeFigures { services: number; changes: number; p50Ms: number; p99Ms: number; maxMs: number; wrongAnswers: number }
export interface MemoryPair { offBytes: number; onBytes: number }
export interface MemoryFigures { services: number; endpointsPerService: number; clusterIP: MemoryPair; headless: MemoryPair }
export interface DnsBenchResult {
  services: number;
  headless: number;
  queryMix: string;
  loadAverage: number[];
  servers: ServerFigures[];
  change: ChangeFigures;
  memory: MemoryFigures;
}

interface Options { quick: boolean; progress: (message: string) => void }

// ---------------------------------------------------------------------------------------------
// The cluster: the objects kubenft watches, and the same names as unbound's local data

const clusterIPv4 = (index: number) => `10.0.${1 + Math.floor(index / 250)}.${1 + (index % 250)}`;
const clusterIPv6 = (index: number) => `fd00:10:96::${(index + 1).toString(16)}`;
const endpointAddress = (serial: number) => `10.244.${1 + Math.floor(serial / 250)}.${1 + (serial % 250)}`;
const headlessAddress = (index: number, slot: number) => `10.245.${Math.floor(index / 80)}.${3 * (index % 80) + slot + 1}`;
export const serviceName = (index: number) => `svc-${index}`;
const headlessName = (index: number) => `hl-${index}`;
export const fqdn = (name: string) => `${name}.${DNS_NAMESPACE}.svc.${ZONE}`;

export interface ServiceShape { headless?: boolean; dualStack?: boolean }

/** One Service with a named port and its EndpointSlice of `addresses` (ready). */
export function serviceObjects(name: string, clusterIPs: string[] | 'None', addresses: string[]): KubeObject[] {
  const ports = [{ name: 'http', protocol: 'TCP', port: 80 }];
  return [
    {
      apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: DNS_NAMESPACE },
      spec: clusterIPs === 'None' ? { clusterIP: 'None', ports } : { clusterIP: clusterIPs[0], clusterIPs, ipFamilies: clusterIPs.map((ip) => (ip.includes(':') ? 'IPv6' : 'IPv4')), ports },
    },
    {
      apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice',
      metadata: { name: `${name}-ipv4`, namespace: DNS_NAMESPACE, labels: { 'kubernetes.io/service-name': name } },
      addressType: 'IPv4', ports: [{ name: 'http', protocol: 'TCP', port: 8080 }],
      endpoints: addresses.map((address) => ({ addresses: [address], conditions: { ready: true, serving: true, terminating: false } })),
    },
  ];
}

/** `count` services of one shape, three endpoints each, in the bench namespace (which exists). */
export function clusterObjects(count: number, shape: ServiceShape = {}): KubeObject[] {
  const objects: KubeObject[] = [{ apiVersion: 'v1', kind: 'Namespace', metadata: { name: DNS_NAMESPACE } }];
  for (let index = 0; index < count; index++) {
    const addresses = [0, 1, 2].map((slot) => endpointAddress(3 * index + slot));
    const clusterIPs = shape.headless ? 'None' : shape.dualStack ? [clusterIPv4(index), clusterIPv6(index)] : [clusterIPv4(index)];
    objects.push(...serviceObjects(serviceName(index), clusterIPs, addresses));
  }
  return objects;
}

/** The dnsperf mix: per service A, AAAA, SRV, PTR and an NXDOMAIN name; per headless service its A (3 records). */
function queryFile(services: number, headless: number): string {
  const lines: string[] = [];
  for (let index = 0; index < services; index++) {
    const name = fqdn(serviceName(index));
    lines.push(`${name} A`, `${name} AAAA`, `_http._tcp.${name} SRV`, `${reverseName(clusterIPv4(index))} PTR`, `${fqdn(`missing-${index}`)} A`);
    if (index < headless) lines.push(`${fqdn(headlessName(index))} A`);
  }
  return `${lines.join('\n')}\n`;
}

function benchManifests(services: number, headless: number): KubeObject[] {
  const objects = clusterObjects(services, { dualStack: true });
  for (let index = 0; index < headless; index++) objects.push(...serviceObjects(headlessName(index), 'None', [0, 1, 2].map((slot) => headlessAddress(index, slot))));
  return objects;
}

/** unbound with the names kubenft answers for the same manifests, as local data, on one thread. */
function unboundConfig(directory: string, address: string, services: number, headless: number): string {
  const ttl = 5;
  const data = [`${ZONE}. ${ttl} IN SOA ns.dns.${ZONE}. hostmaster.${ZONE}. 1 7200 1800 86400 ${ttl}`];
  const pointers: string[] = [];
  for (let index = 0; index < services; index++) {
    const name = fqdn(serviceName(index));
    data.push(`${name}. ${ttl} IN A ${clusterIPv4(index)}`, `${name}. ${ttl} IN AAAA ${clusterIPv6(index)}`, `_http._tcp.${name}. ${ttl} IN SRV 0 50 80 ${name}.`);
    pointers.push(`${clusterIPv4(index)} ${ttl} ${name}.`, `${clusterIPv6(index)} ${ttl} ${name}.`);
  }
  for (let index = 0; index < headless; index++) {
    for (const slot of [0, 1, 2]) data.push(`${fqdn(headlessName(index))}. ${ttl} IN A ${headlessAddress(index, slot)}`);
  }
  return [
    'server:',
    `  interface: ${address}@53`, '  do-daemonize: no', '  username: ""', '  chroot: ""', '  pidfile: ""', `  directory: "${directory}"`,
    '  use-syslog: no', '  logfile: ""', '  verbosity: 0', '  num-threads: 1', '  so-rcvbuf: 4m', '  access-control: 0.0.0.0/0 allow', '  module-config: "iterator"',
    `  local-zone: "${ZONE}." static`, '  local-zone: "10.in-addr.arpa." static', '  local-zone: "6.9.0.0.0.1.0.0.0.0.d.f.ip6.arpa." static',
    ...data.map((record) => `  local-data: "${record}"`),
    ...pointers.map((pointer) => `  local-data-ptr: "${pointer}"`),
    '',
  ].join('\n');
}

// ---------------------------------------------------------------------------------------------
// dnsperf

/** Installs what only the bench needs; Debian's postinst must not start unbound in the root namespace (RUNLEVEL=1). */
function ensurePackages(): void {
  const missing = PACKAGES.filter(([command]) => execFileSync('sh', ['-c', `command -v ${command} || true`], { encoding: 'utf8' }).trim() === '').map(([, name]) => name);
  if (missing.length === 0) return;
  execFileSync('apt-get', ['-o', 'DPkg::Lock::Timeout=600', 'install', '-y', '-qq', '--no-install-recommends', ...missing], {
    stdio: 'inherit', env: { ...process.env, RUNLEVEL: '1', DEBIAN_FRONTEND: 'noninteractive' },
  });
}

interface DnsperfRun { sent: number; completed: number; lost: number; qps: number; seconds: number; latenciesMs: number[] }

function parseDnsperf(output: string): DnsperfRun {
  const figure = (pattern: RegExp) => {
    const match = pattern.exec(output);
    if (!match) throw new Error(`dnsperf printed no ${pattern.source}: ${output.slice(-500)}`);
    return Number(match[1]);
  };
  const latenciesMs = [...output.matchAll(/^> [A-Z]+ \S+ \S+ ([\d.]+)$/gm)].map((match) => Number(match[1]) * 1000);
  return {
    sent: figure(/Queries sent:\s+(\d+)/), completed: figure(/Queries completed:\s+(\d+)/), lost: figure(/Queries lost:\s+(\d+)/),
    qps: figure(/Queries per second:\s+([\d.]+)/), seconds: figure(/Run time \(s\):\s+([\d.]+)/), latenciesMs,
  };
}

/**
 * One dnsperf run. With `latencies`, every answer's latency is written to that file (dnsperf -v)
 * rather than streamed to this process, which is not pinned and would compete for the server's core.
 */
async function dnsperf(topology: Topology, server: string, queries: string, seconds: number, rate?: number, latencies?: string): Promise<DnsperfRun> {
  const dnsperfArgv = ['taskset', '-c', DNSPERF_CORE, 'dnsperf', '-s', server, '-d', queries, '-l', String(seconds), '-c', String(DNSPERF_CLIENTS),
    '-q', String(DNSPERF_OUTSTANDING), '-t', '2', ...(rate ? ['-Q', String(Math.round(rate))] : []), ...(latencies ? ['-v'] : [])];
  const argv = latencies ? ['sh', '-c', 'out="$1"; shift; "$@" > "$out"', 'sh', latencies, ...dnsperfArgv] : dnsperfArgv;
  const result = await topology.exec(topology.client, argv, { timeoutMs: (seconds + 30) * 1000 });
  if (result.code !== 0) throw new Error(`dnsperf against ${server}: ${result.stderr || result.stdout}`);
  return parseDnsperf(latencies ? readFileSync(latencies, 'utf8') : result.stdout);
}

/**
 * The search for the highest offered rate served with < 0.1% loss: from 80% of the unthrottled
 * rate, up by 20% while served, then halving the interval between the best served rate and the
 * lowest failed one.
 */
class RateSearch {
  readonly steps: RateStep[] = [];
  private served = 0;
  private failed = Infinity;

  constructor(private rate: number) {}

  get next(): number {
    return this.rate;
  }

  get maxQps(): number {
    return Math.round(this.served);
  }

  record(run: DnsperfRun): RateStep {
    const sentQps = run.sent / run.seconds;
    const loss = run.sent === 0 ? 1 : run.lost / run.sent;
    const served = loss < MAX_LOSS && sentQps >= MIN_SENT_RATIO * this.rate;
    const step = { offeredQps: Math.round(this.rate), sentQps: Math.round(sentQps), completedQps: Math.round(run.qps), loss, served };
    this.steps.push(step);
    if (served) this.served = Math.max(this.served, this.rate);
    else this.failed = Math.min(this.failed, this.rate);
    this.rate = this.failed === Infinity ? this.served * 1.2 : (this.served + this.failed) / 2;
    return step;
  }
}

interface Contender { name: string; address: string }

/**
 * Every server measured in turn at each step of its own search, so that the machine's drift (this
 * VM's throughput moved by 3× between runs minutes apart) falls on all of them alike.
 */
async function measureSideBySide(topology: Topology, contenders: Contender[], queries: string, latencyFile: string, seconds: number, progress: (message: string) => void): Promise<ServerFigures[]> {
  const unthrottledQps: number[] = [];
  for (const { name, address } of contenders) {
    await dnsperf(topology, address, queries, 2); // warm-up: code paths compiled, caches filled
    unthrottledQps.push((await dnsperf(topology, address, queries, seconds)).qps);
    progress(`${name} unthrottled: ${Math.round(unthrottledQps.at(-1)!)} qps`);
  }
  const searches = unthrottledQps.map((qps) => new RateSearch(qps * 0.8));
  for (let step = 0; step < RATE_STEPS; step++) {
    for (const [index, { name, address }] of contenders.entries()) {
      const rate = searches[index].next;
      const { sentQps, loss, served } = searches[index].record(await dnsperf(topology, address, queries, seconds, rate));
      progress(`${name} at ${Math.round(rate)} qps: sent ${sentQps}/s, loss ${(loss * 100).toFixed(3)}% → ${served ? 'served' : 'not served'}`);
    }
  }
  const figures: ServerFigures[] = [];
  for (const [index, { name, address }] of contenders.entries()) {
    const { maxQps, steps } = searches[index];
    const half = await dnsperf(topology, address, queries, seconds, Math.max(1, maxQps / 2), latencyFile);
    const halfLoad = {
      offeredQps: Math.round(maxQps / 2), answered: half.completed, lost: half.lost,
      p50Ms: quantile(half.latenciesMs, 0.5), p99Ms: quantile(half.latenciesMs, 0.99), maxMs: quantile(half.latenciesMs, 1),
    };
    progress(`${name}: max ${maxQps} qps with < 0.1% loss; at ${halfLoad.offeredQps} qps p50 ${halfLoad.p50Ms.toFixed(3)} ms, p99 ${halfLoad.p99Ms.toFixed(3)} ms`);
    figures.push({ server: name, unthrottledQps: Math.round(unthrottledQps[index]), steps, maxQps, halfLoad });
  }
  return figures;
}

async function until(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

const answers = async (topology: Topology, server: string) =>
  /status: NOERROR/.test((await topology.exec(topology.client, ['dig', '+time=1', '+tries=1', `@${server}`, fqdn(serviceName(0)), 'A'])).stdout);

// ---------------------------------------------------------------------------------------------
// The in-process measurements (bench-dns-worker.ts), one process each

async function inNode<T>(topology: Topology, args: string[]): Promise<T> {
  const program = join(projectRoot(), 'dist/scripts/lib/bench-dns-worker.js');
  const rootNamespace = String(statSync('/proc/self/ns/net').ino);
  const result = await topology.exec(topology.node, ['node', program, rootNamespace, ...args], { timeoutMs: 600_000 });
  if (result.code !== 0) throw new Error(`bench-dns-worker ${args.join(' ')}: ${result.stderr.slice(-2000)}`);
  return JSON.parse(result.stdout) as T;
}

// ---------------------------------------------------------------------------------------------

export async function runDnsBench(options: Options): Promise<DnsBenchResult> {
  ensurePackages();
  const services = 1_000;
  const headless = 100;
  const seconds = options.quick ? 3 : 5;
  const changes = options.quick ? 30 : 100;
  const memoryServices = 10_000;
  const loadAverage = os.loadavg();
  const directory = mkdtempSync(join(os.tmpdir(), 'kubenft-bench-dns-'));
  try {
    return await withTopology({ pods: [] }, async (topology) => {
      const manifests = join(directory, 'manifests.yaml');
      writeFileSync(manifests, benchManifests(services, headless).map((object) => stringify(object)).join('---\n'));
      const queries = join(directory, 'queries.txt');
      writeFileSync(queries, queryFile(services, headless));
      const unboundConf = join(directory, 'unbound.conf');
      const unboundAddress = topology.external.nodeIPv4;
      writeFileSync(unboundConf, unboundConfig(directory, unboundAddress, services, headless));
      // kubenft keeps its own queries out of conntrack; unbound's get the same treatment.
      const notrack = await topology.exec(topology.node, ['nft', '-f', '-'], {
        input: `table inet knft-bench-dns {\n  chain prerouting { type filter hook prerouting priority raw; ip daddr ${unboundAddress} udp dport 53 notrack; }\n`
          + `  chain output { type filter hook output priority raw; ip saddr ${unboundAddress} udp sport 53 notrack; }\n}\n`,
      });
      if (notrack.code !== 0) throw new Error(`nft: ${notrack.stderr}`);

      // Both serve at once (each pinned to the same core), measured in turn.
      const kubenft = topology.spawn(topology.node, ['taskset', '-c', SERVER_CORE, 'node', join(projectRoot(), 'dist/src/cli/main.js'),
        '--manifests', manifests, '--hostname-override', 'node-1', '--cluster-dns', KUBENFT_ADDRESS, '--dns-upstream', '127.0.0.1:5399',
        '--healthz-bind-address', '', '--metrics-bind-address', '']);
      const unbound = topology.spawn(topology.node, ['taskset', '-c', SERVER_CORE, 'unbound', '-d', '-c', unboundConf]);
      const contenders = [{ name: 'kubenft', address: KUBENFT_ADDRESS }, { name: 'unbound', address: unboundAddress }];
      let servers: ServerFigures[];
      try {
        for (const { name, address } of contenders) await until(() => answers(topology, address), 60_000, `${name} to answer`);
        servers = await measureSideBySide(topology, contenders, queries, join(directory, 'latencies.txt'), seconds, options.progress);
      } finally {
        await Promise.all([kubenft.stop(), unbound.stop()]);
      }

      const change = await inNode<ChangeFigures>(topology, ['change', String(memoryServices), String(changes)]);
      options.progress(`EndpointSlice change → answered, ${changes} changes at ${memoryServices} services: p50 ${change.p50Ms.toFixed(1)} ms, p99 ${change.p99Ms.toFixed(1)} ms`);
      const rss = async (shape: string, dns: string) => (await inNode<{ rssBytes: number }>(topology, ['memory', String(memoryServices), shape, dns])).rssBytes;
      const pair = async (shape: string): Promise<MemoryPair> => ({ offBytes: await rss(shape, 'off'), onBytes: await rss(shape, 'on') });
      const memory: MemoryFigures = { services: memoryServices, endpointsPerService: 3, clusterIP: await pair('clusterip'), headless: await pair('headless') };
      for (const [shape, figures] of [['ClusterIP', memory.clusterIP], ['headless', memory.headless]] as const) {
        options.progress(`RSS at ${memoryServices} ${shape} services × 3 endpoints: DNS off ${mb(figures.offBytes)} MB, on ${mb(figures.onBytes)} MB`);
      }
      return { services, headless, queryMix: `per service A, AAAA, SRV, PTR and a missing name (NXDOMAIN); the A of ${headless} headless services (3 records each)`, loadAverage, servers, change, memory };
    });
  } finally {
    rmSync(directory, { recursive: true, force: true });
  }
}

const mb = (bytes: number) => (bytes / 2 ** 20).toFixed(1);

/** The phase's section of the report: kubenft as ratios to unbound measured in the same run. */
export function dnsReport(result: DnsBenchResult): string {
  const unbound = result.servers.find((server) => server.server === 'unbound');
  const ratio = (value: number, base: number | undefined) => (base ? (value / base).toFixed(2) : '—');
  const { change, memory } = result;
  return [
    '', `## Cluster DNS (one run, side by side; ${result.services} dual-stack services + ${result.headless} headless; load average ${result.loadAverage.map((value) => value.toFixed(2)).join(' ')} at the start)`, '',
    `Query mix: ${result.queryMix}. Both servers pinned to one core (taskset -c ${SERVER_CORE}), dnsperf on the other with ${DNSPERF_CLIENTS} sockets; both sockets have a 4 MiB receive buffer;`,
    'max qps = the highest offered rate (dnsperf -Q, stepped) answered with < 0.1% loss; the servers are measured in turn at every step.', '',
    '| server | unthrottled qps | max qps (< 0.1% loss) | vs unbound | p50 ms at half | p99 ms at half | p99 vs unbound |', '|---|---|---|---|---|---|---|',
    ...result.servers.map((server) => `| ${server.server} | ${server.unthrottledQps} | ${server.maxQps} | ${ratio(server.maxQps, unbound?.maxQps)} | ${server.halfLoad.p50Ms.toFixed(3)} | ${server.halfLoad.p99Ms.toFixed(3)} | ${ratio(server.halfLoad.p99Ms, unbound?.halfLoad.p99Ms)} |`),
    '',
    `EndpointSlice change → answered (${change.changes} changes of a headless service beside ${change.services} services, from the slice reaching the agent to the DNS server answering from it): `
      + `p50 ${change.p50Ms.toFixed(1)} ms, p99 ${change.p99Ms.toFixed(1)} ms, max ${change.maxMs.toFixed(1)} ms; ${change.wrongAnswers} stale answers after the sync.`,
    '',
    `| agent RSS, ${memory.services} services × ${memory.endpointsPerService} endpoints | DNS off MB | DNS on MB | delta MB |`, '|---|---|---|---|',
    ...([['ClusterIP (A, PTR, SRV)', memory.clusterIP], ['headless (3 A, 3 endpoint names, 3 PTR, SRV)', memory.headless]] as const)
      .map(([shape, pair]) => `| ${shape} | ${mb(pair.offBytes)} | ${mb(pair.onBytes)} | +${mb(pair.onBytes - pair.offBytes)} |`),
    '',
  ].join('\n');
}
