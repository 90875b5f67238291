// A throw-away network made of namespaces: one "node" (where the proxy's
// dataplane runs), one "client" outside the cluster, and N pods each running
// the hostnames server. Nothing is ever created in the root namespace: veth
// pairs are made from inside the node namespace with the peer placed directly
// in the other namespace, and there is no route to the outside world.
//
// Addressing (see EXTERNAL and podGateways):
//   client eth0 192.168.100.2/24, fd00:100::2/64 <-> node ext0 192.168.100.1/24,
//     fd00:100::1/64 (+ spec.nodeAddresses as /32, /128); client default via node
//   pod eth0 POD/32, POD6/128, default via GW onlink <-> node podI GW/32, GW6/128,
//     with a host route POD/32 (POD6/128) dev podI. GW is the .1 of the pod's /24,
//     GW6 the ::1 of its /64. Host routes make any pod IPs work, even two pods in
//     one /24 (each veth then carries the same GW).
//   node kube-svc (dummy, or ifb where the kernel lacks dummy): service CIDR routes.
import { execFile, spawn as spawnChild, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { isIPv4, isIPv6 } from 'node:net';
import ipaddr from 'ipaddr.js';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEFAULT_MAX_RUN_MS, probeCliArgs, validateProbeOptions, type ProbeOptions, type ProbeReport } from './probe.js';

export const EXTERNAL = {
  nodeInterface: 'ext0',
  nodeIPv4: '192.168.100.1',
  nodeIPv6: 'fd00:100::1',
  clientIPv4: '192.168.100.2',
  clientIPv6: 'fd00:100::2',
} as const;
export const DEFAULT_SERVICE_CIDRS = ['10.0.0.0/16', 'fd00:10:96::/108'];
export const SERVICE_INTERFACE = 'kube-svc';
export const DEFAULT_POD_PORT = 9376;

const DEFAULT_EXEC_TIMEOUT_MS = 30_000;
const STOP_GRACE_MS = 3_000;
// Node starting on a loaded machine (the suite runs test files side by side) can take well over 10 s.
const SERVER_READY_TIMEOUT_MS = 30_000;
const OUTPUT_TAIL_CHARS = 64 * 1024;

export interface PodSpec {
  /** Reported by the hostnames server; defaults to pod<index>. */
  name?: string;
  ipv4?: string;
  ipv6?: string;
  /** TCP (and with udp, UDP) ports of the hostnames server; default [9376]. */
  ports?: number[];
  /** Also serve UDP; default true. */
  udp?: boolean;
}

export interface TopologySpec {
  pods: PodSpec[];
  /** Routed to the kube-svc dummy in the node; default DEFAULT_SERVICE_CIDRS. */
  serviceCidrs?: string[];
  /** Extra node addresses on ext0 (e.g. for NodePort / externalIPs). */
  nodeAddresses?: string[];
  /** How long each pod's server may take to start; default 30 s (many pods on a loaded machine need more). */
  serverReadyTimeoutMs?: number;
}

export interface ExecOptions {
  input?: string;
  timeoutMs?: number;
}

export interface ExecResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

export interface ProcessHandle {
  readonly pid: number;
  readonly child: ChildProcess;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** The last 64 KiB of each stream (collected so the child never blocks on a full pipe). */
  output(): { stdout: string; stderr: string };
  /** Resolves once stdout has matched `pattern`; rejects on timeout or exit. */
  waitForOutput(pattern: RegExp, timeoutMs: number): Promise<void>;
  /** SIGTERM, then SIGKILL after 3 s; resolves once the process has exited. */
  stop(): Promise<void>;
}

export interface Pod {
  name: string;
  ns: string;
  ipv4?: string;
  ipv6?: string;
  gatewayIPv4?: string;
  gatewayIPv6?: string;
  /** The pod's veth end in the node namespace. */
  nodeInterface: string;
  ports: number[];
  udp: boolean;
  server: ProcessHandle;
}

export interface Topology {
  readonly node: string;
  readonly client: string;
  readonly pods: readonly Pod[];
  readonly external: typeof EXTERNAL;
  readonly nodeAddresses: readonly string[];
  readonly serviceCidrs: readonly string[];
  exec(ns: string, argv: string[], options?: ExecOptions): Promise<ExecResult>;
  spawn(ns: string, argv: string[]): ProcessHandle;
  probe(fromNs: string, options: ProbeOptions): Promise<ProbeReport>;
  destroy(): Promise<void>;
}

// ---------------------------------------------------------------------------
// Addresses

function ipv4Gateway(address: string): string {
  const octets = address.split('.');
  return `${octets.slice(0, 3).join('.')}.1`;
}

