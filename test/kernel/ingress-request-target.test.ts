// The request-target matrix, with nginx 1.22 side by side as the reference: the forms of RFC 9112
// §3.2 (origin, absolute, authority, asterisk), dot segments raw and percent-encoded, .. above the
// root, double slashes, %00, encoded slashes, overlong and invalid UTF-8, a query holding /.., a
// fragment. The real agent (--ingress) and a real nginx run in the node namespace with the same
// routes (cafe.example.com: Prefix /tea → the tea pod, Prefix /coffee → the coffee pod); a raw TCP
// client in the client namespace sends each request line byte for byte to both. For each, kubenft
// must pick the backend nginx picks and answer the status nginx answers, unless the case says why
// it deliberately differs; and the backend must get the path that was routed (nginx forwards the
// target as sent: `proxy_pass` without a URI, as ingress-nginx configures it).
import t from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { projectRoot } from '../../src/kernel/native.js';
import { EXTERNAL, createTopology, type ProcessHandle, type Topology } from '../../scripts/lib/topology.js';
import { eventually } from '../lib/eventually.js';
import { CLI } from '../lib/kubenft.js';
import { ManifestFile, service, slice } from '../lib/manifests.js';
import { OUR_CLASS, ingress } from '../lib/ingress-manifests.js';
import { IngressDataplaneUnderTest, ON_HAPROXY } from '../lib/ingress-dataplane.js';

const PODS = [{ name: 'tea', ipv4: '10.244.1.5' }, { name: 'coffee', ipv4: '10.244.2.5' }];
const ECHO_PORT = 8080;
const NODE = EXTERNAL.nodeIPv4;
const KUBENFT_PORT = 80;
const NGINX_PORT = 8081;
const HOST = 'cafe.example.com';
const OTHER_HOST = 'other.example.com';

const manifests = new ManifestFile([
  OUR_CLASS,
  ...PODS.flatMap((pod, index) => [
    service(pod.name, `10.0.0.${10 + index}`, [{ name: 'http', port: 80, targetPort: ECHO_PORT }]),
    slice(pod.name, [{ name: 'http', port: ECHO_PORT }], [{ ip: pod.ipv4 }]),
  ]),
  ingress('cafe', [{ host: HOST, paths: PODS.map((pod) => ({ path: `/${pod.name}`, pathType: 'Prefix', service: pod.name })) }]),
]);

