// The ingress benchmark: wrk against kubenft's proxy, nginx and HAProxy (Debian's, configured here
// for the same route and endpoints, two workers or threads each as kubenft has on two cores) and
// one backend directly, side by side in one topology; the time from an Ingress change to traffic
// following it at 10 and 10,000 Ingresses; and failed requests while endpoints change (kubenft: a
// route table swap; nginx: a reload per change; HAProxy: its runtime API). kubenft runs in agent
// mode against the tests' fake API server, so a change reaches it as a watch event, as in a
// cluster. Bench-only packages (wrk, nginx-light, haproxy) are installed here.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { projectRoot } from '../../src/kernel/native.js';
import type { KubeObject } from '../../src/cluster/cluster-state.js';
import { FakeApiServer } from '../../test/lib/fake-apiserver.js';
import { type IngressDataplaneName, IngressDataplaneUnderTest } from '../../test/lib/ingress-dataplane.js';
import { EXTERNAL, type ProcessHandle, type Topology, withTopology } from './topology.js';

export const PODS = Array.from({ length: 4 }, (_, index) => ({ name: `backend-${index}`, ipv4: `10.244.${index + 1}.5` }));
export const BACKEND_PORT = 8080;
export const HOST = 'bench.example.com';
export const PORTS = { kubenft: [80, 443], 'kubenft-haproxy': [7080, 7443], nginx: [8080, 8443], haproxy: [9080, 9443] } as const;
type Dataplane = IngressDataplaneName;
const CONNECTIONS = [16, 256];
export const ROUNDS = 3;
export const CHURN_CHANGES = 100;
/** Certificate rotations under load: the default certificate's Secret, which wrk (no SNI) is served. */
export const ROTATIONS = 10;
export const ROTATION_INTERVAL_MS = 500;
const DEFAULT_SECRET = 'bench-default';
export const CHURN_INTERVAL_MS = 200;
const CHANGE_SIZES = [10, 10_000];
/** Ingresses created one after the other per size: one sample is at the mercy of the shared machine's load. */
export const CHANGES_PER_SIZE = 5;
/** The fake API server's forwarder in the node namespace listens here (and on the next ports for the change runs). */
const API_PORT = 16443;
const PACKAGES: [string, string][] = [['wrk', 'wrk'], ['nginx', 'nginx-light'], ['haproxy', 'haproxy']];

/** One target's figures: the medians of its rounds (each round measures every target once, in turn, so a load change hits them alike). */
export interface ThroughputRow { target: string; scheme: 'http' | 'https'; connections: number; requestsPerSecond: number; p99Ms: number; errors: number; rounds: { requestsPerSecond: number; p99Ms: number }[] }
/** kubenft on HAProxy beside its anchors of the same run: req/s and p99 as ratios (the goal: req/s ≥ 0.95× bare HAProxy, p99 ≤ 1.1×). */
export interface GoalRow { scheme: 'http' | 'https'; connections: number; requestsVsHaproxy: number; p99VsHaproxy: number; requestsVsNginx: number; requestsVsBuiltin: number; met: boolean }
export interface ChangeRow { dataplane: Dataplane; ingresses: number; changeToTrafficMs: number; samplesMs: number[]; agentRssMiB: number; haproxyRssMiB?: number }
export interface ChurnRow { proxy: string; changes: number; requests: number; failed: number }
export interface IngressBenchResult { throughput: ThroughputRow[]; goals: GoalRow[]; changes: ChangeRow[]; churn: ChurnRow[]; load: { before: number[]; after: number[] } }

interface Options { quick: boolean; progress: (message: string) => void }

/** Installs what only the bench needs; Debian's postinst must not start nginx or HAProxy in the root namespace (RUNLEVEL=1). */
export function ensurePackages(): void {
  const missing = PACKAGES.filter(([command]) => {
    try {
      execFileSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' });
      return false;
    } catch {
      return true;
    }
  }).map(([, name]) => name);
  if (missing.length === 0) return;
  execFileSync('apt-get', ['-o', 'DPkg::Lock::Timeout=600', 'install', '-y', '-qq', '--no-install-recommends', ...missing], {
    stdio: 'inherit', env: { ...process.env, RUNLEVEL: '1', DEBIAN_FRONTEND: 'noninteractive' },
  });
}

