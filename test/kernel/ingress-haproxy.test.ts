// The HAProxy dataplane's own life (--ingress-dataplane=haproxy): refused without haproxy; the
// route plan's changes (an Ingress, endpoints, a certificate) applied through the runtime API with
// no reload; an agent restart that adopts the running HAProxy with no failed request; an agent
// killed while HAProxy serves on; --cleanup stopping it. The real agent in a node namespace, pods
// running the echo server, curl in the client namespace.
import t from 'tap';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { projectRoot } from '../../src/kernel/native.js';
import { EXTERNAL, createTopology, type ProcessHandle, type Topology } from '../../scripts/lib/topology.js';
import { eventually } from '../lib/eventually.js';
import { IngressDataplaneUnderTest } from '../lib/ingress-dataplane.js';
import { CLI, kubenft, scrape } from '../lib/kubenft.js';
import { ManifestFile, service, slice } from '../lib/manifests.js';
import { OUR_CLASS, certificate, ingress, tlsSecret } from '../lib/ingress-manifests.js';

const PODS = [{ name: 'pod-a', ipv4: '10.244.1.5' }, { name: 'pod-b', ipv4: '10.244.2.5' }];
const ECHO_PORT = 8080;
const NODE = EXTERNAL.nodeIPv4;
const METRICS = 'http://127.0.0.1:10249/metrics';

const web = (pods: typeof PODS) => [
  service('web', '10.0.0.10', [{ name: 'http', port: 80, targetPort: ECHO_PORT }]),
  slice('web', [{ name: 'http', port: ECHO_PORT }], pods.map((pod) => ({ ip: pod.ipv4 }))),
];
const first = certificate('tls.example.com');
const objects = (extra: unknown[] = [], pods = PODS, pair = first): unknown[] => [
  OUR_CLASS, ...web(pods), tlsSecret('tls', pair),
  ingress('site', [{ host: 'site.example.com', paths: [{ path: '/', pathType: 'Prefix' }] }, { host: 'tls.example.com', paths: [{ path: '/', pathType: 'Prefix' }] }], {
    spec: { tls: [{ hosts: ['tls.example.com'], secretName: 'tls' }] },
  }),
  ...extra,
];

let topology: Topology;
const dataplane = new IngressDataplaneUnderTest();
const manifests = new ManifestFile(objects());
const agentArgs = [
  'node', CLI, '--manifests', manifests.path, '--hostname-override', 'node-1', '--iptables-min-sync-period', '50ms',
  '--healthz-bind-address', '', '--metrics-bind-address', '127.0.0.1:10249', '--ingress', '--ingress-workers', '1',
  '--ingress-dataplane', 'haproxy', '--ingress-haproxy-dir', dataplane.dir,
];

t.before(async () => {
  topology = await createTopology({ pods: PODS, serverReadyTimeoutMs: 60_000 });
  await Promise.all(PODS.map(async (pod, index) => {
    const server = topology.spawn(topology.pods[index].ns, ['node', join(projectRoot(), 'test/fixtures/http-echo.mjs'), pod.name, String(ECHO_PORT)]);
    await server.waitForOutput(/ready/, 60_000);
  }));
});
t.teardown(async () => {
  await dataplane.remove();
  await topology?.destroy();
  manifests.remove();
});