// The Ingress in nginx's terms, as ingress-nginx writes a Prefix path: `= /tea` and `/tea/`
// (a bare `location /tea` would also take /teapot). Anything else on the host, or another host: 404.
const nginxConfig = (prefix: string) => `
worker_processes 1;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path ${prefix}/tmp; proxy_temp_path ${prefix}/tmp; fastcgi_temp_path ${prefix}/tmp; uwsgi_temp_path ${prefix}/tmp; scgi_temp_path ${prefix}/tmp;
  ${PODS.map((pod) => `upstream ${pod.name} { server ${pod.ipv4}:${ECHO_PORT}; }`).join('\n  ')}
  server {
    listen ${NODE}:${NGINX_PORT} default_server;
    location / { return 404; }
  }
  server {
    listen ${NODE}:${NGINX_PORT};
    server_name ${HOST};
    ${PODS.map((pod) => `location = /${pod.name} { proxy_pass http://${pod.name}; }\n    location /${pod.name}/ { proxy_pass http://${pod.name}; }`).join('\n    ')}
    location / { return 404; }
  }
}
`;

interface Outcome {
  status: number;
  /** The pod that got the request, and the target it saw. */
  pod?: string;
  path?: string;
}

interface Case {
  name: string;
  method?: string;
  target: string;
  /** The Host field sent; HOST unless given. */
  host?: string;
  /** What kubenft must do. */
  kubenft: Outcome;
  /** Where kubenft deliberately differs: what nginx does instead, and why. */
  nginx?: { status: number; pod?: string; why: string };
  /**
   * Where HAProxy (--ingress-dataplane=haproxy) differs from the built-in by its nature: it
   * refuses a fragment in the target (RFC 9112 sends none), an absolute-form target whose
   * authority is not the Host (its defence against a Host confusion), CONNECT with a path (its
   * parser: 400, not 405) and a path whose encoded slashes, read as separators, hold dot segments
   * (the maps cannot resolve them); it forwards a raw '\\' as sent. README: "The two dataplanes".
   */
  haproxy?: Outcome;
}

const tea = (path: string): Outcome => ({ status: 200, pod: 'tea', path });
const coffee = (path: string): Outcome => ({ status: 200, pod: 'coffee', path });
const status = (code: number): Outcome => ({ status: code });
const ENCODED_SLASH = 'an encoded slash is data to kubenft, a separator to nginx: read both ways the path reaches different routes, so kubenft refuses it (whichever way the backend reads %2F, it must stay on the route)';

const CASES: Case[] = [
  // Origin-form, plain.
  { name: 'origin-form', target: '/tea', kubenft: tea('/tea') },
  { name: 'origin-form below a prefix', target: '/coffee/latte', kubenft: coffee('/coffee/latte') },
  { name: 'a prefix is whole path elements', target: '/teapot', kubenft: status(404) },
  { name: 'paths are case-sensitive', target: '/TEA', kubenft: status(404) },
  { name: 'another method, forwarded', method: 'OPTIONS', target: '/tea', kubenft: tea('/tea') },
  // Dot segments, raw.
  { name: 'a .. segment', target: '/tea/../coffee', kubenft: coffee('/coffee') },
  { name: 'a . segment', target: '/tea/./x', kubenft: tea('/tea/x') },
  { name: 'a trailing ..', target: '/tea/x/..', kubenft: tea('/tea/') },
  { name: 'a trailing .. up to the root', target: '/tea/..', kubenft: status(404) },
  { name: '... is no dot segment', target: '/tea/.../x', kubenft: tea('/tea/.../x') },
  { name: '..; is no dot segment (nor is it to nginx)', target: '/tea/..;/coffee', kubenft: tea('/tea/..;/coffee') },
  { name: 'a backslash is no separator', target: '/tea/a\\..\\..\\coffee', kubenft: tea('/tea/a%5C..%5C..%5Ccoffee'), haproxy: tea('/tea/a\\..\\..\\coffee') },
  // Dot segments, percent-encoded.
  { name: '%2e%2e', target: '/tea/%2e%2e/coffee', kubenft: coffee('/coffee') },
  { name: '%2E%2E', target: '/tea/%2E%2E/coffee', kubenft: coffee('/coffee') },
  { name: '.%2E mixed', target: '/tea/.%2E/coffee', kubenft: coffee('/coffee') },
  { name: 'a trailing %2e', target: '/tea/x/%2e', kubenft: tea('/tea/x/') },
  { name: 'an encoded unreserved octet', target: '/%74ea/x', kubenft: tea('/tea/x') },
  { name: 'decoded once: %252e%252e is no dot segment', target: '/tea/%252e%252e/x', kubenft: tea('/tea/%252e%252e/x') },
  // .. above the root.
  { name: '.. above the root', target: '/../coffee', kubenft: status(400) },
  { name: '.. above the root after a segment', target: '/tea/../../coffee', kubenft: status(400) },
  { name: '%2e%2e above the root', target: '/tea/%2e%2e/%2E%2E/coffee', kubenft: status(400) },
  // Double slashes (nginx's merge_slashes).
  { name: 'a leading //', target: '//coffee', kubenft: coffee('/coffee') },
  { name: 'a // inside', target: '/tea//x', kubenft: tea('/tea/x') },
  { name: 'trailing ///', target: '/coffee///', kubenft: coffee('/coffee/') },
  // %00 and malformed escapes.
  { name: '%00', target: '/tea/%00', kubenft: status(400) },
  { name: '%00 inside a segment', target: '/tea/a%00b', kubenft: status(400) },
  { name: 'a malformed escape', target: '/tea/%zz', kubenft: status(400) },
  { name: 'a cut escape', target: '/tea/%4', kubenft: status(400) },
  { name: 'a lone %', target: '/tea/%', kubenft: status(400) },
  // Encoded slashes.
  { name: '..%2f', target: '/tea/..%2fcoffee', kubenft: status(400), nginx: { status: 200, pod: 'coffee', why: ENCODED_SLASH } },
  { name: '..%2F', target: '/tea/..%2Fcoffee', kubenft: status(400), nginx: { status: 200, pod: 'coffee', why: ENCODED_SLASH } },
  { name: '%2F..%2F', target: '/tea%2F..%2Fcoffee', kubenft: status(400), nginx: { status: 200, pod: 'coffee', why: ENCODED_SLASH } },
  { name: 'x%2F..%2F..%2F', target: '/tea/x%2F..%2F..%2Fcoffee', kubenft: status(400), nginx: { status: 200, pod: 'coffee', why: ENCODED_SLASH } },
  { name: '%2f after the prefix', target: '/tea%2fx', kubenft: status(400), nginx: { status: 200, pod: 'tea', why: ENCODED_SLASH } },
  { name: '%2F inside a segment, on the route either way: kept', target: '/tea/group%2Fproject', kubenft: tea('/tea/group%2Fproject') },
  { name: '%2f%2f, on the route either way: kept, in upper case', target: '/tea/%2f%2f', kubenft: tea('/tea/%2F%2F') },
  { name: '%2F..%2F on the route either way', target: '/tea/a%2F..%2Fb', kubenft: tea('/tea/a%2F..%2Fb'), haproxy: status(400) },
  { name: '%2F routing nowhere either way: 404, not refused', target: '/milk%2Ftea', kubenft: status(404) },
  // The same in lower case: the check reads escapes in one spelling.
  { name: '%2f..%2f', target: '/tea%2f..%2fcoffee', kubenft: status(400), nginx: { status: 200, pod: 'coffee', why: ENCODED_SLASH } },
  { name: '%2f inside a segment, on the route either way: kept, in upper case', target: '/tea/group%2fproject', kubenft: tea('/tea/group%2Fproject') },
  { name: '%2f..%2f on the route either way', target: '/tea/a%2f..%2fb', kubenft: tea('/tea/a%2F..%2Fb'), haproxy: status(400) },
  { name: '%2f routing nowhere either way: 404, not refused', target: '/milk%2ftea', kubenft: status(404) },
  // Overlong and invalid UTF-8: octets, never dots.
  { name: 'overlong UTF-8 dots (%C0%AE)', target: '/tea/%C0%AE%C0%AE/coffee', kubenft: tea('/tea/%C0%AE%C0%AE/coffee') },
  { name: 'overlong UTF-8 dots, lower case', target: '/tea/%c0%ae%c0%ae/coffee', kubenft: tea('/tea/%C0%AE%C0%AE/coffee') },
  { name: 'three-byte overlong dot (%E0%80%AE)', target: '/tea/%E0%80%AE%E0%80%AE/coffee', kubenft: tea('/tea/%E0%80%AE%E0%80%AE/coffee') },
  { name: 'invalid UTF-8 (%FF)', target: '/tea/%ff', kubenft: tea('/tea/%FF') },
  { name: 'encoded UTF-8', target: '/tea/caf%C3%A9', kubenft: tea('/tea/caf%C3%A9') },
  {
    name: 'raw octets above 0x7F', target: '/tea/caf\u00c3\u00a9', kubenft: status(400),
    nginx: { status: 400, why: 'kubenft (Node\'s HTTP parser) refuses a target with octets outside ASCII, which RFC 9112 does not allow; nginx routes it to tea and forwards it as sent, and the pod\'s Node parser answers the 400' },
  },
  // The query is never normalized; a fragment is dropped.
  { name: 'a query holding /..', target: '/tea?x=/../coffee', kubenft: tea('/tea?x=/../coffee') },
  { name: 'a query of /../..', target: '/tea?/../../coffee', kubenft: tea('/tea?/../../coffee') },
  { name: 'a query with escapes, after a normalized path', target: '/coffee/../tea?q=%2e%2e&r=a+b', kubenft: tea('/tea?q=%2e%2e&r=a+b') },
  { name: 'a fragment (never forwarded)', target: '/tea#frag', kubenft: tea('/tea'), haproxy: status(400) },
  { name: 'a fragment holding /..', target: '/tea/x#/../../coffee', kubenft: tea('/tea/x'), haproxy: status(400) },
  // Absolute-form: the target's authority, not Host (RFC 9112 §3.2.2).
  { name: 'absolute-form', target: `http://${HOST}/tea`, host: OTHER_HOST, kubenft: tea('/tea'), haproxy: status(400) },
  { name: 'absolute-form with a .. segment', target: `http://${HOST}/tea/../coffee`, host: OTHER_HOST, kubenft: coffee('/coffee'), haproxy: status(400) },
  { name: 'absolute-form in upper case', target: `HTTP://${HOST.toUpperCase()}/coffee`, host: OTHER_HOST, kubenft: coffee('/coffee'), haproxy: status(400) },
  { name: 'absolute-form, https scheme', target: `https://${HOST}/tea?q`, host: OTHER_HOST, kubenft: tea('/tea?q'), haproxy: status(400) },
  { name: 'absolute-form with a port', target: `http://${HOST}:9999/tea`, host: OTHER_HOST, kubenft: tea('/tea'), haproxy: status(400) },
  { name: 'absolute-form without a path', target: `http://${HOST}`, host: OTHER_HOST, kubenft: status(404), haproxy: status(400) },
  { name: 'absolute-form, its authority over Host', target: `http://${OTHER_HOST}/tea`, kubenft: status(404), haproxy: status(400) },
  { name: 'absolute-form with userinfo', target: `http://user@${HOST}/tea`, host: OTHER_HOST, kubenft: status(400) },
  { name: 'absolute-form missing a slash', target: `http:/${HOST}/tea`, kubenft: status(400) },
  {
    name: 'absolute-form, another scheme', target: `ftp://${HOST}/tea`, host: OTHER_HOST, kubenft: status(400),
    nginx: { status: 200, pod: 'tea', why: 'kubenft serves http and https URIs only; nginx ignores the scheme' },
  },
  // Authority-form and asterisk-form.
  { name: 'authority-form (CONNECT)', method: 'CONNECT', target: `${HOST}:80`, kubenft: status(400) },
  { name: 'CONNECT with an origin-form target', method: 'CONNECT', target: '/tea', kubenft: status(405), haproxy: status(400) },
  { name: 'asterisk-form (OPTIONS *)', method: 'OPTIONS', target: '*', kubenft: status(400) },
  { name: 'asterisk-form with GET', target: '*', kubenft: status(400) },
  { name: 'a relative target', target: 'tea', kubenft: status(400) },
];

