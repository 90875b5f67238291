// The test client: N sequential attempts against one address, each either the
// hostnames server's reply or an error code, printed as one JSON document.
//
//   node probe.js --address A --port P --protocol tcp|udp --count N --timeout-ms T
//                 [--source-port S] [--latency] [--max-run-ms M] [--alternate-address B]
//
// Error codes tell "refused" from "dropped": a TCP RST or an ICMP unreachable
// is the code Node reports (ECONNREFUSED, EHOSTUNREACH, ...); silence until our
// own timer is ETIMEDOUT; connected but no reply in time is ENOREPLY.
import dgram from 'node:dgram';
import net from 'node:net';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import type { HostnamesReply } from './hostnames-server.js';

export const MAX_COUNT = 100_000;
export const MAX_TIMEOUT_MS = 60_000;
export const DEFAULT_MAX_RUN_MS = 600_000;

export interface ProbeOptions {
  address: string;
  port: number;
  protocol: 'tcp' | 'udp';
  count: number;
  timeoutMs: number;
  sourcePort?: number;
  /** Record per-attempt latency (TCP: handshake time; UDP: round trip). */
  latency?: boolean;
  /** Stop starting new attempts after this long; the report is then `truncated`. */
  maxRunMs?: number;
  /**
   * Attempts alternate between `address` and this one (see goesToAlternate): two addresses
   * compared connection by connection, from one process, see the same process and moments.
   */
  alternateAddress?: string;
}

export type AttemptResult =
  | ({ ok: true; latencyUs?: number } & HostnamesReply)
  | { ok: false; error: string };

/**
 * A B B A, A B B A, …: each address follows the other as often as itself (a connection right
 * after one to the other address measured a few percent faster).
 */
export const goesToAlternate = (attempt: number) => attempt % 4 === 1 || attempt % 4 === 2;

export interface LatencySummary {
  samples: number;
  p50Us: number;
  p90Us: number;
  p99Us: number;
}

export interface ProbeReport {
  results: AttemptResult[];
  /** Answers per pod name, and failures as "error:<CODE>". */
  counts: Record<string, number>;
  latency?: LatencySummary;
  truncated?: boolean;
}

// The hostnames server answers as soon as the client speaks; see hostnames-server.ts.
const REQUEST = 'PROBE\n';

function elapsedUs(startedAt: bigint): number {
  return Number((process.hrtime.bigint() - startedAt) / 1000n);
}

function parseReply(text: string): AttemptResult {
  const line = text.split('\n', 1)[0] ?? '';
  try {
    return { ok: true, ...(JSON.parse(line) as HostnamesReply) };
  } catch {
    return { ok: false, error: line === '' ? 'ENOREPLY' : 'EBADREPLY' };
  }
}

function errorCode(error: unknown): string {
  return (error as NodeJS.ErrnoException).code ?? 'EUNKNOWN';
}

function attemptTcp(options: ProbeOptions): Promise<AttemptResult> {
  return new Promise((resolve) => {
    const startedAt = process.hrtime.bigint();
    let latencyUs: number | undefined;
    let received = '';
    const socket = net.connect({ host: options.address, port: options.port, localPort: options.sourcePort });
    let settled = false;
    const finish = (result: AttemptResult): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      // A graceful close would leave our end in LAST_ACK for a moment, and the
      // next connect from the same fixed source port fails on the busy 4-tuple.
      if (options.sourcePort !== undefined && !socket.connecting) socket.resetAndDestroy();
      else socket.destroy();
      if (result.ok && options.latency) result.latencyUs = latencyUs;
      resolve(result);
    };
    const timer = setTimeout(
      () => finish({ ok: false, error: latencyUs === undefined ? 'ETIMEDOUT' : 'ENOREPLY' }),
      options.timeoutMs,
    );
    socket.setEncoding('utf8');
    socket.on('connect', () => {
      latencyUs = elapsedUs(startedAt);
      socket.write(REQUEST);
    });
    socket.on('data', (chunk: string) => (received += chunk));
    // The server closes first, so its side (not ours) keeps the TIME_WAIT.
    socket.on('end', () => finish(parseReply(received)));
    socket.on('error', (error) => finish({ ok: false, error: errorCode(error) }));
  });
}

function attemptUdp(options: ProbeOptions): Promise<AttemptResult> {
  return new Promise((resolve) => {
    const startedAt = process.hrtime.bigint();
    const socket = dgram.createSocket({ type: net.isIPv6(options.address) ? 'udp6' : 'udp4', reuseAddr: true });
    let settled = false;
    const finish = (result: AttemptResult): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.close();
      if (result.ok && options.latency) result.latencyUs = elapsedUs(startedAt);
      resolve(result);
    };
    const timer = setTimeout(() => finish({ ok: false, error: 'ETIMEDOUT' }), options.timeoutMs);
    // On a connected socket the kernel reports an ICMP unreachable as an error
    // (ECONNREFUSED for port unreachable) on the next receive.
    socket.on('error', (error) => finish({ ok: false, error: errorCode(error) }));
    socket.on('message', (message) => finish(parseReply(message.toString('utf8'))));
    socket.bind(options.sourcePort ?? 0, () => {
      if (settled) return;
      socket.connect(options.port, options.address, () => {
        if (!settled) socket.send(REQUEST);
      });
    });
  });
}

