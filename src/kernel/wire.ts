// The binary transaction format the native addon decodes (see native/): a list of messages, each an
// nftnl object kind, a netlink message type and libnftnl attributes, with rule expressions or set
// elements as the body. Little-endian; strings carry their trailing NUL.

import type { NativeAttributes } from './native.js';

export const OBJECT_KIND = { table: 0, chain: 1, rule: 2, set: 3, setelems: 4 } as const;
export type ObjectKind = keyof typeof OBJECT_KIND;

/**
 * A growable byte buffer with the few writes the format needs. A full sync writes millions of
 * small values, so every write is byte-wise and unchecked beyond one capacity test: Buffer's
 * checked writers, per-call closures and per-value Buffers dominated the serialization otherwise.
 */
export class WireWriter {
  private buffer = Buffer.allocUnsafe(1 << 16);
  private length = 0;
  /** Offsets and item counts of the lists being written, innermost last. */
  private readonly listOffsets: number[] = [];
  private readonly listCounts: number[] = [];

  /**
   * Grows 8-fold: every large buffer counts towards V8's external-memory trigger for a full GC
   * (every ~64 MB allocated), and doubling up to the 123 MB of a 100k-service sync forced a second
   * mark-compact that freed nothing (~200 ms). The spare capacity costs no resident memory: the
   * pages of an unsafe allocation are only mapped when written.
   */
  private reserve(bytes: number): void {
    if (this.length + bytes <= this.buffer.length) return;
    const grown = Buffer.allocUnsafe(Math.max(this.buffer.length * 8, this.length + bytes));
    grown.set(this.buffer.subarray(0, this.length));
    this.buffer = grown;
  }

  get offset(): number {
    return this.length;
  }

  u8(value: number): void {
    this.reserve(1);
    this.buffer[this.length++] = value;
  }

  u16(value: number): void {
    this.reserve(2);
    const buffer = this.buffer;
    buffer[this.length++] = value & 0xff;
    buffer[this.length++] = value >>> 8;
  }

  u32(value: number): void {
    this.reserve(4);
    this.patchU32(this.length, value);
    this.length += 4;
  }

  /** Overwrites a u32 written earlier: counts are known only after their items. */
  patchU32(offset: number, value: number): void {
    const buffer = this.buffer;
    buffer[offset] = value & 0xff;
    buffer[offset + 1] = (value >>> 8) & 0xff;
    buffer[offset + 2] = (value >>> 16) & 0xff;
    buffer[offset + 3] = value >>> 24;
  }

  bytes(value: Uint8Array): void {
    const length = value.length;
    this.reserve(length);
    // Most values are 1-16 bytes, where a loop beats a native copy's call overhead.
    if (length <= 16) {
      const buffer = this.buffer;
      for (let i = 0; i < length; i++) buffer[this.length + i] = value[i];
    } else {
      this.buffer.set(value, this.length);
    }
    this.length += length;
  }

  zeros(count: number): void {
    this.reserve(count);
    for (let i = 0; i < count; i++) this.buffer[this.length++] = 0;
  }

  /**
   * A dotted quad as its 4 network-order bytes, parsed straight into the buffer: addresses were
   * validated at the edge, and they are most of a sync's element keys and DNAT targets.
   */
  ipv4(address: string): void {
    this.reserve(4);
    const buffer = this.buffer;
    let position = this.length;
    let octet = 0;
    for (let i = 0; i < address.length; i++) {
      const code = address.charCodeAt(i);
      if (code !== 46) {
        octet = octet * 10 + code - 48;
        continue;
      }
      buffer[position++] = octet;
      octet = 0;
    }
    buffer[position] = octet;
    this.length += 4;
  }

  /** An attribute header: the caller writes its valueLength bytes next. */
  attrHeader(id: number, valueLength: number): void {
    this.item();
    this.reserve(4);
    const buffer = this.buffer;
    buffer[this.length++] = id & 0xff;
    buffer[this.length++] = id >>> 8;
    buffer[this.length++] = valueLength & 0xff;
    buffer[this.length++] = valueLength >>> 8;
  }

  attrBytes(id: number, value: Uint8Array): void {
    this.attrHeader(id, value.length);
    this.bytes(value);
  }

  /** Counts items (attributes, expressions or elements) of the innermost list. */
  item(count = 1): void {
    this.listCounts[this.listCounts.length - 1] += count;
  }

  /** Items counted so far in the innermost list. */
  get itemCount(): number {
    return this.listCounts[this.listCounts.length - 1];
  }

  /** A copy of bytes written earlier, to be written again later with bytes(). */
  copyOf(from: number, to: number): Buffer {
    return Buffer.from(this.buffer.subarray(from, to));
  }

  attrU8(id: number, value: number): void {
    this.attrHeader(id, 1);
    this.u8(value);
  }

  attrU32(id: number, value: number): void {
    this.attrHeader(id, 4);
    this.u32(value);
  }

  attrU64(id: number, value: bigint): void {
    this.attrHeader(id, 8);
    this.reserve(8);
    this.length = this.buffer.writeBigUInt64LE(value, this.length);
  }

  /**
   * Names are ASCII (Kubernetes names, validated at the edge), so each character is one byte; a
   * loop beats Buffer#write's encoding dispatch for names this short.
   */
  attrString(id: number, value: string): void {
    const length = value.length;
    this.attrHeader(id, length + 1);
    this.reserve(length + 1);
    const buffer = this.buffer;
    let position = this.length;
    for (let i = 0; i < length; i++) buffer[position++] = value.charCodeAt(i);
    buffer[position++] = 0;
    this.length = position;
  }

