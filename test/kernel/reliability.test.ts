// Nothing lost: rules that others flush or edit come back, a kernel rejection leaves the last good
// ruleset serving, SIGKILL and restarts keep traffic (and established connections) flowing,
// SIGTERM leaves the rules in place, and the agent refuses to run without CAP_NET_ADMIN.
import t from 'tap';
import { join } from 'node:path';
import { projectRoot } from '../../src/kernel/native.js';
import { DEFAULT_PROXY_CONFIG } from '../../src/services/config.js';
import { serviceTableOf } from '../../src/services/nftables-plan.js';
import { createTopology, type ProcessHandle, type Topology } from '../../scripts/lib/topology.js';
import { eventually } from '../lib/eventually.js';
import { CLI, kubenft, metricValue, scrape } from '../lib/kubenft.js';
import { ManifestFile, service, slice } from '../lib/manifests.js';

const PODS = [
  { name: 'pod-a', ipv4: '10.244.1.7', ipv6: 'fd00:10:244:1::7' },
  { name: 'pod-b', ipv4: '10.244.2.3', ipv6: 'fd00:10:244:2::3' },
];
const web = [service('web', '10.0.1.1', [{ name: 'http', port: 80, targetPort: 9376 }]), slice('web', [{ name: 'http', port: 9376 }], PODS.map((pod) => ({ ip: pod.ipv4 })))];
const METRICS = 'http://127.0.0.1:10249/metrics';

let topology: Topology;
const manifests = new ManifestFile(web);
t.before(async () => {
  topology = await createTopology({ pods: PODS });
});
t.teardown(async () => {
  await topology?.destroy();
  manifests.remove();
});

const agentArgs = ['node', CLI, '--manifests', manifests.path, '--hostname-override', 'node-1', '--iptables-min-sync-period', '100ms', '--healthz-bind-address', '127.0.0.1:10256', '--metrics-bind-address', '127.0.0.1:10249'];
const startAgent = () => topology.spawn(topology.node, agentArgs);
const answers = async (address = '10.0.1.1', count = 6) => {
  const report = await topology.probe(topology.client, { address, port: 80, protocol: 'tcp', count, timeoutMs: 5000 });
  return PODS.reduce((sum, pod) => sum + (report.counts[pod.name] ?? 0), 0) === count;
};
const nft = (...args: string[]) => topology.exec(topology.node, ['nft', ...args]);
/** A metric of the running agent; NaN while its server is not (yet) answering. */
const metric = async (name: string) => {
  try {
    return metricValue((await scrape(topology, METRICS)).body, name);
  } catch {
    return NaN;
  }
};

let agent: ProcessHandle;
const webTable = serviceTableOf('10.0.1.1', DEFAULT_PROXY_CONFIG);

t.test('drift: a flushed table, a deleted map element and a flushed chain come back', async (t) => {
  agent = startAgent();
  t.ok(await eventually(() => answers()), 'the agent serves');
  t.ok(await eventually(async () => (await metric('kubeproxy_sync_proxy_rules_last_timestamp_seconds')) > 0), 'metrics are up');

  t.equal((await nft('flush', 'table', 'ip', 'kubenft')).code, 0);
  t.ok(await eventually(async () => (await nft('list', 'chain', 'ip', 'kubenft', 'nat-postrouting')).stdout.includes('masquerade'), 10_000), 'the main table\'s rules are back');

  t.equal((await nft('flush', 'table', 'ip', webTable)).code, 0);
  t.ok(await eventually(async () => (await nft('list', 'chain', 'ip', webTable, 'services')).stdout.includes('vmap @service-ips'), 10_000), 'the service table\'s rules are back');
  t.ok(await answers(), 'restored after the flush');

  t.equal((await nft('delete', 'element', 'ip', webTable, 'service-ips', '{ 10.0.1.1 . tcp . 80 }')).code, 0);
  t.ok(await eventually(async () => (await nft('list', 'map', 'ip', webTable, 'service-ips')).stdout.includes('10.0.1.1 . tcp . 80'), 10_000), 'the element is back');

  t.equal((await nft('flush', 'chain', 'ip', webTable, 'svc/default/web/tcp/80')).code, 0);
  t.ok(await eventually(async () => (await nft('list', 'chain', 'ip', webTable, 'svc/default/web/tcp/80')).stdout.includes('dnat to'), 10_000), 'the chain is refilled');
  t.ok(await answers(), 'serving again');

  t.equal((await nft('add', 'table', 'ip', webTable, '{ flags dormant; }')).code, 0);
  t.ok(await eventually(async () => !(await nft('list', 'table', 'ip', webTable)).stdout.includes('dormant'), 10_000), 'a table made dormant is woken');
  t.ok(await answers(), 'serving again');
  t.ok((await metric('kubenft_drift_repairs_total')) >= 5, 'every repair is counted');
});