/** ::1 of the pod's /64. */
function ipv6Gateway(address: string): string {
  const parts = ipaddr.IPv6.parse(address).parts.slice(0, 4);
  return new ipaddr.IPv6([...parts, 0, 0, 0, 1]).toString();
}

const sameIPv6 = (a: string, b: string) => ipaddr.IPv6.parse(a).toNormalizedString() === ipaddr.IPv6.parse(b).toNormalizedString();

function checkPodSpec(pod: PodSpec, index: number): void {
  const label = `pods[${index}]`;
  if (pod.ipv4 === undefined && pod.ipv6 === undefined) throw new Error(`${label}: needs ipv4 or ipv6`);
  if (pod.ipv4 !== undefined && !isIPv4(pod.ipv4)) throw new Error(`${label}: bad ipv4 ${pod.ipv4}`);
  if (pod.ipv6 !== undefined && !isIPv6(pod.ipv6)) throw new Error(`${label}: bad ipv6 ${pod.ipv6}`);
  // The gateway lives on the node; a pod cannot also own it.
  if (pod.ipv4 !== undefined && pod.ipv4 === ipv4Gateway(pod.ipv4)) {
    throw new Error(`${label}: ${pod.ipv4} is its /24's gateway address`);
  }
  if (pod.ipv6 !== undefined && sameIPv6(pod.ipv6, ipv6Gateway(pod.ipv6))) {
    throw new Error(`${label}: ${pod.ipv6} is its /64's gateway address`);
  }
}

// ---------------------------------------------------------------------------
// Commands

function findRepoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const parent = dirname(dir);
    if (parent === dir) throw new Error('package.json not found above topology module');
    dir = parent;
  }
  return dir;
}

/** The compiled helper programs; tests run after tsc, even when this module runs from .ts. */
function compiledProgram(name: 'hostnames-server.js' | 'probe.js'): string {
  const path = join(findRepoRoot(), 'dist', 'scripts', 'lib', name);
  if (!existsSync(path)) throw new Error(`${path} is missing: run tsc first`);
  return path;
}

/** Runs `ip` in the root namespace; every call here names a namespace of ours (-n / netns). */
function ip(...args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile('ip', args, { timeout: 10_000 }, (error, _stdout, stderr) => {
      if (error) reject(new Error(`ip ${args.join(' ')}: ${stderr.trim() || error.message}`));
      else resolve();
    });
  });
}

function addressArgs(address: string, prefixLength: number, device: string): string[] {
  return isIPv6(address)
    ? ['-6', 'addr', 'add', `${address}/${prefixLength}`, 'dev', device, 'nodad']
    : ['addr', 'add', `${address}/${prefixLength}`, 'dev', device];
}

function hostPrefix(address: string): number {
  return isIPv6(address) ? 128 : 32;
}

function familyFlag(addressOrCidr: string): string {
  return addressOrCidr.includes(':') ? '-6' : '-4';
}

function tailAppend(tail: string, chunk: string): string {
  const joined = tail + chunk;
  return joined.length > OUTPUT_TAIL_CHARS ? joined.slice(-OUTPUT_TAIL_CHARS) : joined;
}

/**
 * The environment of a process: the caller's, except for the topology's own helper programs (the
 * pods' hostnames servers, the probes). Under tap, NODE_OPTIONS loads tap's process-info and
 * coverage hooks into every node process, a hooks thread and half a second of start-up each; a
 * suite starts thousands of helpers, and what it measures is kubenft, not them.
 */
function processEnv(argv: string[]): NodeJS.ProcessEnv {
  const helpers = join(findRepoRoot(), 'dist', 'scripts', 'lib');
  if (argv[0] !== process.execPath || !argv[1]?.startsWith(`${helpers}/`)) return process.env;
  const env = { ...process.env };
  delete env.NODE_OPTIONS;
  return env;
}

