import { isIPv6 } from 'node:net';
import type { Chain, Field, NamedSet, Rule, Statement, Table } from '../kernel/ruleset.js';

// The node side of cluster DNS in nftables: the table that keeps DNS queries to kubenft's served
// addresses, and its answers, out of conntrack. Loaded by the same transaction compiler as the
// proxy's tables, as one inet table replaced whole.

export const DNS_TABLE = 'kubenft-dns';
const DNS_PORT = 53;
/** nft's `raw`: notrack works only before conntrack (-200) has seen the packet. */
const RAW_PRIORITY = -300;

const FAMILIES = [
  { nfproto: 'ipv4', set: 'served-ipv4', keyType: 'ipv4_addr', saddr: 'ip saddr', daddr: 'ip daddr', v6: false },
  { nfproto: 'ipv6', set: 'served-ipv6', keyType: 'ipv6_addr', saddr: 'ip6 saddr', daddr: 'ip6 daddr', v6: true },
] as const;

const baseChain = (hook: 'prerouting' | 'output', rules: Rule[]): Chain => ({
  name: hook, base: { type: 'filter', hook, priority: RAW_PRIORITY, policy: 'accept' }, rules,
});

/**
 * Queries to the served addresses are notrack only while a server socket is bound to the address
 * itself (looked up per packet): when the server is down they are tracked again, and the proxy's
 * rules DNAT the kube-dns ClusterIP to the DNS Service's endpoints with no agent involved. The
 * server's answers are notrack.
 *
 * Over TCP every packet of a connection must take the path its SYN took, and the socket a packet
 * meets changes along the connection: the SYN meets the listener, the handshake's final ACK (and
 * a retransmitted SYN) the request socket of SYN-RECV, the data the connection's own socket, late
 * FINs and ACKs its timewait socket. The kernel reads `socket wildcard` on full sockets only
 * (nft_socket.c), so the request and timewait sockets match neither value, and the final ACK,
 * tracked, would reach the proxy's DNAT and be reset by the endpoint. Those sockets belong to a
 * connection the server accepted (they are found by the connection's four addresses and ports),
 * so once the full sockets are decided, bound to the address (ours) or to the wildcard address
 * (another server's, left to the proxy), any socket still found is the server's: `socket
 * transparent`, the one key read on every kind of socket, matches it (the server's are not
 * IP_TRANSPARENT).
 *
 * Queries from the node itself: in output, `socket` finds the sender, not the server, so it cannot
 * tell whether the server is up. With `hostClients` the addresses live on a device the agent's
 * process holds (a TUN device the kernel deletes when the process exits), so `fib daddr type local`
 * tells it instead: local, the query is notrack and reaches the server through loopback; once the
 * process is gone, it is tracked and DNATed like the pods' queries. Without it they stay tracked.
 */
export function dnsTable(addresses: string[], { hostClients }: { hostClients: boolean }): Table<'inet'> {
  const sets: NamedSet[] = [];
  const prerouting: Rule[] = [];
  const output: Rule[] = [];
  for (const family of FAMILIES) {
    const served = addresses.filter((address) => isIPv6(address) === family.v6);
    if (served.length === 0) continue;
    sets.push({
      name: family.set,
      keyType: [family.keyType, 'inet_proto', 'inet_service'],
      elements: served.flatMap((address) => ['udp', 'tcp'].map((protocol) => ({ key: [address, protocol, DNS_PORT] }))),
    });
    // In an inet table a network-header field is read only once the packet's family is known.
    const servedBy = (address: Field, port: Field): Statement[] => [
      { kind: 'match', field: 'meta nfproto', op: '==', value: family.nfproto },
      { kind: 'lookup', fields: [address, 'meta l4proto', port], set: family.set, op: '==' },
    ];
    const query = servedBy(family.daddr, 'th dport');
    const tcpQuery: Statement[] = [...query, { kind: 'match', field: 'meta l4proto', op: '==', value: 'tcp' }];
    prerouting.push(
      { statements: [...query, { kind: 'socket', key: 'wildcard', value: false }, { kind: 'notrack' }] },
      { statements: [...tcpQuery, { kind: 'socket', key: 'wildcard', value: true }, { kind: 'verdict', verdict: { kind: 'accept' } }] },
      { statements: [...tcpQuery, { kind: 'socket', key: 'transparent', value: false }, { kind: 'notrack' }] },
    );
    output.push({ statements: [...servedBy(family.saddr, 'th sport'), { kind: 'notrack' }] });
    if (hostClients) output.push({ statements: [...query, { kind: 'fibLocal', address: 'daddr', op: '==' }, { kind: 'notrack' }] });
  }
  return { family: 'inet', name: DNS_TABLE, sets, chains: [baseChain('prerouting', prerouting), baseChain('output', output)] };
}