t.test('a kernel rejection leaves the last good ruleset serving, is counted, and the next sync is full', async (t) => {
  // Another process owns `table ip6 kubenft`: the kernel refuses kubenft's full sync, which touches it.
  const intruder = topology.spawn(topology.node, ['nft', '-i']);
  intruder.child.stdin!.write('add table ip6 kubenft { flags owner; }\n');
  t.ok(await eventually(async () => (await nft('list', 'tables')).stdout.includes('ip6 kubenft')), 'the intruder holds the table');
  const failuresBefore = await metric('kubeproxy_sync_proxy_rules_nftables_sync_failures_total');
  // A first IPv6 service needs the ip6 table: a full sync.
  manifests.write([...web, service('web6', 'fd00:10:96::1', [{ name: 'http', port: 80, targetPort: 9376 }]), slice('web6', [{ name: 'http', port: 9376 }], PODS.map((pod) => ({ ip: pod.ipv6 })), { addressType: 'IPv6' })]);
  t.ok(await eventually(async () => (await metric('kubeproxy_sync_proxy_rules_nftables_sync_failures_total')) > failuresBefore, 10_000), 'the failure is counted');
  t.match(agent.output().stderr, /kernel rejected the transaction at table ip6 kubenft: .*Operation not permitted/, 'the error names the object');
  t.ok(await answers(), 'the previous ruleset still serves');
  await intruder.stop();
  t.ok(await eventually(async () => {
    const report = await topology.probe(topology.client, { address: 'fd00:10:96::1', port: 80, protocol: 'tcp', count: 2, timeoutMs: 1000 });
    return report.results.every((result) => result.ok);
  }, 15_000), 'once the table is free, the retried full sync programs the IPv6 service');
});

t.test('SIGKILL leaves the rules serving; a restarted agent adopts them; established connections survive', async (t) => {
  const client = topology.spawn(topology.client, ['node', join(projectRoot(), 'test/fixtures/echo-client.mjs'), '10.0.1.1', '80']);
  await client.waitForOutput(/connected/, 5000);
  client.child.stdin!.write('before\n');
  await client.waitForOutput(/ before/, 5000);

  process.kill(agent.pid, 'SIGKILL');
  await agent.exited;
  t.ok(await answers(), 'the rules serve with no agent running');
  client.child.stdin!.write('while-down\n');
  await client.waitForOutput(/ while-down/, 5000);

  agent = startAgent();
  t.ok(await eventually(async () => (await metric('kubeproxy_sync_proxy_rules_last_timestamp_seconds')) > 0), 'the new agent synced');
  for (let index = 0; index < 5; index++) {
    client.child.stdin!.write(`after-${index}\n`);
    await client.waitForOutput(new RegExp(` after-${index}`), 5000);
  }
  t.notMatch(client.output().stdout, /closed|error/, 'the long-lived connection kept exchanging data across the restart');
  t.ok(await answers(), 'new connections are served');
  await client.stop();
});

t.test('SIGTERM stops cleanly and leaves the rules in place; --cleanup removes them', async (t) => {
  process.kill(agent.pid, 'SIGTERM');
  const exit = await agent.exited;
  t.equal(exit.code, 0, 'exit code 0');
  t.ok(await answers(), 'the rules still serve after the agent stopped');
  t.equal((await kubenft(topology, ['--cleanup'])).code, 0);
  t.notMatch((await nft('list', 'tables')).stdout, /kubenft/, '--cleanup removed the tables');
});

t.test('without CAP_NET_ADMIN the agent refuses to start, with a clear message', async (t) => {
  const result = await topology.exec(topology.node, ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', 'node', CLI, '--manifests', manifests.path, '--once']);
  t.equal(result.code, 2);
  t.match(result.stderr, /needs CAP_NET_ADMIN/);
});
