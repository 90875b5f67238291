import { HostPortError, splitHostPort } from '../kernel/addresses.js';
// What kube-proxy leaves on a node, by the names its modes give it (upstream pkg/proxy/iptables,
// pkg/proxy/ipvs and pkg/proxy/nftables, CleanupLeftovers), and the iptables-restore input removing
// it from an iptables-save. kube-proxy removes the other modes' objects when it starts in one; a
// node switched from it to kubenft must lose them too, or their DNAT rules, hooked before
// kubenft's, keep sending new connections to whatever the Services were when kube-proxy stopped.
// Only kube-proxy's own objects go: kubelet's chains (KUBE-FIREWALL in filter, KUBE-KUBELET-CANARY,
// KUBE-IPTABLES-HINT, KUBE-MARK-DROP), a CNI's and a user's chains and rules stay, and so does a
// kube-proxy chain that someone else's rule still jumps to (flushed, and named in a warning).

/** Chains every kube-proxy mode creates, per table: iptables mode, IPVS mode, the canaries. */
export const KUBE_PROXY_CHAINS: Readonly<Record<string, readonly string[]>> = {
  nat: [
    'KUBE-SERVICES', 'KUBE-NODEPORTS', 'KUBE-POSTROUTING', 'KUBE-MARK-MASQ', 'KUBE-PROXY-CANARY',
    // IPVS mode; its nat KUBE-FIREWALL is from releases before 1.24 (kubelet's KUBE-FIREWALL is in filter).
    'KUBE-NODE-PORT', 'KUBE-LOAD-BALANCER', 'KUBE-FIREWALL',
  ],
  filter: [
    'KUBE-SERVICES', 'KUBE-EXTERNAL-SERVICES', 'KUBE-FORWARD', 'KUBE-NODEPORTS', 'KUBE-PROXY-FIREWALL', 'KUBE-PROXY-CANARY',
    'KUBE-NODE-PORT', 'KUBE-SOURCE-RANGES-FIREWALL', 'KUBE-IPVS-FILTER', 'KUBE-IPVS-OUT-FILTER',
  ],
  mangle: ['KUBE-PROXY-CANARY'],
};

/** Per-service and per-endpoint chains of the iptables mode (nat); KUBE-XLB- is from releases before 1.24. */
const SERVICE_CHAIN_PREFIXES = ['KUBE-SVC-', 'KUBE-SVL-', 'KUBE-EXT-', 'KUBE-FW-', 'KUBE-SEP-', 'KUBE-XLB-'];

/** IPVS mode's ip sets (pkg/proxy/ipvs/ipset.go); an IPv6 set is named KUBE-6-… instead of KUBE-…. */
const IPVS_SETS = [
  'LOOP-BACK', 'CLUSTER-IP', 'EXTERNAL-IP', 'EXTERNAL-IP-LOCAL', 'LOAD-BALANCER', 'LOAD-BALANCER-FW', 'LOAD-BALANCER-LOCAL',
  'LOAD-BALANCER-SOURCE-IP', 'LOAD-BALANCER-SOURCE-CIDR', 'NODE-PORT-TCP', 'NODE-PORT-LOCAL-TCP', 'NODE-PORT-UDP', 'NODE-PORT-LOCAL-UDP',
  'NODE-PORT-SCTP-HASH', 'NODE-PORT-LOCAL-SCTP-HASH', 'HEALTH-CHECK-NODE-PORT', 'IPVS-IPS',
];
export const KUBE_PROXY_IP_SETS: ReadonlySet<string> = new Set(IPVS_SETS.flatMap((name) => [`KUBE-${name}`, `KUBE-6-${name}`]));

/** The nftables mode's tables. */
export const KUBE_PROXY_NFT_TABLES = [{ family: 'ip', name: 'kube-proxy' }, { family: 'ip6', name: 'kube-proxy' }] as const;

/** The device IPVS mode binds the Service addresses to (created as a dummy link). */
export const IPVS_DEVICE = 'kube-ipvs0';

const BUILT_IN_CHAINS = new Set(['PREROUTING', 'INPUT', 'FORWARD', 'OUTPUT', 'POSTROUTING']);

const isServiceChain = (chain: string) => SERVICE_CHAIN_PREFIXES.some((prefix) => chain.startsWith(prefix));

export const isKubeProxyChain = (table: string, chain: string) =>
  (KUBE_PROXY_CHAINS[table]?.includes(chain) ?? false) || (table === 'nat' && isServiceChain(chain));

/** One table of an iptables-save: its chains and its `-A` rule lines. */
export interface SavedTable {
  chains: string[];
  rules: string[];
}

/** What of kube-proxy's the caller's iptables mode owns now (its chains, its jump rules as iptables-save prints them). */
export interface KeptChains {
  chain(table: string, chain: string): boolean;
  jumps: ReadonlySet<string>;
}

