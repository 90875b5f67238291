import net from 'node:net';
import { parentPort, workerData } from 'node:worker_threads';
import ipaddr from 'ipaddr.js';
import dnsPacket from 'dns-packet';
import { type PlannedName, type PlannedRecord, type PlannedType, mergeNames, podAddress, soaRecord } from './records.js';
import { type AnswerTable, type UdpAnswerSocket, native } from '../kernel/native.js';
import { Forwarder, type Upstream } from './forwarder.js';
import { MATCH, TableOps } from './udp-table.js';
import {
  FLAG_AA, FLAG_QR, FLAG_RA, MalformedQuery, QTYPE, RCODE, RCODE_NAMES, type Query, addressRecord, encodeRecord, formatError,
  endsWithLabels, parseQuery, prepareName, rcodeOf, relay, respond, typeName, udpLimit, wireName,
} from './wire.js';

// The cluster DNS server, in a worker thread so that serving never waits for the agent's sync loop
// (and the other way round). The agent posts planned names when the state changes; they are turned
// into prepared answers here, before the next query needs them, and kept in the addon's answer
// table (native/udp_answers.cc) only. Over UDP the table answers what it holds on native threads:
// every prepared answer, NODATA for the names and NXDOMAIN below the zone; the rest (pod names,
// ExternalName, forwarded names, anything malformed or unusual) reaches handle() here, as TCP
// does, and handle() asks the table first.

export interface ServerConfig {
  addresses: string[];
  port: number;
  zone: string;
  ttl: number;
  pods: 'insecure' | 'disabled';
  upstreams: Upstream[];
}

/**
 * Native threads answering UDP per address. One: a node's DNS shares the node with its pods, and
 * one thread already answers more than unbound on a core (docs/performance.md); the addon takes
 * more (SO_REUSEPORT sockets), which the tests exercise.
 */
const UDP_THREADS = 1;

/** agent → server: the names some owners now plan (replacing what they planned before). */
export interface NamesUpdate {
  type: 'names';
  seq: number;
  set: [owner: string, names: PlannedName[]][];
  remove: string[];
  namespaces?: string[];
  serial: number;
}

/** server → agent. */
export type ServerMessage =
  | { type: 'listening' }
  | { type: 'failed'; message: string }
  | { type: 'applied'; seq: number }
  | { type: 'metrics'; metrics: ServerMetrics };

export interface ServerMetrics {
  requests: Record<string, number>;
  responses: Record<string, number>;
  /** Request durations: counts per bucket bound (seconds), their sum. */
  durationBuckets: number[];
  durationSum: number;
  cacheHits: Record<string, number>;
  cacheMisses: number;
  upstreamFailures: Record<string, number>;
  /** UDP queries the sockets dropped, by reason (oversized: over 4 KiB; backlog: the queue up to JS was full). */
  dropped: Record<string, number>;
}

export const DURATION_BUCKETS = [0.00025, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096, 8.192];
const METRICS_INTERVAL_MS = 500;
/** Services in an update (a full sync's) that leave enough garbage behind to compact the heaps after it. */
export const LARGE_UPDATE = 1000;
const TCP_MAX_CONNECTIONS = 256;
const TCP_IDLE_MS = 10_000;
/** Two largest messages: a client pipelining faster than it reads is cut off. */
const TCP_MAX_BUFFERED = 2 * (2 + 65_535);

const emptyMetrics = (): ServerMetrics => ({
  requests: {}, responses: {}, durationBuckets: DURATION_BUCKETS.map(() => 0), durationSum: 0, cacheHits: {}, cacheMisses: 0, upstreamFailures: {}, dropped: {},
});
const bump = (counts: Record<string, number>, key: string, count = 1) => { counts[key] = (counts[key] ?? 0) + count; };
/** The answer table's slot for the zone's SOA, which NXDOMAIN and NODATA carry. */
const SOA_SLOT = 0;
const emptyResponse = (rcode: number) => ({ flags: ((FLAG_QR | FLAG_AA) << 8) | FLAG_RA | rcode, authority: SOA_SLOT });

