import dnsPacket from 'dns-packet';
import type { PlannedName, PlannedRecord, PlannedType } from './records.js';

// The DNS wire format on the hot path. Answers for cluster names are encoded once, when the state
// changes (dns-packet: a well-kept encoder of every record type, so no hand-written record encoding);
// a query then costs a header and question parse, a lookup, and patching the ID, the RD bit and the
// question's case into a copy of the prepared answer.

export const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;
export const RCODE_NAMES = ['NOERROR', 'FORMERR', 'SERVFAIL', 'NXDOMAIN', 'NOTIMP', 'REFUSED'];
export const QTYPE = { A: 1, NS: 2, CNAME: 5, SOA: 6, PTR: 12, TXT: 16, AAAA: 28, SRV: 33, OPT: 41, IXFR: 251, AXFR: 252 } as const;
const TYPE_NAMES = new Map<number, string>(Object.entries(QTYPE).map(([name, code]) => [code, name]));
export const typeName = (code: number) => TYPE_NAMES.get(code) ?? 'other';

const HEADER = 12;
export const FLAG_QR = 0x80;
export const FLAG_AA = 0x04;
const FLAG_TC = 0x02;
const FLAG_RD = 0x01;
export const FLAG_RA = 0x80;
/** The size an answer over UDP may have without EDNS (RFC 1035). */
export const CLASSIC_UDP_SIZE = 512;
/** What kubenft advertises and accepts in EDNS: the DNS flag day 2020 size. */
export const EDNS_UDP_SIZE = 1232;
const OPT_RR = Buffer.from([0, 0, QTYPE.OPT, EDNS_UDP_SIZE >> 8, EDNS_UDP_SIZE & 0xff, 0, 0, 0, 0, 0, 0]);

export interface Query {
  id: number;
  rd: boolean;
  /**
   * Lower-case, without the trailing dot; '' for the root. A '.' or '\' inside a label is escaped
   * (`a\.b`), as in zone files, so that no two names share a key: joined as they come, the labels
   * `a.b` and `c` would read as the three of `a.b.c`.
   */
  name: string;
  /** The labels, lower-case. */
  labels: string[];
  /** The name in wire form, lower-case (the answer table's key). */
  wire: Buffer;
  qtype: number;
  qclass: number;
  /** Where the question's name ends, and the question. */
  nameEnd: number;
  questionEnd: number;
  /** The client's EDNS UDP size, or undefined without EDNS. */
  ednsSize?: number;
}

export class MalformedQuery extends Error {}

/** Parses a query's header, single question and optional OPT record; throws MalformedQuery otherwise. */
export function parseQuery(packet: Buffer): Query {
  if (packet.length < HEADER) throw new MalformedQuery('shorter than a header');
  if (packet[2] & FLAG_QR) throw new MalformedQuery('a response, not a query');
  if (packet.readUInt16BE(4) !== 1) throw new MalformedQuery('not exactly one question');
  let offset = HEADER;
  for (;;) {
    if (offset >= packet.length) throw new MalformedQuery('question name runs past the packet');
    const length = packet[offset];
    if (length === 0) break;
    if (length > 63) throw new MalformedQuery('compressed or oversized label in the question');
    if (offset + 1 + length > packet.length) throw new MalformedQuery('label runs past the packet');
    offset += 1 + length;
    if (offset - HEADER > 255) throw new MalformedQuery('question name longer than 255 bytes');
  }
  const nameEnd = offset + 1;
  if (nameEnd + 4 > packet.length) throw new MalformedQuery('question type and class missing');
  const wire = lowerCase(packet.subarray(HEADER, nameEnd));
  const labels: string[] = [];
  for (let at = 0; wire[at] !== 0; at += 1 + wire[at]) labels.push(wire.toString('latin1', at + 1, at + 1 + wire[at]));
  const query: Query = {
    id: packet.readUInt16BE(0),
    rd: (packet[2] & FLAG_RD) !== 0,
    name: labels.map((label) => label.replace(/[.\\]/g, '\\$&')).join('.'),
    labels,
    wire,
    qtype: packet.readUInt16BE(nameEnd),
    qclass: packet.readUInt16BE(nameEnd + 2),
    nameEnd,
    questionEnd: nameEnd + 4,
  };
  const additional = packet.readUInt16BE(10);
  if (additional > 0 && packet.readUInt16BE(6) === 0 && packet.readUInt16BE(8) === 0) {
    const opt = query.questionEnd;
    if (opt + 11 <= packet.length && packet[opt] === 0 && packet.readUInt16BE(opt + 1) === QTYPE.OPT) {
      query.ednsSize = Math.min(Math.max(packet.readUInt16BE(opt + 3), CLASSIC_UDP_SIZE), EDNS_UDP_SIZE);
    }
  }
  return query;
}