/** One curl per URL in the client namespace, every name sent to the node: status and the pod that answered. */
async function curls(urls: string[], extra: string[] = []): Promise<{ status: number; pod?: string }[]> {
  const result = await topology.exec(topology.client, ['curl', '-sS', '-k', '--max-time', '10', '--connect-to', `::${NODE}:`, '-w', '\n@@%{http_code}@@\n', ...extra, ...urls]);
  return [...result.stdout.matchAll(/([\s\S]*?)\n@@(\d+)@@\n/g)].map(([, body, status]) => {
    let pod: string | undefined;
    try {
      pod = JSON.parse(body).pod;
    } catch {
      // not a pod's reply
    }
    return { status: Number(status), pod };
  });
}
const served = async (host: string) => (await curls([`http://${host}/`]))[0]?.status === 200;
const issuer = async () => /subject: (.*)/.exec((await topology.exec(topology.client, ['curl', '-sS', '-k', '-v', '-o', '/dev/null', '--connect-to', `::${NODE}:`, 'https://tls.example.com/'])).stderr)?.[1];
/** A metric's value, 0 when it has no sample, NaN while the agent's metrics server is not up. */
async function metric(pattern: RegExp): Promise<number> {
  try {
    return Number(pattern.exec((await scrape(topology, METRICS)).body)?.[1] ?? 0);
  } catch {
    return NaN;
  }
}
const reloads = () => metric(/^kubenft_ingress_haproxy_reloads_total\{reason="[^"]*"\} (\d+)$/m);

function startAgent(): ProcessHandle {
  return topology.spawn(topology.node, agentArgs);
}

t.test('without haproxy on PATH, --ingress-dataplane=haproxy is refused by name', async (t) => {
  const result = await topology.exec(topology.node, ['env', 'PATH=/nonexistent', process.execPath, ...agentArgs.slice(1)], { timeoutMs: 60_000 });
  t.equal(result.code, 2);
  t.match(result.stderr, /--ingress-dataplane=haproxy: no haproxy on PATH/);
  t.same(dataplane.masters(), [], 'and no HAProxy started');
});

t.test('without --ingress-dataplane: HAProxy where it is installed, the built-in where not; the log and /configz say which', async (t) => {
  const unset = agentArgs.filter((arg, index) => arg !== '--ingress-dataplane' && agentArgs[index - 1] !== '--ingress-dataplane');
  const configz = async () => JSON.parse((await scrape(topology, 'http://127.0.0.1:10249/configz')).body)['kubenft.io'];
  // Debian's haproxy is in /usr/sbin, node is not.
  const paths = { installed: process.env.PATH!, missing: process.env.PATH!.split(':').filter((dir) => !existsSync(join(dir, 'haproxy'))).join(':') };
  for (const [where, chosen, log] of [['installed', 'haproxy', /ingress: served by HAProxy \(\/\S+\/haproxy\): haproxy is installed/], ['missing', 'builtin', /ingress: served by the built-in proxy: no haproxy on PATH/]] as const) {
    const agent = topology.spawn(topology.node, ['env', `PATH=${paths[where]}`, process.execPath, ...unset.slice(1)]);
    try {
      t.ok(await eventually(() => served('site.example.com'), 30_000), `served with haproxy ${where}: ${JSON.stringify(agent.output())}`);
      t.match(agent.output().stderr + agent.output().stdout, log, `haproxy ${where}: the log says what serves`);
      t.same(await configz(), { Ingress: { Dataplane: chosen } }, `haproxy ${where}: /configz shows ${chosen}`);
      t.equal(dataplane.masters().length, chosen === 'haproxy' ? 1 : 0, `haproxy ${where}: ${chosen === 'haproxy' ? 'HAProxy runs' : 'no HAProxy started'}`);
    } finally {
      await agent.stop();
    }
    const cleanup = await kubenft(topology, ['--cleanup', '--ingress-haproxy-dir', dataplane.dir]);
    t.equal(cleanup.code, 0, cleanup.stderr);
  }
});

t.test('an Ingress, endpoints and a certificate change through the runtime API: no reload, the same HAProxy', async (t) => {
  const agent = startAgent();
  t.teardown(() => agent.stop());
  t.ok(await eventually(() => served('site.example.com'), 30_000), `served: ${JSON.stringify(agent.output())}`);
  const [master] = dataplane.masters();
  t.ok(master, 'HAProxy runs');
  t.match(await issuer(), /CN=tls\.example\.com/);

  const rotated = certificate('rotated.tls.example.com', 'tls.example.com');
  manifests.write(objects([ingress('later', [{ host: 'later.example.com', paths: [{ path: '/', pathType: 'Prefix' }] }])], PODS.slice(1), rotated));
  t.ok(await eventually(() => served('later.example.com'), 10_000), 'a new Ingress is served');
  t.ok(await eventually(async () => /CN=rotated\.tls\.example\.com/.test((await issuer()) ?? ''), 10_000), 'the rotated certificate is served');
  const replies = await curls(Array.from({ length: 10 }, () => 'http://site.example.com/'), ['-H', 'connection: close']);
  t.same(new Set(replies.map((reply) => reply.pod)), new Set(['pod-b']), 'the removed endpoint gets no request');
  t.equal(await reloads(), 0, 'no reload');
  t.same(dataplane.masters(), [master], 'the same HAProxy');
});

t.test('an agent restart adopts the running HAProxy: no failed request, the same master', async (t) => {
  const before = startAgent();
  t.ok(await eventually(() => served('site.example.com'), 30_000));
  const [master] = dataplane.masters();
  const loop = curls(Array.from({ length: 150 }, () => 'http://site.example.com/'), ['-H', 'connection: close']);
  await new Promise((resolve) => setTimeout(resolve, 200));
  await before.stop();
  t.ok(existsSync(`/proc/${master}`), 'HAProxy outlives the agent');
  const after = startAgent();
  t.teardown(() => after.stop());
  const replies = await loop;
  t.same(replies.filter((reply) => reply.status !== 200).map((reply) => reply.status), [], 'no failed request across the restart');
  t.ok(await eventually(async () => (await metric(/^kubenft_ingress_haproxy_reloads_total\{reason="adopted"\} (\d+)$/m)) === 1, 20_000), 'the new agent adopted it (one seamless reload)');
  t.same(dataplane.masters(), [master], 'the same master');
  t.ok(await served('later.example.com'), 'serving the plan');
});

t.test('an agent killed leaves HAProxy serving; --cleanup stops it', async (t) => {
  const agent = startAgent();
  t.ok(await eventually(() => served('site.example.com'), 30_000));
  const [master] = dataplane.masters();
  process.kill(agent.pid, 'SIGKILL');
  await agent.exited;
  t.ok(await served('site.example.com'), 'served with the agent gone');
  const cleanup = await kubenft(topology, ['--cleanup', '--ingress-haproxy-dir', dataplane.dir]);
  t.equal(cleanup.code, 0, cleanup.stderr);
  t.notOk(existsSync(`/proc/${master}`), 'HAProxy stopped');
  t.same(dataplane.masters(), [], 'its directory removed');
});
