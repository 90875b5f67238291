// A service above LARGE_SERVICE_ENDPOINTS chooses its endpoint through a map of its own (one lookup
// per new connection, whatever the endpoint count): every endpoint is reachable, the choice is
// uniform, and a partial sync that changes the endpoint list rewrites the map.
import t from 'tap';
import { DEFAULT_PROXY_CONFIG } from '../../src/services/config.js';
import { serviceTableOf } from '../../src/services/nftables-plan.js';
import { createTopology, type Topology } from '../../scripts/lib/topology.js';
import { eventually } from '../lib/eventually.js';
import { CHI_SQUARE_CRITICAL_P001, CLI, chiSquareUniform } from '../lib/kubenft.js';
import { ManifestFile, service, slice } from '../lib/manifests.js';

const PODS = [{ name: 'pod-a', ipv4: '10.244.1.2' }, { name: 'pod-b', ipv4: '10.244.2.2' }, { name: 'pod-c', ipv4: '10.244.3.2' }];
const ENDPOINTS = DEFAULT_PROXY_CONFIG.largeServiceEndpoints + 6;
/** Endpoint i lives on pod i % 3 as a secondary address: the hostnames server reports which address it was reached at. */
const endpointAddress = (index: number) => `10.244.${(index % 3) + 1}.${10 + Math.floor(index / 3)}`;

let topology: Topology;
const manifests = new ManifestFile();
t.before(async () => {
  topology = await createTopology({ pods: PODS });
  for (let index = 0; index < ENDPOINTS; index++) {
    const pod = topology.pods[index % 3];
    await topology.exec(pod.ns, ['ip', 'addr', 'add', `${endpointAddress(index)}/32`, 'dev', 'eth0']);
    await topology.exec(topology.node, ['ip', 'route', 'add', `${endpointAddress(index)}/32`, 'dev', pod.nodeInterface]);
  }
});
t.teardown(async () => {
  await topology?.destroy();
  manifests.remove();
});

const big = (count: number) => [
  service('big', '10.0.5.5', [{ port: 80, targetPort: 9376 }]),
  slice('big', [{ port: 9376 }], Array.from({ length: count }, (_, index) => ({ ip: endpointAddress(index) }))),
];

t.test(`${ENDPOINTS} endpoints: chosen through a map, uniformly, every one reachable`, async (t) => {
  manifests.write(big(ENDPOINTS));
  const agent = topology.spawn(topology.node, ['node', CLI, '--manifests', manifests.path, '--iptables-min-sync-period', '100ms', '--healthz-bind-address', '', '--metrics-bind-address', '']);
  t.teardown(() => agent.stop());
  t.ok(await eventually(async () => (await topology.exec(topology.node, ['nft', 'list', 'chain', 'ip', serviceTableOf('10.0.5.5', DEFAULT_PROXY_CONFIG), 'svc/default/big/tcp/80'])).stdout.includes(`numgen random mod ${ENDPOINTS} map`)), 'the chain picks through the map');

  const connections = ENDPOINTS * 15;
  const report = await topology.probe(topology.client, { address: '10.0.5.5', port: 80, protocol: 'tcp', count: connections, timeoutMs: 2000 });
  const perEndpoint = new Map<string, number>();
  for (const result of report.results) if (result.ok) perEndpoint.set(result.local, (perEndpoint.get(result.local) ?? 0) + 1);
  t.equal(perEndpoint.size, ENDPOINTS, 'every endpoint answered');
  const counts = Array.from({ length: ENDPOINTS }, (_, index) => perEndpoint.get(endpointAddress(index)) ?? 0);
  const chiSquare = chiSquareUniform(counts);
  t.ok(chiSquare < CHI_SQUARE_CRITICAL_P001[ENDPOINTS - 1], `chi-square ${chiSquare.toFixed(1)} over ${ENDPOINTS} endpoints is consistent with uniform`);

  manifests.write(big(ENDPOINTS - 1));
  t.ok(await eventually(async () => (await topology.exec(topology.node, ['nft', 'list', 'chain', 'ip', serviceTableOf('10.0.5.5', DEFAULT_PROXY_CONFIG), 'svc/default/big/tcp/80'])).stdout.includes(`mod ${ENDPOINTS - 1} map`)), 'a partial sync rewrote the rule');
  const after = await topology.probe(topology.client, { address: '10.0.5.5', port: 80, protocol: 'tcp', count: ENDPOINTS * 3, timeoutMs: 2000 });
  t.notOk(after.results.some((result) => result.ok && result.local === endpointAddress(ENDPOINTS - 1)), 'the removed endpoint is never chosen');
  t.ok(after.results.every((result) => result.ok), 'every connection is answered');
});
