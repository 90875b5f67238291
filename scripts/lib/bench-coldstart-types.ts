// What the cold-start phase's worker (bench-coldstart-worker.ts) is asked and answers.

export type ColdstartTask =
  | { kind: 'capture'; services: number; batchesPath: string }
  | { kind: 'agent'; services: number; timeoutMs: number }
  | { kind: 'once'; services: number; manifestPath: string; timeoutMs: number }
  | { kind: 'fetch'; services: number; timeoutMs: number };

/** What a bare node process costs before any of kubenft's work: its own start, then the two lists fetched. */
export interface FetchFloor {
  /** Spawn to exit of `node -e 0`. */
  nodeStartMs: number;
  /** Spawn to exit of a node process that GETs the Service and EndpointSlice lists and reads every byte (no parsing). */
  fetchListsMs: number;
  listBytes: number;
}

/** The agent's full sync (state → commit) of N services, whose batches were captured. */
export interface FullSyncCapture {
  wallMs: number;
  planMs: number;
  recordMs: number;
  serializeMs: number;
  encodeMs: number;
  kernelMs: number;
  batches: number;
  bytes: number;
}

/** One kubenft process started cold. Times in ms from its spawn unless said otherwise. */
export interface ColdstartRun {
  /** The last VIP answered. */
  vipMs: number;
  /** The agent's first request reached the API server (node start-up and module loading). */
  firstRequestMs?: number;
  /** Every source had listed (the process's own clock, from its start). */
  listedAtMs: number;
  /** Of listedAtMs: validating and storing the objects. */
  stateMs: number;
  /** The first sync, start to commit. */
  syncMs: number;
  split?: { planMs: number; recordMs: number; serializeMs: number; encodeMs: number; kernelMs: number };
  /** Main-thread GC pauses (and incremental marking steps) until the VIP answered, from --trace-gc. */
  gcMs: number;
  collections: number;
  peakRssBytes: number;
  /** The agent's RSS a few seconds after its first sync (the long-running agent only). */
  steadyRssBytes?: number;
}
