import { readFileSync } from 'node:fs';
import yaml from 'js-yaml';
import { CAPABILITY_SETTINGS, type CapabilitySettingsByKey, settingsOf } from '../agent/capability-settings.js';
import { featureGateError, unimplementedGate } from '../cluster/feature-gates.js';
import { parseCIDR } from '../cluster/normalize.js';
import { cidrFamily, ipFamily } from '../kernel/addresses.js';
import type { ConntrackOptions } from '../services/index.js';
import { SERVICE_TABLES } from '../services/settings.js';
import {
  type FlagSetting, OptionsError, type SettingKind as Kind, fail, formatDuration, hostPort, integerIn, parseDuration, positive,
} from '../settings.js';

// kubenft's command line and KubeProxyConfiguration file. kubenft replaces kube-proxy in an
// existing DaemonSet, so it must accept kube-proxy's flags and config files as they are written
// in the wild (kubeadm's ConfigMap sets every field, most to zero values). Settings kubenft does
// not implement are never dropped silently: they are accepted only at their default value.
//
// util.parseArgs does not fit kube-proxy's pflag syntax (`--flag=false` on booleans, `-v=4`,
// `-v4`, `--flag_name` spelled with underscores), so a small table-driven parser reads argv.
// Each setting is described once and drives the flag, the config field, the help text and the
// error messages. The capabilities' own flags are theirs (each folder's flags.ts): this file holds
// kube-proxy's flags and kubenft's general ones, and adds each capability's to them.

export type ProxyMode = 'nftables' | 'iptables';
export type DetectLocalMode = 'ClusterCIDR' | 'NodeCIDR';
export type IptablesBackend = 'auto' | 'legacy' | 'nft';
export type LogFormat = 'text' | 'json';

export interface AgentOptions extends CapabilitySettingsByKey {
  command: 'run' | 'render' | 'services' | 'explain' | 'help' | 'version';
  proxyMode: ProxyMode;
  /** kubenft's own: a file or directory of manifests instead of the API server. */
  manifests?: string;
  /** kubenft's own: sync once and exit. */
  once: boolean;
  /** kubenft's own, for render: the libnftables JSON schema instead of nft syntax. */
  json: boolean;
  /** kubenft's own: which iptables flavour iptables mode programs. */
  iptablesBackend: IptablesBackend;
  /** kubenft's own, for services and explain: the service (NAMESPACE/NAME) and the connection to look at. */
  inspect: { service?: string; from?: string; to?: string; protocol: 'tcp' | 'udp'; via: 'prerouting' | 'output'; url?: string };
  /** kubenft's own: how many nftables tables the services' NAT objects are spread over. */
  serviceTables: number;
  cleanup: boolean;
  initOnly: boolean;
  kubeconfig?: string;
  master?: string;
  kubeApiQps?: number;
  kubeApiBurst?: number;
  /** Trimmed and lower-cased, as kube-proxy does: it names a Node. */
  hostnameOverride?: string;
  /** Pod network CIDRs: at most one per address family. */
  clusterCIDRs: string[];
  /** kubenft's own --service-cidr. */
  serviceCIDRs: string[];
  /** CIDRs and the keywords 'primary', 'localhost', 'all'; empty means the mode's default ('primary'). */
  nodePortAddresses: string[];
  masqueradeAll: boolean;
  masqueradeBit: number;
  detectLocalMode: DetectLocalMode;
  /** host:port; '' disables the server. */
  healthzBindAddress: string;
  /** host:port; '' disables the server. */
  metricsBindAddress: string;
  /**
   * kube-proxy's --bind-address: an address other than 0.0.0.0 or :: is this node's IP of its family
   * (the primary one), in place of the Node object's, as kube-proxy's detectNodeIPs has it.
   */
  bindAddress: string;
  syncPeriodMs: number;
  minSyncPeriodMs: number;
  oomScoreAdj: number;
  featureGates: Record<string, boolean>;
  verbosity: number;
  /** --logging-format: klog-like text lines, or one JSON object a line. */
  logFormat: LogFormat;
  conntrack: ConntrackOptions;
  configFile?: string;
  writeConfigTo?: string;
}

const DEFAULT_HEALTHZ_PORT = 10256;
const DEFAULT_METRICS_PORT = 10249;
const SECOND_MS = 1000;
const MINUTE_MS = 60 * SECOND_MS;
const HOUR_MS = 60 * MINUTE_MS;
/** kube-proxy's configSyncPeriod, the only value kubenft accepts. */
export const DEFAULT_CONFIG_SYNC_PERIOD_MS = 15 * MINUTE_MS;

function defaultOptions(): AgentOptions {
  const capabilities = Object.fromEntries(CAPABILITY_SETTINGS.map((capability) => [capability.settingsKey, capability.settings.defaults()]));
  return {
    ...(capabilities as CapabilitySettingsByKey),
    command: 'run',
    proxyMode: 'nftables',
    once: false,
    json: false,
    iptablesBackend: 'auto',
    inspect: { protocol: 'tcp', via: 'prerouting' },
    serviceTables: SERVICE_TABLES.default,
    cleanup: false,
    initOnly: false,
    clusterCIDRs: [],
    serviceCIDRs: [],
    nodePortAddresses: [],
    masqueradeAll: false,
    masqueradeBit: 14,
    detectLocalMode: 'ClusterCIDR',
    healthzBindAddress: `0.0.0.0:${DEFAULT_HEALTHZ_PORT}`,
    metricsBindAddress: `127.0.0.1:${DEFAULT_METRICS_PORT}`,
    bindAddress: '0.0.0.0',
    syncPeriodMs: 30 * SECOND_MS,
    minSyncPeriodMs: SECOND_MS,
    oomScoreAdj: -999,
    featureGates: {},
    verbosity: 0,
    logFormat: 'text',
    conntrack: {
      maxPerCore: 32768,
      min: 131072,
      tcpEstablishedTimeoutMs: 24 * HOUR_MS,
      tcpCloseWaitTimeoutMs: HOUR_MS,
      tcpBeLiberal: false,
      udpTimeoutMs: 0,
      udpStreamTimeoutMs: 0,
    },
  };
}

// ---- values ------------------------------------------------------------------------------------

/** A converted flag or field value: string, boolean, number (durations in ms), string[] or a gate map. */
type Value = unknown;

