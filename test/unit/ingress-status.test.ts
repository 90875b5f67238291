// status.loadBalancer.ingress: one writer per cluster, elected over a coordination.k8s.io Lease, no
// flapping between nodes, and a takeover when the writer stops renewing.
import t from 'tap';
import pino from 'pino';
import { IngressStatusWriter, type StatusTarget } from '../../src/ingress/status.js';
import { loadKubeConfig } from '../../src/cluster/kubernetes.js';
import { normalizeIngress } from '../../src/ingress/objects.js';
import { eventually } from '../lib/eventually.js';
import { FakeApiServer } from '../lib/fake-apiserver.js';
import { ingress } from '../lib/ingress-manifests.js';

const LEASE = { namespace: 'kube-system', leaseName: 'kubenft-ingress-status', leaseDurationMs: 900 };
const silent = pino({ level: 'silent' });

t.test('one elected agent writes the status; the others never do; another takes over when it stops', async (t) => {
  const server = await FakeApiServer.create();
  t.teardown(() => server.close());
  server.upsert(ingress('cafe', [{ host: 'cafe.example.com', paths: [{ path: '/', pathType: 'Prefix' }] }]));
  const config = loadKubeConfig({ kubeconfig: server.kubeconfigPath() });
  const writers = ['node-1', 'node-2'].map((identity) => new IngressStatusWriter(config, { ...LEASE, identity }, silent));
  t.teardown(() => Promise.all(writers.map((writer) => writer.stop())));
  /** What each agent's watch would tell it: the Ingress's status as the server holds it now. */
  const targets = (): StatusTarget[] => server.stored('Ingress').map((object) => {
    const info = normalizeIngress(object);
    return { namespace: info.namespace, name: info.name, current: info.statusAddresses };
  });
  const statusOf = () => normalizeIngress(server.stored('Ingress')[0]).statusAddresses;
  const statusWrites = () => server.requests.filter((request) => request.method === 'PUT' && request.path.endsWith('/status')).length;

  for (const writer of writers) writer.start();
  t.ok(await eventually(async () => writers.some((writer) => writer.isLeader), 5_000), 'one agent is elected');
  t.equal(writers.filter((writer) => writer.isLeader).length, 1, 'only one');
  const [leader, follower] = writers[0].isLeader ? writers : [writers[1], writers[0]];
  const addressesOf = (writer: IngressStatusWriter) => (writer === writers[0] ? ['192.168.100.1'] : ['192.168.100.9']);
  // Each agent publishes its own node's address on every sync; only the leader's reaches the status.
  for (let round = 0; round < 5; round++) {
    await Promise.all(writers.map((writer) => writer.publish(targets(), addressesOf(writer))));
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  t.same(statusOf(), addressesOf(leader), 'the status holds the elected agent\'s address');
  t.equal(statusWrites(), 1, 'written once: it does not flap');

  await leader.stop();
  t.ok(await eventually(async () => follower.isLeader, 5_000), 'the other agent takes over once the Lease expires');
  await follower.publish(targets(), addressesOf(follower));
  t.same(statusOf(), addressesOf(follower), 'and writes its address');
  const lease = server.stored('Lease')[0];
  t.equal((lease.spec as { holderIdentity: string }).holderIdentity, follower === writers[0] ? 'node-1' : 'node-2');
});