export const KEEP_NOTHING: KeptChains = { chain: () => false, jumps: new Set() };

export interface LeftoverRemoval {
  /** iptables-restore --noflush input, or undefined when there is nothing to remove. */
  input?: string;
  /** One entry per chain or rule the input removes, as "<table> chain NAME" or "<table> rule -A ...", but for: */
  removed: string[];
  /** the per-service and per-endpoint chains it removes, counted by table (a node has tens of thousands). */
  serviceChains: Map<string, number>;
  /** kube-proxy chains flushed but kept because another rule still jumps to them, with that rule. */
  referenced: string[];
}

const targetOf = (rule: string) => / -[jg] (\S+)/.exec(rule)?.[1];

/**
 * The restore input removing kube-proxy's chains and jump rules from the saved tables, except what
 * `keep` says is the caller's now: its chains are left as they are, and of the rules jumping into
 * them only its own jumps stay (kube-proxy's other jumps, such as the IPVS mode's or an older
 * release's, would run the same chains twice). kube-proxy's chains are flushed (dropping their
 * references to each other), the jumps into them from built-in chains deleted, then the chains.
 */
export function kubeProxyLeftovers(tables: Map<string, SavedTable>, keep: KeptChains = KEEP_NOTHING): LeftoverRemoval {
  let lines: string[] = [];
  const removal: LeftoverRemoval = { removed: [], serviceChains: new Map(), referenced: [] };
  for (const [table, { chains, rules }] of tables) {
    const kubeProxy = new Set(chains.filter((chain) => isKubeProxyChain(table, chain)));
    const gone = [...kubeProxy].filter((chain) => !keep.chain(table, chain));
    const jumps: string[] = [];
    const stillReferenced = new Map<string, string>();
    for (const rule of rules) {
      const [, from] = rule.split(' ');
      const target = targetOf(rule);
      if ((kubeProxy.has(from) && !keep.chain(table, from)) || target === undefined || !kubeProxy.has(target)) continue;
      const kept = keep.chain(table, target);
      if (!BUILT_IN_CHAINS.has(from)) {
        if (!kept && !stillReferenced.has(target)) stillReferenced.set(target, rule);
      } else if (!(kept && keep.jumps.has(rule))) {
        jumps.push(rule);
      }
    }
    if (gone.length === 0 && jumps.length === 0) continue;
    const deleted = gone.filter((chain) => !stillReferenced.has(chain));
    // concat, not push(...spread): at 30k services a spread of every chain overflows the stack.
    lines.push(`*${table}`);
    lines = lines.concat(gone.map((chain) => `:${chain} - [0:0]`), jumps.map((rule) => `-D${rule.slice(2)}`), deleted.map((chain) => `-X ${chain}`));
    lines.push('COMMIT');
    for (const rule of jumps) removal.removed.push(`${table} rule ${rule}`);
    for (const chain of deleted) {
      if (isServiceChain(chain)) removal.serviceChains.set(table, (removal.serviceChains.get(table) ?? 0) + 1);
      else removal.removed.push(`${table} chain ${chain}`);
    }
    for (const [chain, rule] of stillReferenced) removal.referenced.push(`${table} chain ${chain} (flushed; still the target of ${JSON.stringify(rule)})`);
  }
  return { ...removal, input: lines.length > 0 ? `${lines.join('\n')}\n` : undefined };
}

/** One IPVS virtual service of `ipvsadm -S -n`: its protocol flag (-t, -u, --sctp-service) and address:port. */
export interface VirtualService {
  flag: string;
  service: string;
  address: string;
}

/**
 * The virtual services of an `ipvsadm -S -n` dump that kube-proxy's IPVS mode made: those on an
 * address it bound to kube-ipvs0 (ClusterIPs, external and load-balancer IPs). Its NodePort services
 * sit on the node's own addresses, where nothing tells them from someone else's: they are left.
 */
/** The address of an ipvsadm service (`10.96.0.1:443`, `[fd00::1]:443`), undefined for anything else (a firewall mark). */
function hostOf(service: string): string | undefined {
  try {
    return splitHostPort(service).host;
  } catch (error) {
    if (error instanceof HostPortError) return undefined;
    throw error;
  }
}

export function kubeProxyVirtualServices(dump: string, ipvsAddresses: ReadonlySet<string>): VirtualService[] {
  const services: VirtualService[] = [];
  for (const line of dump.split('\n')) {
    const match = /^-A (-t|-u|--sctp-service) (\S+)/.exec(line);
    if (!match) continue;
    const [, flag, service] = match;
    const address = hostOf(service);
    if (address !== undefined && ipvsAddresses.has(address)) services.push({ flag, service, address });
  }
  return services;
}