export class ClusterDnsServer {
  /**
   * The prepared answers, in one copy: the addon's table, which the UDP sockets serve and which
   * handle() reads back (TCP, and what the sockets pass up). The plans they were prepared from
   * are dropped once applied, except where several owners share a name.
   */
  readonly table: AnswerTable = native().answerTable();
  /** The names each owner (a service, the zone) plans, and the owners of each name. */
  private readonly namesOf = new Map<string, string[]>();
  private readonly ownersOf = new Map<string, string | string[]>();
  /** Per name that several owners plan (two services' endpoints sharing an address), each owner's part: a merge needs them all. */
  private readonly sharedParts = new Map<string, Map<string, PlannedName>>();
  /** ExternalName names: handle() follows their CNAME. */
  private readonly cnames = new Map<string, PlannedRecord>();
  private namespaces = new Set<string>();
  private synced = false;
  private soa: Buffer;
  private readonly zoneLabels: string[];
  private metrics = emptyMetrics();
  readonly forwarder: Forwarder;
  private readonly sockets: { socket: UdpAnswerSocket; family: string }[] = [];

  constructor(private readonly config: ServerConfig) {
    this.zoneLabels = config.zone === '' ? [] : config.zone.split('.');
    this.soa = encodeRecord(soaRecord(config.zone, config.ttl, 0));
    this.forwarder = new Forwarder(config.upstreams, {
      cacheHit: (kind) => bump(this.metrics.cacheHits, kind),
      cacheMiss: () => this.metrics.cacheMisses++,
      upstreamFailure: (to) => bump(this.metrics.upstreamFailures, to),
    });
  }

  /** Applies planned names: each affected name's answers are prepared again from all its owners' parts. */
  apply(update: NamesUpdate): void {
    const affected = new Set<string>();
    /** The parts this update plans, per name and owner; the others' are read back or kept shared. */
    const planned = new Map<string, Map<string, PlannedName>>();
    const drop = (owner: string) => {
      for (const name of this.namesOf.get(owner) ?? []) {
        this.removeOwner(name, owner);
        this.sharedParts.get(name)?.delete(owner);
        affected.add(name);
      }
      this.namesOf.delete(owner);
    };
    for (const owner of update.remove) drop(owner);
    for (const [owner, names] of update.set) {
      drop(owner);
      this.namesOf.set(owner, names.map((name) => name.name));
      for (const name of names) {
        this.addOwner(name.name, owner);
        affected.add(name.name);
        let parts = planned.get(name.name);
        if (!parts) planned.set(name.name, (parts = new Map()));
        parts.set(owner, name);
      }
    }
    const ops = new TableOps();
    for (const name of affected) {
      const owners = this.ownersOf.get(name);
      const parts = owners === undefined ? [] : typeof owners === 'string'
        ? [planned.get(name)?.get(owners) ?? this.sharedParts.get(name)?.get(owners) ?? this.readBack(name)]
        : this.keepShared(name, owners, planned.get(name));
      if (!Array.isArray(owners)) this.sharedParts.delete(name);
      ops.remove(MATCH.name, name);
      this.cnames.delete(name);
      if (parts.length === 0) continue;
      const prepared = prepareName(parts.length === 1 ? parts[0] : mergeNames(parts), this.config.zone);
      for (const [type, answer] of prepared.byType) ops.setAnswer(name, type, answer);
      ops.setTemplate(MATCH.name, name, prepared.cname ? undefined : emptyResponse(RCODE.NOERROR));
      if (prepared.cname) this.cnames.set(name, prepared.cname);
    }
    if (update.namespaces) this.namespaces = new Set(update.namespaces);
    this.soa = encodeRecord(soaRecord(this.config.zone, this.config.ttl, update.serial));
    this.addZone(ops);
    this.table.update(ops.take());
    this.synced = true;
  }

  private addOwner(name: string, owner: string): void {
    const owners = this.ownersOf.get(name);
    if (owners === undefined || owners === owner) this.ownersOf.set(name, owner);
    else if (typeof owners === 'string') this.ownersOf.set(name, [owners, owner]);
    else if (!owners.includes(owner)) owners.push(owner);
  }

  private removeOwner(name: string, owner: string): void {
    const owners = this.ownersOf.get(name);
    if (owners === owner) this.ownersOf.delete(name);
    else if (Array.isArray(owners)) {
      const rest = owners.filter((other) => other !== owner);
      this.ownersOf.set(name, rest.length === 1 ? rest[0] : rest);
    }
  }