/** A copy with ASCII letters lower-cased, as DNS compares names (RFC 4343); length bytes are never letters. */
function lowerCase(wire: Buffer): Buffer {
  const out = Buffer.from(wire);
  for (let at = 0; at < out.length; at++) if (out[at] >= 0x41 && out[at] <= 0x5a) out[at] |= 0x20;
  return out;
}

/** Whether labels end with the suffix's (the name is the suffix or below it). */
export const endsWithLabels = (labels: readonly string[], suffix: readonly string[]) =>
  labels.length >= suffix.length && suffix.every((label, index) => labels[labels.length - suffix.length + index] === label);

/** The largest answer a client takes over UDP. */
export const udpLimit = (query: Query) => query.ednsSize ?? CLASSIC_UDP_SIZE;

/** Wire form of a name, for finding it in an encoded answer and keying the addon's answer table. */
export function wireName(name: string): Buffer {
  const parts = name === '' ? [] : name.split('.');
  return Buffer.concat([...parts.map((label) => Buffer.concat([Buffer.from([label.length]), Buffer.from(label, 'latin1')])), Buffer.from([0])]);
}

const toAnswer = (record: PlannedRecord): dnsPacket.Answer => ({ name: record.name, type: record.type, class: 'IN', ttl: record.ttl, data: record.data } as dnsPacket.Answer);

/**
 * A prepared answer: the encoded response, where the question's name recurs in it, and where the
 * zone ends other names (SRV targets, their glue), which get the query's case for the zone as
 * CoreDNS gives them (`svc.ns.svc.ClUsTeR.lOcAl.` for a query in that case).
 */
export interface Prepared {
  packet: Buffer;
  nameAt: number[];
  zoneAt: number[];
  /** The zone's wire length (0 when the question is not in the zone). */
  zoneLength: number;
}

const occurrences = (packet: Buffer, wire: Buffer, from: number) => {
  const found: number[] = [];
  for (let at = packet.indexOf(wire, from); at !== -1; at = packet.indexOf(wire, at + 1)) found.push(at);
  return found;
};

/** Encodes a response for `name`/`type` with id 0; names equal to the question, and the zone, get the query's case at query time. */
export function prepare(name: string, type: PlannedType, answers: PlannedRecord[], additionals: PlannedRecord[], zone: string): Prepared {
  const packet = dnsPacket.encode({
    id: 0,
    type: 'response',
    flags: dnsPacket.AUTHORITATIVE_ANSWER | dnsPacket.RECURSION_AVAILABLE,
    questions: [{ name, type, class: 'IN' }],
    answers: answers.map(toAnswer),
    additionals: additionals.map(toAnswer),
  });
  const wire = wireName(name);
  const afterQuestion = HEADER + wire.length + 4;
  const inZone = name === zone || name.endsWith(`.${zone}`);
  const zoneWire = wireName(zone);
  return {
    packet,
    nameAt: occurrences(packet, wire, afterQuestion),
    zoneAt: inZone ? occurrences(packet, zoneWire, afterQuestion) : [],
    zoneLength: inZone ? zoneWire.length : 0,
  };
}

/** One resource record's bytes (an SOA for the authority section), without header or question. */
export function encodeRecord(record: PlannedRecord): Buffer {
  return dnsPacket.encode({ id: 0, type: 'response', authorities: [toAnswer(record)] }).subarray(HEADER);
}

/** A response with no room left for the answer: the question and TC, so that the client retries over TCP. */
function truncated(query: Query, packet: Buffer): Buffer {
  const out = Buffer.alloc(query.questionEnd + (query.ednsSize ? OPT_RR.length : 0));
  packet.copy(out, 0, 0, query.questionEnd);
  out[2] |= FLAG_TC;
  out.writeUInt32BE(0, 6);
  out.writeUInt16BE(query.ednsSize ? 1 : 0, 10);
  if (query.ednsSize) OPT_RR.copy(out, query.questionEnd);
  return out;
}

/** Fits a finished response into the client's limit (UDP) or sends it whole (TCP: limit Infinity). */
function fit(query: Query, out: Buffer, limit: number): Buffer {
  return out.length > limit ? truncated(query, out) : out;
}