const endpoints = (pods = PODS) => pods.map((pod) => `${pod.ipv4}:${BACKEND_PORT}`);

export const NODE_NAME = 'node-1';
export const backendSlice = (pods = PODS): KubeObject => ({
  apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', metadata: { name: 'backend-1', namespace: 'default', labels: { 'kubernetes.io/service-name': 'backend' } },
  addressType: 'IPv4', ports: [{ name: 'http', port: BACKEND_PORT, protocol: 'TCP' }], endpoints: pods.map((pod) => ({ addresses: [pod.ipv4], conditions: { ready: true } })),
});

/** An Ingress for one host to the backend; `published` already carries this node's status, so the status writer has nothing to do for it. */
function hostIngress(name: string, host: string, published = true): KubeObject {
  return {
    apiVersion: 'networking.k8s.io/v1', kind: 'Ingress', metadata: { name, namespace: 'default', creationTimestamp: '2024-01-01T00:00:00Z' },
    spec: { ingressClassName: 'kubenft', rules: [{ host, http: { paths: [{ path: '/', pathType: 'Prefix', backend: { service: { name: 'backend', port: { number: 80 } } } }] } }] },
    ...(published ? { status: { loadBalancer: { ingress: [{ ip: EXTERNAL.nodeIPv4 }] } } } : {}),
  };
}

export function tlsSecret(pair: { cert: string; key: string }, name = DEFAULT_SECRET): KubeObject {
  return {
    apiVersion: 'v1', kind: 'Secret', metadata: { name, namespace: 'default' }, type: 'kubernetes.io/tls',
    data: { 'tls.crt': Buffer.from(pair.cert).toString('base64'), 'tls.key': Buffer.from(pair.key).toString('base64') },
  };
}

/** A self-signed ECDSA certificate for the bench's host. */
export function selfSigned(directory: string, name: string): { cert: string; key: string } {
  const [key, cert] = [join(directory, `${name}.key`), join(directory, `${name}.crt`)];
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1', '-subj', `/CN=${name}`, '-keyout', key, '-out', cert], { stdio: 'ignore' });
  return { cert: readFileSync(cert, 'utf8'), key: readFileSync(key, 'utf8') };
}

/** The cluster the agent watches: this node, the backend Service and its slice, the bench's Ingress and `ingressCount - 1` others. */
export function clusterObjects(ingressCount: number): KubeObject[] {
  return [
    { apiVersion: 'v1', kind: 'Node', metadata: { name: NODE_NAME }, status: { addresses: [{ type: 'InternalIP', address: EXTERNAL.nodeIPv4 }] } },
    { apiVersion: 'networking.k8s.io/v1', kind: 'IngressClass', metadata: { name: 'kubenft' }, spec: { controller: 'kubenft.io/ingress-controller' } },
    { apiVersion: 'v1', kind: 'Service', metadata: { name: 'backend', namespace: 'default' }, spec: { clusterIP: '10.0.0.10', ports: [{ name: 'http', port: 80, targetPort: BACKEND_PORT }] } },
    backendSlice(),
    hostIngress('bench', HOST),
    ...Array.from({ length: Math.max(0, ingressCount - 1) }, (_, index) => hostIngress(`filler-${index}`, `filler-${index}.example.com`)),
  ];
}

function nginxConfig(directory: string, pem: string, pods = PODS): string {
  return `worker_processes auto;
pid ${directory}/nginx.pid;
error_log ${directory}/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${directory}/nginx-body;
  proxy_temp_path ${directory}/nginx-proxy;
  upstream backend { ${endpoints(pods).map((endpoint) => `server ${endpoint};`).join(' ')} keepalive 64; }
  server {
    listen ${PORTS.nginx[0]}; listen ${PORTS.nginx[1]} ssl http2;
    server_name ${HOST};
    ssl_certificate ${pem}; ssl_certificate_key ${pem};
    location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_set_header Host $host; proxy_next_upstream error timeout; }
  }
}
`;
}

