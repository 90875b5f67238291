import net from 'node:net';
import { parentPort, workerData } from 'node:worker_threads';
import ipaddr from 'ipaddr.js';
import dnsPacket from 'dns-packet';
import { type PlannedName, type PlannedRecord, type PlannedType, mergeNames, podAddress, soaRecord } from './records.js';
import { joinHostPort } from '../kernel/addresses.js';
import { type AnswerTable, type UdpAnswerSocket, native } from '../kernel/native.js';
import { type Forwarded, Forwarder, type Upstream } from './forwarder.js';
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

/** agent → server: is the thread's loop turning? (A worker that answers no ping is taken for hung.) */
export interface Ping {
  type: 'ping';
  seq: number;
}

/** server → agent. */
export type ServerMessage =
  | { type: 'listening' }
  | { type: 'failed'; message: string }
  | { type: 'applied'; seq: number }
  | { type: 'pong'; seq: number }
  | { type: 'metrics'; metrics: ServerMetrics };

/** Durations counted per DNS_DURATION_BUCKETS bound (not cumulative; one more entry, past every bound), and their sum. */
export interface DurationCounts {
  buckets: number[];
  sum: number;
}

/**
 * What the server counted since the last report, keyed by CoreDNS's label values joined with '|'
 * (server: the address a query came in on, as CoreDNS names it, dns://10.0.0.10:53).
 */
export interface ServerMetrics {
  /** server|proto|family|type */
  requests: Record<string, number>;
  /** server|rcode|plugin */
  responses: Record<string, number>;
  /** By server. */
  durations: Record<string, DurationCounts>;
  /** server|type (success or denial): forwarded names answered from the cache. */
  cacheHits: Record<string, number>;
  /** By server. */
  cacheMisses: Record<string, number>;
  cacheEntries: { success: number; denial: number };
  /** to|rcode: each answer an upstream gave, and how long it took. */
  upstreamDurations: Record<string, DurationCounts>;
  /** By upstream. */
  upstreamFailures: Record<string, number>;
  concurrentRejects: number;
  /** server|reason: UDP queries the sockets dropped (oversized: over 4 KiB; backlog: the queue up to JS was full). */
  dropped: Record<string, number>;
}

/** CoreDNS's plugin.TimeBuckets (ExponentialBuckets(0.00025, 2, 16)), for its duration histograms. */
export const DNS_DURATION_BUCKETS = [0.00025, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096, 8.192];
/** The sockets count durations into these: past the last bound is a bucket too (the histogram's +Inf). */
const SOCKET_DURATION_BOUNDS = [...DNS_DURATION_BUCKETS, Infinity];

/** How a query came in, as CoreDNS labels it: proto udp or tcp, family 1 (IPv4) or 2 (IPv6), server dns://ADDRESS:PORT. */
export interface Via {
  proto: 'udp' | 'tcp';
  family: '1' | '2';
  server: string;
}

/** CoreDNS's server label: the transport and the listener's address (net.TCPAddr's text). */
export const serverLabel = (address: string, port: number) => `dns://${joinHostPort(address, port)}`;
const viaOf = (address: string, port: number, proto: Via['proto']): Via => ({ proto, family: net.isIPv6(address) ? '2' : '1', server: serverLabel(address, port) });

/** Which part of the server wrote a response, as CoreDNS's responses_total{plugin} names it ('': an error the server wrote). */
type Plugin = 'kubernetes' | 'forward' | 'cache' | '';
interface Answered {
  response: Buffer;
  plugin: Plugin;
}
const fromZone = (response: Buffer): Answered => ({ response, plugin: 'kubernetes' });

/** CoreDNS's metric type names (plugin/metrics/vars/monitor.go): these types by name, the rest as "other". */
const MONITORED_TYPES = new Map(Object.entries({
  A: 1, NS: 2, CNAME: 5, SOA: 6, PTR: 12, MX: 15, TXT: 16, AAAA: 28, SRV: 33, DS: 43, RRSIG: 46, NSEC: 47, DNSKEY: 48, NSEC3: 50, SVCB: 64, HTTPS: 65, IXFR: 251, AXFR: 252, ANY: 255,
}).map(([name, code]) => [code, name]));
const metricType = (qtype: number) => MONITORED_TYPES.get(qtype) ?? 'other';
/** CoreDNS's rcode.ToString. */
const rcodeName = (rcode: number) => RCODE_NAMES[rcode] ?? `RCODE${rcode}`;
const durationBucket = (seconds: number) => {
  const bucket = DNS_DURATION_BUCKETS.findIndex((bound) => seconds <= bound);
  return bucket < 0 ? DNS_DURATION_BUCKETS.length : bucket;
};
const emptyDurations = (): DurationCounts => ({ buckets: SOCKET_DURATION_BOUNDS.map(() => 0), sum: 0 });
function addDurations(counts: Record<string, DurationCounts>, key: string, buckets: number[], sum: number): void {
  const into = (counts[key] ??= emptyDurations());
  buckets.forEach((count, index) => { into.buckets[index] += count; });
  into.sum += sum;
}
const observe = (counts: Record<string, DurationCounts>, key: string, seconds: number) => {
  const into = (counts[key] ??= emptyDurations());
  into.buckets[durationBucket(seconds)]++;
  into.sum += seconds;
};
const METRICS_INTERVAL_MS = 500;
/** Services in an update (a full sync's) that leave enough garbage behind to compact the heaps after it. */
export const LARGE_UPDATE = 1000;
const TCP_MAX_CONNECTIONS = 256;
const TCP_IDLE_MS = 10_000;
/** Two largest messages: a client pipelining faster than it reads is cut off. */
const TCP_MAX_BUFFERED = 2 * (2 + 65_535);

