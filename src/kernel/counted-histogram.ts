import type { Metric, Registry } from 'prom-client';

// A Prometheus histogram fed counts already bucketed elsewhere (the proxy's workers count their
// requests per bucket and report every 500 ms): prom-client's Histogram takes one observe() per
// value, which cost the agent a label hash and a bucket search per request. Exposed exactly as a
// prom-client Histogram with the same name, labels and bounds would be (_bucket with le, _sum, _count).

interface Series {
  labels: Record<string, string>;
  /** Per bound, not cumulative; the last entry is past every bound. */
  buckets: number[];
  sum: number;
}

export class CountedHistogram {
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  private readonly series = new Map<string, Series>();

  constructor(readonly name: string, readonly help: string, private readonly labelNames: readonly string[], readonly bounds: readonly number[], registry: Registry) {
    // The registry only asks a metric for get(), getForPromString() and reset(), which this has.
    registry.registerMetric(this as unknown as Metric);
  }

  /** Adds `buckets` (per bound, not cumulative, one more than there are bounds: the last is past every bound) and their sum to the series of `labels`. */
  add(labels: Record<string, string>, buckets: number[], sum: number): void {
    const key = this.labelNames.map((name) => labels[name]).join('\0');
    let series = this.series.get(key);
    if (!series) {
      // In the label names' order, as prom-client prints the labels of an observe() given them so.
      const ordered = Object.fromEntries(this.labelNames.map((name) => [name, labels[name]]));
      this.series.set(key, (series = { labels: ordered, buckets: new Array<number>(this.bounds.length + 1).fill(0), sum: 0 }));
    }
    for (let index = 0; index < series.buckets.length; index++) series.buckets[index] += buckets[index];
    series.sum += sum;
  }

  /** What Registry.metrics() prints: the shape prom-client's Histogram gives, so the text is the same. */
  async getForPromString() {
    const values = [];
    for (const { labels, buckets, sum } of this.series.values()) {
      let cumulative = 0;
      for (const [index, bound] of this.bounds.entries()) {
        cumulative += buckets[index];
        values.push({ labels: { le: bound }, sharedLabels: labels, value: cumulative, metricName: `${this.name}_bucket` });
      }
      const count = cumulative + buckets[this.bounds.length];
      values.push(
        { labels: { le: '+Inf' }, sharedLabels: labels, value: count, metricName: `${this.name}_bucket` },
        { labels: {}, sharedLabels: labels, value: sum, metricName: `${this.name}_sum` },
        { labels: {}, sharedLabels: labels, value: count, metricName: `${this.name}_count` },
      );
    }
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator };
  }

  async get() {
    const metric = await this.getForPromString();
    return { ...metric, values: metric.values.map(({ labels, sharedLabels, ...value }) => ({ ...value, labels: { ...labels, ...sharedLabels } })) };
  }

  reset(): void {
    this.series.clear();
  }
}