const GO_TRUE = ['1', 't', 'T', 'TRUE', 'true', 'True'];
const GO_FALSE = ['0', 'f', 'F', 'FALSE', 'false', 'False'];

/** A flag's text, converted as pflag would for the flag's type. */
function fromText(kind: Kind, text: string, where: string): Value {
  switch (kind) {
    case 'bool':
      if (GO_TRUE.includes(text)) return true;
      if (GO_FALSE.includes(text)) return false;
      return fail(where, text, 'is not true or false');
    case 'int':
      if (!/^[-+]?\d+$/.test(text) || !Number.isSafeInteger(Number(text))) fail(where, text, 'is not an integer');
      return Number(text);
    case 'float':
      if (!/^[-+]?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?$/i.test(text)) fail(where, text, 'is not a number');
      return Number(text);
    case 'duration': {
      const ms = parseDuration(text);
      return ms === undefined ? fail(where, text, 'is not a duration (Go syntax: 500ms, 30s, 1m30s, 24h)') : ms;
    }
    case 'list':
      return text.trim() === '' ? [] : text.split(',').map((item) => item.trim());
    case 'map':
      return Object.fromEntries(text.split(',').filter((item) => item.trim() !== '').map((item) => {
        const [key, value] = item.split('=').map((part) => part.trim());
        if (!key || value === undefined || (!GO_TRUE.includes(value) && !GO_FALSE.includes(value))) fail(where, item, 'is not NAME=true or NAME=false');
        return [key, GO_TRUE.includes(value)];
      }));
    default:
      return text;
  }
}

const isMapping = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

/** A config field's YAML value, checked against the type kube-proxy's decoder would demand. */
function fromYAML(kind: Kind, value: unknown, where: string): Value {
  const expect = (ok: boolean, what: string) => ok || fail(where, value, `must be ${what}`);
  switch (kind) {
    case 'string': expect(typeof value === 'string', 'a string'); return value;
    case 'bool': expect(typeof value === 'boolean', 'true or false'); return value;
    case 'int': expect(Number.isSafeInteger(value), 'an integer'); return value;
    case 'float': expect(typeof value === 'number' && Number.isFinite(value), 'a number'); return value;
    case 'duration':
      // metav1.Duration decodes from a string only: a bare 30 is an error in kube-proxy too.
      expect(typeof value === 'string', 'a duration string such as "30s"');
      return fromText('duration', value as string, where);
    case 'list':
      expect(Array.isArray(value) && value.every((item) => typeof item === 'string'), 'a list of strings');
      return value;
    case 'map':
      expect(isMapping(value) && Object.values(value).every((item) => typeof item === 'boolean'), 'a mapping of names to true or false');
      return value;
    default:
      return value;
  }
}

const isZero = (value: Value) => value === '' || value === 0 || value === false || (Array.isArray(value) && value.length === 0);

function cidrList(items: string[], where: string): string[] {
  return items.map((item) => {
    try {
      return parseCIDR(item, where);
    } catch {
      return fail(where, item, 'is not a CIDR');
    }
  });
}

function nonNegative(value: number, where: string): number {
  if (value < 0) fail(where, value, 'must not be negative');
  return value;
}

function nonNegativeDuration(ms: number, where: string): number {
  if (ms < 0) fail(where, formatDuration(ms), 'must not be negative');
  return ms;
}

/** The kernel counts conntrack timeouts in whole seconds: 0 leaves the kernel's, less than a second would expire flows at once. */
function conntrackTimeout(ms: number, where: string): number {
  if (ms !== 0 && ms < SECOND_MS) fail(where, formatDuration(ms), 'must be 0 (leave the kernel\'s) or at least 1s (the kernel counts whole seconds)');
  return ms;
}

// ---- the settings ----------------------------------------------------------------------------

/** A flag, a config field or both, filling the agent's options. */
interface Setting extends Omit<FlagSetting<AgentOptions>, 'flag'> {
  flag?: string;
  /** Field path in KubeProxyConfiguration; `SECTION.` stands for both `iptables.` and `nftables.`. */
  field?: string;
  /** A pointer field in kube-proxy: an explicit zero in the file is a value, not "use the default". */
  pointer?: boolean;
  /** kubenft's own, not kube-proxy's. */
  own?: boolean;
}

/** A setting kube-proxy has and kubenft does not implement: accepted only at its default value. */
interface Unsupported {
  flag?: string;
  field?: string;
  kind: Kind;
  /** The field's kind when it differs from the flag's (vmodule is a string flag, a list field). */
  fieldKind?: Kind;
  arg?: string;
  reason: string;
  isDefault(value: any): boolean;
}

/** 'primary': the Node object's addresses; 'localhost': 127.0.0.0/8 and ::1; 'all': every address. */
const NODE_PORT_KEYWORDS: readonly string[] = ['primary', 'localhost', 'all'];