/** Bare HAProxy's static configuration of the bench's route (also scripts/haproxy-cost.ts's anchor). */
export function bareHaproxyConfig({ directory, pem, threads = 2, servers = endpoints(), ports = PORTS.haproxy }: { directory: string; pem: string; threads?: number; servers?: string[]; ports?: readonly number[] }): string {
  return `global
  nbthread ${threads}
  stats socket ${directory}/haproxy.sock level admin
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  retries 2
  option redispatch
frontend web
  bind :${ports[0]}
  bind :${ports[1]} ssl crt ${pem} alpn h2,http/1.1
  # An Ingress's job as kubenft's configuration does it: the forwarded headers set by the proxy.
  http-request set-header x-forwarded-for %[src]
  http-request set-header x-real-ip %[src]
  http-request set-header x-forwarded-proto %[ssl_fc,iif(https,http)]
  http-request set-header x-forwarded-host %[req.hdr(host)]
  http-request set-header x-forwarded-port %[dst_port]
  use_backend backend if { hdr(host) -i ${HOST} }
backend backend
  balance roundrobin
  http-reuse always
${servers.map((server, index) => `  server s${index} ${server}`).join('\n')}
`;
}

/** wrk's requests/s, p99 and errors (socket errors plus non-2xx/3xx responses). */
function parseWrk(output: string): { requestsPerSecond: number; p99Ms: number; errors: number; requests: number } {
  const requestsPerSecond = Number(/Requests\/sec:\s+([\d.]+)/.exec(output)?.[1] ?? NaN);
  const p99 = /99%\s+([\d.]+)(us|ms|s)/.exec(output);
  const p99Ms = p99 ? Number(p99[1]) * (p99[2] === 'us' ? 0.001 : p99[2] === 's' ? 1000 : 1) : NaN;
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(output);
  const errors = (socket ? socket.slice(1).reduce((sum, count) => sum + Number(count), 0) : 0) + Number(/Non-2xx or 3xx responses: (\d+)/.exec(output)?.[1] ?? 0);
  const requests = Number(/(\d+) requests in/.exec(output)?.[1] ?? 0);
  return { requestsPerSecond, p99Ms, errors, requests };
}

export async function wrk(topology: Topology, url: string, connections: number, seconds: number): Promise<ReturnType<typeof parseWrk>> {
  const result = await topology.exec(topology.client, ['wrk', '-t2', `-c${connections}`, `-d${seconds}s`, '--latency', '-H', `Host: ${HOST}`, url], { timeoutMs: (seconds + 30) * 1000 });
  if (result.code !== 0) throw new Error(`wrk ${url}: ${result.stderr || result.stdout}`);
  return parseWrk(result.stdout);
}