const emptyMetrics = (): ServerMetrics => ({
  requests: {}, responses: {}, durations: {}, cacheHits: {}, cacheMisses: {}, cacheEntries: { success: 0, denial: 0 }, upstreamDurations: {}, upstreamFailures: {}, concurrentRejects: 0, dropped: {},
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
  private reportedEntries = { success: 0, denial: 0 };
  readonly forwarder: Forwarder;
  private readonly sockets: { socket: UdpAnswerSocket; via: Via }[] = [];

  constructor(private readonly config: ServerConfig) {
    this.zoneLabels = config.zone === '' ? [] : config.zone.split('.');
    this.soa = encodeRecord(soaRecord(config.zone, config.ttl, 0));
    this.forwarder = new Forwarder(config.upstreams, {
      upstreamAnswered: (to, rcode, seconds) => observe(this.metrics.upstreamDurations, `${to}|${rcodeName(rcode)}`, seconds),
      upstreamFailure: (to) => bump(this.metrics.upstreamFailures, to),
      concurrentReject: () => this.metrics.concurrentRejects++,
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

  /** A socket serving the table: its counters join the metrics, under the address it serves. */
  countSocket(socket: UdpAnswerSocket, via: Via): void {
    this.sockets.push({ socket, via });
  }

  /** The response to one packet: a Buffer now, a promise when it is forwarded, undefined to drop it. */
  handle(raw: Buffer, via: Via): Buffer | Promise<Buffer> | undefined {
    const started = process.hrtime.bigint();
    let query: Query;
    try {
      query = parseQuery(raw);
    } catch (error) {
      if (!(error instanceof MalformedQuery) || raw.length < 12 || raw[2] & 0x80) return undefined;
      return this.count(started, via, { response: formatError(raw), plugin: '' });
    }
    bump(this.metrics.requests, `${via.server}|${via.proto}|${via.family}|${metricType(query.qtype)}`);
    const limit = via.proto === 'udp' ? udpLimit(query) : Infinity;
    const result = this.resolve(query, raw, limit, via);
    return result instanceof Promise ? result.then((answered) => this.count(started, via, answered)) : this.count(started, via, result);
  }

  private count(started: bigint, via: Via, { response, plugin }: Answered): Buffer {
    observe(this.metrics.durations, via.server, Number(process.hrtime.bigint() - started) / 1e9);
    bump(this.metrics.responses, `${via.server}|${rcodeName(rcodeOf(response))}|${plugin}`);
    return response;
  }

  private resolve(query: Query, raw: Buffer, limit: number, via: Via): Answered | Promise<Answered> {
    if (query.qtype === QTYPE.AXFR || query.qtype === QTYPE.IXFR) return fromZone(respond(query, raw, RCODE.REFUSED, [], [], limit));
    const fromTable = this.table.answer(raw, limit);
    if (fromTable) return fromZone(fromTable);
    const inZone = endsWithLabels(query.labels, this.zoneLabels);
    const exists = this.table.prepared(query.wire, 0) !== undefined;
    // Not synced: CoreDNS's kubernetes plugin writes nothing and the server answers the error.
    if ((inZone || exists) && !this.synced) return { response: respond(query, raw, RCODE.SERVFAIL, [], [], limit), plugin: '' };
    if (!exists && !inZone) return this.forward(query, raw, limit, via);
    if (query.qclass !== 1) return fromZone(respond(query, raw, RCODE.REFUSED, [], [], limit));
    if (!exists) return fromZone(this.podAnswer(query, raw, limit) ?? respond(query, raw, RCODE.NXDOMAIN, [], [this.soa], limit));
    const cname = this.cnames.get(query.name);
    if (cname) return this.cnameAnswer(query, raw, cname, limit, via).then(fromZone);
    return fromZone(respond(query, raw, RCODE.NOERROR, [], [this.soa], limit));
  }

  /** The forwarder's answer, its cache hit or miss counted under the server the query came in on. */
  private async upstream(key: string, query: Buffer, via: Via): Promise<Forwarded> {
    const forwarded = await this.forwarder.resolve(key, query);
    if (forwarded.cache === 'miss') bump(this.metrics.cacheMisses, via.server);
    else bump(this.metrics.cacheHits, `${via.server}|${forwarded.cache}`);
    return forwarded;
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
  private async cnameAnswer(query: Query, raw: Buffer, cname: PlannedRecord, limit: number, via: Via): Promise<Buffer> {
    const target = cname.data as string;
    const answers: dnsPacket.Answer[] = [{ name: query.name, type: 'CNAME', class: 'IN', ttl: cname.ttl, data: target }];
    let flags = 0;
    if (query.qtype === QTYPE.A || query.qtype === QTYPE.AAAA) {
      const type = query.qtype === QTYPE.A ? 'A' : 'AAAA';
      const local = this.table.prepared(wireName(target), query.qtype)?.[0];
      const chased = local?.packet ?? (await this.upstream(`${target}/${type}/1`, dnsPacket.encode({ id: 0, type: 'query', flags: dnsPacket.RECURSION_DESIRED, questions: [{ name: target, type }] }), via)).response;
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

  private async forward(query: Query, raw: Buffer, limit: number, via: Via): Promise<Answered> {
    const { response, cache } = await this.upstream(`${query.name}/${query.qtype}/${query.qclass}`, raw, via);
    // Every upstream failed: CoreDNS's forward plugin writes nothing and the server answers SERVFAIL.
    if (!response) return { response: respond(query, raw, RCODE.SERVFAIL, [], [], limit, false), plugin: '' };
    return { response: relay(query, raw, response, limit), plugin: cache === 'miss' ? 'forward' : 'cache' };
  }

  /** What was counted since the last call (the sockets' counters too), or undefined when nothing was. */
  takeMetrics(): ServerMetrics | undefined {
    const metrics = this.metrics;
    for (const { socket, via } of this.sockets) {
      const counted = socket.takeCounters();
      for (const [reason, count] of Object.entries(counted.dropped)) if (count > 0) bump(metrics.dropped, `${via.server}|${reason}`, count);
      for (const [type, count] of Object.entries(counted.requests)) bump(metrics.requests, `${via.server}|udp|${via.family}|${metricType(Number(type))}`, count);
      // The sockets answer only from the table: the zone's answers.
      for (const [rcode, count] of Object.entries(counted.responses)) bump(metrics.responses, `${via.server}|${rcodeName(Number(rcode))}|kubernetes`, count);
      if (counted.durationBuckets.some((count) => count > 0)) addDurations(metrics.durations, via.server, counted.durationBuckets, counted.durationSum);
    }
    const { success, denial } = this.forwarder.entries;
    const entriesChanged = success !== this.reportedEntries.success || denial !== this.reportedEntries.denial;
    const counted = [metrics.requests, metrics.responses, metrics.dropped, metrics.upstreamFailures, metrics.upstreamDurations].some((counts) => Object.keys(counts).length > 0) || metrics.concurrentRejects > 0;
    if (!counted && !entriesChanged) return undefined;
    metrics.cacheEntries = { success, denial };
    this.reportedEntries = metrics.cacheEntries;
    this.metrics = emptyMetrics();
    return metrics;
  }
}

/** UDP on one address: the addon's answer table on native threads, handle() for what it passes up. */
export function serveUdp(server: ClusterDnsServer, address: string, port: number, threads: number): UdpAnswerSocket {
  let via: Via | undefined;
  const udp: UdpAnswerSocket = native().udpAnswers({ address, port, threads, durationBounds: SOCKET_DURATION_BOUNDS, table: server.table }, (message, from, fromPort) => {
    const response = server.handle(message, via!);
    if (response instanceof Promise) void response.then((out) => udp.send(out, from, fromPort));
    else if (response) udp.send(response, from, fromPort);
  });
  // The bound port, which port 0 (tests) leaves to the kernel.
  via = viaOf(address, udp.port, 'udp');
  server.countSocket(udp, via);
  return udp;
}

/** Binds UDP and TCP on every address; resolves once all listen. */
export async function listen(server: ClusterDnsServer, config: ServerConfig): Promise<() => void> {
  const closers: (() => void)[] = [];
  for (const address of config.addresses) {
    const udp = serveUdp(server, address, config.port, UDP_THREADS);
    closers.push(() => udp.close());
    const tcpVia = viaOf(address, config.port, 'tcp');
    const tcp = net.createServer((socket) => serveTcp(server, socket, tcpVia));
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
function serveTcp(server: ClusterDnsServer, socket: net.Socket, via: Via): void {
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
      const response = server.handle(message, via);
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
  parentPort!.on('message', (update: NamesUpdate | Ping) => {
    if (update.type === 'ping') return parentPort!.postMessage({ type: 'pong', seq: update.seq } satisfies ServerMessage);
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
