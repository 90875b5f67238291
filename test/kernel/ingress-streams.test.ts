// The ingress proxy's streams end to end: backpressure from a slow client to the backend, a client
// that leaves mid-response, a backend that dies mid-response; and the request metrics the worker
// counts and reports in batches. The real agent (--ingress, one worker, manifests) in a node
// namespace, a streaming backend in a pod, clients in the client namespace.
import t from 'tap';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { projectRoot } from '../../src/kernel/native.js';
import { EXTERNAL, createTopology, type ProcessHandle, type Topology } from '../../scripts/lib/topology.js';
import { eventually } from '../lib/eventually.js';
import { CLI, scrape } from '../lib/kubenft.js';
import { ManifestFile, service, slice } from '../lib/manifests.js';
import { OUR_CLASS, ingress } from '../lib/ingress-manifests.js';
import { IngressDataplaneUnderTest, ON_HAPROXY } from '../lib/ingress-dataplane.js';

const POD = { name: 'stream', ipv4: '10.244.1.5' };
const BACKEND_PORT = 8080;
const HOST = 'stream.example.com';
const NODE = EXTERNAL.nodeIPv4;
/** More than the kernel buffers on the way (client, proxy both ways, backend) can hold, so the backend must wait for the client. */
const LARGE_BYTES = 64 * 1024 * 1024;
const OUTPUT_TIMEOUT_MS = 20_000;
const METRICS = 'http://127.0.0.1:10249/metrics';

let topology: Topology;
let agent: ProcessHandle;
const dataplane = new IngressDataplaneUnderTest();
let backend: ProcessHandle;
const objects = [
  OUR_CLASS,
  service('stream', '10.0.0.10', [{ name: 'http', port: 80, targetPort: BACKEND_PORT }]),
  slice('stream', [{ name: 'http', port: BACKEND_PORT }], [{ ip: POD.ipv4 }]),
  ingress('stream', [{ host: HOST, paths: [{ path: '/', pathType: 'Prefix', service: 'stream' }] }]),
  ingress('counted', [{ host: 'counted.example.com', paths: [{ path: '/counted', pathType: 'Exact', service: 'stream' }] }]),
];
const manifests = new ManifestFile(objects);

async function curl(args: string[], host = HOST): Promise<{ code: number | null; status: string; timedOut: boolean }> {
  const result = await topology.exec(topology.client, ['curl', '-sS', '--max-time', '15', '-o', '/dev/null', '-w', '%{http_code}', '-H', `host: ${host}`, ...args], { timeoutMs: 30_000 });
  return { code: result.code, status: result.stdout, timedOut: result.timedOut };
}

const serving = async () => (await curl([`http://${NODE}/ok`])).status === '200';

/** The agent's proxy worker processes (the agent's children running proxy-worker.js). */
function workerPids(): number[] {
  const children = readFileSync(`/proc/${agent.pid}/task/${agent.pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  return children.filter((pid) => {
    try {
      return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('proxy-worker.js');
    } catch {
      return false;
    }
  });
}

function client(path: string, mode: 'slow' | 'abort'): ProcessHandle {
  return topology.spawn(topology.client, ['node', join(projectRoot(), 'test/fixtures/stream-client.mjs'), NODE, '80', HOST, path, mode]);
}

t.before(async () => {
  topology = await createTopology({ pods: [POD], serverReadyTimeoutMs: 60_000 });
  backend = topology.spawn(topology.pods[0].ns, ['node', join(projectRoot(), 'test/fixtures/stream-backend.mjs'), String(BACKEND_PORT)]);
  await backend.waitForOutput(/ready/, 60_000);
  agent = topology.spawn(topology.node, [
    'node', CLI, '--manifests', manifests.path, '--hostname-override', 'node-1', '--iptables-min-sync-period', '50ms',
    '--healthz-bind-address', '', '--metrics-bind-address', '127.0.0.1:10249', '--ingress', '--ingress-workers', '1', ...dataplane.args,
  ]);
  if (!(await eventually(serving, 30_000))) throw new Error(`the proxy does not answer: ${JSON.stringify(agent.output())}`);
});
t.teardown(async () => {
  await agent?.stop();
  await dataplane.remove();
  await topology?.destroy();
  manifests.remove();
});

t.test('a large response read slowly: the backend waits for the client, and every byte arrives in order', async (t) => {
  const reader = client(`/large/slow-1?bytes=${LARGE_BYTES}`, 'slow');
  try {
    await reader.waitForOutput(/^status /m, OUTPUT_TIMEOUT_MS);
    const [, status, expected] = /^status (\d+) (\S+)/m.exec(reader.output().stdout)!;
    t.equal(status, '200');
    // Without backpressure the proxy would take the whole body into its memory and the backend would finish.
    await backend.waitForOutput(/^(stalled|finished) slow-1\b/m, OUTPUT_TIMEOUT_MS);
    t.match(backend.output().stdout, /^stalled slow-1 \d+$/m, 'the backend waits while the client reads nothing');
    t.notMatch(backend.output().stdout, /^finished slow-1$/m, 'it has not sent everything');
    reader.child.stdin!.write('go\n');
    await reader.waitForOutput(/^(done|error) /m, 60_000);
    t.equal(/^done .*$/m.exec(reader.output().stdout)?.[0], `done ${LARGE_BYTES} ${expected}`, 'all bytes, in order (sha256)');
    await backend.waitForOutput(/^finished slow-1$/m, OUTPUT_TIMEOUT_MS);
  } finally {
    await reader.stop();
  }
});

t.test('a client that leaves mid-response: the backend\'s request is aborted, the worker serves on', async (t) => {
  const leaver = client('/endless/leaver-1', 'abort');
  try {
    await leaver.waitForOutput(/^closed$/m, OUTPUT_TIMEOUT_MS);
    // An endless response ends only when the proxy closes the backend's connection.
    await backend.waitForOutput(/^aborted leaver-1 \d+$/m, OUTPUT_TIMEOUT_MS);
    t.pass('the backend saw its connection closed');
  } finally {
    await leaver.stop();
  }
  t.ok(await serving(), 'the next request is served');
});

t.test('a backend that dies mid-response: the client\'s transfer fails at once, not hangs or looks complete', async (t) => {
  const result = await curl([`http://${NODE}/dies/dies-1?bytes=300000`]);
  t.match(backend.output().stdout, /^killed dies-1$/m, 'the backend died mid-response');
  t.equal(result.timedOut, false);
  t.not(result.code, 0, 'curl reports the transfer as failed (a cleanly ended response would look complete)');
  t.not(result.code, 28, 'not by its own timeout: the proxy closed the connection');
  t.equal(result.status, '200', 'the response had begun');
  t.ok(await serving(), 'the next request is served');
});