const GENERAL_SETTINGS: Setting[] = [
  // kubenft's own
  { flag: 'manifests', own: true, kind: 'string', arg: 'PATH', help: 'read Services and EndpointSlices from a YAML/JSON file or directory instead of the API server',
    apply: (o, v: string) => { o.manifests = v || undefined; } },
  { flag: 'once', own: true, kind: 'bool', help: 'sync once and exit instead of following changes', defaultText: 'false',
    apply: (o, v: boolean) => { o.once = v; } },
  { flag: 'json', own: true, kind: 'bool', help: 'with render: print the libnftables JSON schema instead of nft syntax; with services and explain: JSON', defaultText: 'false',
    apply: (o, v: boolean) => { o.json = v; } },
  { flag: 'from', own: true, kind: 'string', arg: 'ADDR[:PORT]', help: 'with explain: the new connection\'s source',
    apply: (o, v: string) => { o.inspect.from = v || undefined; } },
  { flag: 'to', own: true, kind: 'string', arg: 'ADDR:PORT', help: 'with explain: the new connection\'s destination ([IPv6]:PORT)',
    apply: (o, v: string) => { o.inspect.to = v || undefined; } },
  { flag: 'url', own: true, kind: 'string', arg: 'URL', help: 'with explain and --ingress or --gateway: the route a GET of this URL reaches and what answers, instead of a connection',
    apply: (o, v: string) => { o.inspect.url = v || undefined; } },
  { flag: 'proto', own: true, kind: 'string', arg: 'tcp|udp', help: 'with explain: the connection\'s protocol', defaultText: 'tcp',
    apply: (o, v: string, where) => {
      if (v !== 'tcp' && v !== 'udp') fail(where, v, 'must be tcp or udp');
      o.inspect.protocol = v as 'tcp' | 'udp';
    } },
  { flag: 'via', own: true, kind: 'string', arg: 'prerouting|output', help: 'with explain: where the connection enters: from another host or pod (prerouting) or from this node (output)', defaultText: 'prerouting',
    apply: (o, v: string, where) => {
      if (v !== 'prerouting' && v !== 'output') fail(where, v, 'must be prerouting or output');
      o.inspect.via = v as 'prerouting' | 'output';
    } },
  { flag: 'iptables-backend', own: true, kind: 'string', arg: 'auto|legacy|nft', help: 'which iptables flavour --proxy-mode=iptables programs', defaultText: 'auto',
    apply: (o, v: string, where) => {
      if (v !== 'auto' && v !== 'legacy' && v !== 'nft') fail(where, v, 'must be auto, legacy or nft');
      o.iptablesBackend = v as IptablesBackend;
    } },
  { flag: 'service-tables', own: true, kind: 'int', arg: 'N', help: `nftables mode: spread the services over N tables by their ClusterIP's last byte (1-${SERVICE_TABLES.max}); a change re-validates only its table`,
    defaultText: String(SERVICE_TABLES.default),
    apply: (o, v: number, where) => { o.serviceTables = integerIn(v, 1, SERVICE_TABLES.max, where); } },
  { flag: 'service-cidr', own: true, kind: 'list', repeatable: true, arg: 'CIDR[,CIDR]', help: 'Service ClusterIP ranges: an address in them that no Service holds is dropped (repeatable)',
    apply: (o, v: string[], where) => { o.serviceCIDRs = cidrList(v, where); } },

  // kube-proxy's
  { flag: 'config', kind: 'string', arg: 'FILE', help: 'read a KubeProxyConfiguration (kubeproxy.config.k8s.io/v1alpha1); flags given too override it',
    apply: (o, v: string) => { o.configFile = v || undefined; } },
  { flag: 'write-config-to', kind: 'string', arg: 'FILE', help: 'write the effective configuration as a KubeProxyConfiguration and exit',
    apply: (o, v: string) => { o.writeConfigTo = v || undefined; } },
  { flag: 'cleanup', kind: 'bool', help: 'delete every table and rule kubenft (or kube-proxy) loaded, and exit', defaultText: 'false',
    apply: (o, v: boolean) => { o.cleanup = v; } },
  { flag: 'init-only', kind: 'bool', help: 'do the privileged node setup (the conntrack sysctls, route_localnet) and exit: no rules, no BPF, no DNS device', defaultText: 'false',
    apply: (o, v: boolean) => { o.initOnly = v; } },
  { flag: 'proxy-mode', field: 'mode', kind: 'string', arg: 'MODE', help: 'nftables or iptables', defaultText: 'nftables',
    apply: (o, v: string, where) => {
      if (v === '' || v === 'nftables' || v === 'iptables') o.proxyMode = (v || 'nftables') as ProxyMode;
      else if (v === 'ipvs') fail(where, v, 'kubenft does not implement the ipvs mode; use nftables (the default) or iptables');
      else if (v === 'kernelspace') fail(where, v, 'kernelspace is the Windows mode, which kubenft does not implement; use nftables or iptables');
      else fail(where, v, 'is not a proxy mode: use nftables or iptables');
    } },
  { flag: 'kubeconfig', field: 'clientConnection.kubeconfig', kind: 'string', arg: 'FILE', help: 'kubeconfig with the API server and credentials (default: in-cluster)',
    apply: (o, v: string) => { o.kubeconfig = v || undefined; } },
  { flag: 'master', kind: 'string', arg: 'URL', help: 'API server address, overriding the kubeconfig\'s',
    apply: (o, v: string) => { o.master = v || undefined; } },
  { flag: 'kube-api-qps', field: 'clientConnection.qps', kind: 'float', arg: 'N', help: 'queries per second to the API server', defaultText: '5',
    apply: (o, v: number, where) => { o.kubeApiQps = nonNegative(v, where) || undefined; } },
  { flag: 'kube-api-burst', field: 'clientConnection.burst', kind: 'int', arg: 'N', help: 'burst of queries to the API server', defaultText: '10',
    apply: (o, v: number, where) => { o.kubeApiBurst = nonNegative(v, where) || undefined; } },
  { flag: 'hostname-override', field: 'hostnameOverride', kind: 'string', arg: 'NAME', help: 'this node\'s name (default: the hostname)',
    apply: (o, v: string) => { o.hostnameOverride = v.trim().toLowerCase() || undefined; } },
  { flag: 'bind-address', field: 'bindAddress', kind: 'string', arg: 'IP', help: 'this node\'s IP of its family, in place of the Node object\'s (NodePorts on "primary", loadBalancerSourceRanges); 0.0.0.0 or ::: the Node\'s', defaultText: '0.0.0.0',
    apply: (o, v: string, where) => {
      if (v !== '' && ipFamily(v) === 0) fail(where, v, 'is not an IP address');
      o.bindAddress = v || '0.0.0.0';
    } },
  { flag: 'healthz-bind-address', field: 'healthzBindAddress', kind: 'string', arg: 'IP[:PORT]', help: 'health server (/healthz, /livez); empty on the command line disables it', defaultText: `0.0.0.0:${DEFAULT_HEALTHZ_PORT}`,
    apply: (o, v: string, where) => { o.healthzBindAddress = v === '' ? '' : hostPort(v, DEFAULT_HEALTHZ_PORT, where); } },
  { flag: 'metrics-bind-address', field: 'metricsBindAddress', kind: 'string', arg: 'IP[:PORT]', help: 'metrics server (/metrics); empty on the command line disables it', defaultText: `127.0.0.1:${DEFAULT_METRICS_PORT}`,
    apply: (o, v: string, where) => { o.metricsBindAddress = v === '' ? '' : hostPort(v, DEFAULT_METRICS_PORT, where); } },
  { flag: 'feature-gates', field: 'featureGates', kind: 'map', arg: 'NAME=BOOL,...', help: 'kube-proxy 1.34\'s feature gates (README: which change kubenft, which it refuses)',
    apply: (o, v: Record<string, boolean>, where) => {
      for (const [name, enabled] of Object.entries(v)) {
        const error = featureGateError(name, enabled);
        if (error) throw new OptionsError(`${where}: ${error}`);
      }
      Object.assign(o.featureGates, v);
    } },
  { flag: 'masquerade-all', field: 'SECTION.masqueradeAll', kind: 'bool', help: 'masquerade all traffic sent to Service IPs', defaultText: 'false',
    apply: (o, v: boolean) => { o.masqueradeAll = v; } },
  { flag: 'iptables-masquerade-bit', field: 'SECTION.masqueradeBit', kind: 'int', pointer: true, arg: 'BIT', help: 'packet mark bit for traffic to masquerade (0-31), in either mode', defaultText: '14',
    apply: (o, v: number, where) => { o.masqueradeBit = integerIn(v, 0, 31, where); } },
  { flag: 'iptables-sync-period', field: 'SECTION.syncPeriod', kind: 'duration', arg: 'DURATION', help: 'full resync interval, in either mode; must be > 0', defaultText: '30s',
    apply: (o, v: number, where) => { o.syncPeriodMs = positive(v, where); } },
  { flag: 'iptables-min-sync-period', field: 'SECTION.minSyncPeriod', kind: 'duration', arg: 'DURATION', help: 'minimum interval between syncs, in either mode', defaultText: '1s',
    apply: (o, v: number, where) => { o.minSyncPeriodMs = nonNegativeDuration(v, where); } },
  { flag: 'detect-local-mode', field: 'detectLocalMode', kind: 'string', arg: 'MODE', help: 'what is pod traffic: ClusterCIDR (--cluster-cidr) or NodeCIDR (the Node\'s podCIDRs)', defaultText: 'ClusterCIDR',
    apply: (o, v: string, where) => {
      if (v === '' || v === 'ClusterCIDR' || v === 'NodeCIDR') o.detectLocalMode = (v || 'ClusterCIDR') as DetectLocalMode;
      else if (v === 'BridgeInterface' || v === 'InterfaceNamePrefix') fail(where, v, `is not supported by kubenft: it detects pod traffic by address (ClusterCIDR or NodeCIDR), not by interface`);
      else fail(where, v, 'is not a detect-local mode: use ClusterCIDR or NodeCIDR');
    } },
  { flag: 'cluster-cidr', field: 'clusterCIDR', kind: 'string', arg: 'CIDR[,CIDR]', help: 'pod network, one CIDR per family; traffic to Services from outside it is masqueraded',
    apply: (o, v: string, where) => {
      const cidrs = cidrList(v.split(',').map((item) => item.trim()).filter((item) => item !== ''), where);
      if (cidrs.length > 2 || (cidrs.length === 2 && cidrFamily(cidrs[0]) === cidrFamily(cidrs[1]))) {
        fail(where, v, 'give one CIDR, or two of different families (dual-stack)');
      }
      o.clusterCIDRs = cidrs;
    } },
  { flag: 'nodeport-addresses', field: 'nodePortAddresses', kind: 'list', repeatable: true, arg: 'CIDR|primary|localhost|all,...', help: 'addresses NodePorts answer on: CIDRs or the keywords', defaultText: 'primary',
    apply: (o, v: string[], where) => {
      const isKeyword = (item: string) => NODE_PORT_KEYWORDS.includes(item);
      const cidrs = cidrList(v.filter((item) => !isKeyword(item)), where);
      if (v.includes('all') && v.length > 1) fail(where, v.join(','), '"all" cannot be combined with anything else');
      if (v.includes('primary') && cidrs.length > 0) fail(where, v.join(','), '"primary" cannot be combined with CIDRs');
      o.nodePortAddresses = v.map((item) => (isKeyword(item) ? item : cidrs.shift()!));
    } },
  { flag: 'oom-score-adj', field: 'oomScoreAdj', kind: 'int', pointer: true, arg: 'N', help: 'the agent\'s /proc/self/oom_score_adj at start (-1000 to 1000; lowering needs CAP_SYS_RESOURCE)', defaultText: '-999',
    apply: (o, v: number, where) => { o.oomScoreAdj = integerIn(v, -1000, 1000, where); } },
  { flag: 'conntrack-max-per-core', field: 'conntrack.maxPerCore', kind: 'int', pointer: true, arg: 'N', help: 'nf_conntrack_max = max(N x CPUs, --conntrack-min), only raised (0: leave it and the hash size)', defaultText: '32768',
    apply: (o, v: number, where) => { o.conntrack.maxPerCore = nonNegative(v, where); } },
  { flag: 'conntrack-min', field: 'conntrack.min', kind: 'int', pointer: true, arg: 'N', help: 'minimum conntrack entries, whatever --conntrack-max-per-core gives', defaultText: '131072',
    apply: (o, v: number, where) => { o.conntrack.min = nonNegative(v, where); } },
  { flag: 'conntrack-tcp-timeout-established', field: 'conntrack.tcpEstablishedTimeout', kind: 'duration', pointer: true, arg: 'DURATION', help: 'idle timeout of established TCP connections (0: leave)', defaultText: '24h0m0s',
    apply: (o, v: number, where) => { o.conntrack.tcpEstablishedTimeoutMs = conntrackTimeout(v, where); } },
  { flag: 'conntrack-tcp-timeout-close-wait', field: 'conntrack.tcpCloseWaitTimeout', kind: 'duration', pointer: true, arg: 'DURATION', help: 'conntrack timeout of TCP CLOSE_WAIT (0: leave)', defaultText: '1h0m0s',
    apply: (o, v: number, where) => { o.conntrack.tcpCloseWaitTimeoutMs = conntrackTimeout(v, where); } },
  { flag: 'conntrack-tcp-be-liberal', field: 'conntrack.tcpBeLiberal', kind: 'bool', help: 'mark out-of-window TCP packets INVALID only when they are really invalid', defaultText: 'false',
    apply: (o, v: boolean) => { o.conntrack.tcpBeLiberal = v; } },
  { flag: 'conntrack-udp-timeout', field: 'conntrack.udpTimeout', kind: 'duration', arg: 'DURATION', help: 'conntrack timeout of unreplied UDP flows (0: leave)', defaultText: '0s',
    apply: (o, v: number, where) => { o.conntrack.udpTimeoutMs = conntrackTimeout(v, where); } },
  { flag: 'conntrack-udp-timeout-stream', field: 'conntrack.udpStreamTimeout', kind: 'duration', arg: 'DURATION', help: 'conntrack timeout of UDP streams (0: leave)', defaultText: '0s',
    apply: (o, v: number, where) => { o.conntrack.udpStreamTimeoutMs = conntrackTimeout(v, where); } },
  { flag: 'v', field: 'logging.verbosity', kind: 'int', arg: 'N', help: 'log verbosity (also -v N, -vN)', defaultText: '0',
    apply: (o, v: number, where) => { o.verbosity = integerIn(v, 0, 2 ** 31 - 1, where); } },
  { flag: 'logging-format', field: 'logging.format', kind: 'string', arg: 'text|json', help: 'text: klog-like lines (severity letter, time, message, key=value); json: one JSON object a line (ISO time, level name)', defaultText: 'text',
    apply: (o, v: string, where) => { o.logFormat = v === '' || v === 'text' ? 'text' : v === 'json' ? 'json' : fail(where, v, 'is not a logging format: use text or json'); } },
];

