// The Gateway API benchmark (issue 29's goals), on the built-in dataplane: the time from an
// HTTPRoute created in the API server to the first request its route answers at 10 and 10,000
// routes; failed requests under a bounded load (wrk -c16) while routes, endpoints and the HTTPS
// listener's certificate change; and the throughput of a Gateway listener beside an Ingress served
// by the same agent (kubenft --ingress --gateway, each on its own ports), as ratios of one run.
// It shares the ingress bench's topology, backends, fake API server and load tools.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { projectRoot } from '../../src/kernel/native.js';
import { ClusterState, type KubeObject } from '../../src/cluster/cluster-state.js';
import { GATEWAY_WATCH, gatewayPlanInput } from '../../src/gateway/dataplane.js';
import { planGateways } from '../../src/gateway/plan.js';
import { gateway, gatewayClass, httpRoute } from '../../test/lib/gateway-manifests.js';
import {
  BACKEND_PORT, CHANGES_PER_SIZE, NODE_NAME, CHURN_CHANGES, CHURN_INTERVAL_MS, HOST, PODS, ROTATIONS, ROTATION_INTERVAL_MS,
  answers, backendSlice, changeSamples, clusterObjects, ensurePackages, selfSigned, startKubenft, tlsSecret, treeRssMiB, underChurn, until, wrk,
} from './bench-ingress.js';
import { type Topology, withTopology } from './topology.js';

/** The Ingress is on the ingress bench's kubenft ports; the Gateway's listeners on these. */
const INGRESS_PORTS = [80, 443] as const;
const GATEWAY_PORTS = [6080, 6443] as const;
const GATEWAY_SECRET = 'gateway-listener';
const ROUTE_SIZES = [10, 10_000];
const CONNECTIONS = [16, 256];
const API_PORT = 16543;

export interface GatewayThroughputRow { listener: 'Ingress' | 'Gateway'; scheme: 'http' | 'https'; connections: number; requestsPerSecond: number; p99Ms: number; errors: number }
export interface RouteChangeRow { routes: number; medianMs: number; samplesMs: number[]; agentRssMiB: number }
export interface GatewayChurnRow { what: string; changes: number; requests: number; failed: number }
export interface GatewayBenchResult { throughput: GatewayThroughputRow[]; changes: RouteChangeRow[]; churn: GatewayChurnRow[]; failures: string[] }

interface Options { quick: boolean; progress: (message: string) => void }

const GATEWAY_ARGS = ['--gateway', '--gateway-http-address', `0.0.0.0:${GATEWAY_PORTS[0]}`, '--gateway-https-address', `0.0.0.0:${GATEWAY_PORTS[1]}`];

/** The bench's host to the backend, through the Gateway's HTTP and HTTPS listeners. */
const hostRoute = (name: string, host: string) => httpRoute(name, { parents: [{ name: 'gw' }], hostnames: [host], rules: [{ backends: [{ name: 'backend' }] }] }, { creationTimestamp: '2024-01-01T00:00:00Z' });

/**
 * The ingress bench's cluster (its one Ingress), the served GatewayClass, a Gateway with an HTTP and
 * an HTTPS listener (no hostname: its certificate is served to wrk, which sends no SNI), and
 * `routes` HTTPRoutes, each already carrying the status kubenft writes for it (as the ingress bench's
 * Ingresses carry theirs): what is measured is a change in a settled cluster, not the first
 * agent's writing of 10,000 statuses.
 */
function gatewayObjects(routes: number, certificate: { cert: string; key: string }): KubeObject[] {
  const objects = unsettledObjects(routes, certificate);
  const state = new ClusterState(NODE_NAME);
  state.watch(GATEWAY_WATCH);
  // The Ingress and its class are the ingress capability's kinds, which this state does not watch.
  for (const object of objects) if (!object.kind?.startsWith('Ingress')) state.apply(object);
  const settings = { className: 'kubenft', httpAddress: GATEWAY_ARGS[2], httpsAddress: GATEWAY_ARGS[4] };
  const statuses = new Map(planGateways(gatewayPlanInput(state, settings)).routes.map((route) => [`${route.namespace}/${route.name}`, route.parents]));
  const stamped = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
  return objects.map((object) => {
    const parents = object.kind === 'HTTPRoute' ? statuses.get(`${object.metadata!.namespace}/${object.metadata!.name}`) : undefined;
    return parents ? { ...object, status: { parents: parents.map((parent) => ({ ...parent, conditions: parent.conditions.map((each) => ({ ...each, lastTransitionTime: stamped })) })) } } : object;
  });
}