function startProcess(ns: string, argv: string[]): ProcessHandle {
  // `ip netns exec` execs the command in place, so child.pid is the command's PID.
  const child = spawnChild('ip', ['netns', 'exec', ns, ...argv], { stdio: ['pipe', 'pipe', 'pipe'], env: processEnv(argv) });
  child.on('error', () => {}); // a failed spawn is reported by the throw below
  if (child.pid === undefined) throw new Error(`could not start ${argv.join(' ')} in ${ns}`);
  const pid = child.pid;
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (stdout = tailAppend(stdout, chunk)));
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr = tailAppend(stderr, chunk)));
  child.stdin!.on('error', () => {}); // EPIPE once the child has exited
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const isRunning = (): boolean => child.exitCode === null && child.signalCode === null;

  return {
    pid,
    child,
    exited,
    output: () => ({ stdout, stderr }),
    waitForOutput(pattern, timeoutMs) {
      return new Promise((resolve, reject) => {
        const describe = (): string => `${argv.join(' ')} in ${ns} (pid ${pid}); stderr: ${stderr.trim()}`;
        const check = (): void => {
          if (pattern.test(stdout)) done();
        };
        const onExit = (): void => done(new Error(`exited before printing ${pattern}: ${describe()}`));
        const timer = setTimeout(() => done(new Error(`no ${pattern} within ${timeoutMs} ms: ${describe()}`)), timeoutMs);
        const done = (error?: Error): void => {
          clearTimeout(timer);
          child.stdout!.off('data', check);
          child.off('exit', onExit);
          if (error) reject(error);
          else resolve();
        };
        child.stdout!.on('data', check);
        child.once('exit', onExit);
        check();
        if (!isRunning()) onExit();
      });
    },
    async stop() {
      if (!isRunning()) return;
      child.kill('SIGTERM');
      const escalate = setTimeout(() => {
        if (isRunning()) child.kill('SIGKILL');
      }, STOP_GRACE_MS);
      await exited;
      clearTimeout(escalate);
    },
  };
}

// ---------------------------------------------------------------------------
// Cleanup when the test process ends without destroy(): exit, SIGINT, SIGTERM.

const liveTopologies = new Set<NetnsTopology>();
// SIGALRM is how tap ends a test file that ran past its timeout.
const EXIT_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGALRM'] as const;
const signalHandlers = new Map<NodeJS.Signals, () => void>(
  EXIT_SIGNALS.map((signal) => [signal, () => onExitSignal(signal)]),
);

function destroyAllNow(): void {
  for (const topology of [...liveTopologies]) topology.destroyNow();
}

function onExitSignal(signal: NodeJS.Signals): void {
  destroyAllNow(); // also removes our handlers
  // Re-raise so the signal still ends the process: with no listener left the
  // default action runs; libraries like signal-exit held back because our
  // listener existed, and now act on the second delivery.
  process.kill(process.pid, signal);
}

const NAMESPACE_PREFIX = 'knft';
/** knft-<pid of the process that made it>-<topology>-<role> */
const OWN_NAMESPACE = new RegExp(`^${NAMESPACE_PREFIX}-(\\d+)-\\d+-[a-z0-9]+$`);

function processIsAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * A process killed with SIGKILL (tap's last resort after a timeout, or a run stopped from outside)
 * cannot delete its namespaces. The next topology of any run deletes them: they carry the PID of
 * the process that made them, and that process is gone. Namespaces of live processes (a parallel
 * run's) and every other namespace are left alone.
 */
function removeOrphanedNamespaces(): void {
  const listing = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8', timeout: 10_000 }).stdout ?? '';
  for (const line of listing.split('\n')) {
    const name = line.split(' ')[0];
    const owner = OWN_NAMESPACE.exec(name);
    if (owner && Number(owner[1]) !== process.pid && !processIsAlive(Number(owner[1]))) {
      spawnSync('ip', ['netns', 'delete', name], { timeout: 10_000 });
    }
  }
}

function track(topology: NetnsTopology): void {
  removeOrphanedNamespaces();
  if (liveTopologies.size === 0) {
    process.on('exit', destroyAllNow);
    for (const [signal, handler] of signalHandlers) process.on(signal, handler);
  }
  liveTopologies.add(topology);
}

function untrack(topology: NetnsTopology): void {
  if (!liveTopologies.delete(topology) || liveTopologies.size > 0) return;
  process.off('exit', destroyAllNow);
  for (const [signal, handler] of signalHandlers) process.off(signal, handler);
}

// ---------------------------------------------------------------------------

let topologyCounter = 0;

class NetnsTopology implements Topology {
  readonly external = EXTERNAL;
  readonly pods: Pod[] = [];
  node = '';
  client = '';
  private readonly prefix = `${NAMESPACE_PREFIX}-${process.pid}-${++topologyCounter}`;
  private readonly namespaces: string[] = [];
  private readonly children = new Set<ProcessHandle>();
  private destroying: Promise<void> | undefined;

  constructor(
    readonly serviceCidrs: readonly string[],
    readonly nodeAddresses: readonly string[],
  ) {}

  async build(podSpecs: PodSpec[], serverReadyTimeoutMs = SERVER_READY_TIMEOUT_MS): Promise<void> {
    const serverProgram = compiledProgram('hostnames-server.js');
    this.node = await this.addNamespace('node');
    this.client = await this.addNamespace('client');
    await this.sysctl(this.node, 'net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1');
    await this.buildExternalLink();
    await this.buildServiceRoutes();
    const plumbedPods: Array<Omit<Pod, 'server'>> = [];
    for (const [index, spec] of podSpecs.entries()) {
      plumbedPods.push(await this.buildPod(spec, index));
    }
    const startedPods = plumbedPods.map(async (pod): Promise<Pod> => {
      const ports = pod.ports.flatMap((port) => ['--port', String(port)]);
      const udp = pod.udp ? ['--udp'] : [];
      const argv = [process.execPath, serverProgram, '--name', pod.name, ...ports, ...udp, '--exit-on-stdin-eof'];
      const server = this.spawn(pod.ns, argv);
      await server.waitForOutput(/^ready$/m, serverReadyTimeoutMs);
      return { ...pod, server };
    });
    this.pods.push(...(await Promise.all(startedPods)));
  }

  private async addNamespace(role: string): Promise<string> {
    const name = `${this.prefix}-${role}`;
    await ip('netns', 'add', name);
    this.namespaces.push(name);
    await ip('-n', name, 'link', 'set', 'lo', 'up');
    // Interfaces created later inherit "default": no DAD, so IPv6 works at once
    // (also for the link-local addresses that `nodad` cannot cover).
    await this.sysctl(name, 'net.ipv6.conf.all.accept_dad=0', 'net.ipv6.conf.default.accept_dad=0');
    return name;
  }

  private async sysctl(ns: string, ...settings: string[]): Promise<void> {
    await ip('netns', 'exec', ns, 'sysctl', '-q', '-w', ...settings);
  }

  private async buildExternalLink(): Promise<void> {
    const { node, client } = this;
    const link = EXTERNAL.nodeInterface;
    await ip('-n', node, 'link', 'add', link, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', client);
    await ip('-n', node, ...addressArgs(EXTERNAL.nodeIPv4, 24, link));
    await ip('-n', node, ...addressArgs(EXTERNAL.nodeIPv6, 64, link));
    for (const address of this.nodeAddresses) {
      await ip('-n', node, ...addressArgs(address, hostPrefix(address), link));
    }
    await ip('-n', node, 'link', 'set', link, 'up');
    await ip('-n', client, ...addressArgs(EXTERNAL.clientIPv4, 24, 'eth0'));
    await ip('-n', client, ...addressArgs(EXTERNAL.clientIPv6, 64, 'eth0'));
    await ip('-n', client, 'link', 'set', 'eth0', 'up');
    await ip('-n', client, '-4', 'route', 'add', 'default', 'via', EXTERNAL.nodeIPv4);
    await ip('-n', client, '-6', 'route', 'add', 'default', 'via', EXTERNAL.nodeIPv6);
  }

  // Locally generated traffic to a VIP needs a route before the nat output hook
  // can rewrite it; a dummy device gives it one that leads nowhere. Kernels
  // built without dummy get an ifb instead: also NOARP, also drops silently.
  private async buildServiceRoutes(): Promise<void> {
    await ip('-n', this.node, 'link', 'add', SERVICE_INTERFACE, 'type', 'dummy').catch(() =>
      ip('-n', this.node, 'link', 'add', SERVICE_INTERFACE, 'type', 'ifb'),
    );
    await ip('-n', this.node, 'link', 'set', SERVICE_INTERFACE, 'up');
    for (const cidr of this.serviceCidrs) {
      await ip('-n', this.node, familyFlag(cidr), 'route', 'add', cidr, 'dev', SERVICE_INTERFACE);
    }
  }

  private async buildPod(spec: PodSpec, index: number): Promise<Omit<Pod, 'server'>> {
    const ns = await this.addNamespace(`pod${index}`);
    const nodeInterface = `pod${index}`;
    const pod = {
      name: spec.name ?? `pod${index}`,
      ns,
      ipv4: spec.ipv4,
      ipv6: spec.ipv6,
      gatewayIPv4: spec.ipv4 === undefined ? undefined : ipv4Gateway(spec.ipv4),
      gatewayIPv6: spec.ipv6 === undefined ? undefined : ipv6Gateway(spec.ipv6),
      nodeInterface,
      ports: spec.ports ?? [DEFAULT_POD_PORT],
      udp: spec.udp !== false,
    };
    await ip('-n', this.node, 'link', 'add', nodeInterface, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns);
    await ip('-n', this.node, 'link', 'set', nodeInterface, 'up');
    await ip('-n', ns, 'link', 'set', 'eth0', 'up');
    const families = [
      { address: pod.ipv4, gateway: pod.gatewayIPv4 },
      { address: pod.ipv6, gateway: pod.gatewayIPv6 },
    ];
    for (const { address, gateway } of families) {
      if (address === undefined || gateway === undefined) continue;
      const family = familyFlag(address);
      await ip('-n', ns, ...addressArgs(address, hostPrefix(address), 'eth0'));
      // onlink: the pod has only a host address, so the gateway is in no connected subnet.
      await ip('-n', ns, family, 'route', 'add', 'default', 'via', gateway, 'dev', 'eth0', 'onlink');
      await ip('-n', this.node, ...addressArgs(gateway, hostPrefix(gateway), nodeInterface));
      await ip('-n', this.node, family, 'route', 'add', `${address}/${hostPrefix(address)}`, 'dev', nodeInterface);
    }
    return pod;
  }

  async exec(ns: string, argv: string[], options: ExecOptions = {}): Promise<ExecResult> {
    const timeoutMs = options.timeoutMs ?? DEFAULT_EXEC_TIMEOUT_MS;
    const handle = this.spawn(ns, argv);
    // Complete output, unlike the bounded tails a spawned process keeps.
    let stdout = '';
    let stderr = '';
    handle.child.stdout!.on('data', (chunk: string) => (stdout += chunk));
    handle.child.stderr!.on('data', (chunk: string) => (stderr += chunk));
    handle.child.stdin!.end(options.input ?? '');
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      handle.child.kill('SIGKILL');
    }, timeoutMs);
    // 'close' (not 'exit') so that all output has been read.
    return await new Promise((resolve) => {
      handle.child.once('close', (code: number | null, signal: NodeJS.Signals | null) => {
        clearTimeout(timer);
        resolve({ code, signal, stdout, stderr, timedOut });
      });
    });
  }

  spawn(ns: string, argv: string[]): ProcessHandle {
    if (this.destroying) throw new Error('topology is destroyed');
    if (!this.namespaces.includes(ns)) throw new Error(`${ns} is not a namespace of this topology`);
    const handle = startProcess(ns, argv);
    this.children.add(handle);
    void handle.exited.then(() => this.children.delete(handle));
    return handle;
  }

  async probe(fromNs: string, options: ProbeOptions): Promise<ProbeReport> {
    validateProbeOptions(options);
    const runBudgetMs = Math.min(options.count * options.timeoutMs, options.maxRunMs ?? DEFAULT_MAX_RUN_MS);
    const argv = [process.execPath, compiledProgram('probe.js'), ...probeCliArgs(options)];
    const result = await this.exec(fromNs, argv, { timeoutMs: runBudgetMs + 10_000 });
    if (result.code !== 0) {
      throw new Error(`probe in ${fromNs} failed (code ${result.code}, timedOut ${result.timedOut}): ${result.stderr}`);
    }
    return JSON.parse(result.stdout) as ProbeReport;
  }

  destroy(): Promise<void> {
    this.destroying ??= (async () => {
      await Promise.all([...this.children].map((child) => child.stop()));
      const failures: Error[] = [];
      for (const ns of [...this.namespaces].reverse()) {
        try {
          await ip('netns', 'delete', ns);
          this.namespaces.splice(this.namespaces.indexOf(ns), 1);
        } catch (error) {
          failures.push(error as Error);
        }
      }
      // Survivors stay tracked, so the exit handler tries once more.
      if (failures.length > 0) throw new AggregateError(failures, 'could not delete every namespace');
      untrack(this);
    })();
    return this.destroying;
  }

  /** Synchronous last resort for exit and signal handlers: no graceful stop. */
  destroyNow(): void {
    this.destroying ??= Promise.resolve();
    for (const child of this.children) child.child.kill('SIGKILL');
    for (const ns of this.namespaces.reverse()) spawnSync('ip', ['netns', 'delete', ns], { timeout: 10_000 });
    this.namespaces.length = 0;
    untrack(this);
  }
}

export async function createTopology(spec: TopologySpec): Promise<Topology> {
  spec.pods.forEach(checkPodSpec);
  const topology = new NetnsTopology(spec.serviceCidrs ?? DEFAULT_SERVICE_CIDRS, spec.nodeAddresses ?? []);
  track(topology);
  try {
    await topology.build(spec.pods, spec.serverReadyTimeoutMs);
  } catch (error) {
    await topology.destroy();
    throw error;
  }
  return topology;
}

/** Runs `fn` with a fresh topology and destroys it afterwards, whatever happens. */
export async function withTopology<T>(spec: TopologySpec, fn: (topology: Topology) => Promise<T>): Promise<T> {
  const topology = await createTopology(spec);
  try {
    return await fn(topology);
  } finally {
    await topology.destroy();
  }
}
