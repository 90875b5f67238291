// The metrics and health endpoints as kube-proxy's scrapers and load-balancer probes see them:
// over HTTP, on 127.0.0.1 only, with a hand-driven clock for the health timeout.
import { once } from 'node:events';
import { connect, createServer } from 'node:net';
import t from 'tap';
import { ProxyHealth, startHealthServer } from '../../src/agent/healthz.js';
import { ServiceHealthServers } from '../../src/services/health-check-ports.js';
import { parseBindAddress } from '../../src/kernel/http-server.js';
import { ProxyMetrics, startMetricsServer } from '../../src/agent/metrics.js';

const KUBE_PROXY_METRICS = [
  'sync_proxy_rules_duration_seconds',
  'sync_full_proxy_rules_duration_seconds',
  'sync_partial_proxy_rules_duration_seconds',
  'network_programming_duration_seconds',
  'sync_proxy_rules_last_timestamp_seconds',
  'sync_proxy_rules_last_queued_timestamp_seconds',
  'sync_proxy_rules_endpoint_changes_pending',
  'sync_proxy_rules_endpoint_changes_total',
  'sync_proxy_rules_service_changes_pending',
  'sync_proxy_rules_service_changes_total',
  'sync_proxy_rules_no_local_endpoints_total',
  'sync_proxy_rules_nftables_sync_failures_total',
  'sync_proxy_rules_nftables_cleanup_failures_total',
  'sync_proxy_rules_iptables_restore_failures_total',
  'proxy_healthz_total',
  'proxy_livez_total',
  'conntrack_reconciler_deleted_entries_total',
].map((name) => `kubeproxy_${name}`);

const KUBENFT_METRICS = [
  'kubenft_sync_proxy_rules_kernel_seconds',
  'kubenft_drift_repairs_total',
  'kubenft_drift_check_failures_total',
  'kubenft_sync_proxy_rules_services',
  'kubenft_sync_proxy_rules_endpoints',
];

/** A hand-driven clock for ProxyHealth. */
function manualClock(startMs = Date.UTC(2025, 0, 1)) {
  let nowMs = startMs;
  return { now: () => nowMs, advance: (ms: number) => void (nowMs += ms) };
}

async function scrape(url: string): Promise<string> {
  const res = await fetch(`${url}/metrics`);
  if (res.status !== 200) throw new Error(`scrape answered ${res.status}`);
  return res.text();
}

/** The value of one sample line, `name{labels} value`, or undefined when absent. */
function sample(text: string, series: string): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith(`${series} `)) return Number(line.slice(series.length + 1));
  }
  return undefined;
}

/** Resolves 'refused' when nothing listens on 127.0.0.1:port, 'open' otherwise. */
async function probePort(port: number): Promise<'open' | 'refused'> {
  const socket = connect({ host: '127.0.0.1', port });
  try {
    await once(socket, 'connect');
    return 'open';
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ECONNREFUSED') return 'refused';
    throw err;
  } finally {
    socket.destroy();
  }
}

/** Ports free right now on 127.0.0.1, all distinct (held together while picked). */
async function freePorts(count: number): Promise<number[]> {
  const holders = Array.from({ length: count }, () => createServer());
  const ports: number[] = [];
  for (const holder of holders) {
    holder.listen(0, '127.0.0.1');
    await once(holder, 'listening');
    ports.push((holder.address() as { port: number }).port);
  }
  await Promise.all(holders.map((holder) => new Promise((resolve) => holder.close(resolve))));
  return ports;
}

