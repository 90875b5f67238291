import dgram from 'node:dgram';
import net from 'node:net';
import dnsPacket from 'dns-packet';
import { joinHostPort } from '../kernel/addresses.js';
import { RCODE, agedResponse, isTruncated, rcodeOf } from './wire.js';

// Names outside the cluster go to the upstreams: UDP, TCP when an upstream truncates, the next
// upstream when one fails or times out, SERVFAIL when all fail. Answers are cached (positive at
// most 30 s, negative at most 5 s, as NodeLocal DNSCache does) in a bounded map, and the number of
// queries in flight is bounded too: nothing a client sends can grow memory without limit.

export interface Upstream { address: string; port: number }

const POSITIVE_TTL_CAP = 30;
const NEGATIVE_TTL_CAP = 5;
const CACHE_ENTRIES = 10_000;
const MAX_OUTSTANDING = 1_000;
const UPSTREAM_TIMEOUT_MS = 1_500;
const TCP_MAX_ANSWER = 65_535;

/** What happens upstream, for the metrics (CoreDNS's forward and proxy metrics, and kubenft's failures). */
export interface ForwarderEvents {
  /** An upstream answered (any rcode), after `seconds`. */
  upstreamAnswered(to: string, rcode: number, seconds: number): void;
  /** An upstream timed out, could not be asked, or answered SERVFAIL: the next one is asked. */
  upstreamFailure(to: string): void;
  /** A query refused because as many as allowed are in flight (coredns_forward_max_concurrent_rejects_total). */
  concurrentReject(): void;
}

/** A resolution: the response (undefined when every upstream failed), and whether the cache gave it. */
export interface Forwarded {
  response: Buffer | undefined;
  cache: 'success' | 'denial' | 'miss';
}

interface Pending { resolve(response: Buffer | undefined): void; from: Upstream }
interface CacheEntry { response: Buffer; negative: boolean; stored: number; expires: number }

const upstreamName = (upstream: Upstream) => joinHostPort(upstream.address, upstream.port);

export class Forwarder {
  private readonly cache = new Map<string, CacheEntry>();
  /** The cache's entries by type, as CoreDNS's coredns_cache_entries counts them (expired ones until they are replaced). */
  readonly entries = { success: 0, denial: 0 };
  private readonly pending = new Map<number, Pending>();
  private readonly sockets = new Map<4 | 6, dgram.Socket>();

  constructor(private readonly upstreams: Upstream[], private readonly events: ForwarderEvents) {}

  /** The upstream response to `query` (an encoded query whose ID is replaced), from the cache when it holds it. */
  async resolve(key: string, query: Buffer): Promise<Forwarded> {
    const cached = this.cache.get(key);
    if (cached && cached.expires > Date.now()) {
      return { response: agedResponse(cached.response, Math.floor((Date.now() - cached.stored) / 1000)), cache: cached.negative ? 'denial' : 'success' };
    }
    if (this.pending.size >= MAX_OUTSTANDING) {
      this.events.concurrentReject();
      return { response: undefined, cache: 'miss' };
    }
    for (const upstream of this.upstreams) {
      const response = await this.ask(upstream, query);
      if (response && rcodeOf(response) !== RCODE.SERVFAIL) {
        this.remember(key, response);
        return { response, cache: 'miss' };
      }
      this.events.upstreamFailure(upstreamName(upstream));
    }
    return { response: undefined, cache: 'miss' };
  }

  close(): void {
    for (const socket of this.sockets.values()) socket.close();
    for (const pending of this.pending.values()) pending.resolve(undefined);
  }

  private async ask(upstream: Upstream, query: Buffer): Promise<Buffer | undefined> {
    const started = performance.now();
    const udp = await this.askUdp(upstream, query);
    const response = udp && isTruncated(udp) ? await askTcp(upstream, query) : udp;
    if (response) this.events.upstreamAnswered(upstreamName(upstream), rcodeOf(response), (performance.now() - started) / 1000);
    return response;
  }

