// The ingress controller end to end: the real agent (--ingress, manifests) in a node namespace,
// pods running HTTP servers, and curl in the client namespace talking to the node's address.
import t from 'tap';
import { join } from 'node:path';
import { projectRoot } from '../src/backend/native.js';
import { EXTERNAL, createTopology, type ProcessHandle, type Topology } from '../scripts/lib/topology.js';
import { eventually } from './lib/eventually.js';
import { CLI, scrape } from './lib/kubenft.js';
import { ManifestFile, service, slice } from './lib/manifests.js';
import { OUR_CLASS, PATH_TABLE, certificate, ingress, tlsSecret } from './lib/ingress-manifests.js';
import type { KubeObject } from '../src/state/cluster-state.js';

const PODS = Array.from({ length: 10 }, (_, index) => ({ name: `pod-${index}`, ipv4: `10.244.${index + 1}.5` }));
const ECHO_PORT = 8080;
const ECHO_PODS = ['web', 'api', 'other'];
const NODE = EXTERNAL.nodeIPv4;
const METRICS = 'http://127.0.0.1:10249/metrics';

const echoService = (name: string, clusterIP: string, pods: string[]) => [
  service(name, clusterIP, [{ name: 'http', port: 80, targetPort: ECHO_PORT }]),
  slice(name, [{ name: 'http', port: ECHO_PORT }], pods.map((pod) => ({ ip: PODS[ECHO_PODS.indexOf(pod)].ipv4 }))),
];
const tea = certificate('tea.example.com');
const coffee = certificate('*.coffee.example.com');

/** Everything but the Ingresses under test: services web, api, other (echo pods), spread (10 pods), empty (none). */
const base = (): unknown[] => [
  OUR_CLASS,
  { apiVersion: 'networking.k8s.io/v1', kind: 'IngressClass', metadata: { name: 'nginx' }, spec: { controller: 'k8s.io/ingress-nginx' } },
  ...echoService('web', '10.0.0.10', ['web']), ...echoService('api', '10.0.0.11', ['api']), ...echoService('other', '10.0.0.12', ['other']),
  service('spread', '10.0.0.13', [{ name: 'http', port: 80, targetPort: 9376 }]),
  slice('spread', [{ name: 'http', port: 9376 }], PODS.map((pod) => ({ ip: pod.ipv4 }))),
  service('empty', '10.0.0.14', [{ name: 'http', port: 80 }]),
  tlsSecret('tea', tea), tlsSecret('coffee', coffee),
];

const SERVICES = ['web', 'api', 'other'];
const tableIngresses = PATH_TABLE.map(([, rules], row) => ingress(`row-${row}`, [{ host: `row${row}.table`, paths: rules.map(([pathType, path], index) => ({ path, pathType, service: SERVICES[index] })) }]));

const mainIngresses = (): unknown[] => [
  ingress('hosts', [
    { host: 'foo.bar.com', paths: [{ path: '/', pathType: 'Prefix', service: 'web' }] },
    { host: '*.bar.com', paths: [{ path: '/', pathType: 'Prefix', service: 'api' }] },
    { host: 'spread.example.com', paths: [{ path: '/', pathType: 'Prefix', service: 'spread' }] },
    { host: 'empty.example.com', paths: [{ path: '/', pathType: 'Prefix', service: 'empty' }] },
    { host: 'ws.example.com', paths: [{ path: '/ws', pathType: 'Prefix', service: 'web' }] },
  ]),
  ingress('tls', [
    { host: 'tea.example.com', paths: [{ path: '/', pathType: 'Prefix', service: 'web' }] },
    { host: 'x.coffee.example.com', paths: [{ path: '/', pathType: 'Prefix', service: 'api' }] },
  ], { spec: { tls: [{ hosts: ['tea.example.com'], secretName: 'tea' }, { hosts: ['*.coffee.example.com'], secretName: 'coffee' }] } }),
  ingress('no-redirect', [{ host: 'plain.example.com', paths: [{ path: '/', pathType: 'Prefix', service: 'other' }] }], {
    spec: { tls: [{ hosts: ['plain.example.com'] }] }, metadata: { annotations: { 'kubenft.io/ssl-redirect': 'false' } },
  }),
  // The seed's example, in the old API: converted, served by the legacy annotation.
  {
    apiVersion: 'extensions/v1beta1', kind: 'Ingress', metadata: { name: 'cafe-ingress', namespace: 'default', annotations: { 'kubernetes.io/ingress.class': 'kubenft' } },
    spec: { rules: [{ host: 'cafe.example.com', http: { paths: [{ path: '/tea', backend: { serviceName: 'web', servicePort: 80 } }, { path: '/coffee', backend: { serviceName: 'api', servicePort: 'http' } }] } }] },
  },
  ingress('theirs', [{ host: 'nginx.example.com', paths: [{ path: '/', pathType: 'Prefix' }] }], { spec: { ingressClassName: 'nginx' } }),
  ingress('default', [], { spec: { rules: undefined, defaultBackend: { service: { name: 'spread', port: { number: 80 } } } } }),
  ...tableIngresses,
];

