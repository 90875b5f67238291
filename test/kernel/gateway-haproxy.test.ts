// The Gateway's HAProxys' own life (--gateway-dataplane=haproxy), as test/kernel/ingress-haproxy.test.ts
// holds the ingress's: one HAProxy per listener address, beside the ingress's own HAProxy in the same
// directory; an agent restart adopts all three with no failed request (the same masters, one
// seamless reload each); an agent killed leaves them serving and `kubenft --cleanup` stops them. The
// real agent in a node namespace, an echo pod, curl in the client namespace. The routing cases
// themselves run in gateway.haproxy.test.ts.
import t from 'tap';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { projectRoot } from '../../src/kernel/native.js';
import { EXTERNAL, createTopology, type ProcessHandle, type Topology } from '../../scripts/lib/topology.js';
import { curlReplies } from '../lib/curl.js';
import { eventually } from '../lib/eventually.js';
import { IngressDataplaneUnderTest } from '../lib/ingress-dataplane.js';
import { CLI, kubenft, scrape } from '../lib/kubenft.js';
import { ManifestFile, service, slice } from '../lib/manifests.js';
import { OUR_CLASS, certificate, ingress, tlsSecret } from '../lib/ingress-manifests.js';
import { gateway, gatewayClass, httpRoute, namespace } from '../lib/gateway-manifests.js';

const PODS = [{ name: 'web', ipv4: '10.244.1.5' }];
const ECHO_PORT = 8080;
const NODE = EXTERNAL.nodeIPv4;

const manifests = new ManifestFile([
  namespace('default'), gatewayClass('kubenft'),
  gateway('gw', [{ name: 'http', from: 'All' }, { name: 'https', protocol: 'HTTPS', hostname: 'secure.example.com', certificate: { name: 'secure' } }]),
  service('web', '10.0.0.10', [{ name: 'http', port: 80, targetPort: ECHO_PORT }]), slice('web', [{ name: 'http', port: ECHO_PORT }], [{ ip: PODS[0].ipv4 }]),
  tlsSecret('secure', certificate('secure.example.com')),
  OUR_CLASS, ingress('beside', [{ host: 'ingress.example.com', paths: [{ path: '/', pathType: 'Prefix', service: 'web', port: 80 }] }]),
  httpRoute('site', { parents: [{ name: 'gw', sectionName: 'http' }, { name: 'gw', sectionName: 'https' }], hostnames: ['site.example.com', 'secure.example.com'], rules: [{ backends: [{ name: 'web' }] }] }),
]);
let topology: Topology;
const dataplane = new IngressDataplaneUnderTest('haproxy');
const agentArgs = [
  'node', CLI, '--manifests', manifests.path, '--hostname-override', 'node-1', '--iptables-min-sync-period', '50ms',
  '--healthz-bind-address', '', '--metrics-bind-address', '127.0.0.1:10249', '--gateway', '--gateway-workers', '1', ...dataplane.gatewayArgs,
  '--ingress', '--ingress-workers', '1', ...dataplane.args, '--ingress-http-address', '0.0.0.0:8080', '--ingress-https-address', '',
];
const startAgent = (): ProcessHandle => topology.spawn(topology.node, agentArgs);
const served = async () => (await curlReplies(topology, NODE, ['http://site.example.com/', 'https://secure.example.com/', 'http://ingress.example.com:8080/'])).map((reply) => reply.status).join(' ') === '200 200 200';
const adopted = async (capability: string) => {
  try {
    return Number(new RegExp(`^kubenft_${capability}_haproxy_reloads_total\\{reason="adopted"\\} (\\d+)$`, 'm').exec((await scrape(topology, 'http://127.0.0.1:10249/metrics')).body)?.[1] ?? 0);
  } catch {
    return NaN;
  }
};

t.before(async () => {
  topology = await createTopology({ pods: PODS, serverReadyTimeoutMs: 60_000 });
  const server = topology.spawn(topology.pods[0].ns, ['node', join(projectRoot(), 'test/fixtures/http-echo.mjs'), 'web', String(ECHO_PORT)]);
  await server.waitForOutput(/ready/, 60_000);
});
t.teardown(async () => {
  await dataplane.remove();
  await topology?.destroy();
  manifests.remove();
});

t.test('an agent restart adopts both listener addresses\' HAProxys and the ingress\'s: no failed request, the same masters', async (t) => {
  const before = startAgent();
  t.ok(await eventually(served, 30_000), `served: ${JSON.stringify(before.output())}`);
  const masters = dataplane.masters().sort();
  t.equal(masters.length, 3, 'one HAProxy per Gateway listener address (HTTP, HTTPS) and the ingress\'s, in one directory');
  const urls = ['http://site.example.com/', 'https://secure.example.com/', 'http://ingress.example.com:8080/'];
  const loop = curlReplies(topology, NODE, ['-H', 'connection: close', ...Array.from({ length: 150 }, (_, index) => urls[index % urls.length])]);
  await new Promise((resolve) => setTimeout(resolve, 200));
  await before.stop();
  t.ok(masters.every((pid) => existsSync(`/proc/${pid}`)), 'the HAProxys outlive the agent');
  const after = startAgent();
  t.teardown(() => after.stop());
  const replies = await loop;
  t.equal(replies.length, 150);
  t.same(replies.filter((reply) => reply.status !== 200).map((reply) => reply.status), [], 'no failed request across the restart');
  t.ok(await eventually(async () => (await adopted('gateway')) === 2 && (await adopted('ingress')) === 1, 20_000), 'the new agent adopted all three (one seamless reload each)');
  t.same(dataplane.masters().sort(), masters, 'the same masters');
});

t.test('an agent killed leaves the HAProxys serving; --cleanup stops all of them', async (t) => {
  const agent = startAgent();
  t.ok(await eventually(served, 30_000));
  const masters = dataplane.masters();
  process.kill(agent.pid, 'SIGKILL');
  await agent.exited;
  t.ok(await served(), 'served with the agent gone');
  const cleanup = await kubenft(topology, ['--cleanup', '--gateway-haproxy-dir', dataplane.dir, '--ingress-haproxy-dir', dataplane.dir]);
  t.equal(cleanup.code, 0, cleanup.stderr);
  t.ok(masters.length === 3 && masters.every((pid) => !existsSync(`/proc/${pid}`)), 'the three HAProxys stopped');
  t.same(dataplane.masters(), [], 'their directories removed');
});
