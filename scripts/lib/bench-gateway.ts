// The Gateway API benchmark (issue 29's goals), on each ingress dataplane (built-in, HAProxy): the
// throughput of a Gateway listener beside an Ingress served by the same agent on the same dataplane
// (kubenft --ingress --gateway, each on its own ports, the same host and backends), as ratios of
// one run; failed requests under a bounded load (wrk -c16) while routes, endpoints and the HTTPS
// listener's certificate change; and the time from an HTTPRoute created in the API server to the
// first request its route answers at 10 and 10,000 routes. It shares the ingress bench's topology,
// backends, fake API server and load tools.
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { projectRoot } from '../../src/kernel/native.js';
import { ClusterState, type KubeObject } from '../../src/cluster/cluster-state.js';
import { GATEWAY_WATCH, gatewayPlanInput } from '../../src/gateway/dataplane.js';
import { planGateways } from '../../src/gateway/plan.js';
import { gateway, gatewayClass, httpRoute } from '../../test/lib/gateway-manifests.js';
import type { IngressDataplaneName } from '../../test/lib/ingress-dataplane.js';
import {
  BACKEND_PORT, CHANGES_PER_SIZE, NODE_NAME, CHURN_CHANGES, CHURN_INTERVAL_MS, HOST, PODS, PORTS, ROTATIONS, ROTATION_INTERVAL_MS, ROUNDS, type ThroughputRow,
  answers, backendSlice, changeSamples, clusterObjects, ensurePackages, measureThroughput, median, selfSigned, startKubenft, tlsSecret, treeRssMiB, underChurn, until,
} from './bench-ingress.js';
import { type Topology, withTopology } from './topology.js';

/** The Ingress is on the ingress bench's ports of its dataplane; the Gateway's listeners on these (one agent at a time). */
const INGRESS_PORTS = { builtin: PORTS.kubenft, haproxy: PORTS['kubenft-haproxy'] } as const;
const GATEWAY_PORTS = [6080, 6443] as const;
const DATAPLANES: IngressDataplaneName[] = ['builtin', 'haproxy'];
const GATEWAY_SECRET = 'gateway-listener';
const ROUTE_SIZES = [10, 10_000];
const API_PORT = 16543;

/** A ThroughputRow whose target is '<Ingress|Gateway> (<dataplane>)'. */
export interface GatewayThroughputRow extends ThroughputRow { listener: 'Ingress' | 'Gateway'; dataplane: IngressDataplaneName }
/** The Gateway beside the Ingress on the same dataplane, in the same run (the goal: as Ingress's). */
export interface GatewayRatioRow { dataplane: IngressDataplaneName; scheme: 'http' | 'https'; connections: number; requestsVsIngress: number; p99VsIngress: number }
export interface RouteChangeRow { dataplane: IngressDataplaneName; routes: number; medianMs: number; samplesMs: number[]; agentRssMiB: number }
export interface GatewayChurnRow { dataplane: IngressDataplaneName; what: string; changes: number; requests: number; failed: number }
export interface GatewayBenchResult {
  throughput: GatewayThroughputRow[]; ratios: GatewayRatioRow[]; changes: RouteChangeRow[]; churn: GatewayChurnRow[]; failures: string[];
  load: { before: number[]; after: number[] };
}

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

async function routeChanges(topology: Topology, directory: string, dataplane: IngressDataplaneName, routes: number, apiPort: number, certificate: { cert: string; key: string }): Promise<RouteChangeRow> {
  const kubenft = await startKubenft(topology, directory, gatewayObjects(routes, certificate), apiPort, dataplane, GATEWAY_ARGS);
  try {
    await until(() => answers(topology, GATEWAY_PORTS[0]), 300_000, `kubenft (${dataplane}) with ${routes} HTTPRoutes`);
    const samplesMs = await changeSamples(topology, kubenft.api, GATEWAY_PORTS[0], CHANGES_PER_SIZE, (index, host) => hostRoute(`probe-${index}`, host));
    return { dataplane, routes, medianMs: median(samplesMs), samplesMs, agentRssMiB: treeRssMiB(kubenft.pids().agent) };
  } finally {
    await kubenft.stop();
  }
}