let topology: Topology;
let agent: ProcessHandle;
const manifests = new ManifestFile([...base(), ...mainIngresses()]);

t.before(async () => {
  topology = await createTopology({ pods: PODS });
  await Promise.all(ECHO_PODS.map(async (name, index) => {
    const server = topology.spawn(topology.pods[index].ns, ['node', join(projectRoot(), 'test/fixtures/http-echo.mjs'), name, String(ECHO_PORT)]);
    await server.waitForOutput(/ready/, 10_000);
  }));
  agent = topology.spawn(topology.node, [
    'node', CLI, '--manifests', manifests.path, '--hostname-override', 'node-1', '--iptables-min-sync-period', '50ms',
    '--healthz-bind-address', '127.0.0.1:10256', '--metrics-bind-address', '127.0.0.1:10249',
    '--ingress', '--ingress-workers', '2', '--ingress-max-body-size', '100000', '--ingress-max-header-size', '4096',
  ]);
  t.ok(await eventually(async () => (await curl(['http://foo.bar.com/'])).status === 200, 30_000), `the proxy answers: ${JSON.stringify(agent.output())}`);
});
t.teardown(async () => {
  await agent?.stop();
  await topology?.destroy();
  manifests.remove();
});

interface Reply {
  status: number;
  body: string;
  headers: string;
  pod?: string;
  echo?: { pod: string; method: string; url: string; version: string; headers: string[]; size: number };
}

const MARK = '@@kubenft-status@@';

/** One curl in the client namespace, every host name sent to the node's address; one reply per URL. */
async function curls(args: string[]): Promise<Reply[]> {
  const result = await topology.exec(topology.client, [
    'curl', '-sS', '--max-time', '10', '--connect-to', `::${NODE}:`, '-k', '-D', '-', '-w', `\n${MARK}%{http_code}\n`, ...args,
  ]);
  const replies = result.stdout.split(`${MARK}`).slice(0, -1);
  const codes = [...result.stdout.matchAll(new RegExp(`${MARK}(\\d+)`, 'g'))].map((match) => Number(match[1]));
  return replies.map((text, index) => {
    const cleaned = text.replace(/^\d+\n/, '');
    const split = cleaned.indexOf('\r\n\r\n');
    const headers = split < 0 ? cleaned : cleaned.slice(0, split);
    const body = split < 0 ? '' : cleaned.slice(split + 4).replace(/\n$/, '');
    let echo;
    let pod;
    try {
      const parsed = JSON.parse(body);
      pod = parsed.pod;
      if (parsed.method) echo = parsed;
    } catch {
      // Not a pod's reply (404, 503, redirect): no pod.
    }
    return { status: codes[index], body, headers, pod, echo };
  });
}

const curl = async (args: string[]) => (await curls(args))[0] ?? { status: 0, body: '', headers: '' };
const header = (reply: Reply, name: string) => new RegExp(`^${name}: (.*)\\r?$`, 'im').exec(reply.headers)?.[1];
const echoed = (reply: Reply, name: string) => {
  const headers = reply.echo?.headers ?? [];
  const values = [];
  for (let index = 0; index < headers.length; index += 2) if (headers[index].toLowerCase() === name) values.push(headers[index + 1]);
  return values.join(', ');
};

t.test('the Ingress docs path table, row by row, over HTTP', async (t) => {
  const urls = PATH_TABLE.map(([, , request], row) => `http://row${row}.table${request}`);
  const replies = await curls(urls);
  PATH_TABLE.forEach(([name, , , expected], row) => {
    // No match: the cluster's default backend (the Ingress "default", service spread) answers.
    t.match(replies[row]?.pod, expected === 'none' ? /^pod-\d$/ : new RegExp(`^${expected}$`), `${name}: ${urls[row]}`);
  });
});