/** A response built for this query: rcode, answer records (bytes) and authority records (bytes). */
export function respond(query: Query, raw: Buffer, rcode: number, answers: Buffer[] = [], authorities: Buffer[] = [], limit = Infinity, authoritative = true): Buffer {
  const edns = query.ednsSize ? OPT_RR : Buffer.alloc(0);
  const header = Buffer.alloc(HEADER);
  header.writeUInt16BE(query.id, 0);
  header[2] = FLAG_QR | (authoritative ? FLAG_AA : 0) | (query.rd ? FLAG_RD : 0);
  header[3] = FLAG_RA | rcode;
  header.writeUInt16BE(1, 4);
  header.writeUInt16BE(answers.length, 6);
  header.writeUInt16BE(authorities.length, 8);
  header.writeUInt16BE(query.ednsSize ? 1 : 0, 10);
  return fit(query, Buffer.concat([header, raw.subarray(HEADER, query.questionEnd), ...answers, ...authorities, edns]), limit);
}

/** An address record owned by the question's name (a compression pointer to it), for computed answers. */
export function addressRecord(address: Buffer, ttl: number): Buffer {
  const out = Buffer.alloc(12 + address.length);
  out.writeUInt16BE(0xc000 | HEADER, 0);
  out.writeUInt16BE(address.length === 4 ? QTYPE.A : QTYPE.AAAA, 2);
  out.writeUInt16BE(1, 4);
  out.writeUInt32BE(ttl, 6);
  out.writeUInt16BE(address.length, 10);
  address.copy(out, 12);
  return out;
}

/** FORMERR for a packet whose header is readable but whose question is not. */
export function formatError(packet: Buffer): Buffer {
  const out = Buffer.alloc(HEADER);
  packet.copy(out, 0, 0, 4);
  out[2] = (out[2] & 0x79) | FLAG_QR;
  out[3] = FLAG_RA | RCODE.FORMERR;
  return out;
}

/** The response a prepared set of names gives: every type the name holds, plus what a CNAME says. */
export interface PreparedName {
  byType: Map<number, Prepared>;
  cname?: PlannedRecord;
}

export function prepareName(name: PlannedName, zone: string): PreparedName {
  const byType = new Map<number, Prepared>();
  for (const [type, rrset] of Object.entries(name.rrsets)) {
    if (rrset) byType.set(QTYPE[type as keyof typeof QTYPE], prepare(name.name, type as PlannedType, rrset.answers, dedupe(rrset.additionals), zone));
  }
  return name.cname ? { byType, cname: name.cname } : { byType };
}

function dedupe(records: PlannedRecord[]): PlannedRecord[] {
  const seen = new Set<string>();
  return records.filter((record) => {
    const key = `${record.name}/${record.type}/${String(record.data)}`;
    return seen.has(key) ? false : (seen.add(key), true);
  });
}

/** Rewrites the ID and RD of a relayed upstream response and puts back the client's question case. */
export function relay(query: Query, raw: Buffer, response: Buffer, limit: number): Buffer {
  const out = Buffer.from(response);
  out.writeUInt16BE(query.id, 0);
  out[2] = (out[2] & ~FLAG_RD) | (query.rd ? FLAG_RD : 0);
  if (out.length >= query.nameEnd) raw.copy(out, HEADER, HEADER, query.nameEnd);
  return fit(query, out, limit);
}

/** Past a name at `at` (labels, then a terminator or a compression pointer); throws past the end. */
function skipName(packet: Buffer, at: number): number {
  for (;;) {
    if (at >= packet.length) throw new MalformedQuery('name runs past the packet');
    const length = packet[at];
    if (length === 0) return at + 1;
    if ((length & 0xc0) === 0xc0) return at + 2;
    at += 1 + length;
  }
}

/**
 * A copy of a cached response whose records' TTLs are lowered by the seconds it spent in the cache
 * (never below 0), as a cache must (RFC 1035 §7.4). The OPT record's TTL field holds flags and is
 * left alone. An unreadable response is returned as it was.
 */
export function agedResponse(response: Buffer, seconds: number): Buffer {
  const out = Buffer.from(response);
  try {
    let at = HEADER;
    for (let question = out.readUInt16BE(4); question > 0; question--) at = skipName(out, at) + 4;
    const records = out.readUInt16BE(6) + out.readUInt16BE(8) + out.readUInt16BE(10);
    for (let record = 0; record < records; record++) {
      at = skipName(out, at);
      if (at + 10 > out.length) throw new MalformedQuery('record runs past the packet');
      if (out.readUInt16BE(at) !== QTYPE.OPT) out.writeUInt32BE(Math.max(0, out.readUInt32BE(at + 4) - seconds), at + 4);
      at += 10 + out.readUInt16BE(at + 8);
    }
    return out;
  } catch {
    return response;
  }
}

export const isTruncated = (response: Buffer) => response.length >= 3 && (response[2] & FLAG_TC) !== 0;
export const rcodeOf = (response: Buffer) => (response.length >= 4 ? response[3] & 0x0f : RCODE.SERVFAIL);
