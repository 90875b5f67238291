// WebSocket (upgrade) tunnels through the ingress proxy have a connect and an idle timeout, as
// ingress-nginx's proxy-connect-timeout and proxy-read-timeout give them: an endpoint that never
// answers the SYN (dropped by nft in its pod) gets the client a 504, for an upgrade as for a plain
// request; a tunnel idle past --ingress-backend-timeout is closed, one kept busy is not.
import t from 'tap';
import { join } from 'node:path';
import { projectRoot } from '../../src/kernel/native.js';
import { EXTERNAL, createTopology, type ProcessHandle, type Topology } from '../../scripts/lib/topology.js';
import { eventually } from '../lib/eventually.js';
import { CLI, scrape } from '../lib/kubenft.js';
import { ManifestFile, service, slice } from '../lib/manifests.js';
import { OUR_CLASS, ingress } from '../lib/ingress-manifests.js';
import { IngressDataplaneUnderTest, ON_HAPROXY } from '../lib/ingress-dataplane.js';

const POD = { name: 'web', ipv4: '10.244.1.5' };
const ECHO_PORT = 8080;
/** On the same pod, a port whose SYNs the pod's own firewall drops: a connect that never completes. */
const DROPPED_PORT = 8081;
const NODE = EXTERNAL.nodeIPv4;
const IDLE_TIMEOUT = '2s';

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root to create network namespaces');
} else {
  let topology: Topology;
  let agent: ProcessHandle;
  const dataplane = new IngressDataplaneUnderTest();
  const objects = [
    OUR_CLASS,
    service('web', '10.0.0.10', [{ name: 'http', port: 80, targetPort: ECHO_PORT }]),
    slice('web', [{ name: 'http', port: ECHO_PORT }], [{ ip: POD.ipv4 }]),
    service('dropped', '10.0.0.11', [{ name: 'http', port: 80, targetPort: DROPPED_PORT }]),
    slice('dropped', [{ name: 'http', port: DROPPED_PORT }], [{ ip: POD.ipv4 }]),
    ingress('web', [{ host: 'ws.example.com', paths: [{ path: '/', pathType: 'Prefix', service: 'web' }] }]),
    ingress('dropped', [{ host: 'dropped.example.com', paths: [{ path: '/', pathType: 'Prefix', service: 'dropped' }] }]),
  ];
  const manifests = new ManifestFile(objects);
  t.before(async () => {
    topology = await createTopology({ pods: [POD], serverReadyTimeoutMs: 60_000 });
    const echo = topology.spawn(topology.pods[0].ns, ['node', join(projectRoot(), 'test/fixtures/http-echo.mjs'), 'web', String(ECHO_PORT)]);
    await echo.waitForOutput(/ready/, 60_000);
    const dropped = await topology.exec(topology.pods[0].ns, ['nft', `add table inet blackhole; add chain inet blackhole input { type filter hook input priority 0; }; add rule inet blackhole input tcp dport ${DROPPED_PORT} drop`]);
    if (dropped.code !== 0) throw new Error(`nft: ${dropped.stderr}`);
    agent = topology.spawn(topology.node, [
      'node', CLI, '--manifests', manifests.path, '--hostname-override', 'node-1', '--healthz-bind-address', '', '--metrics-bind-address', '127.0.0.1:10249',
      '--ingress', '--ingress-workers', '1', ...dataplane.args, '--ingress-backend-timeout', IDLE_TIMEOUT, '--ingress-connect-timeout', '1s',
    ]);
    const served = async () => (await topology.exec(topology.client, ['curl', '-sS', '-o', '/dev/null', '-w', '%{http_code}', '-H', 'host: ws.example.com', `http://${NODE}/`])).stdout === '200';
    if (!(await eventually(served, 30_000))) throw new Error(`the proxy does not answer: ${JSON.stringify(agent.output())}`);
  });
  t.teardown(async () => {
    await agent?.stop();
    await dataplane.remove();
    await topology?.destroy();
    manifests.remove();
  });

  const upgrade = (host: string) => topology.spawn(topology.client, ['node', join(projectRoot(), 'test/fixtures/upgrade-client.mjs'), NODE, '80', host, '/chat']);

  t.test('an idle tunnel is closed; a busy one stays open', async (t) => {
    const busy = upgrade('ws.example.com');
    const idle = upgrade('ws.example.com');
    t.teardown(() => Promise.all([busy.stop(), idle.stop()]));
    for (const socket of [busy, idle]) await socket.waitForOutput(/HTTP\/1\.1 101/, 10_000);
    idle.child.stdin!.write('hello\n');
    await idle.waitForOutput(/web hello/, 5_000);
    // Lines every 500 ms, for three times the idle timeout: never idle long enough.
    for (let line = 0; line < 12; line++) {
      busy.child.stdin!.write(`line ${line}\n`);
      await busy.waitForOutput(new RegExp(`web line ${line}\\n`), 5_000);
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    t.match(idle.output().stdout, /closed/, 'the idle tunnel was closed');
    t.notMatch(busy.output().stdout, /closed|error/, 'the busy one was not');
    await busy.waitForOutput(/closed/, 15_000);
    t.pass('and closed once it went idle too');
  });

  t.test('an endpoint that never completes the connect: 504, for an upgrade and for a request', async (t) => {
    const errors = async () => Number(/^kubenft_ingress_upstream_errors_total\{backend="[^"]*dropped[^"]*"\} (\d+)$/m.exec((await scrape(topology, 'http://127.0.0.1:10249/metrics')).body)?.[1] ?? 0);
    const before = await errors();
    const socket = upgrade('dropped.example.com');
    t.teardown(() => socket.stop());
    // HAProxy answers a connect it gave up on (after its retries) with 503, as it does when no server is there; the built-in with 504.
    const failed = ON_HAPROXY ? '503 Service Unavailable' : '504 Gateway Timeout';
    await socket.waitForOutput(new RegExp(`HTTP/1\\.1 ${failed}`), 15_000);
    // HAProxy keeps the client's connection open after that reply, as after any other; the built-in closes it.
    if (!ON_HAPROXY) await socket.waitForOutput(/closed/, 5_000);
    t.pass(`the upgrade got a ${failed}${ON_HAPROXY ? '' : ' and the connection was closed'}`);
    const plain = await topology.exec(topology.client, ['curl', '-sS', '--max-time', '15', '-o', '/dev/null', '-w', '%{http_code}', '-H', 'host: dropped.example.com', `http://${NODE}/`]);
    t.equal(plain.stdout, failed.slice(0, 3), 'a plain request too');
    t.ok(await eventually(async () => (await errors()) >= before + 2), 'both counted as upstream errors');
  });
}
