import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

type AttributeIds = Record<string, number>;

export interface NativeAttributes {
  table: AttributeIds;
  chain: AttributeIds;
  rule: AttributeIds;
  set: AttributeIds;
  elem: AttributeIds;
  expr: Record<string, AttributeIds>;
}

export interface CommitResult {
  /** The ruleset generation this commit made (present when the batch asked for it). */
  generation?: number;
  messages: number;
  bytes: number;
  encodeMs: number;
  kernelMs: number;
}

export interface KernelFailure {
  index: number;
  errno: number;
  code: string;
  message: string;
}

export interface KernelError extends Error {
  errno?: number;
  code?: string;
  index?: number;
  failures?: KernelFailure[];
}

export interface DumpedSet {
  name: string;
  handle: number;
  flags: number;
  keyType: number;
  keyLen: number;
  dataType?: number;
  dataLen?: number;
  /** Milliseconds, for sets whose elements expire. */
  timeout?: number;
  elements: { key: Buffer; data?: Buffer; verdict?: number; chain?: string; timeout?: number; expiration?: number }[];
}

/** A rule expression with every attribute the addon's attribute table names (attrs.cc). */
export interface DumpedExpression {
  name: string;
  attrs: Record<string, number | string | Buffer>;
}

export interface Dump {
  table: { name: string; flags: number; handle: number };
  chains: { name: string; handle: number; hooknum?: number; prio?: number; policy?: number; type?: string }[];
  sets: DumpedSet[];
  rules: { chain: string; handle: number; exprs: string[]; expressions: DumpedExpression[]; text: string }[];
}

export interface NativeAddon {
  attributes: NativeAttributes;
  /**
   * Encodes and commits a transaction off the JS thread, one commit at a time. The transaction is
   * copied before this returns, so its buffer may be reused at once.
   */
  commit(transaction: Buffer): Promise<CommitResult>;
  /** From now on (true) or no longer (false), keep a copy of every netlink batch commit() sends. */
  captureBatches(on: boolean): void;
  /** The batches captured so far, byte for byte as sent, in order; the addon forgets them. */
  takeCapturedBatches(): Buffer[];
  dump(family: number, table: string): Promise<Dump | null>;
  generation(): Promise<number>;
  /** Every table in the network namespace (family is an NFPROTO number). */
  tables(): Promise<{ family: number; name: string }[]>;
  /**
   * malloc_trim(0): a commit's batch is built on a libuv worker thread, in a malloc arena of its
   * own, and glibc keeps what it freed there mapped. True when memory was returned.
   */
  trimNativeHeap(): boolean;
  /** V8's low-memory collection: compacts the JS heap and returns the emptied pages. */
  compactJsHeap(): void;
  /** An empty table of prepared DNS answers, for udpAnswers sockets to serve (native/udp_answers.cc). */
  answerTable(): AnswerTable;
  /**
   * A UDP socket (`threads` of them with SO_REUSEPORT) answering DNS queries from `table` on
   * native threads; what the table does not answer goes to onMiss (native/udp_answers.cc).
   */
  udpAnswers(options: { address: string; port: number; threads: number; durationBounds: number[]; table: AnswerTable }, onMiss: (packet: Buffer, address: string, port: number) => void): UdpAnswerSocket;
  /**
   * Creates a non-persistent TUN device and returns its descriptor: the kernel deletes the device
   * (and its addresses) when the descriptor closes, at the latest when the process exits.
   */
  openTun(name: string): number;
}

/**
 * The part of the addon that nftables' backend uses: the real kernel's (the addon) or the one in
 * memory (memory-nftables.ts).
 */
export type NftablesKernel = Pick<NativeAddon, 'attributes' | 'commit' | 'dump' | 'tables' | 'generation' | 'trimNativeHeap' | 'compactJsHeap'>;

export interface AnswerTable {
  /** Applies table ops (src/dns/udp-table.ts) to a copy of the table and swaps it in. */
  update(ops: Buffer): void;
  /** The table's response to a query (as the sockets give it, within `limit` bytes), or undefined where it has none. */
  answer(query: Buffer, limit: number): Buffer | undefined;
  /** A name's prepared answers (ID 0) of one type or all; undefined when the table does not hold the name. */
  prepared(wireName: Buffer, type?: number): { type: number; packet: Buffer }[] | undefined;
}

export interface UdpAnswerSocket {
  /** The bound port (the one asked for, or the free one port 0 found). */
  port: number;
  /** Sends from the socket's address and port (the answers to what onMiss received). */
  send(packet: Buffer, address: string, port: number): void;
  /**
   * What the native threads answered since the last call: by qtype, by rcode, durations; datagrams
   * dropped, larger than 4 KiB or passed up while the JS queue was full.
   */
  takeCounters(): { requests: Record<string, number>; responses: Record<string, number>; durationBuckets: number[]; durationSum: number; dropped: { oversized: number; backlog: number } };
  close(): void;
}

/** The project root: the addon lives in build/ there, whether we run from src/ or dist/src/. */
export function projectRoot(): string {
  let directory = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(directory, 'package.json'))) directory = dirname(directory);
  return directory;
}

let loaded: NativeAddon | undefined;

export function native(): NativeAddon {
  loaded ??= createRequire(import.meta.url)(join(projectRoot(), 'build/Release/kubenft_native.node')) as NativeAddon;
  return loaded;
}
