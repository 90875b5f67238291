import { INGRESS_DURATION_BUCKETS } from '../proxy-protocol.js';
import type { RequestMetrics } from '../proxy.js';

// The request metrics of HAProxy's requests, counted in HAProxy itself: a stick table holds one
// entry per route, rule host, status, HAProxy thread and duration bucket. Tracking the entry from
// a response rule counts the request (its http_req_cnt), and its tag holds the durations' sum in
// milliseconds (2.6 can only add 1 to a counter, but can set a tag to itself plus the duration; an
// entry per thread so no two threads read and set the same tag at once). The bucket is one lookup
// of the duration in a map of ranges (durations.map), so a response costs four rules, where a
// counter per bucket bound took one rule each (callgrind: docs/performance.md). The agent reads
// the table and the backends' counters once a second (show table, show stat), so no work per
// request happens outside HAProxy: following a log line per request cost a tenth of the
// throughput on two cores. What the response rules do not see (HAProxy's own replies: redirects,
// refusals, a backend that failed) is logged and counted by request-log.ts.

export const REQUEST_TABLE = 'kubenft_requests';

/** The bounds in milliseconds, as the response rules compare them. */
const BOUNDS_MS = INGRESS_DURATION_BUCKETS.map((bound) => Math.round(bound * 1000));

/** durations.map: a duration's range of milliseconds → its bucket (INGRESS_DURATION_BUCKETS' index; their length when past every bound, the lookup's default). Ranges are inclusive, as a bucket's bound is (value ≤ bound); the first is open below. */
export function durationBucketMap(): string {
  return BOUNDS_MS.map((bound, index) => `${index === 0 ? '' : BOUNDS_MS[index - 1] + 1}:${bound} ${index}\n`).join('');
}

/** The stick table, as a backend of its own: keys are 'route/rule host/status/thread/bucket' (a rule host is a DNS name or '*'). */
export function requestTableLines(): string[] {
  return [
    `backend ${REQUEST_TABLE}`,
    '  stick-table type string len 300 size 100k store http_req_cnt,gpt(1)',
  ];
}

/**
 * The frontend's rules: the start is taken once the request is routed; a response from a backend
 * is counted under its route (every such request has one: no route is a 404 of HAProxy's own)
 * and then not logged (HAProxy's own replies still are).
 */
export function requestCounterRules(durationsMap: string): { request: string[]; response: string[] } {
  return {
    request: ['  http-request set-var(txn.start) date(0,ms)'],
    response: [
      `  http-response set-var-fmt(txn.counted) "%[var(txn.target),field(2,/)]/%[var(txn.rulehost)]/%[status]/%[thread]/%[date(0,ms),sub(txn.start),set-var(txn.ms),map_int(${durationsMap},${BOUNDS_MS.length})]"`,
      `  http-response track-sc0 var(txn.counted) table ${REQUEST_TABLE}`,
      // A tag is 32 bits, as the counters: the reader takes differences modulo 2^32.
      '  http-response sc-set-gpt(0,0) sc_get_gpt(0,0),add(txn.ms)',
      '  http-response set-log-level silent',
    ],
  };
}

export interface CounterLabels {
  routes: readonly { ingress: string; path: string }[];
  isSlot(backend: string): boolean;
  backendOf(slot: string): string;
  /** The host label of a rule host key. */
  hostOf(ruleHost: string): string;
}

/** HAProxy's counters are 32 bits wide: a difference is taken modulo 2^32. */
const WRAP = 2 ** 32;
const since = (now: number, before: number) => (now - before + WRAP) % WRAP;

/** `show table` lines: '0x…: key=3/foo.com/200/0/2 use=0 exp=0 http_req_cnt=7 gpt0=12'. */
const ENTRY = /^0x[0-9a-f]+: key=(\S+) .*?http_req_cnt=(\d+) gpt0=(\d+)/;

export class RequestCounterReader {
  /** The last values read per table key (requests, durations' sum); forgotten when a new worker starts with a new table. */
  private entries = new Map<string, { requests: number; sum: number }>();
  private backends = new Map<string, number>();

  constructor(private readonly labels: CounterLabels, private readonly metrics: RequestMetrics) {}

  /** A new worker (a reload, a restart) counts from zero. */
  reset(): void {
    this.entries = new Map();
    this.backends = new Map();
  }

  /** Adds what `show table REQUEST_TABLE` shows since the last reading to the request metrics. */
  readTable(answer: string): void {
    const durations = new Map<string, { buckets: number[]; sum: number }>();
    for (const line of answer.split('\n')) {
      const match = ENTRY.exec(line);
      if (!match) continue;
      const [, key, requestsText, sumText] = match;
      const now = { requests: Number(requestsText), sum: Number(sumText) };
      const before = this.entries.get(key);
      this.entries.set(key, now);
      // An entry evicted (the table full) and made again starts over.
      const fresh = before === undefined || now.requests < before.requests;
      const requests = fresh ? now.requests : now.requests - before.requests;
      if (requests === 0) continue;
      const sum = fresh ? now.sum : since(now.sum, before.sum);
      const [routeText, ruleHost, status, , bucketText] = key.split('/');
      const route = this.labels.routes[Number(routeText)];
      const bucket = Number(bucketText);
      if (!route || !(bucket >= 0 && bucket <= INGRESS_DURATION_BUCKETS.length)) continue;
      this.metrics.requests.inc({ [this.metrics.owner]: route.ingress, host: this.labels.hostOf(ruleHost), path: route.path, status }, requests);
      let histogram = durations.get(route.ingress);
      if (!histogram) durations.set(route.ingress, (histogram = { buckets: new Array<number>(INGRESS_DURATION_BUCKETS.length + 1).fill(0), sum: 0 }));
      histogram.buckets[bucket] += requests;
      histogram.sum += sum / 1000;
    }
    for (const [ingress, { buckets, sum }] of durations) this.metrics.durations.add({ [this.metrics.owner]: ingress }, buckets, sum);
  }

  /** Adds the backend slots' failed connects, failed responses and retries (`show stat`) since the last reading to the upstream errors. */
  readStats(csv: string): void {
    const [header, ...rows] = csv.split('\n');
    const columns = header.replace(/^# /, '').split(',');
    const [proxy, server, ...failures] = ['pxname', 'svname', 'econ', 'eresp', 'wretr'].map((name) => columns.indexOf(name));
    for (const row of rows) {
      const fields = row.split(',');
      if (fields[server] !== 'BACKEND' || !this.labels.isSlot(fields[proxy])) continue;
      const slot = fields[proxy];
      const now = failures.reduce((sum, column) => sum + (Number(fields[column]) || 0), 0);
      const before = this.backends.get(slot);
      this.backends.set(slot, now);
      const delta = before === undefined || now < before ? now : now - before;
      if (delta > 0) this.metrics.upstreamErrors.inc({ backend: this.labels.backendOf(slot) }, delta);
    }
  }
}
