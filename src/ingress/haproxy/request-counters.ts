import { INGRESS_DURATION_BUCKETS } from '../proxy-protocol.js';
import type { RequestMetrics } from '../proxy.js';

// The request metrics of HAProxy's requests, counted in HAProxy itself: a stick table holds one
// entry per route, rule host, status and HAProxy thread, whose counters the response rules
// increment (the requests, the duration buckets) and whose tag holds the durations' sum in
// milliseconds (2.6 can only add 1 to a counter, but can set a tag to itself plus the duration:
// one rule, where a counter per bit of the sum took one per bit; an entry per thread so no two
// threads read and set the same tag at once). The agent reads the table and the backends'
// counters once a second (show table, show stat), so no work per request happens outside HAProxy:
// following a log line per request cost a tenth of the throughput on two cores. What the response
// rules do not see (HAProxy's own replies: redirects, refusals, a backend that failed) is logged
// and counted by request-log.ts.

export const REQUEST_TABLE = 'kubenft_requests';

/** The counters of an entry: the requests, then one per duration bound (requests at most that long); its tag 0 is the durations' sum. */
const COUNT = 0;
const FIRST_BOUND = 1;
const COUNTERS = FIRST_BOUND + INGRESS_DURATION_BUCKETS.length;
/** Where the reader keeps the sum, after the counters. */
const SUM = COUNTERS;

/** The stick table, as a backend of its own: keys are 'route/rule host/status/thread' (a rule host is a DNS name or '*'). */
export function requestTableLines(): string[] {
  return [
    `backend ${REQUEST_TABLE}`,
    `  stick-table type string len 300 size 100k store gpc(${COUNTERS}),gpt(1)`,
  ];
}

/**
 * The frontend's rules: the start is taken once the request is routed; a response from a backend
 * is counted under its route and then not logged (HAProxy's own replies still are).
 */
export function requestCounterRules(): { request: string[]; response: string[] } {
  return {
    request: ['  http-request set-var(txn.start) date(0,ms)'],
    response: [
      '  http-response set-var-fmt(txn.counted) "%[var(txn.target),field(2,/)]/%[var(txn.rulehost)]/%[status]/%[thread]" if { var(txn.target) -m found }',
      `  http-response track-sc0 var(txn.counted) table ${REQUEST_TABLE} if { var(txn.counted) -m found }`,
      '  http-response set-var(txn.ms) date(0,ms),sub(txn.start)',
      `  http-response sc-inc-gpc(${COUNT},0)`,
      ...INGRESS_DURATION_BUCKETS.map((bound, index) => `  http-response sc-inc-gpc(${FIRST_BOUND + index},0) if { var(txn.ms) -m int le ${Math.round(bound * 1000)} }`),
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

/** `show table` lines: '0x…: key=3/foo.com/200/0 use=0 exp=0 gpt0=12 gpc0=7 gpc1=7 …'. */
const ENTRY = /^0x[0-9a-f]+: key=(\S+) .*?gpc0=/;

export class RequestCounterReader {
  /** The last values read, per table key and per backend slot; forgotten when a new worker starts with a new table. */
  private entries = new Map<string, number[]>();
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
      const key = ENTRY.exec(line)?.[1];
      if (key === undefined) continue;
      const counters = [...[...line.matchAll(/ gpc\d+=(\d+)/g)].map((match) => Number(match[1])), Number(/ gpt0=(\d+)/.exec(line)?.[1] ?? 0)];
      const before = this.entries.get(key);
      this.entries.set(key, counters);
      // An entry evicted (the table full) and made again starts over.
      const fresh = before === undefined || counters[COUNT] < before[COUNT];
      const delta = fresh ? counters : counters.map((value, index) => since(value, before[index]));
      if (delta[COUNT] === 0) continue;
      const [routeText, ruleHost, status] = key.split('/');
      const route = this.labels.routes[Number(routeText)];
      if (!route) continue;
      this.metrics.requests.inc({ [this.metrics.owner]: route.ingress, host: this.labels.hostOf(ruleHost), path: route.path, status }, delta[COUNT]);
      let histogram = durations.get(route.ingress);
      if (!histogram) durations.set(route.ingress, (histogram = { buckets: new Array<number>(INGRESS_DURATION_BUCKETS.length + 1).fill(0), sum: 0 }));
      // Cumulative per bound in HAProxy, per bucket here.
      let below = 0;
      for (let index = 0; index < INGRESS_DURATION_BUCKETS.length; index++) {
        const atMost = delta[FIRST_BOUND + index];
        histogram.buckets[index] += atMost - below;
        below = atMost;
      }
      histogram.buckets[INGRESS_DURATION_BUCKETS.length] += delta[COUNT] - below;
      histogram.sum += delta[SUM] / 1000;
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