function unsettledObjects(routes: number, certificate: { cert: string; key: string }): KubeObject[] {
  return [
    ...clusterObjects(1),
    tlsSecret(certificate, GATEWAY_SECRET),
    gatewayClass('kubenft'),
    gateway('gw', [
      { name: 'http', port: GATEWAY_PORTS[0], from: 'All' },
      { name: 'https', protocol: 'HTTPS', port: GATEWAY_PORTS[1], from: 'All', certificate: { name: GATEWAY_SECRET } },
    ]),
    hostRoute('bench', HOST),
    ...Array.from({ length: Math.max(0, routes - 1) }, (_, index) => hostRoute(`filler-${index}`, `filler-${index}.example.com`)),
  ];
}

async function routeChanges(topology: Topology, directory: string, routes: number, apiPort: number, certificate: { cert: string; key: string }): Promise<RouteChangeRow> {
  const kubenft = await startKubenft(topology, directory, gatewayObjects(routes, certificate), apiPort, 'builtin', GATEWAY_ARGS);
  try {
    await until(() => answers(topology, GATEWAY_PORTS[0]), 300_000, `kubenft with ${routes} HTTPRoutes`);
    const samplesMs = await changeSamples(topology, kubenft.api, GATEWAY_PORTS[0], CHANGES_PER_SIZE, (index, host) => hostRoute(`probe-${index}`, host));
    const medianMs = [...samplesMs].sort((a, b) => a - b)[Math.floor(samplesMs.length / 2)];
    return { routes, medianMs, samplesMs, agentRssMiB: treeRssMiB(kubenft.pids().agent) };
  } finally {
    await kubenft.stop();
  }
}

export async function runGatewayBench(options: Options): Promise<GatewayBenchResult> {
  ensurePackages();
  const seconds = options.quick ? 3 : 8;
  const result: GatewayBenchResult = { throughput: [], changes: [], churn: [], failures: [] };
  const directory = mkdtempSync(join(tmpdir(), 'kubenft-bench-gateway-'));
  try {
    await withTopology({ pods: PODS, serverReadyTimeoutMs: 60_000 }, async (topology) => {
      const backends = PODS.map((pod, index) => topology.spawn(topology.pods[index].ns, ['node', join(projectRoot(), 'test/fixtures/http-echo.mjs'), pod.name, String(BACKEND_PORT)]));
      await Promise.all(backends.map((backend) => backend.waitForOutput(/ready/, 60_000)));
      const certificates = [selfSigned(directory, 'gateway-a'), selfSigned(directory, 'gateway-b')];
      const node = topology.external.nodeIPv4;
      const under = await startKubenft(topology, directory, [...gatewayObjects(1, certificates[0]), tlsSecret(certificates[0])], API_PORT, 'builtin', [...GATEWAY_ARGS, '--ingress-default-certificate', 'default/bench-default']);
      try {
        await until(async () => (await answers(topology, INGRESS_PORTS[0])) && answers(topology, GATEWAY_PORTS[0]), 60_000, 'kubenft\'s Ingress and Gateway');
        for (const connections of CONNECTIONS) {
          for (const [listener, ports] of [['Ingress', INGRESS_PORTS], ['Gateway', GATEWAY_PORTS]] as const) {
            for (const [scheme, port] of [['http', ports[0]], ['https', ports[1]]] as const) {
              const url = `${scheme}://${node}:${port}/`;
              await wrk(topology, url, connections, 1);
              const run = await wrk(topology, url, connections, seconds);
              result.throughput.push({ listener, scheme, connections, requestsPerSecond: run.requestsPerSecond, p99Ms: run.p99Ms, errors: run.errors });
              options.progress(`${listener} ${scheme} c${connections}: ${run.requestsPerSecond.toFixed(0)} req/s, p99 ${run.p99Ms.toFixed(2)} ms, ${run.errors} errors`);
            }
          }
        }
        const gatewayHttp = `http://${node}:${GATEWAY_PORTS[0]}/`;
        const without = PODS.slice(0, 3);
        const churns: [string, number, () => Promise<{ requests: number; failed: number }>][] = [
          ['HTTPRoute changes (a route added each time)', CHURN_CHANGES, () => underChurn(topology, gatewayHttp, CHURN_CHANGES, CHURN_INTERVAL_MS, async (index) => {
            under.api.upsert(hostRoute(`churn-${index}`, `churn-${index}.example.com`));
          })],
          ['endpoint changes (a pod leaves and comes back)', CHURN_CHANGES, () => underChurn(topology, gatewayHttp, CHURN_CHANGES, CHURN_INTERVAL_MS, async (index) => {
            under.api.upsert(backendSlice(index % 2 === 0 ? without : PODS));
          })],
          ['HTTPS listener certificate rotations (https)', ROTATIONS, () => underChurn(topology, `https://${node}:${GATEWAY_PORTS[1]}/`, ROTATIONS, ROTATION_INTERVAL_MS, async (index) => {
            under.api.upsert(tlsSecret(certificates[(index + 1) % 2], GATEWAY_SECRET));
          })],
        ];
        for (const [what, changes, run] of churns) {
          const churn = await run();
          result.churn.push({ what, changes, ...churn });
          options.progress(`${churn.failed} failed of ${churn.requests} requests during ${changes} ${what}`);
        }
      } finally {
        await under.stop();
      }
      let apiPort = API_PORT;
      for (const routes of ROUTE_SIZES) {
        try {
          const row = await routeChanges(topology, directory, routes, ++apiPort, certificates[0]);
          result.changes.push(row);
          options.progress(`HTTPRoute created → traffic at ${routes} routes: median ${row.medianMs.toFixed(1)} ms of ${row.samplesMs.map((sample) => sample.toFixed(1)).join(', ')}; agent ${row.agentRssMiB.toFixed(0)} MiB`);
        } catch (error) {
          // The other sizes and the figures above still stand.
          result.failures.push(`HTTPRoute changes at ${routes} routes: ${(error as Error).message.split('\n')[0]}`);
          options.progress(result.failures.at(-1)!);
        }
      }
    });
  } finally {
    rmSync(directory, { recursive: true, force: true });
  }
  return result;
}