interface Reply {
  status: number;
  echo?: { pod: string; url: string; headers: string[] };
}

let topology: Topology;
let agent: ProcessHandle;
const dataplane = new IngressDataplaneUnderTest();
let nginx: ProcessHandle;
const nginxPrefix = mkdtempSync(join(tmpdir(), 'kubenft-nginx-'));

async function send(port: number, requests: { method: string; target: string; host: string }[]): Promise<Reply[]> {
  const result = await topology.exec(topology.client, ['node', join(projectRoot(), 'test/fixtures/raw-http-client.mjs'), NODE, String(port), JSON.stringify(requests)], { timeoutMs: 120_000 });
  return result.stdout.trim().split('\n').filter(Boolean).map((line) => JSON.parse(line) as Reply);
}

const outcome = (reply: Reply): Outcome => (reply.echo ? { status: reply.status, pod: reply.echo.pod, path: reply.echo.url } : { status: reply.status });
const hostSeen = (reply: Reply) => reply.echo?.headers.find((_, index, headers) => index % 2 === 1 && headers[index - 1].toLowerCase() === 'host');

t.before(async () => {
  topology = await createTopology({ pods: PODS, serverReadyTimeoutMs: 60_000 });
  await Promise.all(PODS.map(async (pod, index) => {
    const server = topology.spawn(topology.pods[index].ns, ['node', join(projectRoot(), 'test/fixtures/http-echo.mjs'), pod.name, String(ECHO_PORT)]);
    await server.waitForOutput(/ready/, 60_000);
  }));
  writeFileSync(join(nginxPrefix, 'nginx.conf'), nginxConfig(nginxPrefix));
  nginx = topology.spawn(topology.node, ['nginx', '-p', nginxPrefix, '-e', 'stderr', '-c', join(nginxPrefix, 'nginx.conf'), '-g', `daemon off; pid ${join(nginxPrefix, 'nginx.pid')};`]);
  agent = topology.spawn(topology.node, [
    'node', CLI, '--manifests', manifests.path, '--hostname-override', 'node-1', '--iptables-min-sync-period', '50ms',
    '--healthz-bind-address', '', '--metrics-bind-address', '', '--ingress', '--ingress-workers', '1', ...dataplane.args,
  ]);
  const serving = async (port: number) => (await send(port, [{ method: 'GET', target: '/tea', host: HOST }]))[0]?.echo?.pod === 'tea';
  if (!(await eventually(() => serving(KUBENFT_PORT), 30_000))) throw new Error(`the proxy does not answer: ${JSON.stringify(agent.output())}`);
  if (!(await eventually(() => serving(NGINX_PORT), 30_000))) throw new Error(`nginx does not answer: ${JSON.stringify(nginx.output())}`);
});
t.teardown(async () => {
  await agent?.stop();
  await dataplane.remove();
  await nginx?.stop();
  await topology?.destroy();
  manifests.remove();
  rmSync(nginxPrefix, { recursive: true, force: true });
});

