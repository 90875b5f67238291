// Cluster DNS over every path a real client takes, with real dig: UDP and TCP, from the node's own
// namespace and from a pod's, to the link-local address and to the kube-dns ClusterIP, while
// kubenft serves, once it was SIGKILLed (the ClusterIP then reaches the DNS Service's endpoint, a
// real DNS responder on a pod IP, through the proxy's DNAT) and once it is back; then an IPv6
// ClusterIP, EDNS0 sizes, truncated answers retried over TCP and pipelined TCP queries. Each cell
// is a named subtest.
import t, { type Test } from 'tap';
import { isIPv6 } from 'node:net';
import { join } from 'node:path';
import { createTopology, type ProcessHandle, type Topology } from '../../scripts/lib/topology.js';
import { projectRoot } from '../../src/kernel/native.js';
import { CLI } from '../lib/kubenft.js';
import { ManifestFile, service, slice } from '../lib/manifests.js';

const LINK_LOCAL = '169.254.20.10';
const KUBE_DNS_IP = '10.0.0.10';
const KUBE_DNS_IPV6 = 'fd00:10:96::a';
const COREDNS_POD = { name: 'coredns', ipv4: '10.244.1.53', ipv6: 'fd00:244:1::53' };
const CLIENT_POD = { name: 'client', ipv4: '10.244.2.7', ipv6: 'fd00:244:2::7' };
const RESPONDER = join(projectRoot(), 'test/fixtures/dns-responder.mjs');
const PIPELINE = join(projectRoot(), 'test/fixtures/dns-pipeline.mjs');
const Z = 'svc.cluster.local';
const SERVICE_IP = '10.0.0.20';
/** What the DNS Service's endpoint (the "CoreDNS pod") answers for every A query. */
const ENDPOINT_ANSWER = '192.0.2.53';
/** What a host-network DNS server bound to the wildcard address answers. */
const OTHER_SERVER_ANSWER = '192.0.2.99';
/** What kubenft advertises and caps a client's EDNS size at (src/dns/wire.ts). */
const EDNS_UDP_SIZE = 1232;

const TARGETS = { 'link-local address': LINK_LOCAL, 'kube-dns ClusterIP': KUBE_DNS_IP } as const;
type Target = keyof typeof TARGETS;
type Transport = 'UDP' | 'TCP';
type Origin = 'node' | 'pod';
const TRANSPORTS: Transport[] = ['UDP', 'TCP'];
const ORIGINS: Origin[] = ['node', 'pod'];
const TARGET_NAMES = Object.keys(TARGETS) as Target[];

/** Headless services sized so that their A answers fall on each side of 512 and 1232 bytes. */
const SIZED = { small: 1, medium: 16, large: 80 } as const;
type Size = keyof typeof SIZED;
const endpointsOf = (count: number) => Array.from({ length: count }, (_, index) => ({ ip: `10.245.${Math.floor(index / 200)}.${(index % 200) + 1}` }));
const namespace = (name: string) => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name } });
const dnsPorts = [{ name: 'dns', port: 53, protocol: 'UDP' as const }, { name: 'dns-tcp', port: 53, protocol: 'TCP' as const }];
const objects = [
  namespace('default'), namespace('kube-system'),
  { ...service('kube-dns', [KUBE_DNS_IP, KUBE_DNS_IPV6], dnsPorts), metadata: { name: 'kube-dns', namespace: 'kube-system' } },
  ...(['IPv4', 'IPv6'] as const).map((addressType) => ({
    ...slice('kube-dns', dnsPorts, [{ ip: addressType === 'IPv4' ? COREDNS_POD.ipv4 : COREDNS_POD.ipv6 }], { addressType }),
    metadata: { name: `kube-dns-${addressType.toLowerCase()}`, namespace: 'kube-system', labels: { 'kubernetes.io/service-name': 'kube-dns' } },
  })),
  service('hostnames', SERVICE_IP, [{ name: 'http', port: 80 }]),
  ...Object.entries(SIZED).flatMap(([name, count]) => [service(name, 'None', []), slice(name, [], endpointsOf(count))]),
];

