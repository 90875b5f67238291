import { type Socket, connect } from 'node:net';
import { INGRESS_DURATION_BUCKETS, durationBucket } from '../proxy-protocol.js';
import type { RequestMetrics } from '../proxy.js';
import { ANY_HOST, REQUEST_RING } from './config.js';

// HAProxy's log of the requests it answers itself (a redirect, a refusal, a backend that failed:
// the responses request-counters.ts's rules do not see), read into the built-in's request
// metrics: HAProxy writes one line per such request into an in-memory ring, and the agent follows
// the ring over the stats socket (show events -w). A reload starts a new worker with a ring of its
// own: follow() again.

export interface RouteLabels {
  routes: readonly { ingress: string; path: string }[];
}

const RECONNECT_MS = 1_000;

export class RequestLogReader {
  private socket: Socket | undefined;
  private stopped = false;
  private retry: NodeJS.Timeout | undefined;

  constructor(private readonly adminSocket: string, private readonly labels: RouteLabels, private readonly metrics: RequestMetrics) {}

  /** Follows the running worker's ring (again, after a reload); only requests from now on. */
  follow(): void {
    this.socket?.destroy();
    clearTimeout(this.retry);
    if (this.stopped) return;
    const socket = connect(this.adminSocket);
    this.socket = socket;
    let partial = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      const lines = (partial + chunk).split('\n');
      partial = lines.pop()!;
      this.record(lines);
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      if (this.socket !== socket || this.stopped) return;
      this.retry = setTimeout(() => this.follow(), RECONNECT_MS).unref();
    });
    socket.write(`show events ${REQUEST_RING} -w -n\n`);
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.retry);
    this.socket?.destroy();
  }

  /** Lines of REQUEST_LOG_FORMAT, counted per label set before they reach the metrics. */
  private record(lines: string[]): void {
    const requests = new Map<string, { labels: Record<string, string>; count: number }>();
    const { owner } = this.metrics;
    const durations = new Map<string, { buckets: number[]; sum: number }>();
    for (const line of lines) {
      const [routeText, ruleHost, status, ...times] = line.trim().split(' ');
      if (times.length < 4) continue;
      const route = routeText === '-' ? undefined : this.labels.routes[Number(routeText)];
      if (!route) continue;
      const host = ruleHost === ANY_HOST ? '' : ruleHost;
      const key = `${route.ingress} ${host} ${route.path} ${status}`;
      const counted = requests.get(key);
      if (counted) counted.count++;
      else requests.set(key, { labels: { [owner]: route.ingress, host, path: route.path, status }, count: 1 });
      // To the response header: the stages that happened (-1: did not).
      const seconds = times.reduce((sum, text) => sum + Math.max(0, Number(text) || 0), 0) / 1000;
      let histogram = durations.get(route.ingress);
      if (!histogram) durations.set(route.ingress, (histogram = { buckets: new Array<number>(INGRESS_DURATION_BUCKETS.length + 1).fill(0), sum: 0 }));
      histogram.buckets[durationBucket(seconds)]++;
      histogram.sum += seconds;
    }
    for (const { labels, count } of requests.values()) this.metrics.requests.inc(labels, count);
    for (const [ingress, { buckets, sum }] of durations) this.metrics.durations.add({ [owner]: ingress }, buckets, sum);
  }
}
