import ipaddr from 'ipaddr.js';
import type { DumpedSet } from '../../kernel/native.js';
import { DATATYPE_IDS, DATATYPE_LENGTHS, NFPROTO_NUMBERS, PROTOCOL_NUMBERS, registerWidth } from '../../kernel/fields.js';
import type { DataType } from '../../kernel/ruleset.js';
import { CONCAT_TYPE_BITS, NFT_DATA_VERDICT, NFT_VERDICT, NF_VERDICT } from '../../kernel/uapi.js';

// Set keys and map data as the kernel holds them, read back into the values nft prints.

export type Scalar = string | number;

const TYPES_BY_ID = new Map(Object.entries(DATATYPE_IDS).map(([type, id]) => [id, type as DataType]));
const PROTOCOL_NAMES = new Map<number, string>(Object.entries(PROTOCOL_NUMBERS).map(([name, number]) => [number, name]));
const NFPROTO_NAMES = new Map<number, string>(Object.entries(NFPROTO_NUMBERS).map(([name, number]) => [number, name]));

export const describeAddress = (bytes: Uint8Array) => ipaddr.fromByteArray([...bytes]).toString();

/** The data types a set's packed key (or data) type stands for, first component first. */
export function componentTypes(packed: number): DataType[] {
  const types: DataType[] = [];
  for (let rest = packed; rest > 0; rest = Math.floor(rest / 2 ** CONCAT_TYPE_BITS)) {
    const type = TYPES_BY_ID.get(rest % 2 ** CONCAT_TYPE_BITS);
    if (!type) return [];
    types.unshift(type);
  }
  return types;
}

function scalar(type: DataType, bytes: Buffer): Scalar {
  switch (type) {
    case 'ipv4_addr':
    case 'ipv6_addr':
      return describeAddress(bytes);
    case 'inet_proto':
      return PROTOCOL_NAMES.get(bytes[0]) ?? bytes[0];
    case 'nf_proto':
      return NFPROTO_NAMES.get(bytes[0]) ?? bytes[0];
    case 'inet_service':
      return bytes.readUInt16BE();
    case 'mark':
    case 'integer':
      return bytes.readUInt32LE();
  }
}

/** A key or data value's components; the raw bytes in hex when the type is not one kubenft uses. */
export function decodeValue(packed: number, bytes: Buffer): Scalar[] {
  const types = componentTypes(packed);
  if (types.length === 0) return [bytes.toString('hex')];
  if (types.length === 1) return [scalar(types[0], bytes)];
  const values: Scalar[] = [];
  let offset = 0;
  for (const type of types) {
    values.push(scalar(type, bytes.subarray(offset, offset + DATATYPE_LENGTHS[type])));
    offset += registerWidth(DATATYPE_LENGTHS[type]);
  }
  return values;
}

export function describeVerdict(code: number, chain?: string): string {
  if (code === NF_VERDICT.accept) return 'accept';
  if (code === NF_VERDICT.drop) return 'drop';
  const name = Object.entries(NFT_VERDICT).find(([, value]) => value === code)?.[0] ?? `verdict ${code}`;
  return chain ? `${name} ${chain}` : name;
}

/** An element as nft prints it: `key . key : data` or `key : verdict`. */
export function describeElement(set: DumpedSet, element: DumpedSet['elements'][number]): string {
  const key = decodeValue(set.keyType, element.key).join(' . ');
  if (element.verdict !== undefined && set.dataType === NFT_DATA_VERDICT) return `${key} : ${describeVerdict(element.verdict | 0, element.chain)}`;
  if (element.data && set.dataType !== undefined) return `${key} : ${decodeValue(set.dataType, element.data).join(' . ')}`;
  return key;
}
