// The ingress duration histogram fed by the workers' bucket counts prints exactly what prom-client's
// own Histogram prints for the same requests: names, labels, bounds, cumulative counts, sum, count.
import t from 'tap';
import { Histogram, Registry } from 'prom-client';
import { CountedHistogram } from '../../src/kernel/counted-histogram.js';
import { INGRESS_DURATION_BUCKETS, durationBucket } from '../../src/ingress/proxy-protocol.js';

const NAME = 'kubenft_ingress_request_duration_seconds';
const HELP = 'Time from a request to its response header, by Ingress';

t.test('bucket counts reported in batches print as the same requests observed one by one', async (t) => {
  // Binary fractions, so that the sums are exact in any order; bounds themselves fall in their own bucket.
  const batches: [string, number[]][][] = [
    [['default/a', [0.0009765625, 0.001, 0.25, 7]], ['default/b', [0.5, 0.5]]],
    [['default/a', [0.0078125, 5, 0.125]]],
    [['other/c', [1]], ['default/b', [0.0625]]],
  ];
  const observed = new Registry();
  const histogram = new Histogram({ name: NAME, help: HELP, labelNames: ['ingress'], buckets: INGRESS_DURATION_BUCKETS, registers: [observed] });
  const counted = new Registry();
  const fed = new CountedHistogram(NAME, HELP, ['ingress'], INGRESS_DURATION_BUCKETS, counted);
  for (const batch of batches) {
    for (const [ingress, durations] of batch) {
      for (const seconds of durations) histogram.observe({ ingress }, seconds);
      const buckets = new Array<number>(INGRESS_DURATION_BUCKETS.length + 1).fill(0);
      for (const seconds of durations) buckets[durationBucket(seconds)]++;
      fed.add({ ingress }, buckets, durations.reduce((sum, seconds) => sum + seconds, 0));
    }
  }
  const text = await counted.metrics();
  t.equal(text, await observed.metrics(), 'the same exposition text');
  t.match(text, /^kubenft_ingress_request_duration_seconds_bucket\{le="0\.001",ingress="default\/a"\} 2$/m, 'a bound counts in its own bucket');
  t.match(text, /^kubenft_ingress_request_duration_seconds_count\{ingress="default\/a"\} 7$/m);
  // prom-client's JSON also carries its (unused) exemplar slots.
  const withoutExemplars = (metrics: unknown) => JSON.parse(JSON.stringify(metrics, (key, value: unknown) => (key === 'exemplar' ? undefined : value)));
  t.same(withoutExemplars(await counted.getMetricsAsJSON()), withoutExemplars(await observed.getMetricsAsJSON()), 'the same JSON');
  counted.resetMetrics();
  t.notMatch(await counted.metrics(), /_count/, 'reset empties it');
});