  /** Starts a counted list: a u32 count placeholder, patched by closeList() once the items are written. */
  openList(): void {
    this.listOffsets.push(this.length);
    this.listCounts.push(0);
    this.u32(0);
  }

  closeList(): void {
    this.patchU32(this.listOffsets.pop()!, this.listCounts.pop()!);
  }

  finish(): Buffer {
    return this.buffer.subarray(0, this.length);
  }

  /** Empties the writer, keeping its buffer for the next transaction (commits copy what they send). */
  reset(): void {
    this.length = 0;
  }
}

// ---- reading the format back -----------------------------------------------------------------------

/** An attribute's value: names are strings, raw data (keys, masks, user data) bytes, the rest numbers. */
export type WireValue = number | string | Buffer;
export type WireAttributes = Record<string, WireValue>;

/** Attributes that hold names (NUL-terminated) or raw data, by kind; every other attribute is a number. */
const STRING_ATTRIBUTES = {
  object: new Set(['name', 'table', 'chain', 'type']), elem: new Set(['chain']), expr: new Set(['chain', 'set', 'setName']),
};
const DATA_ATTRIBUTES = {
  object: new Set(['userdata']), elem: new Set(['key', 'keyEnd', 'data', 'userdata']), expr: new Set(['data', 'mask', 'xor', 'fromData', 'toData']),
};
type AttributeKind = keyof typeof STRING_ATTRIBUTES;

/** One message of a transaction, its attributes named by the addon's attribute table. */
export interface WireMessage {
  kind: ObjectKind;
  /** An NFPROTO number. */
  family: number;
  /** An NFT_MSG type. */
  type: number;
  /** NLM_F flags. */
  flags: number;
  attrs: WireAttributes;
  /** A rule's expressions, in order. */
  expressions: { name: string; attrs: WireAttributes }[];
  /** A setelems message's elements. */
  elements: WireAttributes[];
}

/** The attribute ids of the addon's attribute table (attrs.cc), the other way round. */
export interface AttributeNames {
  table: Map<number, string>;
  chain: Map<number, string>;
  rule: Map<number, string>;
  set: Map<number, string>;
  elem: Map<number, string>;
  expr: Map<string, Map<number, string>>;
}

const inverse = (ids: Record<string, number>) => new Map(Object.entries(ids).map(([name, id]) => [id, name]));

export function attributeNames(attributes: NativeAttributes): AttributeNames {
  return {
    table: inverse(attributes.table), chain: inverse(attributes.chain), rule: inverse(attributes.rule), set: inverse(attributes.set), elem: inverse(attributes.elem),
    expr: new Map(Object.entries(attributes.expr).map(([name, ids]) => [name, inverse(ids)])),
  };
}

const KINDS = Object.keys(OBJECT_KIND) as ObjectKind[];

class WireReader {
  private offset = 0;
  constructor(private readonly buffer: Buffer) {}
  u8 = () => this.buffer[this.offset++];
  u16 = () => {
    const value = this.buffer.readUInt16LE(this.offset);
    this.offset += 2;
    return value;
  };
  u32 = () => {
    const value = this.buffer.readUInt32LE(this.offset);
    this.offset += 4;
    return value;
  };
  bytes(length: number): Buffer {
    const value = this.buffer.subarray(this.offset, this.offset + length);
    this.offset += length;
    return value;
  }

  /** A counted attribute list, named through `names` (id → name). */
  attributes(names: Map<number, string>, kind: AttributeKind = 'object'): WireAttributes {
    const attrs: WireAttributes = {};
    for (let count = this.u32(); count > 0; count--) {
      const id = this.u16();
      const value = this.bytes(this.u16());
      const name = names.get(id) ?? `attr${id}`;
      if (STRING_ATTRIBUTES[kind].has(name)) attrs[name] = value.subarray(0, value.length - 1).toString('latin1');
      else if (DATA_ATTRIBUTES[kind].has(name)) attrs[name] = Buffer.from(value);
      else if (value.length === 1) attrs[name] = value[0];
      else if (value.length === 8) attrs[name] = Number(value.readBigUInt64LE());
      else attrs[name] = value.readUInt32LE();
    }
    return attrs;
  }
}

/** A transaction's messages, read back from the wire format as the addon reads them. */
export function readTransaction(transaction: Buffer, names: AttributeNames): WireMessage[] {
  const reader = new WireReader(transaction);
  const messages: WireMessage[] = [];
  for (let count = reader.u32(); count > 0; count--) {
    const kind = KINDS[reader.u8()];
    const family = reader.u8();
    const type = reader.u16();
    const flags = reader.u16();
    reader.u16(); // padding
    const message: WireMessage = { kind, family, type, flags, attrs: reader.attributes(names[kind === 'setelems' ? 'set' : kind]), expressions: [], elements: [] };
    if (kind === 'rule') {
      for (let expressions = reader.u32(); expressions > 0; expressions--) {
        const name = reader.bytes(reader.u8()).toString('latin1');
        message.expressions.push({ name, attrs: reader.attributes(names.expr.get(name) ?? new Map(), 'expr') });
      }
    } else if (kind === 'setelems') {
      for (let elements = reader.u32(); elements > 0; elements--) message.elements.push(reader.attributes(names.elem, 'elem'));
    }
    messages.push(message);
  }
  return messages;
}