t.test('the worker\'s batched request metrics count every request once, by Ingress, rule host, path and status', async (t) => {
  const requests = 7;
  const delayMs = 100;
  const started = performance.now();
  // One curl sends them one after another: their durations do not overlap.
  const result = await topology.exec(topology.client, [
    'curl', '-sS', '-w', '%{http_code}\n', '-H', 'host: counted.example.com',
    ...[...Array.from({ length: requests }, () => `http://${NODE}/counted?delay=${delayMs}`), `http://${NODE}/counted/not-exact`].flatMap((url) => ['-o', '/dev/null', url]),
  ]);
  const elapsedSeconds = (performance.now() - started) / 1000;
  t.same(result.stdout.trim().split('\n'), [...Array.from({ length: requests }, () => '200'), '404']);
  const value = (body: string, series: string) => Number(body.split('\n').find((line) => line.startsWith(`${series} `))?.slice(series.length + 1) ?? NaN);
  const counted = 'kubenft_ingress_request_duration_seconds_count{ingress="default/counted"}';
  let body = '';
  // The worker reports every 500 ms.
  t.ok(await eventually(async () => value((body = (await scrape(topology, METRICS)).body), counted) === requests, 10_000), `${requests} durations`);
  t.equal(value(body, 'kubenft_ingress_requests_total{ingress="default/counted",host="counted.example.com",path="/counted",status="200"}'), requests, 'the requests, once each');
  t.equal(value(body, 'kubenft_ingress_request_duration_seconds_bucket{le="+Inf",ingress="default/counted"}'), requests, 'the +Inf bucket holds them all');
  t.equal(value(body, 'kubenft_ingress_request_duration_seconds_bucket{le="0.05",ingress="default/counted"}'), 0, 'none within 50 ms (each waited 100 ms)');
  t.equal(value(body, 'kubenft_ingress_request_duration_seconds_bucket{le="5",ingress="default/counted"}'), requests, 'all within 5 s');
  // Each waited delayMs for the backend; HAProxy counts whole milliseconds per request (a thread's
  // entries added up by the agent), which can round a duration up by less than 1 ms.
  const sum = value(body, 'kubenft_ingress_request_duration_seconds_sum{ingress="default/counted"}');
  t.ok(sum >= (requests * delayMs) / 1000, `their durations add up to at least the backend's delays (${sum} s)`);
  t.ok(sum <= elapsedSeconds + requests / 1000, `and to no more than the time they were sent in (${sum} s of ${elapsedSeconds.toFixed(3)} s): each counted once, in seconds`);
  t.notMatch(body, /status="404"/, 'an unrouted request is no route\'s');
});

t.test('a worker that dies is replaced with the whole table, and the next changes apply on top of it', async (t) => {
  // HAProxy's master and its worker are one process tree the agent supervises as a whole.
  const pids = () => (ON_HAPROXY ? dataplane.masters().filter((pid) => existsSync(`/proc/${pid}`)) : workerPids());
  const [worker] = pids();
  t.ok(worker, ON_HAPROXY ? 'one HAProxy' : 'one worker');
  process.kill(worker, 'SIGKILL');
  t.ok(await eventually(async () => pids().length === 1 && pids()[0] !== worker && (await serving()), 30_000), 'another worker serves the routes it had');
  manifests.write([...objects, ingress('later', [{ host: 'later.example.com', paths: [{ path: '/', pathType: 'Prefix', service: 'stream' }] }])]);
  t.ok(await eventually(async () => (await curl([`http://${NODE}/ok`], 'later.example.com')).status === '200', 10_000), 'an Ingress added afterwards is served');
  t.ok(await serving(), 'and the routes from before still are');
});
