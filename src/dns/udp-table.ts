import type { Prepared } from './wire.js';
import { wireName } from './wire.js';

// The updates of the addon's answer table (native/udp_answers.cc), which answers the UDP queries
// it can off the JS thread and which the server reads back for the rest: exact (name, type,
// class) → a prepared response; a name, or every name below a suffix → an empty response (rcode
// and authority) or "pass" to JS. The format is the one udp_answers.cc reads: ops one after the
// other, big-endian.

const OP = { remove: 0, setAnswer: 1, setTemplate: 2, setAuthority: 3 } as const;
export const MATCH = { exact: 0, name: 1, suffix: 2 } as const;
type Match = (typeof MATCH)[keyof typeof MATCH];

const CLASS_IN = 1;
const NO_AUTHORITY = 255;

/** An empty response: the header flags (QR, AA, RA, rcode: bytes 2 and 3) and which authority slot follows the question. */
export interface Template { flags: number; authority?: number }

export class TableOps {
  private readonly parts: Buffer[] = [];

  get empty(): boolean {
    return this.parts.length === 0;
  }

  /** The prepared answer to (name, type) in class IN, its question's name recurring at `nameAt`, the zone ending names at `zoneAt`. */
  setAnswer(name: string, type: number, prepared: Prepared): this {
    const { packet, nameAt, zoneAt, zoneLength } = prepared;
    const tail = Buffer.alloc(2 + packet.length + 2 + 2 * nameAt.length + 3 + 2 * zoneAt.length);
    let at = tail.writeUInt16BE(packet.length, 0);
    at += packet.copy(tail, at);
    at = tail.writeUInt16BE(nameAt.length, at);
    for (const offset of nameAt) at = tail.writeUInt16BE(offset, at);
    at = tail.writeUInt8(zoneLength, at);
    at = tail.writeUInt16BE(zoneAt.length, at);
    for (const offset of zoneAt) at = tail.writeUInt16BE(offset, at);
    return this.push(OP.setAnswer, MATCH.exact, name, type, tail);
  }

  /** A name's (or a suffix's) empty response; undefined: pass its queries to JS. */
  setTemplate(match: Match, name: string, template: Template | undefined): this {
    const tail = Buffer.from([template ? 0 : 1, 0, 0, template?.authority ?? NO_AUTHORITY]);
    tail.writeUInt16BE(template?.flags ?? 0, 1);
    return this.push(OP.setTemplate, match, name, 0, tail);
  }

  /** Removes an exact answer (of `type`), a suffix's template, or a name with its template and all its answers. */
  remove(match: Match, name: string, type = 0): this {
    return this.push(OP.remove, match, name, type, Buffer.alloc(0));
  }

  /** Authority records (already encoded, no compression pointers) that templates refer to by slot. */
  setAuthority(slot: number, records: Buffer[]): this {
    const head = Buffer.alloc(6);
    head[0] = OP.setAuthority;
    head[1] = slot;
    head.writeUInt16BE(records.length, 2);
    const body = Buffer.concat(records);
    head.writeUInt16BE(body.length, 4);
    this.parts.push(head, body);
    return this;
  }

  take(): Buffer {
    const buffer = Buffer.concat(this.parts);
    this.parts.length = 0;
    return buffer;
  }

  private push(op: number, match: Match, name: string, type: number, tail: Buffer): this {
    const wire = wireName(name);
    const head = Buffer.alloc(7);
    head[0] = op;
    head[1] = match;
    head.writeUInt16BE(type, 2);
    head.writeUInt16BE(CLASS_IN, 4);
    head[6] = wire.length;
    this.parts.push(head, wire, tail);
    return this;
  }
}