/** Each capability's flags (kubenft's own), landing in its settings: options[settingsKey]. */
const CAPABILITY_FLAGS: Setting[] = CAPABILITY_SETTINGS.flatMap((capability) => capability.settings.flags.map((setting): Setting => ({
  ...setting,
  own: true,
  apply: (options, value, where) => setting.apply(settingsOf(capability, options), value, where),
})));

const SETTINGS: Setting[] = [...GENERAL_SETTINGS, ...CAPABILITY_FLAGS];

/** Every setting kubenft implements, by flag and config field (for the test that each is read). */
export const settingNames = (): { flag?: string; field?: string }[] => SETTINGS.map(({ flag, field }) => ({ flag, field }));

const IPVS_REASON = 'it configures the ipvs mode, which kubenft does not implement';
const WINDOWS_REASON = 'it configures the Windows kernelspace mode, which kubenft does not implement';

const UNSUPPORTED: Unsupported[] = [
  { flag: 'bind-address-hard-fail', field: 'bindAddressHardFail', kind: 'bool', reason: 'failing to bind the healthz or metrics address is reported, never fatal', isDefault: isZero },
  { flag: 'profiling', field: 'enableProfiling', kind: 'bool', reason: 'kubenft has no /debug/pprof handlers', isDefault: isZero },
  { flag: 'show-hidden-metrics-for-version', field: 'showHiddenMetricsForVersion', kind: 'string', arg: 'VERSION', reason: 'kubenft has no deprecated metrics to show', isDefault: isZero },
  { flag: 'proxy-port-range', field: 'portRange', kind: 'string', arg: 'RANGE', reason: 'it belonged to the removed userspace mode', isDefault: isZero },
  { flag: 'iptables-localhost-nodeports', field: 'iptables.localhostNodePorts', kind: 'bool', reason: 'choose NodePort addresses with --nodeport-addresses (e.g. localhost)', isDefault: (v) => v === true },
  { flag: 'pod-bridge-interface', field: 'detectLocal.bridgeInterface', kind: 'string', arg: 'NAME', reason: 'kubenft detects pod traffic by address (ClusterCIDR or NodeCIDR), not by interface', isDefault: isZero },
  { flag: 'pod-interface-name-prefix', field: 'detectLocal.interfaceNamePrefix', kind: 'string', arg: 'PREFIX', reason: 'kubenft detects pod traffic by address (ClusterCIDR or NodeCIDR), not by interface', isDefault: isZero },
  { flag: 'kube-api-content-type', field: 'clientConnection.contentType', kind: 'string', arg: 'TYPE',
    reason: 'kubenft lists and watches in application/json, its default (client-node has no protobuf codec); protobuf is refused',
    isDefault: (v) => v === '' || v === 'application/json' },
  { field: 'clientConnection.acceptContentTypes', kind: 'string', reason: 'kubenft accepts the API server\'s default content types', isDefault: isZero },
  { flag: 'config-sync-period', field: 'configSyncPeriod', kind: 'duration', arg: 'DURATION',
    reason: `kubenft's informers keep no copy of the objects to hand out again (the state has them): no resync to time (default ${formatDuration(DEFAULT_CONFIG_SYNC_PERIOD_MS)})`,
    isDefault: (v) => v === 0 || v === DEFAULT_CONFIG_SYNC_PERIOD_MS },
  { flag: 'vmodule', field: 'logging.vmodule', kind: 'string', fieldKind: 'opaque', arg: 'PATTERN=N,...', reason: 'kubenft has one verbosity for all its logs (-v)',
    isDefault: (v) => v === '' || (Array.isArray(v) && v.length === 0) },
  // kubenft writes its log unbuffered, so any flush frequency is already met.
  { flag: 'log-flush-frequency', field: 'logging.flushFrequency', kind: 'duration', fieldKind: 'opaque', arg: 'DURATION', reason: '', isDefault: () => true },
  // Buffering and stream splitting of the log outputs: nothing to tune in kubenft's logging.
  { field: 'logging.options', kind: 'opaque', reason: '', isDefault: () => true },
  { flag: 'ipvs-sync-period', field: 'ipvs.syncPeriod', kind: 'duration', arg: 'DURATION', reason: IPVS_REASON, isDefault: (v) => v === 0 || v === 30 * SECOND_MS },
  { flag: 'ipvs-min-sync-period', field: 'ipvs.minSyncPeriod', kind: 'duration', arg: 'DURATION', reason: IPVS_REASON, isDefault: isZero },
  { flag: 'ipvs-scheduler', field: 'ipvs.scheduler', kind: 'string', arg: 'NAME', reason: IPVS_REASON, isDefault: isZero },
  { flag: 'ipvs-exclude-cidrs', field: 'ipvs.excludeCIDRs', kind: 'list', arg: 'CIDR,...', reason: IPVS_REASON, isDefault: isZero },
  { flag: 'ipvs-strict-arp', field: 'ipvs.strictARP', kind: 'bool', reason: IPVS_REASON, isDefault: isZero },
  { flag: 'ipvs-tcp-timeout', field: 'ipvs.tcpTimeout', kind: 'duration', arg: 'DURATION', reason: IPVS_REASON, isDefault: isZero },
  { flag: 'ipvs-tcpfin-timeout', field: 'ipvs.tcpFinTimeout', kind: 'duration', arg: 'DURATION', reason: IPVS_REASON, isDefault: isZero },
  { flag: 'ipvs-udp-timeout', field: 'ipvs.udpTimeout', kind: 'duration', arg: 'DURATION', reason: IPVS_REASON, isDefault: isZero },
  ...(['networkName', 'sourceVip', 'rootHnsEndpointName'] as const).map((name): Unsupported => ({ field: `winkernel.${name}`, kind: 'string', reason: WINDOWS_REASON, isDefault: isZero })),
  ...(['enableDSR', 'forwardHealthCheckVip'] as const).map((name): Unsupported => ({ field: `winkernel.${name}`, kind: 'bool', reason: WINDOWS_REASON, isDefault: isZero })),
];

