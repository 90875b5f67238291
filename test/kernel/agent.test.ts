// The node agent against an API server speaking the real list/watch protocol, programming the real
// kernel in a throwaway namespace, asserted with packets: new services start answering, removed
// endpoints stop being chosen, an API outage keeps traffic flowing, and a 410 relists without
// losing rules. Health and metrics are scraped over HTTP as the syncs happen.
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { projectRoot } from '../../src/kernel/native.js';
import { createTopology, type Topology } from '../../scripts/lib/topology.js';
import { eventually } from '../lib/eventually.js';
import { FakeApiServer } from '../lib/fake-apiserver.js';
import { CLI, metricValue, scrape as scrapeFrom } from '../lib/kubenft.js';
import { node, service, slice } from '../lib/manifests.js';

const PODS = [
  { name: 'pod-a', ipv4: '10.244.1.7' },
  { name: 'pod-b', ipv4: '10.244.2.3' },
  { name: 'pod-c', ipv4: '10.244.3.6' },
];
const API_PORT = 16443;
const hostnamesSlice = (pods = PODS) => slice('hostnames', [{ name: 'http', port: 9376 }], pods.map((pod) => ({ ip: pod.ipv4 })));

let topology: Topology;
let api: FakeApiServer;
const directory = mkdtempSync(join(tmpdir(), 'kubenft-agent-'));

t.before(async () => {
  topology = await createTopology({ pods: PODS });
  api = await FakeApiServer.create(join(directory, 'apiserver.sock'));
  api.upsert(node('node-1', ['192.168.100.1']));
  api.upsert(service('hostnames', '10.0.1.175', [{ name: 'http', port: 80, targetPort: 9376 }]));
  api.upsert(hostnamesSlice());
  const forwarder = topology.spawn(topology.node, ['node', join(projectRoot(), 'test/fixtures/tcp-to-unix.mjs'), String(API_PORT), join(directory, 'apiserver.sock')]);
  await forwarder.waitForOutput(/ready/, 10_000);
  const kubeconfig = api.kubeconfigPath(`http://127.0.0.1:${API_PORT}`);
  const agent = topology.spawn(topology.node, [
    'node', CLI, '--kubeconfig', kubeconfig, '--hostname-override', 'node-1', '--cluster-cidr', '10.244.0.0/16',
    '--healthz-bind-address', '127.0.0.1:10256', '--metrics-bind-address', '127.0.0.1:10249', '--iptables-min-sync-period', '100ms',
  ]);
  // The first file of the suite: its agent starts beside tap's own cold start. What is tested is
  // what it does once it runs, so its first sync is awaited, not timed.
  if (!(await eventually(async () => /synced kind="full"/.test(agent.output().stderr), 120_000))) throw new Error(`the agent never synced: ${agent.output().stderr}`);
});
t.teardown(async () => {
  await topology?.destroy();
  await api?.close();
  rmSync(directory, { recursive: true, force: true });
});

const answeredBy = async (address: string, count = 12) => {
  const report = await topology.probe(topology.client, { address, port: 80, protocol: 'tcp', count, timeoutMs: 1000 });
  return report.counts;
};
const allAnswered = (counts: Record<string, number>, count: number) => PODS.reduce((sum, pod) => sum + (counts[pod.name] ?? 0), 0) === count;

const scrape = (url: string) => scrapeFrom(topology, url);
const metric = metricValue;

t.test('the agent lists, syncs, and serves the existing service', async (t) => {
  t.ok(await eventually(async () => allAnswered(await answeredBy('10.0.1.175', 6), 6)), 'the VIP answers from the endpoints');
  const health = await scrape('http://127.0.0.1:10256/healthz');
  t.equal(health.status, 200, 'healthy after the first sync');
  const metrics = await scrape('http://127.0.0.1:10249/metrics');
  t.ok(metric(metrics.body, 'kubeproxy_sync_proxy_rules_last_timestamp_seconds') > 0, 'last sync timestamp is set');
  t.match(metrics.body, /kubeproxy_sync_full_proxy_rules_duration_seconds_count [1-9]/);
});

