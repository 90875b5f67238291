import { readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import ipaddr from 'ipaddr.js';
import type { Logger } from 'pino';
import {
  readModuleParameter, readSysctl, SysctlError, sysctlExists, sysctlWritable, writeModuleParameter, writeSysctl,
} from '../kernel/sysctl.js';

// The privileged node setup kube-proxy does as it starts, and all that --init-only does: the
// conntrack table's size and timeouts, and route_localnet where NodePorts answer on loopback.
// Every value is written in the network namespace the agent runs in, and only where it differs.
// As in kube-proxy, 0 means "leave the kernel's value", and the conntrack limit is only ever
// raised (pkg/proxy/conntrack: a larger limit someone set stays).

const CONNTRACK_MAX = 'net.netfilter.nf_conntrack_max';
const ROUTE_LOCALNET = 'net.ipv4.conf.all.route_localnet';
const HASHSIZE = { module: 'nf_conntrack', parameter: 'hashsize' } as const;
const IPV4_LOOPBACK = ipaddr.parseCIDR('127.0.0.0/8');

/** kube-proxy's conntrack settings (--conntrack-* and the config file's conntrack section). */
export interface ConntrackOptions {
  /** kube-proxy's semantics throughout: 0 means "leave the kernel's value as it is". */
  maxPerCore: number;
  min: number;
  tcpEstablishedTimeoutMs: number;
  tcpCloseWaitTimeoutMs: number;
  tcpBeLiberal: boolean;
  udpTimeoutMs: number;
  udpStreamTimeoutMs: number;
}

/** What the node setup reads of the settings. */
export interface NodeSetupSettings {
  conntrack: ConntrackOptions;
  nodePortAddresses: string[];
}

/** One kernel value the options ask for. */
export interface KernelSetting {
  /** A sysctl (net.netfilter.nf_conntrack_max) or a module parameter (nf_conntrack.hashsize). */
  name: string;
  value: number;
  /** The flags that ask for it, for the log and the errors. */
  source: string;
  /** Only ever raised: a larger value stays. */
  raiseOnly?: boolean;
  /**
   * Kept by the kernel for the whole host, not per network namespace: written only from the
   * initial namespace (elsewhere the kernel makes nf_conntrack_max read-only).
   */
  hostWide?: boolean;
}

/** kube-proxy's getConntrackMax: max(maxPerCore × CPUs, min); 0 when maxPerCore is 0 (leave the limit). */
export function conntrackMax(conntrack: Pick<ConntrackOptions, 'maxPerCore' | 'min'>, cpuCount: number): number {
  if (conntrack.maxPerCore <= 0) return 0;
  return Math.max(conntrack.maxPerCore * cpuCount, conntrack.min);
}

/** kube-proxy's ContainsIPv4Loopback: NodePorts answer on 127.0.0.1, which needs route_localnet. */
export function nodePortsOnIPv4Loopback(nodePortAddresses: string[]): boolean {
  return nodePortAddresses.some((entry) => {
    if (entry === 'localhost' || entry === 'all') return true;
    if (entry === 'primary') return false;
    const [address, bits] = ipaddr.parseCIDR(entry);
    return address.kind() === 'ipv4' && (address.match(IPV4_LOOPBACK) || IPV4_LOOPBACK[0].match([address, bits]));
  });
}

const seconds = (ms: number) => Math.floor(ms / 1000);

/** What the options ask of the kernel. */
export function wantedKernelSettings(options: NodeSetupSettings, cpuCount = cpus().length || 1): KernelSetting[] {
  const { conntrack } = options;
  const settings: KernelSetting[] = [];
  const max = conntrackMax(conntrack, cpuCount);
  if (max > 0) {
    const source = '--conntrack-max-per-core, --conntrack-min';
    settings.push({ name: CONNTRACK_MAX, value: max, source, raiseOnly: true, hostWide: true });
    // The hash table holds four entries a bucket, as kube-proxy sizes it.
    settings.push({ name: `${HASHSIZE.module}.${HASHSIZE.parameter}`, value: Math.floor(max / 4), source, raiseOnly: true, hostWide: true });
  }
  const timeouts: [number, string, string][] = [
    [conntrack.tcpEstablishedTimeoutMs, 'net.netfilter.nf_conntrack_tcp_timeout_established', '--conntrack-tcp-timeout-established'],
    [conntrack.tcpCloseWaitTimeoutMs, 'net.netfilter.nf_conntrack_tcp_timeout_close_wait', '--conntrack-tcp-timeout-close-wait'],
    [conntrack.udpTimeoutMs, 'net.netfilter.nf_conntrack_udp_timeout', '--conntrack-udp-timeout'],
    [conntrack.udpStreamTimeoutMs, 'net.netfilter.nf_conntrack_udp_timeout_stream', '--conntrack-udp-timeout-stream'],
  ];
  for (const [ms, name, source] of timeouts) if (ms > 0) settings.push({ name, value: seconds(ms), source });
  if (conntrack.tcpBeLiberal) settings.push({ name: 'net.netfilter.nf_conntrack_tcp_be_liberal', value: 1, source: '--conntrack-tcp-be-liberal' });
  if (nodePortsOnIPv4Loopback(options.nodePortAddresses)) settings.push({ name: ROUTE_LOCALNET, value: 1, source: '--nodeport-addresses (NodePorts on 127.0.0.1)' });
  return settings;
}

/** How the kernel's current values are read and whether this namespace may write the host-wide ones. */
export interface KernelView {
  read(name: string): number;
  /** False outside the initial network namespace. */
  ownsHostWide: boolean;
}

export interface SettingChange { setting: KernelSetting; from: number }
/** A host-wide value this namespace may not change, left below what the options ask. */
export interface SettingLeft { setting: KernelSetting; current: number }

/** Which settings to write: those that differ (raise-only ones only when lower). */
export function planKernelSettings(wanted: KernelSetting[], kernel: KernelView): { changes: SettingChange[]; left: SettingLeft[] } {
  const changes: SettingChange[] = [];
  const left: SettingLeft[] = [];
  for (const setting of wanted) {
    const current = kernel.read(setting.name);
    const needed = setting.raiseOnly ? current < setting.value : current !== setting.value;
    if (!needed) continue;
    if (setting.hostWide && !kernel.ownsHostWide) left.push({ setting, current });
    else changes.push({ setting, from: current });
  }
  return { changes, left };
}

const isModuleParameter = (name: string) => name === `${HASHSIZE.module}.${HASHSIZE.parameter}`;

const readKernel = (name: string) => (isModuleParameter(name) ? readModuleParameter(HASHSIZE.module, HASHSIZE.parameter) : readSysctl(name));

function writeKernel(name: string, value: number): void {
  if (isModuleParameter(name)) writeModuleParameter(HASHSIZE.module, HASHSIZE.parameter, value);
  else writeSysctl(name, value);
}

export class NodeSetupError extends Error {
  override name = 'NodeSetupError';
}

/**
 * Writes what the options ask of this network namespace's kernel settings. A host-wide value
 * that only the initial namespace may change is left with a warning; any other failure throws,
 * naming the setting and its flag, as kube-proxy refuses to start without them.
 */
export function applyNodeSetup(options: NodeSetupSettings, log: Logger): void {
  const wanted = wantedKernelSettings(options);
  const conntrackWanted = wanted.some((setting) => setting.name !== ROUTE_LOCALNET);
  if (conntrackWanted && !sysctlExists(CONNTRACK_MAX)) {
    throw new NodeSetupError(`the conntrack settings (${wanted.filter((s) => s.name !== ROUTE_LOCALNET).map((s) => s.source).join('; ')}) need the nf_conntrack module, which is not loaded (${CONNTRACK_MAX} is missing): load it (modprobe nf_conntrack) or set those settings to 0`);
  }
  const { changes, left } = planKernelSettings(wanted, { read: readKernel, ownsHostWide: sysctlWritable(CONNTRACK_MAX) });
  for (const { setting, current } of left) {
    log.warn({ setting: setting.name, current, wanted: setting.value }, `${setting.name} stays ${current}, below the ${setting.value} that ${setting.source} ask for: it is the host's, and only its initial network namespace may raise it`);
  }
  for (const { setting, from } of changes) {
    try {
      writeKernel(setting.name, setting.value);
    } catch (error) {
      if (!(error instanceof SysctlError)) throw error;
      // kube-proxy goes on without a larger hash table (a read-only /sys): lookups get slower, nothing breaks.
      if (isModuleParameter(setting.name)) {
        log.warn({ setting: setting.name, current: from, wanted: setting.value }, `${error.message}; the conntrack table works, with longer hash chains`);
        continue;
      }
      throw new NodeSetupError(`${setting.source}: ${error.message}`);
    }
    log.info({ setting: setting.name, from, to: setting.value }, `set ${setting.name} to ${setting.value} (${setting.source})`);
  }
}

/**
 * --oom-score-adj for this process, as kube-proxy applies it at start. Lowering it needs
 * CAP_SYS_RESOURCE; without it the score stays and the agent says so (kube-proxy goes on too).
 */
export function applyOomScoreAdj(value: number, log: Logger, path = '/proc/self/oom_score_adj'): void {
  try {
    const current = Number(readFileSync(path, 'utf8').trim());
    if (current === value) return;
    writeFileSync(path, `${value}\n`);
    log.info({ from: current, to: value }, `set oom_score_adj to ${value} (--oom-score-adj)`);
  } catch (error) {
    log.warn(`--oom-score-adj ${value}: cannot set ${path}: ${(error as Error).message}; the process keeps its score`);
  }
}
