import { existsSync, mkdirSync, readFileSync, readdirSync, rmdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import { type SocketLbFrontend, planSocketLb } from './plan.js';
import { type ApplyReport, type SocketLbHandle, SocketLbMaps, socketLbAddon } from './maps.js';
import type { ClusterState } from '../cluster/cluster-state.js';
import { servicePortViews } from '../cluster/service-ports.js';
import { type NodeContext, nodeContextOf } from '../cluster/topology.js';
import { netnsInode } from '../kernel/netns-ownership.js';
import type { StateChanges, StateDataplane } from '../capability.js';

// Socket-level load balancing beside the nftables rules: cgroup BPF programs rewrite a ClusterIP
// to an endpoint in connect()/sendmsg(), and this dataplane keeps their maps equal to the plan.

export interface SocketLbSettings {
  /** A cgroup v2 directory; undefined: the cgroup v2 root. */
  cgroup?: string;
  hostOnly: boolean;
  /** --socket-lb-pin-dir: the pins go in its subdirectory for this network namespace. */
  pinDir: string;
}

/** Where the kernel keeps bpf filesystems by convention; kubenft mounts one there if it is missing. */
const BPFFS_ROOT = '/sys/fs/bpf';

/** The cgroup v2 mount point, from /proc/self/mountinfo (hybrid layouts put it at /sys/fs/cgroup/unified). */
export function cgroupV2Root(mountinfo = readFileSync('/proc/self/mountinfo', 'utf8')): string {
  for (const line of mountinfo.split('\n')) {
    const [mount, filesystem] = line.split(' - ');
    if (filesystem?.split(' ')[0] === 'cgroup2') return mount.split(' ')[4].replace(/\\(\d{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
  }
  throw new Error('socket LB: no cgroup v2 filesystem is mounted (see /proc/self/mountinfo); mount one or give --socket-lb-cgroup');
}

/**
 * Where this network namespace's socket LB is pinned: a directory of --socket-lb-pin-dir named
 * after the namespace, so agents (and one-off commands) of other namespaces sharing the node's
 * bpf filesystem never open, replace or remove it. The namespace's owner (src/agent/ownership.ts)
 * is the only process that changes it; an inode reused by a later namespace finds pins whose owner
 * is gone, which its agent takes over like a restarted one.
 */
export const netnsPinDir = (pinDir: string): string => join(pinDir, `netns-${netnsInode()}`);

/** The pin directory, on a bpf filesystem (mounting one at /sys/fs/bpf when that is where it goes). */
function preparePinDir(pinDir: string): void {
  const addon = socketLbAddon();
  const parent = dirname(pinDir);
  if (!addon.bpffs(parent, parent === BPFFS_ROOT)) throw new Error(`socket LB: ${parent} is not a bpf filesystem: mount one there (mount -t bpf bpf ${parent}) or choose another --socket-lb-pin-dir`);
  mkdirSync(netnsPinDir(pinDir), { recursive: true, mode: 0o700 });
}

/**
 * A failure of the programs or their maps, named as the socket LB's, keeping the kernel's errno and
 * its name (E2BIG: a map is full; EPERM: no CAP_BPF or a locked-down kernel) in the message, where
 * the log and the CLI show it, and on the error.
 */
function socketLbError(cause: unknown): Error {
  const { message, errno, code } = cause as Error & { errno?: number; code?: string };
  return Object.assign(new Error(`socket LB: ${message}${code ? ` (${code})` : ''}`, { cause }), errno === undefined ? {} : { errno, code });
}

/**
 * Detaches this network namespace's pinned programs and removes its pins (and --socket-lb-pin-dir
 * once no namespace has pins there); never mounts anything. Only the namespace's owner may call it.
 */
export function cleanupSocketLb(pinDir: string): number {
  const removed = socketLbAddon().cleanup(netnsPinDir(pinDir));
  try {
    rmdirSync(pinDir);
  } catch {
    // Missing, or other namespaces' pins are still there.
  }
  return removed;
}

/**
 * An agent started without --socket-lb removes the programs a previous one of its network
 * namespace left pinned (as kube-proxy removes the other mode's rules): turning the socket LB off
 * is dropping the flag. Other namespaces' pins are theirs.
 */
export function removeLeftoverSocketLb(pinDir: string, log: Logger): void {
  const removed = cleanupSocketLb(pinDir);
  if (removed > 0) log.info({ pinDir: netnsPinDir(pinDir), removed }, 'socket LB is off: detached the pinned programs a previous agent of this network namespace left');
}

export class SocketLbDataplane implements StateDataplane {
  readonly name = 'socket-lb';
  private handle?: SocketLbHandle;
  private maps?: SocketLbMaps;
  private readonly cgroup: string;
  /** Per service key, the frontends the last update planned for it. */
  private readonly frontendsOf = new Map<string, Set<string>>();
  private frontendsGauge?: Gauge;
  private destroyedSockets?: Counter;

  constructor(private readonly settings: SocketLbSettings, private readonly log: Logger) {
    this.cgroup = settings.cgroup ?? cgroupV2Root();
  }

  /** Loads and attaches the programs, taking over pinned ones; on failure nothing stays attached. */
  attach(_state: ClusterState, registry: Registry): void {
    const { hostOnly } = this.settings;
    const addon = socketLbAddon();
    preparePinDir(this.settings.pinDir);
    const pinDir = netnsPinDir(this.settings.pinDir);
    const adopting = existsSync(pinDir) && readdirSync(pinDir).length > 0;
    let handle: SocketLbHandle | undefined;
    try {
      handle = new addon.SocketLb({ pinDir, hostNetnsCookie: hostOnly ? addon.netnsCookie() : undefined });
      handle.attach(this.cgroup);
      this.maps = new SocketLbMaps(handle);
    } catch (error) {
      handle?.close();
      // Map pins made by this failed start must not look like state to adopt next time.
      if (!adopting) addon.cleanup(pinDir);
      throw socketLbError(error);
    }
    this.handle = handle;
    this.log.info({ cgroup: this.cgroup, pinDir, hostOnly, adopted: this.maps.size }, adopting ? 'socket LB took over its pinned programs' : 'socket LB attached');
    this.frontendsGauge = new Gauge({ name: 'kubenft_socket_lb_frontends', help: 'ClusterIP frontends in the socket LB maps', registers: [registry] });
    this.destroyedSockets = new Counter({ name: 'kubenft_socket_lb_udp_sockets_destroyed_total', help: 'Connected UDP sockets destroyed because their endpoint left the service', registers: [registry] });
  }

  async update(state: ClusterState, changes: StateChanges): Promise<void> {
    if (!this.maps || !this.handle) return;
    const node = nodeContextOf(state);
    let planned: Map<string, SocketLbFrontend | undefined>;
    if (changes.services === 'full') {
      this.frontendsOf.clear();
      planned = new Map();
      for (const key of state.services.keys()) this.planService(state, node, key, planned);
    } else {
      planned = new Map();
      for (const key of changes.services) {
        const before = this.frontendsOf.get(key) ?? new Set();
        this.planService(state, node, key, planned);
        const after = this.frontendsOf.get(key) ?? new Set();
        for (const frontend of before) if (!after.has(frontend) && !planned.has(frontend)) planned.set(frontend, undefined);
      }
    }
    let report: ApplyReport;
    try {
      report = this.maps.apply(planned, changes.services === 'full');
    } catch (error) {
      throw socketLbError(error);
    }
    this.frontendsGauge?.set(this.maps.size);
    if (report.removedUdpEndpoints.length > 0) {
      const destroyed = await this.handle.destroyUdpSockets(this.cgroup, SocketLbMaps.endpointsBuffer(report.removedUdpEndpoints));
      this.destroyedSockets?.inc(destroyed);
      if (destroyed > 0) this.log.info({ destroyed }, 'socket LB destroyed connected UDP sockets of removed endpoints');
    }
  }

  async stop(): Promise<void> {
    // The pinned links keep balancing until the next agent takes them over.
    this.handle?.close();
    this.handle = undefined;
  }

  private planService(state: ClusterState, node: NodeContext, key: string, into: Map<string, SocketLbFrontend | undefined>): void {
    const frontends = planSocketLb(servicePortViews(state, key), node);
    if (frontends.size > 0) this.frontendsOf.set(key, new Set(frontends.keys()));
    else this.frontendsOf.delete(key);
    for (const [frontendKey, frontend] of frontends) into.set(frontendKey, frontend);
  }
}