t.test('each request target: kubenft routes as nginx does (or differs as the case says), and forwards the path it routed', async (t) => {
  const requests = CASES.map((each) => ({ method: each.method ?? 'GET', target: each.target, host: each.host ?? HOST }));
  const [ours, theirs] = await Promise.all([send(KUBENFT_PORT, requests), send(NGINX_PORT, requests)]);
  t.equal(ours.length, CASES.length, 'kubenft answered every request');
  t.equal(theirs.length, CASES.length, 'nginx answered every request');
  CASES.forEach((each, index) => {
    const label = `${each.name}: ${requests[index].method} ${JSON.stringify(each.target)}`;
    const kubenft = outcome(ours[index]);
    const reference = outcome(theirs[index]);
    t.same(kubenft, ON_HAPROXY ? each.haproxy ?? each.kubenft : each.kubenft, `${label}: kubenft`);
    const expectedOfNginx = each.nginx ?? { status: each.kubenft.status, pod: each.kubenft.pod };
    t.same({ status: reference.status, pod: reference.pod }, { status: expectedOfNginx.status, pod: expectedOfNginx.pod }, `${label}: nginx${each.nginx ? ` (kubenft differs: ${each.nginx.why})` : ', as kubenft'}`);
  });
});

t.test('nginx forwards the target as sent, kubenft the normalized path it routed by', async (t) => {
  const requests = [{ method: 'GET', target: '/tea/%2e%2e/coffee//x', host: HOST }];
  const [[ours], [theirs]] = await Promise.all([send(KUBENFT_PORT, requests), send(NGINX_PORT, requests)]);
  t.same(outcome(theirs), coffee('/tea/%2e%2e/coffee//x'), 'nginx: routed to coffee, the raw target forwarded (a backend reading it another way serves another path)');
  t.same(outcome(ours), coffee('/coffee/x'), 'kubenft: routed to coffee, /coffee/x forwarded');
});