type Entry = { setting: Setting; section?: ProxyMode } | { unsupported: Unsupported };

const FLAGS = new Map<string, Entry>([
  ...SETTINGS.filter((s) => s.flag).map((s): [string, Entry] => [s.flag!, { setting: s }]),
  ...UNSUPPORTED.filter((u) => u.flag).map((u): [string, Entry] => [u.flag!, { unsupported: u }]),
]);

const FIELDS = new Map<string, Entry>([
  ...SETTINGS.filter((s) => s.field).flatMap((s): [string, Entry][] => s.field!.startsWith('SECTION.')
    ? (['iptables', 'nftables'] as const).map((section) => [s.field!.replace('SECTION', section), { setting: s, section }])
    : [[s.field!, { setting: s }]]),
  ...UNSUPPORTED.filter((u) => u.field).map((u): [string, Entry] => [u.field!, { unsupported: u }]),
]);

/** Every mapping that holds fields: clientConnection, conntrack, iptables, ... */
const FIELD_GROUPS = new Set([...FIELDS.keys()].flatMap((path) => path.split('.').slice(0, -1).map((_, i, parts) => parts.slice(0, i + 1).join('.'))));

const API_VERSION = 'kubeproxy.config.k8s.io/v1alpha1';
const KIND = 'KubeProxyConfiguration';