t.test('every kube-proxy metric is served under its kube-proxy name, with upstream buckets', async (t) => {
  const metrics = new ProxyMetrics();
  const server = await startMetricsServer('127.0.0.1:0', metrics);
  t.teardown(() => server.close());
  t.match(server.url, /^http:\/\/127\.0\.0\.1:\d+$/);

  const res = await fetch(`${server.url}/metrics`);
  t.equal(res.status, 200);
  t.equal(res.headers.get('content-type'), 'text/plain; version=0.0.4; charset=utf-8');
  const text = await res.text();
  for (const name of [...KUBE_PROXY_METRICS, ...KUBENFT_METRICS]) {
    t.match(text, new RegExp(`^# TYPE ${name} `, 'm'), `${name} is exposed`);
  }
  t.match(text, /^# TYPE kubeproxy_sync_proxy_rules_duration_seconds histogram$/m);
  t.match(text, /^# TYPE kubeproxy_network_programming_duration_seconds histogram$/m);
  t.match(text, /^# TYPE kubeproxy_sync_proxy_rules_no_local_endpoints_total gauge$/m);
  t.match(text, /^# TYPE kubeproxy_proxy_healthz_total counter$/m);
  t.match(text, /^# HELP kubeproxy_sync_proxy_rules_duration_seconds SyncProxyRules latency in seconds$/m);
  t.match(text, /^process_cpu_user_seconds_total /m, 'process metrics are collected');

  const bucketsOf = (name: string) =>
    [...text.matchAll(new RegExp(`^${name}_bucket\\{le="([^"]+)"\\}`, 'gm'))].map((match) => match[1]);
  t.same(bucketsOf('kubeproxy_sync_proxy_rules_duration_seconds'), [
    ...Array.from({ length: 15 }, (_, i) => String(0.001 * 2 ** i)),
    '+Inf',
  ]);
  const programming = bucketsOf('kubeproxy_network_programming_duration_seconds');
  t.equal(programming.length, 1 + 2 + 59 + 12 + 7 + 1, 'le=0, 0.25s, 0.5s, 1..59s, 60..115s, 2..5min, +Inf');
  t.same(programming.slice(0, 4), ['0', '0.25', '0.5', '1']);
  t.same(programming.slice(-4), ['240', '270', '300', '+Inf']);
  t.same(bucketsOf('kubenft_sync_proxy_rules_kernel_seconds'), bucketsOf('kubeproxy_sync_proxy_rules_duration_seconds'));

  t.equal(sample(text, 'kubeproxy_sync_proxy_rules_no_local_endpoints_total{traffic_policy="internal"}'), 0);
  t.equal(sample(text, 'kubeproxy_sync_proxy_rules_no_local_endpoints_total{traffic_policy="external"}'), 0);
});

t.test('values move with the sync loop calls', async (t) => {
  const metrics = new ProxyMetrics();
  const server = await startMetricsServer('127.0.0.1:0', metrics);
  t.teardown(() => server.close());
  const before = Date.now() / 1000;

  metrics.recordSync('full', 0.5, 0.2);
  metrics.recordSync('partial', 0.003, 0.001);
  metrics.recordSync('partial', 20, 10);
  metrics.recordSyncFailure('nftables');
  metrics.recordSyncFailure('nftables');
  metrics.recordSyncFailure('iptables');
  metrics.recordCleanupFailure();
  metrics.recordQueued();
  metrics.setPending(3, 4);
  metrics.addChanges(2, 5);
  metrics.addChanges(1, 0);
  metrics.observeNetworkProgramming(1.5);
  metrics.observeNetworkProgramming(-2); // control-plane clock ahead of ours: not observed
  metrics.setNoLocalEndpoints(1, 2);
  metrics.recordDriftRepair();
  metrics.recordConntrackDeletions(7);
  metrics.recordConntrackDeletions(0);
  metrics.setSize(10, 30);
  metrics.recordHealthz(503);
  metrics.recordLivez(200);

  const text = await scrape(server.url);
  const value = (series: string) => sample(text, series);
  t.equal(value('kubeproxy_sync_proxy_rules_duration_seconds_count'), 3);
  t.equal(value('kubeproxy_sync_proxy_rules_duration_seconds_sum'), 20.503);
  t.equal(value('kubeproxy_sync_full_proxy_rules_duration_seconds_count'), 1);
  t.equal(value('kubeproxy_sync_partial_proxy_rules_duration_seconds_count'), 2);
  t.equal(value('kubeproxy_sync_partial_proxy_rules_duration_seconds_bucket{le="0.004"}'), 1);
  t.equal(value('kubeproxy_sync_partial_proxy_rules_duration_seconds_bucket{le="16.384"}'), 1, '20s lands past the last bucket');
  t.equal(value('kubeproxy_sync_partial_proxy_rules_duration_seconds_bucket{le="+Inf"}'), 2);
  t.equal(value('kubenft_sync_proxy_rules_kernel_seconds_count'), 3);
  t.equal(value('kubenft_sync_proxy_rules_kernel_seconds_sum'), 10.201);
  t.ok(value('kubeproxy_sync_proxy_rules_last_timestamp_seconds')! >= Math.floor(before), 'last sync timestamp is now');
  t.ok(value('kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds')! >= Math.floor(before), 'last queued timestamp is now');
  t.equal(value('kubeproxy_sync_proxy_rules_nftables_sync_failures_total'), 2);
  t.equal(value('kubeproxy_sync_proxy_rules_iptables_restore_failures_total'), 1);
  t.equal(value('kubeproxy_sync_proxy_rules_nftables_cleanup_failures_total'), 1);
  t.equal(value('kubeproxy_sync_proxy_rules_service_changes_pending'), 3);
  t.equal(value('kubeproxy_sync_proxy_rules_endpoint_changes_pending'), 4);
  t.equal(value('kubeproxy_sync_proxy_rules_service_changes_total'), 3);
  t.equal(value('kubeproxy_sync_proxy_rules_endpoint_changes_total'), 5);
  t.equal(value('kubeproxy_network_programming_duration_seconds_count'), 1);
  t.equal(value('kubeproxy_network_programming_duration_seconds_bucket{le="1"}'), 0);
  t.equal(value('kubeproxy_network_programming_duration_seconds_bucket{le="2"}'), 1);
  t.equal(value('kubeproxy_sync_proxy_rules_no_local_endpoints_total{traffic_policy="internal"}'), 1);
  t.equal(value('kubeproxy_sync_proxy_rules_no_local_endpoints_total{traffic_policy="external"}'), 2);
  t.equal(value('kubenft_drift_repairs_total'), 1);
  t.equal(value('kubeproxy_conntrack_reconciler_deleted_entries_total'), 7);
  t.equal(value('kubenft_sync_proxy_rules_services'), 10);
  t.equal(value('kubenft_sync_proxy_rules_endpoints'), 30);
  t.equal(value('kubeproxy_proxy_healthz_total{code="503"}'), 1);
  t.equal(value('kubeproxy_proxy_livez_total{code="200"}'), 1);

  // Pending counts are gauges: they go back down.
  metrics.setPending(0, 0);
  const later = await scrape(server.url);
  t.equal(sample(later, 'kubeproxy_sync_proxy_rules_service_changes_pending'), 0);
  t.equal(sample(later, 'kubeproxy_sync_proxy_rules_endpoint_changes_pending'), 0);
});

t.test('nonsense values are refused, not recorded', async (t) => {
  const metrics = new ProxyMetrics();
  t.throws(() => metrics.recordSync('full', -1, 0), RangeError);
  t.throws(() => metrics.recordSync('full', 1, Number.NaN), RangeError);
  t.throws(() => metrics.addChanges(-1, 0), RangeError);
  t.throws(() => metrics.setPending(0, 1.5), RangeError);
  t.throws(() => metrics.recordConntrackDeletions(-3), RangeError);
  t.throws(() => metrics.setSize(Number.POSITIVE_INFINITY, 0), RangeError);
  const text = await metrics.registry.metrics();
  t.equal(sample(text, 'kubeproxy_sync_proxy_rules_duration_seconds_count'), 0);
  t.equal(sample(text, 'kubeproxy_sync_proxy_rules_service_changes_total'), 0);
});

t.test('each ProxyMetrics has its own registry', async (t) => {
  const first = new ProxyMetrics();
  const second = new ProxyMetrics();
  first.recordDriftRepair();
  t.equal(sample(await first.registry.metrics(), 'kubenft_drift_repairs_total'), 1);
  t.equal(sample(await second.registry.metrics(), 'kubenft_drift_repairs_total'), 0);
});

t.test('the metrics server serves /metrics and, when given, /healthz and /livez; nothing else', async (t) => {
  const metrics = new ProxyMetrics();
  const clock = manualClock();
  const health = new ProxyHealth({ healthTimeoutMs: 60_000, now: clock.now, metrics });
  health.updated();
  const withHealth = await startMetricsServer('127.0.0.1:0', metrics, { healthz: health });
  t.teardown(() => withHealth.close());
  const bare = await startMetricsServer('127.0.0.1:0', new ProxyMetrics());
  t.teardown(() => bare.close());

  t.equal((await fetch(`${withHealth.url}/healthz`)).status, 200);
  t.equal((await fetch(`${withHealth.url}/livez`)).status, 200);
  t.equal((await fetch(`${withHealth.url}/metrics?name[]=x`)).status, 200, 'a query string does not change the path');
  for (const path of ['/', '/metrics/', '/healthz/', '/debug/pprof/', '/metricsx']) {
    const res = await fetch(`${withHealth.url}${path}`);
    t.equal(res.status, 404, `${path} is not served`);
    await res.arrayBuffer();
  }
  t.equal((await fetch(`${bare.url}/healthz`)).status, 404, 'no health paths without health state');
  t.equal((await fetch(`${bare.url}/livez`)).status, 404);
});

t.test('/healthz and /livez follow kube-proxy health semantics', async (t) => {
  const metrics = new ProxyMetrics();
  const clock = manualClock();
  const health = new ProxyHealth({ healthTimeoutMs: 60_000, now: clock.now, metrics });
  const server = await startHealthServer('127.0.0.1:0', health);
  t.teardown(() => server.close());

  const get = async (path: string) => {
    const res = await fetch(`${server.url}${path}`);
    return { status: res.status, type: res.headers.get('content-type'), body: (await res.json()) as Record<string, unknown> };
  };
  const iso = (ms: number) => new Date(ms).toISOString();

  // Before the first sync: unhealthy, with Go's zero time as lastUpdated.
  let answer = await get('/healthz');
  t.equal(answer.status, 503);
  t.equal(answer.type, 'application/json');
  t.same(answer.body, { lastUpdated: '0001-01-01T00:00:00.000Z', currentTime: iso(clock.now()), nodeEligible: true });
  t.equal(health.lastUpdated(), undefined);
  health.queued();
  t.equal((await get('/livez')).status, 503);

  // The first sync makes it healthy; lastUpdated reads as now while healthy, as upstream.
  health.updated();
  const syncedAt = clock.now();
  t.same(health.lastUpdated(), new Date(syncedAt));
  clock.advance(5 * 60_000);
  answer = await get('/healthz');
  t.equal(answer.status, 200, 'idle for longer than the timeout, with nothing queued: healthy');
  t.same(answer.body, { lastUpdated: iso(clock.now()), currentTime: iso(clock.now()), nodeEligible: true });
  t.same((await get('/livez')).body, { lastUpdated: iso(clock.now()), currentTime: iso(clock.now()) });

  // A change queued and not synced within the timeout makes it unhealthy.
  health.queued();
  clock.advance(59_999);
  health.queued(); // a later change does not restart the wait
  t.equal((await get('/healthz')).status, 200, 'pending, but not late yet');
  clock.advance(1);
  answer = await get('/healthz');
  t.equal(answer.status, 503, 'pending for the whole timeout');
  t.same(answer.body, { lastUpdated: iso(syncedAt), currentTime: iso(clock.now()), nodeEligible: true });
  t.equal((await get('/livez')).status, 503);
  t.notOk(health.healthy());

  health.updated();
  t.equal((await get('/healthz')).status, 200, 'a successful sync makes it healthy again');

  // A Node being drained fails /healthz only.
  health.setNodeEligible(false);
  answer = await get('/healthz');
  t.equal(answer.status, 503);
  t.equal(answer.body.nodeEligible, false);
  t.equal((await get('/livez')).status, 200);
  t.ok(health.healthy(), 'node eligibility is not proxy health');
  health.setNodeEligible(true);

  t.equal((await fetch(`${server.url}/metrics`)).status, 404, 'the health server serves no metrics');

  // Answers so far: healthz 200 x3, 503 x3; livez 200 x2, 503 x2.
  const text = await metrics.registry.metrics();
  t.equal(sample(text, 'kubeproxy_proxy_healthz_total{code="200"}'), 3);
  t.equal(sample(text, 'kubeproxy_proxy_healthz_total{code="503"}'), 3);
  t.equal(sample(text, 'kubeproxy_proxy_livez_total{code="200"}'), 2);
  t.equal(sample(text, 'kubeproxy_proxy_livez_total{code="503"}'), 2);
});

t.test('ProxyHealth refuses a timeout that is not positive', async (t) => {
  t.throws(() => new ProxyHealth({ healthTimeoutMs: 0 }), RangeError);
  t.throws(() => new ProxyHealth({ healthTimeoutMs: Number.NaN }), RangeError);
});

t.test('bind addresses are IP literals with a port, bound exactly', async (t) => {
  t.same(parseBindAddress('127.0.0.1:10249'), { host: '127.0.0.1', port: 10249 });
  t.same(parseBindAddress('[::1]:0'), { host: '::1', port: 0 });
  t.same(parseBindAddress(':10256'), { host: '', port: 10256 });
  for (const bad of ['127.0.0.1', 'localhost:10249', '::1:80', '[127.0.0.1]:80', '1.2.3.4:65536', '1.2.3.4:-1', '1.2.3.4:', '1.2.3.4:8o']) {
    t.throws(() => parseBindAddress(bad), `${bad} is refused`);
  }
  await t.rejects(startMetricsServer('localhost:0', new ProxyMetrics()));

  const taken = await startMetricsServer('127.0.0.1:0', new ProxyMetrics());
  t.teardown(() => taken.close());
  const port = Number(new URL(taken.url).port);
  await t.rejects(startHealthServer(`127.0.0.1:${port}`, new ProxyHealth({ healthTimeoutMs: 1000 })), { code: 'EADDRINUSE' });

  await taken.close();
  t.equal(await probePort(port), 'refused', 'close() frees the port');
  await taken.close(); // closing twice is harmless
});

t.test('HealthCheckNodePort servers answer as upstream, per service', async (t) => {
  const clock = manualClock();
  const health = new ProxyHealth({ healthTimeoutMs: 60_000, now: clock.now });
  health.updated();
  const servers = new ServiceHealthServers({ bindAddresses: ['127.0.0.1'], health });
  t.teardown(() => servers.close());
  const [webPort, dnsPort, movedPort, occupiedPort] = (await freePorts(4)) as [number, number, number, number];

  t.same(
    await servers.sync([
      { namespace: 'shop', name: 'web', healthCheckNodePort: webPort, localEndpoints: 2 },
      { namespace: 'kube-system', name: 'dns', healthCheckNodePort: dnsPort, localEndpoints: 0 },
    ]),
    [],
  );

  const probe = async (port: number, path = '/') => {
    const res = await fetch(`http://127.0.0.1:${port}${path}`);
    return {
      status: res.status,
      weight: res.headers.get('x-load-balancing-endpoint-weight'),
      type: res.headers.get('content-type'),
      body: await res.text(),
    };
  };
  const body = (namespace: string, name: string, count: number, healthy: boolean) =>
    `{\n\t"service": {\n\t\t"namespace": "${namespace}",\n\t\t"name": "${name}"\n\t},\n` +
    `\t"localEndpoints": ${count},\n\t"serviceProxyHealthy": ${healthy}\n}`;

  t.same(await probe(webPort), { status: 200, weight: '2', type: 'application/json', body: body('shop', 'web', 2, true) });
  t.same(await probe(webPort, '/any/path?x=1'), await probe(webPort), 'any path answers the same');
  t.same(await probe(dnsPort), { status: 503, weight: '0', type: 'application/json', body: body('kube-system', 'dns', 0, true) });

  // Counts change in place, on the same server.
  await servers.sync([
    { namespace: 'shop', name: 'web', healthCheckNodePort: webPort, localEndpoints: 1 },
    { namespace: 'kube-system', name: 'dns', healthCheckNodePort: dnsPort, localEndpoints: 3 },
  ]);
  t.same(await probe(webPort), { status: 200, weight: '1', type: 'application/json', body: body('shop', 'web', 1, true) });
  t.same(await probe(dnsPort), { status: 200, weight: '3', type: 'application/json', body: body('kube-system', 'dns', 3, true) });

  // A proxy that falls behind fails every service, endpoints or not.
  health.queued();
  clock.advance(60_000);
  t.same(await probe(webPort), { status: 503, weight: '1', type: 'application/json', body: body('shop', 'web', 1, false) });
  health.updated();

  // A port held by someone else is reported; the other services are untouched.
  const squatter = createServer();
  squatter.listen(occupiedPort, '127.0.0.1');
  await once(squatter, 'listening');
  t.teardown(() => new Promise((resolve) => squatter.close(resolve)));
  const errors = await servers.sync([
    { namespace: 'shop', name: 'web', healthCheckNodePort: webPort, localEndpoints: 1 },
    { namespace: 'kube-system', name: 'dns', healthCheckNodePort: dnsPort, localEndpoints: 3 },
    { namespace: 'shop', name: 'cart', healthCheckNodePort: occupiedPort, localEndpoints: 1 },
    { namespace: 'shop', name: 'broken', healthCheckNodePort: 70000, localEndpoints: 1 },
  ]);
  t.same(
    errors.map((error) => [error.namespace, error.serviceName, error.port]),
    [
      ['shop', 'broken', 70000],
      ['shop', 'cart', occupiedPort],
    ],
  );
  t.match(errors[1]!.cause, { code: 'EADDRINUSE' });
  t.match(errors[1]!.message, /shop\/cart on port \d+: .*EADDRINUSE/);
  t.equal((await probe(webPort)).status, 200);
  t.equal((await probe(dnsPort)).status, 200);

  // Removing a service closes its port; moving a service to another port moves its server.
  await servers.sync([{ namespace: 'shop', name: 'web', healthCheckNodePort: movedPort, localEndpoints: 1 }]);
  t.equal(await probePort(dnsPort), 'refused', 'the removed service no longer listens');
  t.equal(await probePort(webPort), 'refused', 'the old port of a moved service is closed');
  t.same(await probe(movedPort), { status: 200, weight: '1', type: 'application/json', body: body('shop', 'web', 1, true) });

  // A port freed by one service can be taken by another in the same sync.
  t.same(
    await servers.sync([{ namespace: 'kube-system', name: 'dns', healthCheckNodePort: movedPort, localEndpoints: 0 }]),
    [],
  );
  t.equal((await probe(movedPort)).body, body('kube-system', 'dns', 0, true));

  await servers.close();
  for (const port of [webPort, dnsPort, movedPort]) t.equal(await probePort(port), 'refused', `${port} is closed`);
  await t.rejects(servers.sync([{ namespace: 'shop', name: 'web', healthCheckNodePort: webPort, localEndpoints: 1 }]), {
    message: /closed/,
  });
  t.equal(await probePort(webPort), 'refused', 'a sync after close opens nothing');
  await servers.close(); // closing twice is harmless
});

t.test('concurrent syncs never open a port twice', async (t) => {
  const health = new ProxyHealth({ healthTimeoutMs: 60_000 });
  health.updated();
  const servers = new ServiceHealthServers({ bindAddresses: ['127.0.0.1'], health });
  t.teardown(() => servers.close());
  const [port] = (await freePorts(1)) as [number];
  const service = { namespace: 'shop', name: 'web', healthCheckNodePort: port, localEndpoints: 1 };
  const results = await Promise.all([servers.sync([service]), servers.sync([service]), servers.sync([{ ...service, localEndpoints: 4 }])]);
  t.same(results, [[], [], []]);
  const res = await fetch(`http://127.0.0.1:${port}/`);
  t.equal(res.headers.get('x-load-balancing-endpoint-weight'), '4');
  await res.arrayBuffer();
});

t.test('ServiceHealthServers refuses bind addresses that are not IPs', async (t) => {
  const health = new ProxyHealth({ healthTimeoutMs: 1000 });
  t.throws(() => new ServiceHealthServers({ bindAddresses: ['localhost'], health }));
  t.throws(() => new ServiceHealthServers({ bindAddresses: [], health }));
});

t.test('/readyz: 200 while nothing is reported, else 503 with one line per reason; absent when not asked for', async (t) => {
  const health = new ProxyHealth({ healthTimeoutMs: 60_000 });
  let reasons: string[] = ['dns: cluster DNS worker down (exited with code 1)', 'the proxy\'s rules are not synced (see /healthz)'];
  const server = await startHealthServer('127.0.0.1:0', health, () => reasons);
  t.teardown(() => server.close());
  const notReady = await fetch(`${server.url}/readyz`);
  t.equal(notReady.status, 503);
  t.equal(await notReady.text(), `${reasons.join('\n')}\n`);
  reasons = [];
  const ready = await fetch(`${server.url}/readyz`);
  t.equal(ready.status, 200);
  t.equal(await ready.text(), 'ok\n');
  const without = await startHealthServer('127.0.0.1:0', health);
  t.teardown(() => without.close());
  t.equal((await fetch(`${without.url}/readyz`)).status, 404);
});