let topology: Topology;
let manifests: ManifestFile;
let agent: ProcessHandle | undefined;
let endpoint: ProcessHandle;

const namespaceOf = (origin: Origin) => (origin === 'node' ? topology.node : topology.pods[1].ns);
/** dig, bounded: one try of 2 s (a TCP retry after truncation is part of that try). */
const dig = (origin: Origin, server: string, ...args: string[]) =>
  topology.exec(namespaceOf(origin), ['dig', '+time=2', '+tries=1', `@${server}`, ...args]);
/** The records of a +short answer (dig's own error lines start with ';;'). */
const records = (stdout: string) => stdout.split('\n').filter((line) => line !== '' && !line.startsWith(';')).sort();
const transportFlag = (transport: Transport) => (transport === 'TCP' ? '+tcp' : '+notcp');
/** From dig's full output: the answer's record count and the transport it finally came over. */
const answered = (stdout: string) => ({ records: Number(/ANSWER: (\d+)/.exec(stdout)?.[1]), over: /;; SERVER: \S+ \((UDP|TCP)\)/.exec(stdout)?.[1] });

/** The node namespace's conntrack entries of one protocol to one address (original direction). */
const conntrack = async (protocol: Transport, address: string) =>
  (await topology.exec(topology.node, ['conntrack', '-L', '-f', isIPv6(address) ? 'ipv6' : 'ipv4', '-p', protocol.toLowerCase(), '-d', address])).stdout.trim();
const flushConntrack = () => topology.exec(topology.node, ['conntrack', '-F']);