// ---- argv --------------------------------------------------------------------------------------

interface Given { entry: Entry; value: Value; where: string }

function splitArgv(argv: string[]): { flags: Given[]; positionals: string[]; help: boolean; version: boolean } {
  const flags: Given[] = [];
  const positionals: string[] = [];
  let help = false;
  let version = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (arg === '-' || !arg.startsWith('-')) {
      positionals.push(arg);
      continue;
    }
    let name: string;
    let inline: string | undefined;
    if (arg.startsWith('--')) {
      const equals = arg.indexOf('=');
      name = equals < 0 ? arg.slice(2) : arg.slice(2, equals);
      inline = equals < 0 ? undefined : arg.slice(equals + 1);
      // pflag as kube-proxy configures it: --cluster_cidr is --cluster-cidr.
      name = name.replaceAll('_', '-');
    } else if (arg === '-h') {
      help = true;
      continue;
    } else if (arg.startsWith('-v')) {
      // klog's shorthand: -v 4, -v=4 and -v4 all work.
      name = 'v';
      inline = arg.length === 2 ? undefined : arg.slice(arg[2] === '=' ? 3 : 2);
    } else {
      const long = arg.slice(1).split('=')[0].replaceAll('_', '-');
      throw new OptionsError(FLAGS.has(long) ? `unknown shorthand flag ${arg}: kube-proxy's flags take two dashes (--${long})` : `unknown shorthand flag ${arg}`);
    }
    if (name === 'help' || name === 'version') {
      const on = inline === undefined || inline === 'raw' || fromText('bool', inline, `--${name}`) === true;
      if (name === 'help') help ||= on;
      else version ||= on;
      continue;
    }
    const entry = FLAGS.get(name);
    if (!entry) throw new OptionsError(`unknown flag --${name}`);
    const kind = 'setting' in entry ? entry.setting.kind : entry.unsupported.kind;
    const where = name === 'v' ? '-v' : `--${name}`;
    let text = inline;
    if (text === undefined) {
      if (kind === 'bool') text = 'true';
      else if (i + 1 < argv.length) text = argv[++i];
      else throw new OptionsError(`flag ${where} needs a value`);
    }
    flags.push({ entry, value: text, where });
  }
  return { flags, positionals, help, version };
}

// ---- the config file ---------------------------------------------------------------------------

function readConfigFile(path: string, readFile: (path: string) => string): Given[] {
  let text: string;
  let document: unknown;
  try {
    text = readFile(path);
  } catch (error) {
    throw new OptionsError(`--config ${path}: cannot read it: ${(error as Error).message}`);
  }
  try {
    // YAML 1.2's core schema: `yes` and `on` stay strings, so a boolean field given one is refused,
    // not guessed. js-yaml also reads the kubeconfig: one YAML library loads at start, not two.
    document = yaml.load(text, { schema: yaml.CORE_SCHEMA });
  } catch (error) {
    throw new OptionsError(`--config ${path}: not valid YAML: ${(error as Error).message}`);
  }
  if (!isMapping(document)) throw new OptionsError(`--config ${path}: not a KubeProxyConfiguration (the file is not a mapping)`);
  if (document.apiVersion !== API_VERSION || document.kind !== KIND) {
    throw new OptionsError(`--config ${path}: apiVersion ${JSON.stringify(document.apiVersion)} kind ${JSON.stringify(document.kind)}: want ${API_VERSION} ${KIND}`);
  }
  const given: Given[] = [];
  const walk = (mapping: Record<string, unknown>, prefix: string) => {
    for (const [key, value] of Object.entries(mapping)) {
      const fieldPath = prefix + key;
      if (prefix === '' && (key === 'apiVersion' || key === 'kind')) continue;
      const entry = FIELDS.get(fieldPath);
      // null is how kube-proxy's own --write-config-to spells "unset".
      if (entry) {
        if (value !== null) given.push({ entry, value, where: `${fieldPath} (in ${path})` });
      } else if (FIELD_GROUPS.has(fieldPath)) {
        if (value === null) continue;
        if (!isMapping(value)) fail(`${fieldPath} (in ${path})`, value, 'must be a mapping');
        walk(value as Record<string, unknown>, `${fieldPath}.`);
      } else {
        throw new OptionsError(`--config ${path}: unknown field ${fieldPath}`);
      }
    }
  };
  walk(document, '');
  return given;
}