/** The phase's section of the report: the Gateway listener beside the Ingress of the same run, as ratios. */
export function gatewayReport(result: GatewayBenchResult): string {
  const ingressRow = (row: GatewayThroughputRow) => result.throughput.find((other) => other.listener === 'Ingress' && other.scheme === row.scheme && other.connections === row.connections);
  const ratio = (row: GatewayThroughputRow, of: (row: GatewayThroughputRow) => number) => {
    const anchor = ingressRow(row);
    return anchor && anchor !== row ? (of(row) / of(anchor)).toFixed(2) : '—';
  };
  return [
    '## Gateway API (built-in dataplane; one agent serving an Ingress and a Gateway for the same host and backends; wrk -t2)', '',
    '| listener | scheme | connections | req/s | p99 ms | errors | req/s vs the Ingress | p99 vs the Ingress |', '|---|---|---|---|---|---|---|---|',
    ...result.throughput.map((row) => `| ${row.listener} | ${row.scheme} | ${row.connections} | ${row.requestsPerSecond.toFixed(0)} | ${row.p99Ms.toFixed(2)} | ${row.errors} | ${ratio(row, (each) => each.requestsPerSecond)} | ${ratio(row, (each) => each.p99Ms)} |`),
    '', `| HTTPRoutes | HTTPRoute created in the API server → first request its route answers: median of ${CHANGES_PER_SIZE} (ms) | all samples (ms) | median vs the 100 ms goal | agent RSS (MiB, with its workers) |`, '|---|---|---|---|---|',
    ...result.changes.map((row) => `| ${row.routes} | ${row.medianMs.toFixed(1)} | ${row.samplesMs.map((sample) => sample.toFixed(0)).join(', ')} | ${(row.medianMs / 100).toFixed(2)} | ${row.agentRssMiB.toFixed(0)} |`),
    '', `| what changes under wrk -c16 on the Gateway listener (every ${CHURN_INTERVAL_MS} ms, rotations every ${ROTATION_INTERVAL_MS} ms) | changes | requests | failed | failed per 10,000 |`, '|---|---|---|---|---|',
    ...result.churn.map((row) => `| ${row.what} | ${row.changes} | ${row.requests} | ${row.failed} | ${((row.failed / Math.max(1, row.requests)) * 10_000).toFixed(2)} |`),
    ...(result.failures.length > 0 ? ['', 'Not measured:', '', ...result.failures.map((failure) => `- ${failure}`)] : []),
    '',
  ].join('\n');
}
