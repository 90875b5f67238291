// The shipped agent is dist/bundle/main.js (scripts/bundle.mjs): what the bundle must keep working
// that the unbundled build does by file layout. Its chunks load lazily (client-node when the API is
// the source), the cluster DNS worker thread and the ingress proxy's cluster worker are started from
// files beside it, and the addon and package.json are found from its directory. The agent runs
// against an API server speaking list/watch, with every one of those on, and each is asserted from
// outside: a VIP answers from its pods, dig gets the service's name, the ingress listener answers.
import t from 'tap';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { projectRoot } from '../../src/kernel/native.js';
import { createTopology, type ProcessHandle, type Topology } from '../../scripts/lib/topology.js';
import { eventually } from '../lib/eventually.js';
import { FakeApiServer } from '../lib/fake-apiserver.js';
import { scrape } from '../lib/kubenft.js';
import { node, service, slice } from '../lib/manifests.js';

const BUNDLE = join(projectRoot(), 'dist/bundle/main.js');
const PODS = [{ name: 'pod-a', ipv4: '10.244.1.7' }, { name: 'pod-b', ipv4: '10.244.2.3' }];
const VIP = '10.0.1.175';
const LINK_LOCAL = '169.254.20.10';
const API_PORT = 16445;
const INGRESS_HTTP = '127.0.0.1:18081';

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root to create network namespaces');
} else {
  let topology: Topology;
  let api: FakeApiServer;
  let agent: ProcessHandle;
  const directory = mkdtempSync(join(tmpdir(), 'kubenft-bundle-'));
  t.before(async () => {
    topology = await createTopology({ pods: PODS });
    api = await FakeApiServer.create(join(directory, 'apiserver.sock'));
    for (const object of [
      node('node-1', ['192.168.100.1']), { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'default' } },
      service('hostnames', VIP, [{ name: 'http', port: 80, targetPort: 9376 }]),
      slice('hostnames', [{ name: 'http', port: 9376 }], PODS.map((pod) => ({ ip: pod.ipv4 }))),
    ]) api.upsert(object);
    const forwarder = topology.spawn(topology.node, ['node', join(projectRoot(), 'test/fixtures/tcp-to-unix.mjs'), String(API_PORT), join(directory, 'apiserver.sock')]);
    await forwarder.waitForOutput(/ready/, 10_000);
    agent = topology.spawn(topology.node, ['node', BUNDLE, '--kubeconfig', api.kubeconfigPath(`http://127.0.0.1:${API_PORT}`), '--hostname-override', 'node-1',
      '--cluster-cidr', '10.244.0.0/16', '--healthz-bind-address', '', '--metrics-bind-address', '', '--logging-format=json',
      '--cluster-dns', LINK_LOCAL, '--dns-upstream', '127.0.0.1:5353',
      '--ingress', '--ingress-dataplane', 'builtin', '--ingress-http-address', INGRESS_HTTP, '--ingress-https-address', '127.0.0.1:18444', '--ingress-workers', '1']);
  });
  t.teardown(async () => {
    await agent?.stop();
    await topology?.destroy();
    await api?.close();
    rmSync(directory, { recursive: true, force: true });
  });

  t.test('--version reads package.json from the bundle\'s directory', async (t) => {
    const { version } = JSON.parse(readFileSync(join(projectRoot(), 'package.json'), 'utf8')) as { version: string };
    const result = await topology.exec(topology.node, ['node', BUNDLE, '--version']);
    t.equal(result.stdout, `kubenft ${version}\n`);
  });

  t.test('the agent lists from the API server (client-node\'s lazy chunk) and its VIP answers', async (t) => {
    const answered = await eventually(async () => {
      const report = await topology.probe(topology.client, { address: VIP, port: 80, protocol: 'tcp', count: 4, timeoutMs: 1000 });
      return PODS.reduce((sum, pod) => sum + (report.counts[pod.name] ?? 0), 0) === 4;
    }, 30_000);
    t.ok(answered, `the VIP answers from its pods: ${agent.output().stderr.slice(-2000)}`);
  });

  t.test('the cluster DNS worker thread, started from the file beside the bundle, answers', async (t) => {
    const name = 'hostnames.default.svc.cluster.local';
    const answer = async () => (await topology.exec(topology.client, ['dig', '+time=2', '+tries=1', '+short', `@${LINK_LOCAL}`, name, 'A'])).stdout.trim();
    t.ok(await eventually(async () => (await answer()) === VIP, 30_000), `dig ${name}: ${agent.output().stderr.slice(-2000)}`);
  });

  t.test('the ingress proxy\'s cluster worker, forked from the file beside the bundle, answers', async (t) => {
    // No Ingress routes this host: the worker's own 404 says it is up.
    const answered = await eventually(async () => (await scrape(topology, `http://${INGRESS_HTTP}/`).catch(() => ({ status: 0 }))).status === 404, 30_000);
    t.ok(answered, `the ingress listener answers 404 for an unrouted host: ${agent.output().stderr.slice(-2000)}`);
  });
}