  private askUdp(upstream: Upstream, query: Buffer): Promise<Buffer | undefined> {
    let id: number;
    do id = Math.floor(Math.random() * 65536); while (this.pending.has(id));
    const packet = Buffer.from(query);
    packet.writeUInt16BE(id, 0);
    return new Promise((resolve) => {
      const timer = setTimeout(() => finish(undefined), UPSTREAM_TIMEOUT_MS);
      const finish = (response: Buffer | undefined) => {
        clearTimeout(timer);
        this.pending.delete(id);
        resolve(response);
      };
      this.pending.set(id, { resolve: finish, from: upstream });
      this.socketFor(upstream).send(packet, upstream.port, upstream.address, (error) => error && finish(undefined));
    });
  }

  private socketFor(upstream: Upstream): dgram.Socket {
    const family = net.isIPv6(upstream.address) ? 6 : 4;
    let socket = this.sockets.get(family);
    if (!socket) {
      socket = dgram.createSocket(family === 6 ? 'udp6' : 'udp4');
      socket.on('message', (message, from) => {
        if (message.length < 12) return;
        const pending = this.pending.get(message.readUInt16BE(0));
        // Only the upstream that was asked may answer: anything else is spoofed or stale.
        if (pending && pending.from.port === from.port && net.isIP(from.address) && sameAddress(pending.from.address, from.address)) pending.resolve(message);
      });
      socket.on('error', () => undefined);
      this.sockets.set(family, socket);
    }
    return socket;
  }

  private remember(key: string, response: Buffer): void {
    const ttl = cacheSeconds(response);
    if (ttl <= 0) return;
    if (this.cache.size >= CACHE_ENTRIES) this.forget(this.cache.keys().next().value!);
    this.forget(key);
    const negative = isNegative(response);
    this.cache.set(key, { response, negative, stored: Date.now(), expires: Date.now() + ttl * 1000 });
    this.entries[negative ? 'denial' : 'success']++;
  }

  private forget(key: string): void {
    const entry = this.cache.get(key);
    if (!entry) return;
    this.cache.delete(key);
    this.entries[entry.negative ? 'denial' : 'success']--;
  }
}

const sameAddress = (a: string, b: string) => a === b || a === b.replace(/^::ffff:/, '');

function isNegative(response: Buffer): boolean {
  return rcodeOf(response) === RCODE.NXDOMAIN || response.readUInt16BE(6) === 0;
}

/** How long an upstream answer may be cached: its smallest TTL, capped (0 when it cannot be read). */
function cacheSeconds(response: Buffer): number {
  try {
    const decoded = dnsPacket.decode(response);
    if (isNegative(response)) {
      const soa = (decoded.authorities ?? []).find((record) => record.type === 'SOA') as { ttl?: number } | undefined;
      return Math.min(NEGATIVE_TTL_CAP, soa?.ttl ?? NEGATIVE_TTL_CAP);
    }
    return Math.min(POSITIVE_TTL_CAP, ...(decoded.answers ?? []).map((record) => (record as { ttl?: number }).ttl ?? 0));
  } catch {
    return 0;
  }
}

/** One query over TCP (RFC 7766 framing), for answers an upstream truncated over UDP. */
function askTcp(upstream: Upstream, query: Buffer): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: upstream.address, port: upstream.port });
    const chunks: Buffer[] = [];
    let received = 0;
    const finish = (response: Buffer | undefined) => {
      socket.destroy();
      resolve(response);
    };
    socket.setTimeout(UPSTREAM_TIMEOUT_MS, () => finish(undefined));
    socket.on('error', () => finish(undefined));
    socket.on('connect', () => {
      const length = Buffer.alloc(2);
      length.writeUInt16BE(query.length);
      socket.write(Buffer.concat([length, query]));
    });
    socket.on('data', (chunk) => {
      chunks.push(chunk);
      received += chunk.length;
      if (received > TCP_MAX_ANSWER + 2) return finish(undefined);
      const data = Buffer.concat(chunks);
      if (data.length >= 2 && data.length >= 2 + data.readUInt16BE(0)) finish(data.subarray(2, 2 + data.readUInt16BE(0)));
    });
    socket.on('end', () => finish(undefined));
  });
}
