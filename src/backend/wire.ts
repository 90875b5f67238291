// The binary transaction format the native addon decodes (see native/): a list of messages, each an
// nftnl object kind, a netlink message type and libnftnl attributes, with rule expressions or set
// elements as the body. Little-endian; strings carry their trailing NUL.

export const OBJECT_KIND = { table: 0, chain: 1, rule: 2, set: 3, setelems: 4 } as const;
export type ObjectKind = keyof typeof OBJECT_KIND;

/** A growable byte buffer with the few writes the format needs. */
export class WireWriter {
  private buffer = Buffer.allocUnsafe(1 << 16);
  private length = 0;
  /** Item counts of the lists being written, innermost last: each list's count precedes it. */
  private readonly counts: number[] = [];

  private reserve(bytes: number): void {
    if (this.length + bytes <= this.buffer.length) return;
    const grown = Buffer.allocUnsafe(Math.max(this.buffer.length * 2, this.length + bytes));
    this.buffer.copy(grown, 0, 0, this.length);
    this.buffer = grown;
  }

  get offset(): number {
    return this.length;
  }

  u8(value: number): void {
    this.reserve(1);
    this.buffer[this.length++] = value;
  }

  // Byte-wise writes: Buffer's checked writeUInt*LE calls dominate a 10 MB transaction otherwise.
  u16(value: number): void {
    this.reserve(2);
    const buffer = this.buffer;
    buffer[this.length++] = value & 0xff;
    buffer[this.length++] = value >>> 8;
  }

  u32(value: number): void {
    this.reserve(4);
    const buffer = this.buffer;
    buffer[this.length++] = value & 0xff;
    buffer[this.length++] = (value >>> 8) & 0xff;
    buffer[this.length++] = (value >>> 16) & 0xff;
    buffer[this.length++] = value >>> 24;
  }

  bytes(value: Buffer): void {
    this.reserve(value.length);
    // Most values are 1-16 bytes, where a loop beats Buffer#copy's call overhead.
    if (value.length <= 16) {
      for (let i = 0; i < value.length; i++) this.buffer[this.length + i] = value[i];
    } else {
      value.copy(this.buffer, this.length);
    }
    this.length += value.length;
  }

  /** Overwrites a u32 written earlier: counts are known only after their items. */
  patchU32(offset: number, value: number): void {
    this.buffer.writeUInt32LE(value, offset);
  }

  attrBytes(id: number, value: Buffer): void {
    this.item();
    this.u16(id);
    this.u16(value.length);
    this.bytes(value);
  }

  /** Counts items (attributes, expressions or elements) of the innermost list. */
  item(count = 1): void {
    this.counts[this.counts.length - 1] += count;
  }

  /** Items counted so far in the innermost list. */
  get itemCount(): number {
    return this.counts[this.counts.length - 1];
  }

  /** A copy of bytes written earlier, to be written again later with bytes(). */
  copyOf(from: number, to: number): Buffer {
    return Buffer.from(this.buffer.subarray(from, to));
  }

  attrU8(id: number, value: number): void {
    this.item();
    this.u16(id);
    this.u16(1);
    this.u8(value);
  }

  attrU32(id: number, value: number): void {
    this.item();
    this.u16(id);
    this.u16(4);
    this.u32(value);
  }

  attrU64(id: number, value: bigint): void {
    this.item();
    this.u16(id);
    this.u16(8);
    this.reserve(8);
    this.length = this.buffer.writeBigUInt64LE(value, this.length);
  }

  /** Names are ASCII (Kubernetes names, validated at the edge), so latin1 writes them byte for byte. */
  attrString(id: number, value: string): void {
    const byteLength = value.length + 1;
    this.item();
    this.u16(id);
    this.u16(byteLength);
    this.reserve(byteLength);
    this.length += this.buffer.write(value, this.length, 'latin1');
    this.buffer[this.length++] = 0;
  }

  /** Writes a counted list: a u32 count placeholder, then the items, then the count. */
  list(write: () => void): void {
    const at = this.length;
    this.u32(0);
    this.counts.push(0);
    write();
    this.patchU32(at, this.counts.pop()!);
  }

  finish(): Buffer {
    return this.buffer.subarray(0, this.length);
  }
}
