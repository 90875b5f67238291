// The desired dataplane as typed nftables objects. The planner produces it; render-text, render-json
// and the netlink encoder consume it, so all three outputs always describe the same ruleset.

export type TableFamily = 'ip' | 'ip6';

/** An inet table holds rules for both address families; the proxy's tables are per family. */
export type NftFamily = TableFamily | 'inet';

/** Packet fields the rules read, each with one meaning in nft text, libnftables JSON and bytecode. */
export type Field =
  | 'ip saddr' | 'ip daddr' | 'ip6 saddr' | 'ip6 daddr'
  | 'meta l4proto' | 'th dport' | 'th sport' | 'meta mark' | 'meta nfproto';

/** Data types of set keys and map values, named as nft names them. */
export type DataType = 'ipv4_addr' | 'ipv6_addr' | 'inet_proto' | 'inet_service' | 'mark' | 'integer' | 'nf_proto';

/** A literal value: an address (v4/v6), a prefix "a/len", a protocol name, a port or integer, ipv4/ipv6 (nf_proto). */
export type Value = string | number;

export type Verdict =
  | { kind: 'accept' } | { kind: 'drop' } | { kind: 'return' }
  | { kind: 'jump'; chain: string } | { kind: 'goto'; chain: string };

export type Statement =
  | { kind: 'match'; field: Field; op: '==' | '!='; value: Value }
  | { kind: 'markMatch'; mask: number; op: '==' | '!='; value: number }
  | { kind: 'numgen'; modulus: number; equals: number }
  | { kind: 'lookup'; fields: Field[]; set: string; op: '==' | '!=' }
  /** `mask`: an address mask applied to the one field before the lookup. */
  | { kind: 'vmap'; fields: Field[]; map: string; mask?: string }
  | { kind: 'markSet'; or: number } | { kind: 'markToggle'; xor: number }
  | { kind: 'ctStateNew' }
  /** A bit of the connection's conntrack labels (0-127): set, or tested for being set. */
  | { kind: 'ctLabelSet'; label: number } | { kind: 'ctLabelMatch'; label: number }
  | { kind: 'fibLocal'; address: 'saddr' | 'daddr'; op: '==' | '!=' }
  | { kind: 'setUpdate'; field: Field; set: string }
  | { kind: 'dnat'; address: string; port: number }
  /** dnat to the address . port that `numgen random mod modulus` picks from a data map. */
  | { kind: 'dnatMap'; family: TableFamily; modulus: number; map: string }
  /** To this node's port: the receiving interface's address (prerouting) or loopback (output). */
  | { kind: 'redirect'; port: number }
  | { kind: 'masquerade' }
  | { kind: 'reject' }
  /**
   * A property of the local socket the packet belongs to (`nft socket KEY`); no socket: no match.
   * `wildcard` (bound to the wildcard address) is read only on full sockets, so a TCP request
   * socket (SYN-RECV) or timewait socket does not match either value; `transparent` is read on all.
   */
  | { kind: 'socket'; key: 'wildcard' | 'transparent'; value: boolean }
  | { kind: 'notrack' }
  | { kind: 'verdict'; verdict: Verdict };

export interface Rule {
  statements: Statement[];
}

export type Hook = 'prerouting' | 'input' | 'forward' | 'output' | 'postrouting';

export interface BaseChainSpec {
  type: 'nat' | 'filter';
  hook: Hook;
  priority: number;
  policy: 'accept' | 'drop';
}

export interface Chain {
  name: string;
  base?: BaseChainSpec;
  rules: Rule[];
}

export interface SetElement {
  key: Value[];
  /** Present in verdict maps. */
  verdict?: Verdict;
  /** Present in data maps. */
  data?: Value[];
}

export interface NamedSet {
  name: string;
  keyType: DataType[];
  /** 'verdict' for verdict maps, the data's types for data maps; absent for plain sets. */
  dataType?: 'verdict' | DataType[];
  /**
   * nft's `typeof` declaration, for keys nft cannot name by type alone (an integer produced by
   * numgen); the kernel only sees the types and lengths.
   */
  typeofText?: string;
  /** Elements added from the packet path (`update @set`) that expire after this many seconds. */
  dynamicTimeoutSeconds?: number;
  elements: SetElement[];
}

export interface Table<Family extends NftFamily = TableFamily> {
  family: Family;
  name: string;
  sets: NamedSet[];
  chains: Chain[];
}

export interface Ruleset {
  tables: Table[];
}

/** A table's identity across families: `ip kubenft`. */
export const tableKey = (family: TableFamily, name: string) => `${family} ${name}`;