  /**
   * The parts of a name several owners plan, kept while they share it: this update's, then those
   * kept before, and for an owner that was the name's only one, what the table holds for it.
   */
  private keepShared(name: string, owners: string[], planned: Map<string, PlannedName> | undefined): PlannedName[] {
    const kept = this.sharedParts.get(name);
    const parts = new Map(owners.map((owner) => [owner, planned?.get(owner) ?? kept?.get(owner) ?? this.readBack(name)]));
    this.sharedParts.set(name, parts);
    return [...parts.values()];
  }

  /** A name as the table holds it (the answers prepared from its only owner's plan), decoded back into a plan. */
  private readBack(name: string): PlannedName {
    const readBack: PlannedName = { name, rrsets: {} };
    const cname = this.cnames.get(name);
    if (cname) readBack.cname = cname;
    for (const { packet } of this.table.prepared(wireName(name)) ?? []) {
      const decoded = dnsPacket.decode(packet);
      const records = (answers: dnsPacket.Answer[] = []) => (answers as { name: string; type: PlannedType; ttl: number; data: PlannedRecord['data'] }[])
        .map(({ name: owner, type, ttl, data }) => ({ name: owner, type, ttl, data }));
      readBack.rrsets[decoded.questions![0].type as PlannedType] = { answers: records(decoded.answers), additionals: records(decoded.additionals) };
    }
    return readBack;
  }

  /** NXDOMAIN (with the SOA) for every other name in the zone, except pod names, which handle() computes. */
  private addZone(ops: TableOps): void {
    ops.setAuthority(SOA_SLOT, [this.soa]).setTemplate(MATCH.suffix, this.config.zone, emptyResponse(RCODE.NXDOMAIN));
    if (this.config.pods === 'insecure') ops.setTemplate(MATCH.suffix, `pod.${this.config.zone}`, undefined);
  }

  /** A socket serving the table: its counters join the metrics. */
  countSocket(socket: UdpAnswerSocket, family: string): void {
    this.sockets.push({ socket, family });
  }

  /** The response to one packet: a Buffer now, a promise when it is forwarded, undefined to drop it. */
  handle(raw: Buffer, proto: 'udp' | 'tcp', family: string): Buffer | Promise<Buffer> | undefined {
    const started = process.hrtime.bigint();
    let query: Query;
    try {
      query = parseQuery(raw);
    } catch (error) {
      if (!(error instanceof MalformedQuery) || raw.length < 12 || raw[2] & 0x80) return undefined;
      return this.count(started, formatError(raw));
    }
    bump(this.metrics.requests, `${proto}|${family}|${typeName(query.qtype)}`);
    const limit = proto === 'udp' ? udpLimit(query) : Infinity;
    const result = this.resolve(query, raw, limit);
    return result instanceof Promise ? result.then((response) => this.count(started, response)) : this.count(started, result);
  }

  private count(started: bigint, response: Buffer): Buffer {
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    const bucket = DURATION_BUCKETS.findIndex((bound) => seconds <= bound);
    if (bucket >= 0) this.metrics.durationBuckets[bucket]++;
    this.metrics.durationSum += seconds;
    bump(this.metrics.responses, RCODE_NAMES[rcodeOf(response)] ?? String(rcodeOf(response)));
    return response;
  }

  private resolve(query: Query, raw: Buffer, limit: number): Buffer | Promise<Buffer> {
    if (query.qtype === QTYPE.AXFR || query.qtype === QTYPE.IXFR) return respond(query, raw, RCODE.REFUSED, [], [], limit);
    const fromTable = this.table.answer(raw, limit);
    if (fromTable) return fromTable;
    const inZone = endsWithLabels(query.labels, this.zoneLabels);
    const exists = this.table.prepared(query.wire, 0) !== undefined;
    if ((inZone || exists) && !this.synced) return respond(query, raw, RCODE.SERVFAIL, [], [], limit);
    if (!exists && !inZone) return this.forward(query, raw, limit);
    if (query.qclass !== 1) return respond(query, raw, RCODE.REFUSED, [], [], limit);
    if (!exists) return this.podAnswer(query, raw, limit) ?? respond(query, raw, RCODE.NXDOMAIN, [], [this.soa], limit);
    const cname = this.cnames.get(query.name);
    if (cname) return this.cnameAnswer(query, raw, cname, limit);
    return respond(query, raw, RCODE.NOERROR, [], [this.soa], limit);
  }

