// The ruleset upstream kube-proxy's nftables mode writes for ClusterIP services, as the text its
// knftables library pipes into `nft -f -`: a service-ips verdict map for dispatch, a chain per
// service choosing an endpoint with an anonymous `numgen random mod n vmap { ... }`, and a chain
// per endpoint doing the DNAT. Only what ClusterIP services need is generated: the benchmark
// compares load times of the two layouts, not features.
import { createHash } from 'node:crypto';
import type { ServicePortView } from '../../src/cluster/service-ports.js';

const TABLE = 'ip kube-proxy';
const MASQUERADE_MARK = '0x4000';

/** Upstream prefixes chain names with 8 characters of a SHA-256 (base32 there; hex is as long). */
const hashPrefix = (text: string) => createHash('sha256').update(text).digest('hex').slice(0, 8).toUpperCase();

const FIXED_PART = [
  `add table ${TABLE} { comment "rules for kube-proxy" ; }`,
  `add chain ${TABLE} mark-for-masquerade`,
  `add rule ${TABLE} mark-for-masquerade mark set mark or ${MASQUERADE_MARK}`,
  // Numeric priorities: nft 1.0.6 refuses `priority dstnat` on the output hook.
  `add chain ${TABLE} masquerading { type nat hook postrouting priority 100 ; policy accept ; }`,
  `add rule ${TABLE} masquerading mark and ${MASQUERADE_MARK} == 0 return`,
  `add rule ${TABLE} masquerading mark set mark xor ${MASQUERADE_MARK}`,
  `add rule ${TABLE} masquerading masquerade fully-random`,
  `add map ${TABLE} service-ips { type ipv4_addr . inet_proto . inet_service : verdict ; }`,
  `add chain ${TABLE} services`,
  `add rule ${TABLE} services ip daddr . meta l4proto . th dport vmap @service-ips`,
  `add chain ${TABLE} nat-prerouting { type nat hook prerouting priority -100 ; policy accept ; }`,
  `add rule ${TABLE} nat-prerouting jump services`,
  `add chain ${TABLE} nat-output { type nat hook output priority -100 ; policy accept ; }`,
  `add rule ${TABLE} nat-output jump services`,
];

function servicePortLines(view: ServicePortView, podCIDR: string): string[] {
  const protocol = view.port.protocol.toLowerCase();
  const base = `${view.service.namespace}/${view.service.name}/${protocol}/${view.port.port}`;
  const serviceChain = `service-${hashPrefix(base)}-${base}`;
  const endpoints = view.endpoints.map((endpoint) => {
    const name = `${base}__${endpoint.address}/${endpoint.port}`;
    return { ...endpoint, chain: `endpoint-${hashPrefix(name)}-${name}` };
  });
  // Chains first: the service's vmap and the map element refer to them.
  const lines = [`add chain ${TABLE} ${serviceChain}`, ...endpoints.map((endpoint) => `add chain ${TABLE} ${endpoint.chain}`)];
  for (const endpoint of endpoints) {
    lines.push(
      `add rule ${TABLE} ${endpoint.chain} ip saddr ${endpoint.address} jump mark-for-masquerade`,
      `add rule ${TABLE} ${endpoint.chain} meta l4proto ${protocol} dnat to ${endpoint.address}:${endpoint.port}`,
    );
  }
  lines.push(`add rule ${TABLE} ${serviceChain} ip daddr ${view.clusterIP} ${protocol} dport ${view.port.port} ip saddr != ${podCIDR} jump mark-for-masquerade`);
  if (endpoints.length > 0) {
    const choices = endpoints.map((endpoint, index) => `${index} : goto ${endpoint.chain}`).join(' , ');
    lines.push(`add rule ${TABLE} ${serviceChain} numgen random mod ${endpoints.length} vmap { ${choices} }`);
  }
  lines.push(`add element ${TABLE} service-ips { ${view.clusterIP} . ${protocol} . ${view.port.port} : goto ${serviceChain} }`);
  return lines;
}

/** The whole `nft -f` input for the given (IPv4) service ports. */
export function upstreamNftablesText(views: ServicePortView[], podCIDR: string): string {
  const lines = [...FIXED_PART];
  for (const view of views) if (view.family === 4) lines.push(...servicePortLines(view, podCIDR));
  return `${lines.join('\n')}\n`;
}
