import ipaddr from 'ipaddr.js';
import type { DataType, Field, Value } from './ruleset.js';

/** How a field is loaded into a register, in nf_tables terms. */
export type FieldLoad =
  | { expr: 'payload'; base: 'network' | 'transport'; offset: number; len: number }
  | { expr: 'meta'; key: 'l4proto' | 'mark' | 'nfproto'; len: number };

export interface FieldInfo {
  type: DataType;
  /** libnftnl JSON form of the field as a left-hand expression. */
  json: object;
  load: FieldLoad;
}

const payload = (protocol: string, field: string, base: 'network' | 'transport', offset: number, len: number) => ({
  json: { payload: { protocol, field } },
  load: { expr: 'payload' as const, base, offset, len },
});

export const FIELDS: Record<Field, FieldInfo> = {
  'ip saddr': { type: 'ipv4_addr', ...payload('ip', 'saddr', 'network', 12, 4) },
  'ip daddr': { type: 'ipv4_addr', ...payload('ip', 'daddr', 'network', 16, 4) },
  'ip6 saddr': { type: 'ipv6_addr', ...payload('ip6', 'saddr', 'network', 8, 16) },
  'ip6 daddr': { type: 'ipv6_addr', ...payload('ip6', 'daddr', 'network', 24, 16) },
  'th dport': { type: 'inet_service', ...payload('th', 'dport', 'transport', 2, 2) },
  'th sport': { type: 'inet_service', ...payload('th', 'sport', 'transport', 0, 2) },
  'meta l4proto': { type: 'inet_proto', json: { meta: { key: 'l4proto' } }, load: { expr: 'meta', key: 'l4proto', len: 1 } },
  'meta mark': { type: 'mark', json: { meta: { key: 'mark' } }, load: { expr: 'meta', key: 'mark', len: 4 } },
  /** In an inet table, the address family a network-header field needs matched before it is read. */
  'meta nfproto': { type: 'nf_proto', json: { meta: { key: 'nfproto' } }, load: { expr: 'meta', key: 'nfproto', len: 1 } },
};

/** nft's datatype numbers (src/datatype.h), which the kernel stores as a set's key type. */
export const DATATYPE_IDS: Record<DataType, number> = {
  nf_proto: 2, integer: 4, ipv4_addr: 7, ipv6_addr: 8, inet_proto: 12, inet_service: 13, mark: 19,
};

export const DATATYPE_LENGTHS: Record<DataType, number> = {
  nf_proto: 1, integer: 4, ipv4_addr: 4, ipv6_addr: 16, inet_proto: 1, inet_service: 2, mark: 4,
};

/** Concatenated keys live in 4-byte registers, so each component is padded to a multiple of 4. */
export const registerWidth = (len: number): number => Math.ceil(len / 4) * 4;

export const PROTOCOL_NUMBERS = { tcp: 6, udp: 17, sctp: 132, icmp: 1, icmpv6: 58 } as const;
export type ProtocolName = keyof typeof PROTOCOL_NUMBERS;

/** Netfilter's address family numbers (NFPROTO_IPV4, NFPROTO_IPV6), as `meta nfproto` names them. */
export const NFPROTO_NUMBERS: Record<string, number> = { ipv4: 2, ipv6: 10 };

/** The bytes of one value of a data type, unpadded, in the byte order nf_tables compares. */
export function encodeValue(type: DataType, value: Value): Buffer {
  switch (type) {
    case 'ipv4_addr':
    case 'ipv6_addr':
      return encodeAddress(String(value));
    case 'inet_proto': {
      const number = typeof value === 'number' ? value : PROTOCOL_NUMBERS[value as ProtocolName];
      if (number === undefined) throw new Error(`unknown protocol ${value}`);
      return Buffer.from([number]);
    }
    case 'nf_proto': {
      const number = NFPROTO_NUMBERS[String(value)];
      if (number === undefined) throw new Error(`unknown address family ${value}`);
      return Buffer.from([number]);
    }
    case 'inet_service': {
      const buffer = Buffer.alloc(2);
      buffer.writeUInt16BE(Number(value));
      return buffer;
    }
    case 'mark':
    case 'integer': {
      const buffer = Buffer.alloc(4);
      buffer.writeUInt32LE(Number(value) >>> 0);
      return buffer;
    }
  }
}

export function encodeAddress(address: string): Buffer {
  if (address.includes(':')) return Buffer.from(ipaddr.parse(address).toByteArray());
  // Addresses were validated at the edge and dotted quads are the bulk of every sync: parse them
  // by hand rather than through a general parser.
  const bytes = Buffer.allocUnsafe(4);
  let octet = 0;
  let index = 0;
  for (let i = 0; i < address.length; i++) {
    const code = address.charCodeAt(i);
    if (code === 46) {
      bytes[index++] = octet;
      octet = 0;
    } else {
      octet = octet * 10 + code - 48;
    }
  }
  bytes[index] = octet;
  return bytes;
}

/** Prefixes encoded once for the process: a handful of distinct ones recur in every service. */
class EncodedPrefixes {
  private readonly byText = new Map<string, { network: Buffer; mask: Buffer }>();

  get(prefix: string): { network: Buffer; mask: Buffer } {
    let encoded = this.byText.get(prefix);
    if (!encoded) this.byText.set(prefix, (encoded = parsePrefix(prefix)));
    return encoded;
  }
}

const ENCODED_PREFIXES = new EncodedPrefixes();

/** A prefix "addr/len" as (network bytes, mask bytes). */
export const encodePrefix = (prefix: string): { network: Buffer; mask: Buffer } => ENCODED_PREFIXES.get(prefix);

function parsePrefix(prefix: string): { network: Buffer; mask: Buffer } {
  const [address, length] = ipaddr.parseCIDR(prefix);
  const network = Buffer.from(address.toByteArray());
  const mask = Buffer.alloc(network.length);
  for (let bit = 0; bit < length; bit++) mask[bit >> 3] |= 0x80 >> (bit & 7);
  for (let i = 0; i < network.length; i++) network[i] &= mask[i];
  return { network, mask };
}