t.test('an absolute-form target\'s authority becomes the forwarded Host (RFC 9112 §3.2.2)', async (t) => {
  const [plain, withPort] = await send(KUBENFT_PORT, [
    { method: 'GET', target: `http://${HOST}/tea`, host: OTHER_HOST },
    { method: 'GET', target: `http://${HOST}:9999/tea`, host: OTHER_HOST },
  ]);
  if (ON_HAPROXY) {
    // HAProxy refuses an authority that is not the Host (the case table's haproxy outcomes); with the same one, it is the Host.
    t.same([plain.status, withPort.status], [400, 400], 'HAProxy: another Host than the authority is refused');
    const [same] = await send(KUBENFT_PORT, [{ method: 'GET', target: `http://${HOST}/tea`, host: HOST }]);
    t.equal(hostSeen(same), HOST);
    return;
  }
  t.equal(hostSeen(plain), HOST);
  t.equal(hostSeen(withPort), `${HOST}:9999`, 'the authority as written, port included');
});

t.test('HTTP/2 (TLS, ALPN) and upgrades are routed by the same normalized path; CONNECT over TLS is refused too', async (t) => {
  const h2 = await topology.exec(topology.client, [
    'curl', '-sS', '-k', '--http2', '--path-as-is', '--connect-to', `::${NODE}:`, `https://${HOST}/tea/%2e%2e/coffee/x?q=/..`,
  ]);
  t.match(JSON.parse(h2.stdout), { pod: 'coffee', url: '/coffee/x?q=/..', version: '1.1' }, 'h2 :path normalized');
  const refused = await topology.exec(topology.client, ['curl', '-sS', '-k', '--http2', '--path-as-is', '-o', '/dev/null', '-w', '%{http_code}', '--connect-to', `::${NODE}:`, `https://${HOST}/tea/..%2Fcoffee`]);
  t.equal(refused.stdout, '400', 'h2: an encoded slash routed two ways is refused');
  // CONNECT on the HTTPS listener, both ways Node hands it over: an HTTP/2 stream, an HTTP/1.1 socket.
  const connectOverTls = `
    const http2 = require('node:http2'), tls = require('node:tls');
    const session = http2.connect('https://${NODE}', { rejectUnauthorized: false });
    const stream = session.request({ ':method': 'CONNECT', ':authority': '${HOST}:443' });
    stream.on('response', (headers) => {
      console.log('h2 ' + headers[':status']);
      session.close();
      const socket = tls.connect({ host: '${NODE}', port: 443, servername: '${HOST}', rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] }, () => socket.write('CONNECT ${HOST}:443 HTTP/1.1\\r\\nhost: ${HOST}\\r\\n\\r\\n'));
      socket.on('data', (data) => { console.log('http/1.1 ' + data.toString().split(' ')[1]); socket.destroy(); });
    });`;
  t.equal((await topology.exec(topology.client, ['node', '-e', connectOverTls])).stdout, 'h2 400\nhttp/1.1 400\n', 'CONNECT over TLS: 400 on an HTTP/2 stream and on HTTP/1.1');
  const upgrade = topology.spawn(topology.client, ['node', join(projectRoot(), 'test/fixtures/upgrade-client.mjs'), NODE, String(KUBENFT_PORT), HOST, '/tea/%2e%2e/coffee/ws']);
  try {
    await upgrade.waitForOutput(/HTTP\/1\.1 101/, 10_000);
    upgrade.child.stdin!.write('hello\n');
    await upgrade.waitForOutput(/^\w+ hello$/m, 10_000);
    t.match(upgrade.output().stdout, /^coffee hello$/m, 'an upgrade: tunnelled to the pod its normalized path routes to');
  } finally {
    await upgrade.stop();
  }
});