t.test('a new Service starts answering; a removed endpoint stops being chosen', async (t) => {
  const before = metric((await scrape('http://127.0.0.1:10249/metrics')).body, 'kubeproxy_sync_proxy_rules_duration_seconds_count');
  api.upsert(service('second', '10.0.2.2', [{ name: 'http', port: 80, targetPort: 9376 }]));
  api.upsert(slice('second', [{ name: 'http', port: 9376 }], [{ ip: PODS[2].ipv4 }]));
  t.ok(await eventually(async () => (await answeredBy('10.0.2.2', 3))['pod-c'] === 3), 'the new service answers');

  api.upsert(hostnamesSlice([PODS[0], PODS[1]]));
  t.ok(await eventually(async () => {
    const counts = await answeredBy('10.0.1.175', 20);
    return counts['pod-c'] === undefined && (counts['pod-a'] ?? 0) + (counts['pod-b'] ?? 0) === 20;
  }), 'the removed endpoint is never chosen');
  const metrics = (await scrape('http://127.0.0.1:10249/metrics')).body;
  t.ok(metric(metrics, 'kubeproxy_sync_proxy_rules_duration_seconds_count') > before, 'sync count moved');
  t.ok(metric(metrics, 'kubeproxy_sync_proxy_rules_service_changes_total') >= 2, 'service changes are counted');
  t.ok(metric(metrics, 'kubeproxy_sync_proxy_rules_endpoint_changes_total') >= 3, 'endpoint changes are counted');
  t.match(metrics, /kubeproxy_sync_partial_proxy_rules_duration_seconds_count [1-9]/, 'changes went through partial syncs');
});

t.test('an externalTrafficPolicy Local load balancer gets a HealthCheckNodePort server', async (t) => {
  api.upsert(service('lb', '10.0.3.3', [{ name: 'http', port: 80, targetPort: 9376, nodePort: 30080 }], {
    type: 'LoadBalancer', externalTrafficPolicy: 'Local', healthCheckNodePort: 30123,
  }));
  api.upsert(slice('lb', [{ name: 'http', port: 9376 }], [{ ip: PODS[0].ipv4, nodeName: 'node-1' }, { ip: PODS[1].ipv4, nodeName: 'node-2' }]));
  let answer = { status: 0, body: '' };
  t.ok(await eventually(async () => {
    answer = await scrape('http://127.0.0.1:30123/').catch(() => answer);
    return answer.status === 200;
  }), 'the health check port answers 200');
  t.same(JSON.parse(answer.body), { service: { namespace: 'default', name: 'lb' }, localEndpoints: 1, serviceProxyHealthy: true });

  api.upsert(slice('lb', [{ name: 'http', port: 9376 }], [{ ip: PODS[1].ipv4, nodeName: 'node-2' }]));
  t.ok(await eventually(async () => (await scrape('http://127.0.0.1:30123/').catch(() => answer)).status === 503), '503 once no endpoint is local');
});

t.test('an API outage keeps traffic flowing; on return the agent converges', async (t) => {
  await api.stop();
  t.ok(allAnswered(await answeredBy('10.0.1.175', 10), 10), 'traffic flows on the last rules while the API is gone');
  await new Promise((resolve) => setTimeout(resolve, 2500));
  t.ok(allAnswered(await answeredBy('10.0.1.175', 10), 10), 'still flowing after the watches failed');
  api.upsert(hostnamesSlice([PODS[2]]));
  await api.start();
  t.ok(await eventually(async () => (await answeredBy('10.0.1.175', 6))['pod-c'] === 6, 45_000), 'the change made during the outage arrives');
});

t.test('410 Gone: the agent relists without losing rules', async (t) => {
  const lists = () => api.requests.filter((request) => !request.watch).length;
  const listsBefore = lists();
  api.compact();
  api.dropConnections();
  api.upsert(hostnamesSlice([PODS[0]]));
  t.ok(allAnswered(await answeredBy('10.0.1.175', 6), 6), 'rules still serve during the relist');
  t.ok(await eventually(async () => (await answeredBy('10.0.1.175', 6))['pod-a'] === 6, 45_000), 'the relisted state is programmed');
  t.ok((await answeredBy('10.0.2.2', 3))['pod-c'] === 3, 'the other service kept its rules');
  t.ok(lists() > listsBefore, 'the informers listed again');
});