// ---- putting it together -----------------------------------------------------------------------

function applyGiven(options: AgentOptions, given: Given, fromFile: boolean): void {
  const { entry, where } = given;
  if ('unsupported' in entry) {
    const { unsupported } = entry;
    const kind = fromFile ? unsupported.fieldKind ?? unsupported.kind : unsupported.kind;
    const value = fromFile ? fromYAML(kind, given.value, where) : fromText(kind, given.value as string, where);
    if (!unsupported.isDefault(value)) {
      const what = fromFile ? `field ${where}` : `flag ${where}`;
      throw new OptionsError(`${what} ${JSON.stringify(given.value)} is not supported by kubenft: ${unsupported.reason}`);
    }
    return;
  }
  const { setting } = entry;
  const value = fromFile ? fromYAML(setting.kind, given.value, where) : fromText(setting.kind, given.value as string, where);
  // kube-proxy defaults a zero value in the file, except in its pointer fields.
  if (fromFile && !setting.pointer && isZero(value)) return;
  setting.apply(options, value, where);
}

/** Repeats of a list flag add up; repeats of anything else: the last one wins (pflag's rules). */
function combineRepeats(flags: Given[]): Given[] {
  const combined: Given[] = [];
  for (const flag of flags) {
    const earlier = combined.find((other) => other.entry === flag.entry);
    if (earlier && 'setting' in flag.entry && flag.entry.setting.repeatable) earlier.value = `${earlier.value},${flag.value}`;
    else combined.push(flag);
  }
  return combined;
}

/**
 * Reads the command line and the --config file it names. Flags override the file.
 * Throws OptionsError naming the flag or field and the bad value.
 */
export function parseOptions(argv: string[], readFile: (path: string) => string = (path) => readFileSync(path, 'utf8')): AgentOptions {
  const { flags: rawFlags, positionals, help, version } = splitArgv(argv);
  const options = defaultOptions();
  if (help) return { ...options, command: 'help' };
  if (version) return { ...options, command: 'version' };

  const inspecting = positionals[0] === 'services' || positionals[0] === 'explain';
  if (inspecting) {
    if (positionals.length > (positionals[0] === 'services' ? 2 : 1)) throw new OptionsError(`${positionals[0]}: unexpected ${JSON.stringify(positionals.slice(positionals[0] === 'services' ? 2 : 1).join(' '))}`);
    if (positionals[1] !== undefined && !/^[^/]+\/[^/]+$/.test(positionals[1])) throw new OptionsError(`services: ${JSON.stringify(positionals[1])} is not NAMESPACE/NAME`);
    options.command = positionals[0] as 'services' | 'explain';
    options.inspect.service = positionals[1];
  } else if (positionals.length > 1 || (positionals.length === 1 && positionals[0] !== 'render')) {
    throw new OptionsError(`unknown command ${JSON.stringify(positionals.join(' '))}: the commands are render, services and explain (none: run)`);
  } else options.command = positionals[0] === 'render' ? 'render' : 'run';

  const flags = combineRepeats(rawFlags);
  for (const flag of flags) if ('setting' in flag.entry && flag.entry.setting.flag === 'config') applyGiven(options, flag, false);
  const fileGiven = options.configFile ? readConfigFile(options.configFile, readFile) : [];

  // The iptables/nftables sections apply by mode, so the mode is settled first; a mode flag wins.
  const isMode = (given: Given) => 'setting' in given.entry && given.entry.setting.flag === 'proxy-mode';
  for (const given of [...fileGiven, ...flags].filter(isMode)) applyGiven(options, given, fileGiven.includes(given));
  const modeChosen = [...fileGiven, ...flags].some((given) => isMode(given) && given.value !== '');

  const sectionOf = (given: Given) => ('section' in given.entry ? given.entry.section : undefined);
  for (const given of fileGiven.filter((g) => !sectionOf(g) && !isMode(g))) applyGiven(options, given, true);
  applySections(options, fileGiven.filter((g) => sectionOf(g)), modeChosen);
  for (const given of flags) applyGiven(options, given, false);

  if (options.minSyncPeriodMs > options.syncPeriodMs) {
    throw new OptionsError(`min sync period ${formatDuration(options.minSyncPeriodMs)} is longer than sync period ${formatDuration(options.syncPeriodMs)} (--iptables-min-sync-period, --iptables-sync-period)`);
  }
  const unimplemented = unimplementedGate(options.featureGates);
  if (unimplemented) throw new OptionsError(`--feature-gates: ${unimplemented}`);
  if (options.json && options.command === 'run') throw new OptionsError('--json applies to render, services and explain only');
  if (options.inspect.url !== undefined && (options.command !== 'explain' || options.gateway.enabled === options.ingress.enabled)) throw new OptionsError('--url is for explain with --ingress or --gateway (one of them)');
  if (options.command === 'explain' && options.inspect.url === undefined && (!options.inspect.from || !options.inspect.to)) throw new OptionsError('explain needs --from ADDR[:PORT] and --to ADDR:PORT (or --ingress or --gateway with --url URL)');
  if (options.once && options.command === 'render') throw new OptionsError('--once does not apply to render, which never stays running');
  if (options.initOnly && (options.once || options.cleanup || options.command !== 'run')) {
    throw new OptionsError('--init-only does the node setup and exits: it does not combine with --once, --cleanup, render, services or explain');
  }
  for (const capability of CAPABILITY_SETTINGS) capability.settings.check?.(settingsOf(capability, options), { proxyMode: options.proxyMode });
  if (options.ingress.enabled && options.gateway.enabled) {
    const taken = [options.ingress.httpAddress, options.ingress.httpsAddress].filter((address) => address !== undefined);
    const clash = [options.gateway.httpAddress, options.gateway.httpsAddress].find((address) => address !== undefined && taken.includes(address));
    if (clash) throw new OptionsError(`--ingress and --gateway both listen on ${clash}: give --gateway-http-address and --gateway-https-address addresses of their own`);
  }
  return options;
}