  /** Pod records, `insecure` as CoreDNS: any dashed address in an existing namespace. */
  private podAnswer(query: Query, raw: Buffer, limit: number): Buffer | undefined {
    if (this.config.pods !== 'insecure') return undefined;
    const labels = query.labels.slice(0, query.labels.length - this.zoneLabels.length);
    if (labels.length !== 3 || labels[2] !== 'pod' || !this.namespaces.has(labels[1])) return undefined;
    const address = podAddress(labels[0]);
    if (!address) return undefined;
    const bytes = Buffer.from(ipaddr.parse(address).toByteArray());
    const wanted = bytes.length === 4 ? QTYPE.A : QTYPE.AAAA;
    return respond(query, raw, RCODE.NOERROR, query.qtype === wanted ? [addressRecord(bytes, this.config.ttl)] : [], query.qtype === wanted ? [] : [this.soa], limit);
  }

  /** ExternalName: the CNAME first, then for A/AAAA the target's records, from the zone or upstream (TC copied). */
  private async cnameAnswer(query: Query, raw: Buffer, cname: PlannedRecord, limit: number): Promise<Buffer> {
    const target = cname.data as string;
    const answers: dnsPacket.Answer[] = [{ name: query.name, type: 'CNAME', class: 'IN', ttl: cname.ttl, data: target }];
    let flags = 0;
    if (query.qtype === QTYPE.A || query.qtype === QTYPE.AAAA) {
      const type = query.qtype === QTYPE.A ? 'A' : 'AAAA';
      const local = this.table.prepared(wireName(target), query.qtype)?.[0];
      const chased = local?.packet ?? await this.forwarder.resolve(`${target}/${type}/1`, dnsPacket.encode({ id: 0, type: 'query', flags: dnsPacket.RECURSION_DESIRED, questions: [{ name: target, type }] }));
      if (chased) {
        try {
          const decoded = dnsPacket.decode(chased);
          answers.push(...(decoded.answers ?? []));
          flags |= (decoded.flags ?? 0) & dnsPacket.TRUNCATED_RESPONSE;
        } catch { /* an unreadable upstream answer leaves the CNAME alone */ }
      }
    }
    const encoded = dnsPacket.encode({ id: query.id, type: 'response', flags: flags | dnsPacket.AUTHORITATIVE_ANSWER | dnsPacket.RECURSION_AVAILABLE | (query.rd ? dnsPacket.RECURSION_DESIRED : 0), questions: [{ name: query.name, type: typeName(query.qtype) as 'A', class: 'IN' }], answers });
    return relay(query, raw, encoded, limit);
  }

  private async forward(query: Query, raw: Buffer, limit: number): Promise<Buffer> {
    const response = await this.forwarder.resolve(`${query.name}/${query.qtype}/${query.qclass}`, raw);
    return response ? relay(query, raw, response, limit) : respond(query, raw, RCODE.SERVFAIL, [], [], limit, false);
  }

  takeMetrics(): ServerMetrics | undefined {
    const metrics = this.metrics;
    for (const { socket, family } of this.sockets) {
      const counted = socket.takeCounters();
      for (const [reason, count] of Object.entries(counted.dropped)) if (count > 0) bump(metrics.dropped, reason, count);
      for (const [type, count] of Object.entries(counted.requests)) bump(metrics.requests, `udp|${family}|${typeName(Number(type))}`, count);
      for (const [rcode, count] of Object.entries(counted.responses)) bump(metrics.responses, RCODE_NAMES[Number(rcode)] ?? rcode, count);
      counted.durationBuckets.forEach((count, index) => { metrics.durationBuckets[index] += count; });
      metrics.durationSum += counted.durationSum;
    }
    if (Object.keys(metrics.requests).length === 0 && metrics.cacheMisses === 0 && Object.keys(metrics.responses).length === 0 && Object.keys(metrics.dropped).length === 0) return undefined;
    this.metrics = emptyMetrics();
    return metrics;
  }
}