/** Throughput of the Ingress and the Gateway on one agent, then failed requests while the Gateway's routes, endpoints and certificate change. */
async function throughputAndChurn(topology: Topology, directory: string, dataplane: IngressDataplaneName, apiPort: number, certificates: { cert: string; key: string }[], seconds: number, result: GatewayBenchResult, progress: (message: string) => void): Promise<void> {
  const node = topology.external.nodeIPv4;
  const ingressPorts = INGRESS_PORTS[dataplane];
  const under = await startKubenft(topology, directory, [...gatewayObjects(1, certificates[0]), tlsSecret(certificates[0])], apiPort, dataplane, [...GATEWAY_ARGS, '--ingress-default-certificate', 'default/bench-default']);
  try {
    await until(async () => (await answers(topology, ingressPorts[0])) && answers(topology, GATEWAY_PORTS[0]), 60_000, `kubenft's Ingress and Gateway (${dataplane})`);
    const listeners = [['Ingress', ingressPorts], ['Gateway', GATEWAY_PORTS]] as const;
    const rows = await measureThroughput(topology, listeners.flatMap(([listener, ports]) => (['http', 'https'] as const).map((scheme, index) => [`${listener} (${dataplane})`, `${scheme}://${node}:${ports[index]}/`, scheme] as [string, string, 'http' | 'https'])), seconds, progress);
    result.throughput.push(...rows.map((row) => ({ ...row, listener: row.target.startsWith('Gateway') ? 'Gateway' as const : 'Ingress' as const, dataplane })));
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
      result.churn.push({ dataplane, what, changes, ...churn });
      progress(`${dataplane}: ${churn.failed} failed of ${churn.requests} requests during ${changes} ${what}`);
    }
  } finally {
    await under.stop();
  }
}

export async function runGatewayBench(options: Options): Promise<GatewayBenchResult> {
  ensurePackages();
  const seconds = options.quick ? 3 : 8;
  const result: GatewayBenchResult = { throughput: [], ratios: [], changes: [], churn: [], failures: [], load: { before: loadavg(), after: [] } };
  const directory = mkdtempSync(join(tmpdir(), 'kubenft-bench-gateway-'));
  try {
    await withTopology({ pods: PODS, serverReadyTimeoutMs: 60_000 }, async (topology) => {
      const backends = PODS.map((pod, index) => topology.spawn(topology.pods[index].ns, ['node', join(projectRoot(), 'test/fixtures/http-echo.mjs'), pod.name, String(BACKEND_PORT)]));
      await Promise.all(backends.map((backend) => backend.waitForOutput(/ready/, 60_000)));
      const certificates = [selfSigned(directory, 'gateway-a'), selfSigned(directory, 'gateway-b')];
      let apiPort = API_PORT;
      // One agent per network namespace at a time: the built-in's, then HAProxy's.
      for (const dataplane of DATAPLANES) await throughputAndChurn(topology, directory, dataplane, ++apiPort, certificates, seconds, result, options.progress);
      for (const dataplane of DATAPLANES) {
        for (const routes of ROUTE_SIZES) {
          try {
            const row = await routeChanges(topology, directory, dataplane, routes, ++apiPort, certificates[0]);
            result.changes.push(row);
            options.progress(`${dataplane}: HTTPRoute created → traffic at ${routes} routes: median ${row.medianMs.toFixed(1)} ms of ${row.samplesMs.map((sample) => sample.toFixed(1)).join(', ')}; agent ${row.agentRssMiB.toFixed(0)} MiB`);
          } catch (error) {
            // The other sizes and the figures above still stand.
            result.failures.push(`HTTPRoute changes at ${routes} routes (${dataplane}): ${(error as Error).message.split('\n')[0]}`);
            options.progress(result.failures.at(-1)!);
          }
        }
      }
    });
  } finally {
    rmSync(directory, { recursive: true, force: true });
  }
  result.load.after = loadavg();
  result.ratios = ratioRows(result.throughput);
  return result;
}

