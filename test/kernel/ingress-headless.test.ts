// Headless Services as Ingress backends, end to end: the real agent (--ingress, manifests) in a node
// namespace, hostnames pods behind a headless Service, curl in the client namespace. The proxy picks
// the ready endpoints itself (by the Service's port number or name, the slices giving the endpoint
// port), while the nftables rules still know nothing of headless services.
import t from 'tap';
import { EXTERNAL, createTopology, type ProcessHandle, type Topology } from '../../scripts/lib/topology.js';
import { eventually } from '../lib/eventually.js';
import { CLI } from '../lib/kubenft.js';
import { ManifestFile, service, slice } from '../lib/manifests.js';
import { OUR_CLASS, ingress } from '../lib/ingress-manifests.js';
import { IngressDataplaneUnderTest } from '../lib/ingress-dataplane.js';

const HTTP_PORT = 9376;
const ADMIN_PORT = 9377;
const PODS = [
  { name: 'db-0', ipv4: '10.244.1.5', ports: [HTTP_PORT, ADMIN_PORT], udp: false },
  { name: 'db-1', ipv4: '10.244.2.5', ports: [HTTP_PORT, ADMIN_PORT], udp: false },
];
const headless = (name: string) => service(name, 'None', [{ name: 'http', port: 80, targetPort: 'web' }, { name: 'admin', port: 9000, targetPort: ADMIN_PORT }]);
const ports = [{ name: 'http', port: HTTP_PORT }, { name: 'admin', port: ADMIN_PORT }];

const manifests = new ManifestFile([
  OUR_CLASS,
  headless('db'),
  slice('db', ports, PODS.map((pod) => ({ ip: pod.ipv4 }))),
  headless('idle'),
  slice('idle', ports, PODS.map((pod) => ({ ip: pod.ipv4, ready: false }))),
  ingress('headless', [
    { host: 'db.example.com', paths: [{ path: '/', pathType: 'Prefix', service: 'db', port: 80 }, { path: '/admin', pathType: 'Prefix', service: 'db', port: 'admin' }] },
    { host: 'idle.example.com', paths: [{ path: '/', pathType: 'Prefix', service: 'idle', port: 'http' }] },
  ]),
]);

let topology: Topology;
let agent: ProcessHandle;
const dataplane = new IngressDataplaneUnderTest();

interface Reply {
  status: number;
  pod?: string;
  localPort?: number;
}

/** One curl in the client namespace per URL list, every host sent to the node's address. */
async function curls(urls: string[]): Promise<Reply[]> {
  const result = await topology.exec(topology.client, [
    'curl', '-sS', '--max-time', '10', '--connect-to', `::${EXTERNAL.nodeIPv4}:`, ...urls.flatMap((url) => ['-w', '\n%{http_code}\n', url]),
  ]);
  const lines = result.stdout.split('\n').filter((line) => line !== '');
  const replies: Reply[] = [];
  let body: { pod?: string; localPort?: number } = {};
  for (const line of lines) {
    if (/^\d{3}$/.test(line)) {
      replies.push({ status: Number(line), pod: body.pod, localPort: body.localPort });
      body = {};
    } else {
      try {
        body = JSON.parse(line);
      } catch {
        // The proxy's own answer (503): no pod.
      }
    }
  }
  return replies;
}

t.before(async () => {
  topology = await createTopology({ pods: PODS, serverReadyTimeoutMs: 60_000 });
  agent = topology.spawn(topology.node, [
    'node', CLI, '--manifests', manifests.path, '--hostname-override', 'node-1', '--iptables-min-sync-period', '50ms',
    '--healthz-bind-address', '', '--metrics-bind-address', '', '--ingress', '--ingress-workers', '1', ...dataplane.args,
  ]);
  if (!(await eventually(async () => (await curls(['http://db.example.com/']))[0]?.status === 200, 30_000))) {
    throw new Error(`the proxy does not reach the headless backend: ${JSON.stringify(agent.output())}`);
  }
});
t.teardown(async () => {
  await agent?.stop();
  await dataplane.remove();
  await topology?.destroy();
  manifests.remove();
});

t.test('by port number: the ready endpoints of a headless Service, each on its slice port', async (t) => {
  const replies = await curls(Array.from({ length: 6 }, (_, index) => `http://db.example.com/item/${index}`));
  t.same(replies.map((reply) => reply.status), [200, 200, 200, 200, 200, 200]);
  t.same(new Set(replies.map((reply) => reply.pod)), new Set(['db-0', 'db-1']), 'both pods answer: the proxy picks endpoints per request');
  t.same(new Set(replies.map((reply) => reply.localPort)), new Set([HTTP_PORT]), 'targetPort "web" resolved through the slice\'s port "http"');
});

t.test('by port name: the Service port "admin" reaches the slices\' admin port', async (t) => {
  const replies = await curls(['http://db.example.com/admin/a', 'http://db.example.com/admin/b']);
  t.same(replies.map((reply) => reply.status), [200, 200]);
  t.same(new Set(replies.map((reply) => reply.localPort)), new Set([ADMIN_PORT]));
});

t.test('a headless Service with no ready endpoint: 503', async (t) => {
  const [reply] = await curls(['http://idle.example.com/']);
  t.equal(reply.status, 503);
  t.equal(reply.pod, undefined);
});

t.test('the nftables rules still leave headless services out', async (t) => {
  const ruleset = await topology.exec(topology.node, ['nft', 'list', 'ruleset']);
  t.equal(ruleset.code, 0, ruleset.stderr);
  t.match(ruleset.stdout, /table ip kubenft/, 'the proxy\'s rules are loaded');
  for (const pod of PODS) t.notMatch(ruleset.stdout, pod.ipv4, `no rule names ${pod.ipv4}`);
});