/** UDP on one address: the addon's answer table on native threads, handle() for what it passes up. */
export function serveUdp(server: ClusterDnsServer, address: string, port: number, threads: number): UdpAnswerSocket {
  const family = net.isIPv6(address) ? '6' : '4';
  const udp: UdpAnswerSocket = native().udpAnswers({ address, port, threads, durationBounds: DURATION_BUCKETS, table: server.table }, (message, from, fromPort) => {
    const response = server.handle(message, 'udp', family);
    if (response instanceof Promise) void response.then((out) => udp.send(out, from, fromPort));
    else if (response) udp.send(response, from, fromPort);
  });
  server.countSocket(udp, family);
  return udp;
}

/** Binds UDP and TCP on every address; resolves once all listen. */
export async function listen(server: ClusterDnsServer, config: ServerConfig): Promise<() => void> {
  const closers: (() => void)[] = [];
  for (const address of config.addresses) {
    const family = net.isIPv6(address) ? '6' : '4';
    const udp = serveUdp(server, address, config.port, UDP_THREADS);
    closers.push(() => udp.close());
    const tcp = net.createServer((socket) => serveTcp(server, socket, family));
    tcp.maxConnections = TCP_MAX_CONNECTIONS;
    await new Promise<void>((resolve, reject) => {
      tcp.once('error', reject);
      tcp.listen(config.port, address, () => { tcp.off('error', reject); resolve(); });
    });
    closers.push(() => tcp.close());
  }
  return () => closers.forEach((close) => close());
}

/** RFC 7766 framing: each message after its 2-byte length; at most one 64 KiB message buffered. */
function serveTcp(server: ClusterDnsServer, socket: net.Socket, family: string): void {
  let buffered = Buffer.alloc(0);
  socket.setTimeout(TCP_IDLE_MS, () => socket.destroy());
  socket.on('error', () => socket.destroy());
  socket.on('data', (chunk) => {
    buffered = Buffer.concat([buffered, chunk]);
    if (buffered.length > TCP_MAX_BUFFERED) return socket.destroy();
    while (buffered.length >= 2 && buffered.length >= 2 + buffered.readUInt16BE(0)) {
      const message = buffered.subarray(2, 2 + buffered.readUInt16BE(0));
      buffered = buffered.subarray(2 + message.length);
      const send = (out: Buffer | undefined) => {
        if (!out || socket.destroyed) return;
        const length = Buffer.alloc(2);
        length.writeUInt16BE(out.length);
        socket.write(Buffer.concat([length, out]));
      };
      const response = server.handle(message, 'tcp', family);
      if (response instanceof Promise) void response.then(send);
      else send(response);
    }
  });
}

/** Top-level, so that no closure over an update keeps it alive through the compaction. */
function releaseMemory(): void {
  native().compactJsHeap();
  native().trimNativeHeap();
}

async function main(): Promise<void> {
  const config = workerData as ServerConfig;
  const server = new ClusterDnsServer(config);
  parentPort!.on('message', (update: NamesUpdate) => {
    server.apply(update);
    parentPort!.postMessage({ type: 'applied', seq: update.seq } satisfies ServerMessage);
    // A full update (the first, a resync) leaves the plans it carried, its table ops and the
    // table's old shards freed but mapped, in this thread's heap and malloc arena: hand them back,
    // as the agent does after a large sync. Once this handler has returned: while it runs, the
    // update is reachable and survives the compaction (+23 MB at 10k services, measured).
    if (update.set.length >= LARGE_UPDATE) setImmediate(releaseMemory);
  });
  try {
    await listen(server, config);
  } catch (error) {
    parentPort!.postMessage({ type: 'failed', message: (error as Error).message } satisfies ServerMessage);
    return;
  }
  parentPort!.postMessage({ type: 'listening' } satisfies ServerMessage);
  setInterval(() => {
    const metrics = server.takeMetrics();
    if (metrics) parentPort!.postMessage({ type: 'metrics', metrics } satisfies ServerMessage);
  }, METRICS_INTERVAL_MS).unref();
}

if (parentPort && workerData?.zone) void main();
