// The ingress controller end to end: the real agent (--ingress, manifests) in a node namespace,
// pods running HTTP servers, and curl in the client namespace talking to the node's address.
import t from 'tap';
import { join } from 'node:path';
import { projectRoot } from '../../src/kernel/native.js';
import { EXTERNAL, createTopology, type ProcessHandle, type Topology } from '../../scripts/lib/topology.js';
import { eventually } from '../lib/eventually.js';
import { CLI, kubenft, scrape } from '../lib/kubenft.js';
import { ManifestFile, service, slice } from '../lib/manifests.js';
import { OUR_CLASS, PATH_TABLE, certificate, ingress, tlsSecret } from '../lib/ingress-manifests.js';
import type { KubeObject } from '../../src/cluster/cluster-state.js';
import { rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { ON_HAPROXY, IngressDataplaneUnderTest } from '../lib/ingress-dataplane.js';
import { curlReplies, echoed, header } from '../lib/curl.js';

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
const dataplane = new IngressDataplaneUnderTest();
const manifests = new ManifestFile([...base(), ...mainIngresses()]);

t.before(async () => {
  topology = await createTopology({ pods: PODS, serverReadyTimeoutMs: 60_000 });
  await Promise.all(ECHO_PODS.map(async (name, index) => {
    const server = topology.spawn(topology.pods[index].ns, ['node', join(projectRoot(), 'test/fixtures/http-echo.mjs'), name, String(ECHO_PORT)]);
    await server.waitForOutput(/ready/, 60_000);
  }));
  agent = topology.spawn(topology.node, [
    'node', CLI, '--manifests', manifests.path, '--hostname-override', 'node-1', '--iptables-min-sync-period', '50ms',
    '--healthz-bind-address', '127.0.0.1:10256', '--metrics-bind-address', '127.0.0.1:10249',
    '--ingress', '--ingress-workers', '2', '--ingress-max-body-size', '100000', '--ingress-max-header-size', '4096', ...dataplane.args,
  ]);
  if (!(await eventually(async () => (await curl(['http://foo.bar.com/'])).status === 200, 30_000))) throw new Error(`the proxy does not answer: ${JSON.stringify(agent.output())}`);
});
t.teardown(async () => {
  await agent?.stop();
  await dataplane.remove();
  await topology?.destroy();
  manifests.remove();
});

const curls = (args: string[]) => curlReplies(topology, NODE, args);
const curl = async (args: string[]) => (await curls(args))[0] ?? { status: 0, body: '', headers: '' };

t.test('the Ingress docs path table, row by row, over HTTP', async (t) => {
  const urls = PATH_TABLE.map(([, , request], row) => `http://row${row}.table${request}`);
  const replies = await curls(urls);
  PATH_TABLE.forEach(([name, , , expected], row) => {
    // No match: the cluster's default backend (the Ingress "default", service spread) answers.
    t.match(replies[row]?.pod, expected === 'none' ? /^pod-\d$/ : new RegExp(`^${expected}$`), `${name}: ${urls[row]}`);
  });
});

t.test('hosts: exact, one-label wildcard, case and port ignored; the default backend; 404 and 503', async (t) => {
  const [exact, upper, wildcard, deep, bare, unknown, empty, theirs] = await curls([
    'http://foo.bar.com/', 'http://FOO.BAR.com:80/', 'http://baz.bar.com/', 'http://a.baz.bar.com/', 'http://bar.com/',
    'http://unknown.example/any', 'http://empty.example.com/', 'http://nginx.example.com/',
  ]);
  t.equal(exact.pod, 'web');
  t.equal(upper.pod, 'web', 'hosts compare case-insensitively, with or without the port');
  t.equal(wildcard.pod, 'api', '*.bar.com');
  t.match(deep.pod, /^pod-/, 'a wildcard is one label: the default backend');
  t.match(bare.pod, /^pod-/, 'nor the bare domain');
  t.match(unknown.pod, /^pod-/, 'an unknown host: the default backend');
  t.equal(empty.status, 503, 'no ready endpoint: 503');
  t.match(theirs.pod, /^pod-/, 'another controller\'s Ingress is not served (its host falls to the default backend)');
});

t.test('the seed\'s extensions/v1beta1 cafe-ingress, converted: /tea and /coffee', async (t) => {
  const [teaReply, coffeeReply] = await curls(['http://cafe.example.com/tea', 'http://cafe.example.com/coffee/latte']);
  t.equal(teaReply.pod, 'web');
  t.equal(coffeeReply.pod, 'api', 'servicePort by name');
});

t.test('100 requests on fresh connections reach all 10 endpoints', async (t) => {
  const replies = await curls(['-H', 'connection: close', ...Array.from({ length: 100 }, () => 'http://spread.example.com/')]);
  t.equal(replies.filter((reply) => reply.status === 200).length, 100);
  t.same(new Set(replies.map((reply) => reply.pod)).size, 10, 'every pod answered');
});

t.test('method, the normalized path and the query byte for byte, body and Host unchanged, forwarded headers set, hop-by-hop removed; Date, length and Server', async (t) => {
  const target = '/echo/a%2Fb;p=1/./x?q=%20&r=a+b';
  const reply = await curl(['--path-as-is', '-X', 'PUT', '--data-binary', 'hello', '-H', 'x-forwarded-for: 6.6.6.6', '-H', 'connection: keep-alive, x-private', '-H', 'x-private: secret', '-H', 'x-kept: yes', `http://foo.bar.com:80${target}`]);
  t.equal(reply.echo?.method, 'PUT');
  t.equal(reply.echo?.url, '/echo/a%2Fb;p=1/x?q=%20&r=a+b', 'the path normalized (the . segment gone, the encoded slash kept), the query untouched');
  t.equal(reply.echo?.size, 5, 'the body');
  t.equal(echoed(reply, 'host'), 'foo.bar.com', 'Host as sent (curl leaves out the default port)');
  t.equal(echoed(reply, 'x-forwarded-for'), EXTERNAL.clientIPv4, 'X-Forwarded-For: the client (a forged one replaced)');
  t.equal(echoed(reply, 'x-real-ip'), EXTERNAL.clientIPv4);
  t.equal(echoed(reply, 'x-forwarded-proto'), 'http');
  t.equal(echoed(reply, 'x-forwarded-host'), 'foo.bar.com');
  t.equal(echoed(reply, 'x-private'), '', 'a header the Connection header names is hop-by-hop');
  t.equal(echoed(reply, 'x-kept'), 'yes');
  t.equal(echoed(reply, 'user-agent').startsWith('curl/'), true, 'User-Agent unchanged');
  t.equal(header(reply, 'server'), 'kubenft', 'a Server header');
  t.ok(header(reply, 'date'), 'a Date header');
  t.ok(header(reply, 'content-length') ?? header(reply, 'transfer-encoding'), 'a length or chunking');
});

t.test('HTTP/2 over TLS (ALPN), SNI picks the certificate (two Secrets and the default one)', async (t) => {
  const issuer = async (name: string, extra: string[] = []) => {
    const result = await topology.exec(topology.client, ['curl', '-sS', '-k', '-v', '-o', '/dev/null', '--connect-to', `::${NODE}:`, ...extra, `https://${name}/`]);
    return /subject: (.*)/.exec(result.stderr)?.[1] ?? result.stderr;
  };
  t.match(await issuer('tea.example.com'), /CN=tea\.example\.com/);
  t.match(await issuer('x.coffee.example.com'), /CN=\*\.coffee\.example\.com/, 'a wildcard certificate');
  t.match(await issuer('unknown.example'), /kubenft ingress default certificate/, 'unknown SNI: the default certificate');
  const h2 = await curl(['--http2', 'https://tea.example.com/h2?x=1']);
  t.equal(h2.pod, 'web');
  t.match(h2.headers, /^HTTP\/2 200/, 'answered over HTTP/2');
  t.equal(echoed(h2, 'x-forwarded-proto'), 'https');
  t.equal(echoed(h2, 'host'), 'tea.example.com', ':authority becomes Host');
  t.equal(h2.echo?.url, '/h2?x=1');
  const wildcard = await curl(['--http1.1', 'https://x.coffee.example.com/']);
  t.equal(wildcard.pod, 'api');
  t.match(wildcard.headers, /^HTTP\/1\.1 200/, 'HTTP/1.1 over TLS too');
});

t.test('plain HTTP to a TLS host redirects (308) unless the Ingress opts out', async (t) => {
  const [redirected, optedOut] = await curls(['http://tea.example.com/a?b=c', 'http://plain.example.com/']);
  t.equal(redirected.status, 308);
  t.equal(header(redirected, 'location'), 'https://tea.example.com/a?b=c');
  t.equal(optedOut.pod, 'other');
});

t.test('explain --ingress --url names where a request goes, and the proxy sends it there', async (t) => {
  const ipOf = (pod: string) => PODS[pod.startsWith('pod-') ? Number(pod.slice(4)) : ECHO_PODS.indexOf(pod)].ipv4;
  const urls = [
    'http://foo.bar.com/', 'http://FOO.bar.com:80/x', 'http://baz.bar.com/', 'http://a.baz.bar.com/', 'http://unknown.example/any', 'http://empty.example.com/',
    'http://cafe.example.com/tea', 'http://cafe.example.com/coffee/latte', 'http://cafe.example.com/x/../coffee', 'http://cafe.example.com/%74ea',
    'http://tea.example.com/a?b=c', 'https://tea.example.com/a', 'http://plain.example.com/', 'http://cafe.example.com/tea%2F..%2Fcoffee',
    ...PATH_TABLE.map(([, , request], row) => `http://row${row}.table${request}`),
  ];
  const replies = await curls(['--path-as-is', ...urls]);
  for (const [index, url] of urls.entries()) {
    const result = await kubenft(topology, ['explain', '--manifests', manifests.path, '--hostname-override', 'node-1', '--ingress', ...dataplane.args, '--url', url, '--json']);
    t.equal(result.code, 0, result.stderr);
    const explanation = JSON.parse(result.stdout) as { dataplane: string; outcome: string; endpoints?: string[] };
    t.equal(explanation.dataplane, dataplane.name, `${url}: the dataplane named`);
    const reply = replies[index];
    if (reply.status === 200) t.ok(explanation.endpoints?.some((endpoint) => endpoint.startsWith(`${ipOf(reply.pod!)}:`)), `${url}: ${reply.pod} answered, one of the endpoints explain names (${explanation.outcome})`);
    else t.match(explanation.outcome, new RegExp(`^${reply.status}\\b|\\(${reply.status}\\)$`), `${url}: ${reply.status}, as explain says (${explanation.outcome})`);
  }
});

t.test('malformed requests get a 400 (or 431), and the workers live on', async (t) => {
  const raw = async (text: string) => {
    const script = `const s = require('net').connect(80, ${JSON.stringify(NODE)}, () => s.write(${JSON.stringify(text)})); s.setTimeout(5000, () => s.destroy()); let out = ''; s.on('data', (d) => out += d); s.on('close', () => console.log(out.split('\\r\\n')[0])); s.on('error', (e) => console.log('error ' + e.code));`;
    return (await topology.exec(topology.client, ['node', '-e', script])).stdout.trim();
  };
  // A reason phrase's case is the proxy's to choose (HAProxy's parser says "Bad request").
  t.match(await raw('GARBAGE\r\n\r\n'), /^HTTP\/1\.1 400 Bad Request$/i);
  t.match(await raw('GET / HTTP/1.1\r\nhost: foo.bar.com\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n'), /^HTTP\/1\.1 400 Bad Request$/i, 'two lengths');
  t.equal(await raw(`GET / HTTP/1.1\r\nhost: foo.bar.com\r\nx-big: ${'a'.repeat(5000)}\r\n\r\n`), 'HTTP/1.1 431 Request Header Fields Too Large', 'headers over --ingress-max-header-size');
  t.equal(await raw('GET http://foo.bar.com/abs HTTP/1.1\r\nhost: foo.bar.com\r\nconnection: close\r\n\r\n'), 'HTTP/1.1 200 OK', 'an absolute-form target is served');
  const tooLarge = await curl(['--data-binary', `@-`, '-H', 'content-length: 200000', 'http://foo.bar.com/']);
  t.equal(tooLarge.status, 413, 'a body over --ingress-max-body-size');
  // A chunked body declares no length: the built-in counts it as it streams (nginx's client_max_body_size
  // does too) and cuts it with a 413; HAProxy 2.6 has no such limit (a Lua filter could count it, at twice
  // the instructions per request for every request: README, Known limits), so the backend gets it whole.
  const body = join(tmpdir(), `kubenft-chunked-body-${process.pid}`);
  writeFileSync(body, 'x'.repeat(200_000));
  t.teardown(() => rmSync(body, { force: true }));
  const chunked = await curl(['--data-binary', `@${body}`, '-H', 'transfer-encoding: chunked', 'http://foo.bar.com/']);
  if (ON_HAPROXY) t.equal(chunked.echo?.size, 200_000, 'HAProxy: a chunked body over --ingress-max-body-size reaches the backend');
  else t.equal(chunked.status, 413, 'a chunked body over --ingress-max-body-size is cut with a 413');
  t.equal((await curl(['http://foo.bar.com/'])).status, 200, 'still serving');
});

/** A long-lived upgraded connection through the proxy; lines written come back from the pod. */
function upgradeClient(host: string, path: string): ProcessHandle {
  return topology.spawn(topology.client, ['node', join(projectRoot(), 'test/fixtures/upgrade-client.mjs'), NODE, '80', host, path]);
}

t.test('a WebSocket upgrade is tunnelled both ways and survives route changes; certificates rotate; endpoints swap with no failed request', async (t) => {
  const socket = upgradeClient('ws.example.com', '/ws/chat');
  await socket.waitForOutput(/HTTP\/1\.1 101/, 10_000);
  socket.child.stdin!.write('before\n');
  await socket.waitForOutput(/web before/, 5_000);

  // A route change: ws.example.com now goes to api, tea.example.com gets a new certificate, and
  // the Ingress "hosts" loses its web backend for spread's ten pods replaced by two.
  const rotated = certificate('rotated.tea.example.com', 'tea.example.com');
  const changed = (): unknown[] => [
    ...base().filter((object) => (object as KubeObject).metadata?.name !== 'tea' && (object as KubeObject).kind !== 'EndpointSlice' || (object as KubeObject).metadata?.name !== 'spread-ipv4' && (object as KubeObject).kind === 'EndpointSlice'),
    tlsSecret('tea', rotated),
    slice('spread', [{ name: 'http', port: 9376 }], PODS.slice(0, 2).map((pod) => ({ ip: pod.ipv4 }))),
    ...mainIngresses().map((object) => ((object as KubeObject).metadata?.name === 'hosts'
      ? ingress('hosts', [{ host: 'ws.example.com', paths: [{ path: '/ws', pathType: 'Prefix', service: 'api' }] }, { host: 'spread.example.com', paths: [{ path: '/', pathType: 'Prefix', service: 'spread' }] }])
      : object)),
  ];
  // A bounded request loop runs across the endpoint swap: not one request may fail.
  const loop = curls(['-H', 'connection: close', ...Array.from({ length: 150 }, () => 'http://spread.example.com/')]);
  await new Promise((resolve) => setTimeout(resolve, 300));
  manifests.write(changed());
  t.ok(await eventually(async () => (await curl(['http://ws.example.com/ws/x'])).pod === 'api', 10_000), 'the new route is in force');
  const replies = await loop;
  t.equal(replies.length, 150);
  t.same(replies.filter((reply) => reply.status !== 200).map((reply) => reply.status), [], 'no failed request across the endpoint change');
  const after = await curls(['-H', 'connection: close', ...Array.from({ length: 20 }, () => 'http://spread.example.com/')]);
  t.same(new Set(after.map((reply) => reply.pod)), new Set(['pod-0', 'pod-1']), 'removed endpoints get no new requests');

  socket.child.stdin!.write('after\n');
  await socket.waitForOutput(/web after/, 5_000);
  t.pass('the open WebSocket still reaches its pod after the route change');
  const subject = await topology.exec(topology.client, ['curl', '-sS', '-k', '-v', '-o', '/dev/null', '--connect-to', `::${NODE}:`, 'https://tea.example.com/']);
  t.match(subject.stderr, /subject: CN=rotated\.tea\.example\.com/, 'the rotated certificate is served');
  await socket.stop();
});

t.test('an invalid Ingress is reported by name and skipped alone; metrics count requests by Ingress', async (t) => {
  const bad = ingress('bad-host', [{ host: 'Bad_Host', paths: [{ path: '/', pathType: 'Prefix' }] }]);
  const missing = ingress('bad-backend', [{ host: 'missing.example.com', paths: [{ path: '/', pathType: 'Prefix', service: 'nope' }] }]);
  const extra = ingress('extra', [{ host: 'extra.example.com', paths: [{ path: '/', pathType: 'Prefix', service: 'other' }] }]);
  manifests.write([...base(), ...mainIngresses(), bad, missing, extra]);
  t.ok(await eventually(async () => (await curl(['http://extra.example.com/'])).pod === 'other', 10_000), 'the valid Ingress beside them is served');
  const logged = (pattern: RegExp) => eventually(async () => pattern.test(agent.output().stderr), 5_000);
  t.ok(await logged(/Ingress default\/bad-host: spec\.rules\[0\]\.host \\?"Bad_Host\\?" must be a lower-case DNS-1123 subdomain/), 'the invalid Ingress is named, with the reason');
  t.ok(await logged(/ingress: skipped Ingress default\/bad-backend: service nope not found/), 'the Ingress with an unknown backend too');
  t.match((await curl(['http://missing.example.com/'])).pod, /^pod-/, 'the skipped Ingress\'s host is not routed');
  const metrics = await scrape(topology, METRICS);
  t.match(metrics.body, /kubenft_ingress_requests_total\{ingress="default\/hosts",host="foo\.bar\.com",path="\/",status="200"\} \d+/);
  t.match(metrics.body, /kubenft_ingress_problems 1/);
  t.match(metrics.body, /kubenft_ingress_served \d+/);
});