function percentile(sorted: number[], fraction: number): number {
  const rank = Math.max(1, Math.ceil(fraction * sorted.length)); // nearest-rank
  return sorted[rank - 1] ?? 0;
}

function summarizeLatency(results: AttemptResult[]): LatencySummary {
  const samples = results
    .flatMap((result) => (result.ok && result.latencyUs !== undefined ? [result.latencyUs] : []))
    .sort((a, b) => a - b);
  return {
    samples: samples.length,
    p50Us: percentile(samples, 0.5),
    p90Us: percentile(samples, 0.9),
    p99Us: percentile(samples, 0.99),
  };
}

export function validateProbeOptions(options: ProbeOptions): void {
  const inRange = (value: number, min: number, max: number): boolean =>
    Number.isInteger(value) && value >= min && value <= max;
  for (const address of [options.address, options.alternateAddress ?? options.address]) {
    if (net.isIP(address) === 0) throw new Error(`--address must be an IP literal: ${address}`);
  }
  if (!inRange(options.port, 1, 65535)) throw new Error(`--port out of range: ${options.port}`);
  if (options.protocol !== 'tcp' && options.protocol !== 'udp') throw new Error(`bad --protocol: ${options.protocol}`);
  if (!inRange(options.count, 1, MAX_COUNT)) throw new Error(`--count must be 1..${MAX_COUNT}`);
  if (!inRange(options.timeoutMs, 1, MAX_TIMEOUT_MS)) throw new Error(`--timeout-ms must be 1..${MAX_TIMEOUT_MS}`);
  if (options.sourcePort !== undefined && !inRange(options.sourcePort, 1, 65535)) {
    throw new Error(`--source-port out of range: ${options.sourcePort}`);
  }
}

/** Runs the attempts in the caller's network namespace. */
export async function probe(options: ProbeOptions): Promise<ProbeReport> {
  validateProbeOptions(options);
  const attempt = options.protocol === 'tcp' ? attemptTcp : attemptUdp;
  const deadline = Date.now() + Math.min(options.maxRunMs ?? DEFAULT_MAX_RUN_MS, DEFAULT_MAX_RUN_MS);
  const results: AttemptResult[] = [];
  const counts: Record<string, number> = {};
  const alternate = options.alternateAddress === undefined ? options : { ...options, address: options.alternateAddress };
  while (results.length < options.count && Date.now() < deadline) {
    const result = await attempt(goesToAlternate(results.length) ? alternate : options);
    results.push(result);
    const key = result.ok ? result.pod : `error:${result.error}`;
    counts[key] = (counts[key] ?? 0) + 1;
  }
  const report: ProbeReport = { results, counts };
  if (options.latency) report.latency = summarizeLatency(results);
  if (results.length < options.count) report.truncated = true;
  return report;
}

/** The command line for `options`, so callers in other namespaces stay in sync with the CLI. */
export function probeCliArgs(options: ProbeOptions): string[] {
  const args = ['--address', options.address, '--port', String(options.port), '--protocol', options.protocol];
  args.push('--count', String(options.count), '--timeout-ms', String(options.timeoutMs));
  if (options.sourcePort !== undefined) args.push('--source-port', String(options.sourcePort));
  if (options.latency) args.push('--latency');
  if (options.maxRunMs !== undefined) args.push('--max-run-ms', String(options.maxRunMs));
  if (options.alternateAddress !== undefined) args.push('--alternate-address', options.alternateAddress);
  return args;
}

function parseCliArgs(argv: string[]): ProbeOptions {
  const { values } = parseArgs({
    args: argv,
    options: {
      address: { type: 'string' },
      port: { type: 'string' },
      protocol: { type: 'string', default: 'tcp' },
      count: { type: 'string', default: '1' },
      'timeout-ms': { type: 'string', default: '1000' },
      'source-port': { type: 'string' },
      latency: { type: 'boolean', default: false },
      'max-run-ms': { type: 'string' },
      'alternate-address': { type: 'string' },
    },
  });
  const optionalNumber = (value: string | undefined): number | undefined =>
    value === undefined ? undefined : Number(value);
  return {
    address: values.address ?? '',
    port: Number(values.port),
    protocol: values.protocol as ProbeOptions['protocol'],
    count: Number(values.count),
    timeoutMs: Number(values['timeout-ms']),
    sourcePort: optionalNumber(values['source-port']),
    latency: values.latency,
    maxRunMs: optionalNumber(values['max-run-ms']),
    alternateAddress: values['alternate-address'],
  };
}

const runAsProgram = process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href;
if (runAsProgram) {
  try {
    const report = await probe(parseCliArgs(process.argv.slice(2)));
    process.stdout.write(JSON.stringify(report) + '\n');
  } catch (error) {
    process.stderr.write(`probe: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exitCode = 2;
  }
}