function ratioRows(throughput: GatewayThroughputRow[]): GatewayRatioRow[] {
  return throughput.filter((row) => row.listener === 'Gateway').map((row) => {
    const ingress = throughput.find((other) => other.listener === 'Ingress' && other.dataplane === row.dataplane && other.scheme === row.scheme && other.connections === row.connections);
    return {
      dataplane: row.dataplane, scheme: row.scheme, connections: row.connections,
      requestsVsIngress: row.requestsPerSecond / (ingress?.requestsPerSecond ?? NaN), p99VsIngress: row.p99Ms / (ingress?.p99Ms ?? NaN),
    };
  });
}

/** The phase's section of the report: each Gateway listener beside the Ingress on its dataplane, as ratios of the same run. */
export function gatewayReport(result: GatewayBenchResult): string {
  const load = (values: number[]) => values.map((each) => each.toFixed(2)).join(' ');
  return [
    `## Gateway API (one agent per dataplane serving an Ingress and a Gateway for the same host and backends; wrk -t2; medians of ${ROUNDS} rounds; load average ${load(result.load.before)} before, ${load(result.load.after)} after)`, '',
    '### The Gateway against the goal (throughput as the Ingress\'s on the same dataplane)', '',
    '| dataplane | scheme | connections | Gateway req/s vs the Ingress | Gateway p99 vs the Ingress |', '|---|---|---|---|---|',
    ...result.ratios.map((row) => `| ${row.dataplane} | ${row.scheme} | ${row.connections} | ${row.requestsVsIngress.toFixed(2)} | ${row.p99VsIngress.toFixed(2)} |`),
    '', '### Every target', '',
    '| listener | dataplane | scheme | connections | req/s | p99 ms | rounds (req/s) | errors |', '|---|---|---|---|---|---|---|---|',
    ...result.throughput.map((row) => `| ${row.listener} | ${row.dataplane} | ${row.scheme} | ${row.connections} | ${row.requestsPerSecond.toFixed(0)} | ${row.p99Ms.toFixed(2)} | ${row.rounds.map((each) => each.requestsPerSecond.toFixed(0)).join(', ')} | ${row.errors} |`),
    '', `| dataplane | HTTPRoutes | HTTPRoute created in the API server → first request its route answers: median of ${CHANGES_PER_SIZE} (ms) | all samples (ms) | median vs the 100 ms goal | agent RSS (MiB, with its workers) |`, '|---|---|---|---|---|---|',
    ...result.changes.map((row) => `| ${row.dataplane} | ${row.routes} | ${row.medianMs.toFixed(1)} | ${row.samplesMs.map((sample) => sample.toFixed(0)).join(', ')} | ${(row.medianMs / 100).toFixed(2)} | ${row.agentRssMiB.toFixed(0)} |`),
    '', `| dataplane | what changes under wrk -c16 on the Gateway listener (every ${CHURN_INTERVAL_MS} ms, rotations every ${ROTATION_INTERVAL_MS} ms) | changes | requests | failed | failed per 10,000 |`, '|---|---|---|---|---|---|',
    ...result.churn.map((row) => `| ${row.dataplane} | ${row.what} | ${row.changes} | ${row.requests} | ${row.failed} | ${((row.failed / Math.max(1, row.requests)) * 10_000).toFixed(2)} |`),
    ...(result.failures.length > 0 ? ['', 'Not measured:', '', ...result.failures.map((failure) => `- ${failure}`)] : []),
    '',
  ].join('\n');
}