/**
 * The file's iptables and nftables sections: the one of the chosen mode applies. With no mode
 * given, kube-proxy reads the iptables section while kubenft defaults to nftables; both sections
 * are read then, and a setting the two give differently is an error rather than a guess.
 */
function applySections(options: AgentOptions, sectioned: Given[], modeChosen: boolean): void {
  const applied = new Map<Setting, { value: unknown; where: string }>();
  for (const given of sectioned) {
    const { setting, section } = given.entry as { setting: Setting; section: ProxyMode };
    const value = fromYAML(setting.kind, given.value, given.where);
    if (modeChosen && section !== options.proxyMode) continue;
    if (!setting.pointer && isZero(value)) continue;
    const earlier = applied.get(setting);
    if (earlier && JSON.stringify(earlier.value) !== JSON.stringify(value)) {
      throw new OptionsError(`${earlier.where} and ${given.where} differ and no mode is set: set mode to say which applies`);
    }
    applied.set(setting, { value, where: given.where });
    setting.apply(options, value, given.where);
  }
}

// ---- writing a config file ---------------------------------------------------------------------

/**
 * The effective configuration as a KubeProxyConfiguration, for --write-config-to. Both the
 * iptables and nftables sections get the same values, so either mode reads them. Flags that are
 * not configuration fields (--master, kubenft's own) are not in it.
 */
export function kubeProxyConfiguration(options: AgentOptions): object {
  // kube-proxy reads an empty address or a zero min sync period in the file as "the default".
  const unwritable = (what: string) => {
    throw new OptionsError(`--write-config-to: ${what} cannot be written to a KubeProxyConfiguration, where kube-proxy reads it as the default`);
  };
  if (options.healthzBindAddress === '') unwritable('a disabled health server (--healthz-bind-address="")');
  if (options.metricsBindAddress === '') unwritable('a disabled metrics server (--metrics-bind-address="")');
  if (options.minSyncPeriodMs === 0) unwritable('--iptables-min-sync-period=0 (give a small value such as 1ms)');
  const section = {
    masqueradeAll: options.masqueradeAll,
    masqueradeBit: options.masqueradeBit,
    syncPeriod: formatDuration(options.syncPeriodMs),
    minSyncPeriod: formatDuration(options.minSyncPeriodMs),
  };
  const { conntrack } = options;
  return {
    apiVersion: API_VERSION,
    kind: KIND,
    mode: options.proxyMode,
    clientConnection: {
      kubeconfig: options.kubeconfig ?? '',
      contentType: 'application/json',
      qps: options.kubeApiQps ?? 0,
      burst: options.kubeApiBurst ?? 0,
    },
    hostnameOverride: options.hostnameOverride ?? '',
    bindAddress: options.bindAddress,
    healthzBindAddress: options.healthzBindAddress,
    metricsBindAddress: options.metricsBindAddress,
    featureGates: { ...options.featureGates },
    clusterCIDR: options.clusterCIDRs.join(','),
    nodePortAddresses: [...options.nodePortAddresses],
    detectLocalMode: options.detectLocalMode,
    iptables: { ...section },
    nftables: { ...section },
    conntrack: {
      maxPerCore: conntrack.maxPerCore,
      min: conntrack.min,
      tcpEstablishedTimeout: formatDuration(conntrack.tcpEstablishedTimeoutMs),
      tcpCloseWaitTimeout: formatDuration(conntrack.tcpCloseWaitTimeoutMs),
      tcpBeLiberal: conntrack.tcpBeLiberal,
      udpTimeout: formatDuration(conntrack.udpTimeoutMs),
      udpStreamTimeout: formatDuration(conntrack.udpStreamTimeoutMs),
    },
    configSyncPeriod: formatDuration(DEFAULT_CONFIG_SYNC_PERIOD_MS),
    oomScoreAdj: options.oomScoreAdj,
    logging: { format: options.logFormat, verbosity: options.verbosity },
  };
}

export function kubeProxyConfigurationYAML(options: AgentOptions): string {
  // Strings that YAML 1.1 (kube-proxy's go-yaml) would read as booleans (`yes`, `on`) are quoted.
  return yaml.dump(kubeProxyConfiguration(options), { lineWidth: -1 });
}

// ---- help --------------------------------------------------------------------------------------

function helpLine(name: string, arg: string | undefined, text: string): string {
  const left = `  ${name === 'v' ? '-v, --v' : `--${name}`}${arg ? ` ${arg}` : ''}`;
  return `${left.padEnd(44)} ${text}\n`;
}

export function helpText(): string {
  const line = (setting: Setting) =>
    helpLine(setting.flag!, setting.arg, `${setting.help}${setting.defaultText ? ` (default ${setting.defaultText})` : ''}`);
  const flagged = SETTINGS.filter((setting) => setting.flag);
  return `Usage:
  kubenft [flags]           run the proxy: follow the API server (or --manifests) and program the node
  kubenft render [flags]    print the ruleset that would be loaded, touching nothing
  kubenft services [--json] [NAMESPACE/NAME] [--manifests PATH | --kubeconfig FILE]
                            every service port as loaded in the kernel, marked where it differs from the plan
  kubenft explain --from ADDR[:PORT] --to ADDR:PORT [--proto tcp|udp] [--via prerouting|output] [--json]
                            the path a new connection takes through the loaded rules, and its outcomes

kubenft takes kube-proxy's flags and KubeProxyConfiguration file, so it can replace kube-proxy in
its DaemonSet. Unlike kube-proxy, which ignores most flags when --config is set, flags given on
the command line override the same settings in the --config file. Durations use Go syntax
(500ms, 30s, 1m30s, 24h); booleans take --flag, --flag=true or --flag=false; --a_b is --a-b.

kubenft's own flags:
${flagged.filter((s) => s.own).map(line).join('')}
kube-proxy's flags:
${flagged.filter((s) => !s.own).map(line).join('')}${helpLine('help', undefined, 'this text (also -h)')}${helpLine('version', undefined, 'print the version and exit')}
kube-proxy's flags that change what kubenft does not implement: accepted at their default only:
${UNSUPPORTED.filter((u) => u.flag).map((u) => helpLine(u.flag!, u.arg, u.reason || 'accepted; kubenft writes its log unbuffered')).join('')}`;
}