async function startAgent(): Promise<void> {
  agent = topology.spawn(topology.node, ['node', CLI, '--manifests', manifests.path, '--cluster-dns', `${LINK_LOCAL},${KUBE_DNS_IP},${KUBE_DNS_IPV6}`,
    '--dns-upstream', '127.0.0.1:5353', '--healthz-bind-address', '', '--metrics-bind-address', '']);
  // SERVFAIL until the first update is applied, which waits for the node's-own-queries rule.
  for (let attempt = 0; attempt < 100; attempt++) {
    if (/status: NOERROR/.test((await dig('pod', LINK_LOCAL, `hostnames.default.${Z}`)).stdout)) return;
    if (agent.child.exitCode !== null) break;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error(`kubenft did not serve: ${agent.output().stderr}`);
}

t.before(async () => {
  topology = await createTopology({ pods: [COREDNS_POD, CLIENT_POD] });
  manifests = new ManifestFile(objects);
  endpoint = topology.spawn(topology.pods[0].ns, ['node', RESPONDER, COREDNS_POD.ipv4, '53', ENDPOINT_ANSWER]);
  await endpoint.waitForOutput(/listening/, 10_000);
  await startAgent();
});

t.teardown(async () => {
  await agent?.stop();
  await endpoint?.stop();
  await topology?.destroy();
  manifests?.remove();
});

type Phase = 'up' | 'killed' | 'back';
/**
 * Who answers: kubenft, untracked; with kubenft gone, the DNS Service's endpoint for the ClusterIP
 * (tracked, DNATed by the proxy's rules) and nobody for the link-local address, which has no
 * Service behind it and is no longer local once the TUN device died with the process.
 */
const answerer = (phase: Phase, target: Target) => (phase !== 'killed' ? 'kubenft' : target === 'kube-dns ClusterIP' ? 'endpoint' : 'nobody');

async function matrix(t: Test, phase: Phase): Promise<void> {
  for (const transport of TRANSPORTS) {
    for (const origin of ORIGINS) {
      for (const target of TARGET_NAMES) {
        const address = TARGETS[target];
        const who = answerer(phase, target);
        await t.test(`${transport} from the ${origin} to the ${target} (${address}): ${who === 'nobody' ? 'no answer' : `${who} answers`}`, async (t) => {
          await flushConntrack();
          const result = await dig(origin, address, transportFlag(transport), '+short', `hostnames.default.${Z}`);
          if (who === 'kubenft') {
            t.same(records(result.stdout), [SERVICE_IP], result.stdout);
            t.equal(await conntrack(transport, address), '', 'no packet of the exchange left a conntrack entry');
          } else if (who === 'endpoint') {
            t.same(records(result.stdout), [ENDPOINT_ANSWER], result.stdout);
            t.match(await conntrack(transport, address), new RegExp(`src=${COREDNS_POD.ipv4.replace(/\./g, '\\.')} `), 'tracked and DNATed to the endpoint');
          } else {
            t.same(records(result.stdout), [], result.stdout);
            t.not(result.code, 0, 'dig fails');
          }
        });
      }
    }
  }
}

t.test('server up', (t) => matrix(t, 'up'));

t.test('IPv6: a pod\'s queries to the kube-dns ClusterIP over UDP and TCP, answered by kubenft, untracked', async (t) => {
  for (const transport of TRANSPORTS) {
    await t.test(`${transport} from the pod to ${KUBE_DNS_IPV6}`, async (t) => {
      await flushConntrack();
      const result = await dig('pod', KUBE_DNS_IPV6, transportFlag(transport), '+short', `hostnames.default.${Z}`);
      t.same(records(result.stdout), [SERVICE_IP], result.stdout);
      t.equal(await conntrack(transport, KUBE_DNS_IPV6), '', 'no packet of the exchange left a conntrack entry');
    });
  }
});

t.test('EDNS0 sizes from a pod: truncated over UDP exactly when larger than the client\'s size (at most 1232), whole after dig\'s TCP retry', async (t) => {
  const sizes: Record<Size, number> = { small: 0, medium: 0, large: 0 };
  for (const size of Object.keys(SIZED) as Size[]) {
    const whole = (await dig('node', LINK_LOCAL, '+tcp', `${size}.default.${Z}`)).stdout;
    sizes[size] = Number(/MSG SIZE\s+rcvd: (\d+)/.exec(whole)?.[1]);
  }
  t.ok(sizes.small < 512 && sizes.medium > 512 && sizes.medium < EDNS_UDP_SIZE && sizes.large > EDNS_UDP_SIZE, `the services' answers straddle 512 and 1232 bytes: ${JSON.stringify(sizes)}`);
  const bufsizes: [string, string[], number][] = [
    ['no EDNS', ['+noedns'], 512],
    ...[512, 1232, 4096].map((bufsize): [string, string[], number] => [`EDNS ${bufsize}`, [`+bufsize=${bufsize}`], Math.min(bufsize, EDNS_UDP_SIZE)]),
  ];
  for (const target of TARGET_NAMES) {
    for (const [label, edns, limit] of bufsizes) {
      for (const size of Object.keys(SIZED) as Size[]) {
        const truncated = sizes[size] > limit;
        await t.test(`${label} to the ${target}, ${size} answer (${sizes[size]} B): ${truncated ? 'TC over UDP, whole over TCP' : 'whole over UDP'}`, async (t) => {
          const udp = (await dig('pod', TARGETS[target], ...edns, '+notcp', '+ignore', `${size}.default.${Z}`)).stdout;
          t.equal(/flags: [^;]*\btc\b/.test(udp), truncated, 'the TC bit');
          t.equal(/ANSWER: (\d+)/.exec(udp)?.[1], String(truncated ? 0 : SIZED[size]), 'the answer records over UDP');
          if (edns[0] !== '+noedns') t.match(udp, new RegExp(`; EDNS: version: 0, flags:; udp: ${EDNS_UDP_SIZE}`), 'kubenft advertises its size');
          const retried = (await dig('pod', TARGETS[target], ...edns, `${size}.default.${Z}`)).stdout;
          t.same(answered(retried), { records: SIZED[size], over: truncated ? 'TCP' : 'UDP' }, 'with dig\'s default retry every record arrives, over TCP after a TC');
        });
      }
    }
  }
});

t.test('a truncated answer is retried over TCP by dig and arrives whole, from the node and from a pod', async (t) => {
  for (const origin of ORIGINS) {
    for (const target of TARGET_NAMES) {
      await t.test(`from the ${origin} to the ${target}`, async (t) => {
        await flushConntrack();
        const result = (await dig(origin, TARGETS[target], '+noedns', `medium.default.${Z}`)).stdout;
        t.match(result, /;; Truncated, retrying in TCP mode\./);
        t.same(answered(result), { records: SIZED.medium, over: 'TCP' }, result);
        t.equal(await conntrack('TCP', TARGETS[target]), '', 'the TCP retry left no conntrack entry');
      });
    }
  }
});

t.test('pipelined queries on one TCP connection, answered in full, whichever part of the server answers each', async (t) => {
  // From the table (ClusterIP, headless, NXDOMAIN) and from the worker (a pod record).
  const queries: [string, string, string[]][] = [
    [`hostnames.default.${Z}`, 'NOERROR', [SERVICE_IP]],
    [`large.default.${Z}`, 'NOERROR', endpointsOf(SIZED.large).map((endpoint) => endpoint.ip).sort()],
    [`nothing.default.${Z}`, 'NXDOMAIN', []],
    ['10-2-3-4.default.pod.cluster.local', 'NOERROR', ['10.2.3.4']],
    [`small.default.${Z}`, 'NOERROR', endpointsOf(SIZED.small).map((endpoint) => endpoint.ip)],
  ];
  for (const origin of ORIGINS) {
    for (const target of TARGET_NAMES) {
      await t.test(`${queries.length} queries in one write from the ${origin} to the ${target}`, async (t) => {
        await flushConntrack();
        const result = await topology.exec(namespaceOf(origin), ['node', PIPELINE, TARGETS[target], '53', ...queries.map(([name]) => name)]);
        t.equal(result.code, 0, result.stderr);
        const { answers } = JSON.parse(result.stdout || '{"answers":[]}') as { answers: { name: string; rcode: string; data: string[] }[] };
        t.same(answers.map((answer) => [answer.name, answer.rcode, answer.data]), queries);
        t.equal(await conntrack('TCP', TARGETS[target]), '', 'no conntrack entry');
      });
    }
  }
  await t.test('dig +keepopen: several queries, one after another on one connection, from a pod to the kube-dns ClusterIP', async (t) => {
    const result = (await dig('pod', KUBE_DNS_IP, '+tcp', '+keepopen', '+short', `hostnames.default.${Z}`, `small.default.${Z}`, `hostnames.default.${Z}`)).stdout;
    t.same(records(result), [SERVICE_IP, SERVICE_IP, ...endpointsOf(SIZED.small).map((endpoint) => endpoint.ip)].sort(), result);
  });
});

t.test('killed (SIGKILL)', async (t) => {
  agent!.child.kill('SIGKILL');
  await agent!.exited;
  agent = undefined;
  t.notMatch((await topology.exec(topology.node, ['ip', '-br', 'addr'])).stdout, /kubenft-dns/, 'the TUN device and its addresses died with the process');
  await matrix(t, 'killed');
  // A host-network DNS server bound to the wildcard address is not kubenft's: while kubenft is
  // down, the ClusterIP's queries still go to the DNS Service's endpoint, over UDP and TCP.
  const other = topology.spawn(topology.node, ['node', RESPONDER, '0.0.0.0', '53', OTHER_SERVER_ANSWER]);
  try {
    await other.waitForOutput(/listening/, 10_000);
    for (const transport of TRANSPORTS) {
      await t.test(`${transport} from the pod to the kube-dns ClusterIP with another server on 0.0.0.0:53: the endpoint answers`, async (t) => {
        await flushConntrack();
        const result = await dig('pod', KUBE_DNS_IP, transportFlag(transport), '+short', `hostnames.default.${Z}`);
        t.same(records(result.stdout), [ENDPOINT_ANSWER], result.stdout);
      });
    }
  } finally {
    await other.stop();
  }
});

t.test('back (restarted)', async (t) => {
  await startAgent();
  await matrix(t, 'back');
});