export async function until(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

export const answers = async (topology: Topology, port: number, host = HOST) =>
  (await topology.exec(topology.client, ['curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '2', '-H', `Host: ${host}`, `http://${topology.external.nodeIPv4}:${port}/`])).stdout === '200';

export interface KubenftUnderTest {
  api: FakeApiServer;
  /** The agent's PID, and HAProxy's master's with --ingress-dataplane=haproxy. */
  pids(): { agent: number; haproxy?: number };
  stop(): Promise<void>;
}

/** The resident memory of a process and its descendants, MiB. */
export function treeRssMiB(root: number): number {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const parent = Number(readFileSync(`/proc/${entry}/stat`, 'utf8').replace(/^.*\) /s, '').split(' ')[1]);
      children.set(parent, [...(children.get(parent) ?? []), Number(entry)]);
    } catch {
      // gone meanwhile
    }
  }
  let kib = 0;
  const visit = (pid: number) => {
    try {
      kib += Number(/^VmRSS:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
    } catch {
      return;
    }
    for (const child of children.get(pid) ?? []) visit(child);
  };
  visit(root);
  return kib / 1024;
}

/**
 * kubenft --ingress in agent mode in the node namespace, watching a fake API server that holds
 * `objects` (reached over a Unix socket through a forwarder in the namespace, on `apiPort`). With
 * HAProxy as its dataplane, on the kubenft-haproxy ports, its files in a directory of the bench's
 * (and with --gateway in `extraArgs`, the Gateway's listeners on the same dataplane); HAProxy
 * outlives the agent by design, so stop() ends it by its PID.
 */
export async function startKubenft(topology: Topology, directory: string, objects: KubeObject[], apiPort: number, dataplane: Dataplane = 'builtin', extraArgs: string[] = []): Promise<KubenftUnderTest> {
  const socket = join(directory, `apiserver-${apiPort}.sock`);
  const api = await FakeApiServer.create(socket);
  for (const object of objects) api.upsert(object);
  const forwarder = topology.spawn(topology.node, ['node', join(projectRoot(), 'test/fixtures/tcp-to-unix.mjs'), String(apiPort), socket]);
  const ingressDataplane = new IngressDataplaneUnderTest(dataplane);
  let agent: ProcessHandle | undefined;
  const stop = async () => {
    await agent?.stop();
    await ingressDataplane.remove();
    await forwarder.stop();
    await api.close();
  };
  const [http, https] = dataplane === 'haproxy' ? PORTS['kubenft-haproxy'] : PORTS.kubenft;
  try {
    await forwarder.waitForOutput(/ready/, 30_000);
    agent = topology.spawn(topology.node, [
      'node', join(projectRoot(), 'dist/src/cli/main.js'), '--kubeconfig', api.kubeconfigPath(`http://127.0.0.1:${apiPort}`), '--hostname-override', NODE_NAME,
      '--ingress', '--iptables-min-sync-period', '0s', '--healthz-bind-address', '', '--metrics-bind-address', '',
      ...ingressDataplane.args, '--ingress-http-address', `0.0.0.0:${http}`, '--ingress-https-address', `0.0.0.0:${https}`, ...extraArgs,
      ...(extraArgs.includes('--gateway') ? ingressDataplane.gatewayArgs : []),
    ]);
  } catch (error) {
    await stop();
    throw error;
  }
  const started = agent;
  return { api, stop, pids: () => ({ agent: started.pid, haproxy: ingressDataplane.masters()[0] }) };
}

/**
 * From an object created in the API server (`objectFor`: an Ingress or HTTPRoute for a new host)
 * to the first request its route answers, for `count` objects created one after the other: a
 * poller in the client namespace asks for the new host on a fresh connection every 5 ms, from
 * before the change.
 */
export async function changeSamples(topology: Topology, api: FakeApiServer, port: number, count: number, objectFor: (index: number, host: string) => KubeObject): Promise<number[]> {
  const samples: number[] = [];
  for (let index = 0; index < count; index++) {
    const probeHost = `probe-${index}.example.com`;
    const poller = topology.spawn(topology.client, ['node', '-e', `
      const http = require('node:http');
      const poll = () => http.get({ host: '${EXTERNAL.nodeIPv4}', port: ${port}, path: '/', agent: false, headers: { host: '${probeHost}' } }, (response) => {
        response.resume();
        if (response.statusCode === 200) console.log('answered ' + (performance.timeOrigin + performance.now()));
        else setTimeout(poll, 5);
      }).on('error', () => setTimeout(poll, 5));
      poll();`]);
    try {
      // Also lets the previous change's status write settle.
      await new Promise((resolve) => setTimeout(resolve, 1000));
      const created = performance.timeOrigin + performance.now();
      api.upsert(objectFor(index, probeHost));
      await poller.waitForOutput(/answered [\d.]+/, 60_000);
      samples.push(Number(/answered ([\d.]+)/.exec(poller.output().stdout)![1]) - created);
    } finally {
      await poller.stop();
    }
  }
  return samples;
}

/**
 * From an Ingress created in the API server to the first request its route answers, for `count`
 * Ingresses created one after the other: a poller in the client namespace asks for the new host
 * on a fresh connection every 5 ms, from before the change.
 */
async function changeToTraffic(topology: Topology, directory: string, ingresses: number, apiPort: number, count: number, dataplane: Dataplane): Promise<Omit<ChangeRow, 'changeToTrafficMs'>> {
  const kubenft = await startKubenft(topology, directory, clusterObjects(ingresses), apiPort, dataplane);
  const port = dataplane === 'haproxy' ? PORTS['kubenft-haproxy'][0] : PORTS.kubenft[0];
  try {
    await until(() => answers(topology, port), 180_000, `kubenft (${dataplane}) with ${ingresses} Ingresses`);
    const samples = await changeSamples(topology, kubenft.api, port, count, (index, probeHost) => hostIngress(`probe-${index}`, probeHost, false));
    const pids = kubenft.pids();
    return {
      dataplane, ingresses, samplesMs: samples, agentRssMiB: treeRssMiB(pids.agent),
      ...(pids.haproxy === undefined ? {} : { haproxyRssMiB: treeRssMiB(pids.haproxy) }),
    };
  } finally {
    await kubenft.stop();
  }
}

/** wrk runs while `change(i)` is called `count` times; returns wrk's totals. */
export async function underChurn(topology: Topology, url: string, count: number, intervalMs: number, change: (index: number) => Promise<void>): Promise<{ requests: number; failed: number }> {
  const load = wrk(topology, url, 16, Math.ceil((count * intervalMs) / 1000) + 2);
  await new Promise((resolve) => setTimeout(resolve, 1000));
  for (let index = 0; index < count; index++) {
    await change(index);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
  const result = await load;
  return { requests: result.requests, failed: result.errors };
}

function haproxyCommand(topology: Topology, socket: string, command: string): Promise<unknown> {
  return topology.exec(topology.node, ['node', '-e', `const s = require('net').connect(${JSON.stringify(socket)}, () => s.end(${JSON.stringify(`${command}\n`)})); s.resume();`]);
}

/** One wrk target: its name in the report, its URL, its scheme. */
export type ThroughputTarget = [target: string, url: string, scheme: 'http' | 'https'];

/**
 * wrk against every target at 16 and 256 connections, in ROUNDS rounds that each measure every
 * target once, in turn (so a change of the shared machine's load hits them alike); each row holds
 * the medians of its rounds.
 */
export async function measureThroughput(topology: Topology, targets: ThroughputTarget[], seconds: number, progress: (message: string) => void): Promise<ThroughputRow[]> {
  const measured: ThroughputRow[] = [];
  for (const connections of CONNECTIONS) {
    const rows = targets.map(([target, , scheme]): ThroughputRow => ({ target, scheme, connections, requestsPerSecond: NaN, p99Ms: NaN, errors: 0, rounds: [] }));
    for (let round = 0; round < ROUNDS; round++) {
      for (const [index, [target, url, scheme]] of targets.entries()) {
        // A warm-up first: the JIT, the connection pools and the TLS sessions of each proxy are ready before it is measured.
        await wrk(topology, url, connections, 1);
        const run = await wrk(topology, url, connections, seconds);
        rows[index].rounds.push({ requestsPerSecond: run.requestsPerSecond, p99Ms: run.p99Ms });
        rows[index].errors += run.errors;
        progress(`${target} ${scheme} c${connections} round ${round + 1}: ${run.requestsPerSecond.toFixed(0)} req/s, p99 ${run.p99Ms.toFixed(2)} ms, ${run.errors} errors`);
      }
    }
    for (const row of rows) {
      row.requestsPerSecond = median(row.rounds.map((each) => each.requestsPerSecond));
      row.p99Ms = median(row.rounds.map((each) => each.p99Ms));
    }
    measured.push(...rows);
  }
  return measured;
}

export async function runIngressBench(options: Options): Promise<IngressBenchResult> {
  ensurePackages();
  const seconds = options.quick ? 3 : 8;
  const result: IngressBenchResult = { throughput: [], goals: [], changes: [], churn: [], load: { before: loadavg(), after: [] } };
  const directory = mkdtempSync(join(tmpdir(), 'kubenft-bench-ingress-'));
  try {
    const pem = join(directory, 'bench.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1', '-subj', `/CN=${HOST}`, '-keyout', pem, '-out', join(directory, 'cert.pem')], { stdio: 'ignore' });
    execFileSync('sh', ['-c', 'cat "$1" >> "$2"', 'sh', join(directory, 'cert.pem'), pem]);
    await withTopology({ pods: PODS, serverReadyTimeoutMs: 60_000 }, async (topology) => {
      const backends = PODS.map((pod, index) => topology.spawn(topology.pods[index].ns, ['node', join(projectRoot(), 'test/fixtures/http-echo.mjs'), pod.name, String(BACKEND_PORT)]));
      await Promise.all(backends.map((backend) => backend.waitForOutput(/ready/, 60_000)));
      const nginxConf = join(directory, 'nginx.conf');
      writeFileSync(nginxConf, nginxConfig(directory, pem));
      const haproxyConf = join(directory, 'haproxy.cfg');
      writeFileSync(haproxyConf, bareHaproxyConfig({ directory, pem }));
      const certificates = [selfSigned(directory, 'rotation-a'), selfSigned(directory, 'rotation-b')];
      const withDefault = ['--ingress-default-certificate', `default/${DEFAULT_SECRET}`];
      const nginx = topology.spawn(topology.node, ['nginx', '-c', nginxConf, '-g', 'daemon off;']);
      const haproxy = topology.spawn(topology.node, ['haproxy', '-f', haproxyConf, '-db']);
      const node = topology.external.nodeIPv4;
      const urls = (name: keyof typeof PORTS): ThroughputTarget[] => [[name, `http://${node}:${PORTS[name][0]}/`, 'http'], [name, `https://${node}:${PORTS[name][1]}/`, 'https']];
      const without = PODS.slice(0, 3);
      /** Endpoint churn (backend-3 leaves and comes back), Ingress changes and default-certificate rotations under load, through one kubenft. */
      const kubenftChurn = async (name: string, under: KubenftUnderTest, [http, https]: readonly [number, number]) => {
        const endpointChurn = await underChurn(topology, `http://${node}:${http}/`, CHURN_CHANGES, CHURN_INTERVAL_MS, async (index) => {
          under.api.upsert(backendSlice(index % 2 === 0 ? without : PODS));
        });
        const ingressChurn = await underChurn(topology, `http://${node}:${http}/`, CHURN_CHANGES, CHURN_INTERVAL_MS, async (index) => {
          under.api.upsert(hostIngress(`churn-${index}`, `churn-${index}.example.com`));
        });
        const rotations = await underChurn(topology, `https://${node}:${https}/`, ROTATIONS, ROTATION_INTERVAL_MS, async (index) => {
          under.api.upsert(tlsSecret(certificates[(index + 1) % 2]));
        });
        for (const [what, changes, churn] of [['endpoint changes', CHURN_CHANGES, endpointChurn], ['Ingress changes', CHURN_CHANGES, ingressChurn], ['default certificate rotations (https)', ROTATIONS, rotations]] as const) {
          result.churn.push({ proxy: `${name}: ${what}`, changes, ...churn });
          options.progress(`${name}: ${churn.failed} failed of ${churn.requests} requests during ${changes} ${what}`);
        }
      };
      try {
        for (const name of ['nginx', 'haproxy'] as const) await until(() => answers(topology, PORTS[name][0]), 60_000, name);
        // One kubenft per network namespace: the built-in's agent, then HAProxy's, each beside the same nginx and bare HAProxy.
        for (const [name, dataplane] of [['kubenft', 'builtin'], ['kubenft-haproxy', 'haproxy']] as const) {
          const under = await startKubenft(topology, directory, [...clusterObjects(1), tlsSecret(certificates[0])], API_PORT + (dataplane === 'haproxy' ? 10 : 0), dataplane, withDefault);
          try {
            await until(() => answers(topology, PORTS[name][0]), 60_000, name);
            const targets = [...urls(name), ...(dataplane === 'haproxy' ? urls('haproxy') : [...urls('nginx'), ['backend directly', `http://${PODS[0].ipv4}:${BACKEND_PORT}/`, 'http'] as ThroughputTarget])];
            result.throughput.push(...await measureThroughput(topology, targets, seconds, options.progress));
            await kubenftChurn(name, under, PORTS[name]);
          } finally {
            await under.stop();
          }
        }
        const nginxChurn = await underChurn(topology, `http://${node}:${PORTS.nginx[0]}/`, CHURN_CHANGES, CHURN_INTERVAL_MS, async (index) => {
          writeFileSync(nginxConf, nginxConfig(directory, pem, index % 2 === 0 ? without : PODS));
          await topology.exec(topology.node, ['nginx', '-c', nginxConf, '-s', 'reload']);
        });
        const haproxyChurn = await underChurn(topology, `http://${node}:${PORTS.haproxy[0]}/`, CHURN_CHANGES, CHURN_INTERVAL_MS, async (index) => {
          await haproxyCommand(topology, join(directory, 'haproxy.sock'), `set server backend/s3 state ${index % 2 === 0 ? 'maint' : 'ready'}`);
        });
        for (const [proxy, churn] of [['nginx (reload per change): endpoint changes', nginxChurn], ['HAProxy (runtime API, by hand): endpoint changes', haproxyChurn]] as const) {
          result.churn.push({ proxy, changes: CHURN_CHANGES, ...churn });
          options.progress(`${proxy}: ${churn.failed} failed of ${churn.requests} requests`);
        }
      } finally {
        await Promise.all([nginx.stop(), haproxy.stop()]);
      }
      let apiPort = API_PORT;
      for (const dataplane of ['builtin', 'haproxy'] as const) {
        for (const ingresses of CHANGE_SIZES) {
          const row = await changeToTraffic(topology, directory, ingresses, ++apiPort, CHANGES_PER_SIZE, dataplane);
          const ms = [...row.samplesMs].sort((a, b) => a - b)[Math.floor(row.samplesMs.length / 2)];
          result.changes.push({ ...row, changeToTrafficMs: ms });
          options.progress(`${dataplane}: Ingress created → traffic at ${ingresses} Ingresses: median ${ms.toFixed(1)} ms of ${row.samplesMs.map((sample) => sample.toFixed(1)).join(', ')}; agent ${row.agentRssMiB.toFixed(0)} MiB${row.haproxyRssMiB === undefined ? '' : `, HAProxy ${row.haproxyRssMiB.toFixed(0)} MiB`}`);
        }
      }
    });
  } finally {
    rmSync(directory, { recursive: true, force: true });
  }
  result.load.after = loadavg();
  result.goals = goalRows(result.throughput);
  return result;
}

export const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];

function goalRows(throughput: ThroughputRow[]): GoalRow[] {
  const find = (target: string, scheme: string, connections: number) => throughput.find((row) => row.target === target && row.scheme === scheme && row.connections === connections);
  return throughput.filter((row) => row.target === 'kubenft-haproxy').map((row) => {
    const [haproxy, nginx, builtin] = ['haproxy', 'nginx', 'kubenft'].map((target) => find(target, row.scheme, row.connections));
    const requestsVsHaproxy = row.requestsPerSecond / (haproxy?.requestsPerSecond ?? NaN);
    const p99VsHaproxy = row.p99Ms / (haproxy?.p99Ms ?? NaN);
    return {
      scheme: row.scheme, connections: row.connections, requestsVsHaproxy, p99VsHaproxy,
      requestsVsNginx: row.requestsPerSecond / (nginx?.requestsPerSecond ?? NaN), requestsVsBuiltin: row.requestsPerSecond / (builtin?.requestsPerSecond ?? NaN),
      met: requestsVsHaproxy >= 0.95 && p99VsHaproxy <= 1.1,
    };
  });
}

/** The phase's section of the report: every figure beside its anchors of the same run, as ratios. */
export function ingressReport(result: IngressBenchResult): string {
  const find = (target: string, scheme: string, connections: number) => result.throughput.find((row) => row.target === target && row.scheme === scheme && row.connections === connections);
  const ratio = (row: ThroughputRow, anchor: ThroughputRow | undefined) => (anchor && anchor !== row ? `${(row.requestsPerSecond / anchor.requestsPerSecond).toFixed(2)}` : '—');
  const p99Ratio = (row: ThroughputRow, anchor: ThroughputRow | undefined) => (anchor && anchor !== row ? `${(row.p99Ms / anchor.p99Ms).toFixed(2)}` : '—');
  const lines = [
    `## Ingress proxy (one run, side by side; ${PODS.length} backend pods; two workers or threads per proxy; wrk -t2 from the client namespace; medians of ${ROUNDS} rounds; load average ${result.load.before.map((load) => load.toFixed(2)).join(' ')} before, ${result.load.after.map((load) => load.toFixed(2)).join(' ')} after)`, '',
    '### kubenft on HAProxy against the goals (req/s ≥ 0.95× bare HAProxy, p99 ≤ 1.1×)', '',
    '| scheme | connections | req/s vs bare HAProxy | p99 vs bare HAProxy | req/s vs nginx | req/s vs the built-in | goal met |', '|---|---|---|---|---|---|---|',
    ...result.goals.map((row) => `| ${row.scheme} | ${row.connections} | ${row.requestsVsHaproxy.toFixed(2)} | ${row.p99VsHaproxy.toFixed(2)} | ${row.requestsVsNginx.toFixed(2)} | ${row.requestsVsBuiltin.toFixed(2)} | ${row.met ? 'yes' : 'no'} |`),
    '', '### Every target', '',
    'Backends directly: wrk against one pod over plain HTTP, no proxy hop (the HTTPS rows are compared with it too).', '',
    'kubenft-haproxy: kubenft with --ingress-dataplane=haproxy; haproxy: the same HAProxy with a static configuration of the same route.', '',
    '| target | scheme | connections | req/s | p99 ms | rounds (req/s) | errors | req/s vs HAProxy | p99 vs HAProxy | req/s vs nginx | req/s vs backends directly |', '|---|---|---|---|---|---|---|---|---|---|---|',
    ...result.throughput.map((row) => `| ${row.target} | ${row.scheme} | ${row.connections} | ${row.requestsPerSecond.toFixed(0)} | ${row.p99Ms.toFixed(2)} | ${row.rounds.map((each) => each.requestsPerSecond.toFixed(0)).join(', ')} | ${row.errors} | ${
      ratio(row, find('haproxy', row.scheme, row.connections))} | ${p99Ratio(row, find('haproxy', row.scheme, row.connections))} | ${ratio(row, find('nginx', row.scheme, row.connections))} | ${ratio(row, find('backend directly', 'http', row.connections))} |`),
    '', `| dataplane | Ingresses | Ingress created in the API server → first request its route answers: median of ${CHANGES_PER_SIZE} (ms) | all samples (ms) | median vs the 100 ms goal | agent RSS (MiB, with its workers) | HAProxy RSS (MiB, master and worker) |`, '|---|---|---|---|---|---|---|',
    ...result.changes.map((row) => `| ${row.dataplane} | ${row.ingresses} | ${row.changeToTrafficMs.toFixed(1)} | ${row.samplesMs.map((sample) => sample.toFixed(0)).join(', ')} | ${(row.changeToTrafficMs / 100).toFixed(2)} | ${row.agentRssMiB.toFixed(0)} | ${row.haproxyRssMiB?.toFixed(0) ?? '—'} |`),
    '', `| proxy: what changes (endpoints unless said; every ${CHURN_INTERVAL_MS} ms, rotations every ${ROTATION_INTERVAL_MS} ms; wrk -c16) | changes | requests | failed | failed per 10,000 |`, '|---|---|---|---|---|',
    ...result.churn.map((row) => `| ${row.proxy} | ${row.changes} | ${row.requests} | ${row.failed} | ${((row.failed / Math.max(1, row.requests)) * 10_000).toFixed(2)} |`),
    '',
  ];
  return lines.join('\n');
}
