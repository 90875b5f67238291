// Cluster DNS, end to end: the real kubenft agent in a throwaway node namespace serving on the
// link-local address and the kube-dns ClusterIP, queried with dig from the client namespace; a tiny
// responder plays the upstream (counting its queries) and the "CoreDNS pod" behind the ClusterIP.
import t from 'tap';
import { join } from 'node:path';
import { createTopology, type ProcessHandle, type Topology } from '../../scripts/lib/topology.js';
import { projectRoot } from '../../src/kernel/native.js';
import { eventually } from '../lib/eventually.js';
import { CLI, kubenft, scrape } from '../lib/kubenft.js';
import { ManifestFile, service, slice } from '../lib/manifests.js';

const LINK_LOCAL = '169.254.20.10';
const KUBE_DNS_IP = '10.0.0.10';
const UPSTREAM_PORT = '5353';
/** Upstreams nobody answers on, asked in turn after the responder SERVFAILs: 6 × the 1.5 s timeout outlasts the largest duration bucket (8.192 s). */
const SILENT_UPSTREAMS = Array.from({ length: 6 }, (_, index) => `127.0.0.1:${5360 + index}`);
const METRICS = 'http://127.0.0.1:10249/metrics';
const RESPONDER = join(projectRoot(), 'test/fixtures/dns-responder.mjs');
const FUZZ = join(projectRoot(), 'test/fixtures/dns-fuzz.mjs');
const COREDNS_POD = { name: 'coredns', ipv4: '10.244.1.53', udp: true };
const Z = 'svc.cluster.local';
const OTHER_PROXY_IP = '10.0.0.30';
const OTHER_PROXY = { 'service.kubernetes.io/service-proxy-name': 'other-proxy' };

const namespace = (name: string) => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name } });
const inNamespace = <T extends { metadata: object }>(object: T, ns: string): T => ({ ...object, metadata: { ...object.metadata, namespace: ns } });
const kubeDNS = [
  inNamespace(service('kube-dns', KUBE_DNS_IP, [{ name: 'dns', port: 53, protocol: 'UDP' }, { name: 'dns-tcp', port: 53, protocol: 'TCP' }]), 'kube-system'),
  inNamespace(slice('kube-dns', [{ name: 'dns', port: 53, protocol: 'UDP' }, { name: 'dns-tcp', port: 53, protocol: 'TCP' }], [{ ip: COREDNS_POD.ipv4 }]), 'kube-system'),
];
const objects = (webEndpoints: string[]) => [
  namespace('default'), namespace('kube-system'), ...kubeDNS,
  service('hostnames', ['10.0.0.20', 'fd00:10:96::20'], [{ name: 'http', port: 80 }]),
  service('web', 'None', [{ name: 'http', port: 80 }]),
  slice('web', [{ name: 'http', port: 80 }], webEndpoints.map((ip) => ({ ip }))),
  { apiVersion: 'v1', kind: 'Service', metadata: { name: 'ext', namespace: 'default' }, spec: { type: 'ExternalName', externalName: 'hostnames.default.svc.cluster.local' } },
  service('elsewhere', OTHER_PROXY_IP, [{ name: 'http', port: 80 }], {}, { metadata: { name: 'elsewhere', namespace: 'default', labels: OTHER_PROXY } }),
  { ...slice('elsewhere', [{ name: 'http', port: 80 }], [{ ip: '10.1.0.9' }]), metadata: { name: 'elsewhere-ipv4', namespace: 'default', labels: { 'kubernetes.io/service-name': 'elsewhere', ...OTHER_PROXY } } },
  service('many', 'None', []),
  slice('many', [], Array.from({ length: 60 }, (_, index) => ({ ip: `10.245.0.${index + 1}` }))),
];

let topology: Topology;
let manifests: ManifestFile;
let agent: ProcessHandle | undefined;
let upstream: ProcessHandle;

const digFrom = async (ns: string, server: string, ...args: string[]) =>
  (await topology.exec(ns, ['dig', '+time=2', '+tries=1', `@${server}`, ...args])).stdout;
const dig = (server: string, ...args: string[]) => digFrom(topology.client, server, ...args);
/** A host-network client: the node namespace itself, where the proxy's output rules apply. */
const digFromNode = (server: string, ...args: string[]) => digFrom(topology.node, server, ...args);
const short = async (...args: string[]) => (await dig(LINK_LOCAL, '+short', ...args)).trim().split('\n').filter(Boolean).sort();
const status = async (...args: string[]) => /status: (\w+)/.exec(await dig(LINK_LOCAL, ...args))?.[1];

/** The DNS table as nft (the independent oracle) lists it: each rule's expressions, each set's elements. */
async function listedDnsTable(): Promise<{ rules: [string, unknown[]][]; sets: Record<string, unknown[]> }> {
  const listed = JSON.parse((await topology.exec(topology.node, ['nft', '-j', 'list', 'table', 'inet', 'kubenft-dns'])).stdout) as { nftables: Record<string, { chain?: string; expr?: unknown[]; name?: string; elem?: unknown[] }>[] };
  const rules: [string, unknown[]][] = [];
  const sets: Record<string, unknown[]> = {};
  for (const object of listed.nftables) {
    if (object.rule) rules.push([object.rule.chain!, object.rule.expr!]);
    if (object.set) sets[object.set.name!] = object.set.elem!;
  }
  return { rules, sets };
}

const servedBy = (address: string, port: string) => ({
  match: { op: '==', left: { concat: [{ payload: { protocol: 'ip', field: address } }, { meta: { key: 'l4proto' } }, { payload: { protocol: 'th', field: port } }] }, right: '@served-ipv4' },
});
const socketIs = (key: string, value: number) => ({ match: { op: '==', left: { socket: { key } }, right: value } });
const TCP = { match: { op: '==', left: { meta: { key: 'l4proto' } }, right: 'tcp' } };
const EXPECTED_DNS_TABLE = {
  rules: [
    ['prerouting', [servedBy('daddr', 'dport'), socketIs('wildcard', 0), { notrack: null }]],
    ['prerouting', [servedBy('daddr', 'dport'), TCP, socketIs('wildcard', 1), { accept: null }]],
    ['prerouting', [servedBy('daddr', 'dport'), TCP, socketIs('transparent', 0), { notrack: null }]],
    ['output', [servedBy('saddr', 'sport'), { notrack: null }]],
    ['output', [servedBy('daddr', 'dport'), { match: { op: '==', left: { fib: { result: 'type', flags: ['daddr'] } }, right: 'local' } }, { notrack: null }]],
  ],
  sets: { 'served-ipv4': [LINK_LOCAL, KUBE_DNS_IP].flatMap((address) => ['tcp', 'udp'].map((protocol) => ({ concat: [address, protocol, 53] }))) },
};
const sortedElements = (table: { sets: Record<string, unknown[]> }) =>
  Object.fromEntries(Object.entries(table.sets).map(([name, elements]) => [name, elements.map((element) => JSON.stringify(element)).sort()]));

/** `wrapper`: a command the agent runs under, given the agent's argv as "$@". */
async function startAgent(wrapper: string[] = []): Promise<void> {
  agent = topology.spawn(topology.node, [...wrapper, 'node', CLI, '--manifests', manifests.path, '--cluster-dns', `${LINK_LOCAL},${KUBE_DNS_IP}`,
    '--dns-upstream', [`127.0.0.1:${UPSTREAM_PORT}`, ...SILENT_UPSTREAMS].join(','), '--healthz-bind-address', '', '--metrics-bind-address', '127.0.0.1:10249']);
  if (!(await eventually(async () => (await status(`hostnames.default.${Z}`)) === 'NOERROR'))) throw new Error(`kubenft did not serve: ${agent.output().stderr}`);
}

t.before(async () => {
  topology = await createTopology({ pods: [COREDNS_POD] });
  manifests = new ManifestFile(objects(['10.1.0.5', '10.1.0.6']));
  upstream = topology.spawn(topology.node, ['node', RESPONDER, '127.0.0.1', UPSTREAM_PORT, '192.0.2.1']);
  await upstream.waitForOutput(/listening/, 10_000);
  await startAgent();
});

t.teardown(async () => {
  await agent?.stop();
  await upstream?.stop();
  await topology?.destroy();
  manifests?.remove();
});

t.test('ClusterIP services: A and AAAA (dual stack), SRV for named ports, PTR in both families', async (t) => {
  t.same(await short(`hostnames.default.${Z}`, 'A'), ['10.0.0.20']);
  t.same(await short(`hostnames.default.${Z}`, 'AAAA'), ['fd00:10:96::20']);
  t.same(await short(`_http._tcp.hostnames.default.${Z}`, 'SRV'), [`0 50 80 hostnames.default.${Z}.`, `0 50 80 hostnames.default.${Z}.`]);
  t.same(await short('-x', '10.0.0.20'), [`hostnames.default.${Z}.`]);
  t.same(await short('-x', 'fd00:10:96::20'), [`hostnames.default.${Z}.`]);
});

t.test('another proxy\'s Service has a name, and no rule of kubenft\'s proxy', async (t) => {
  t.same(await short(`elsewhere.default.${Z}`, 'A'), [OTHER_PROXY_IP]);
  t.same(await short(`_http._tcp.elsewhere.default.${Z}`, 'SRV'), [`0 100 80 elsewhere.default.${Z}.`]);
  const ruleset = (await topology.exec(topology.node, ['nft', 'list', 'ruleset'])).stdout;
  t.match(ruleset, /10\.0\.0\.20/, 'the proxy\'s rules hold the other services');
  t.notMatch(ruleset, /10\.0\.0\.30|10\.1\.0\.9/, 'neither its ClusterIP nor its endpoint');
});

t.test('the query\'s case is kept in the answer', async (t) => {
  t.match(await dig(LINK_LOCAL, `HostNames.Default.${Z}`, 'A'), /^HostNames\.Default\.svc\.cluster\.local\.\s+5\s+IN\s+A\s+10\.0\.0\.20$/m);
});

t.test('a label holding a dot (an escaped dot) is one label, not the name its text spells', async (t) => {
  for (const tcp of ['+notcp', '+tcp']) {
    t.equal(await status(tcp, `hostnames\\.default.${Z}`), 'NXDOMAIN', tcp);
    t.equal(await status(tcp, '10-1-2-3\\.default.pod.cluster.local'), 'NXDOMAIN', tcp);
  }
});

t.test('headless services: one record per ready endpoint, endpoint names, SRV per endpoint', async (t) => {
  t.same(await short(`web.default.${Z}`), ['10.1.0.5', '10.1.0.6']);
  t.same(await short(`10-1-0-5.web.default.${Z}`), ['10.1.0.5']);
  t.same(await short(`_http._tcp.web.default.${Z}`, 'SRV'), [`0 50 80 10-1-0-5.web.default.${Z}.`, `0 50 80 10-1-0-6.web.default.${Z}.`]);
  t.same(await short('-x', '10.1.0.6'), [`10-1-0-6.web.default.${Z}.`]);
});

t.test('NXDOMAIN and NODATA carry the SOA; zone names and namespaces are NOERROR; AXFR is refused', async (t) => {
  t.equal(await status(`nothing.default.${Z}`), 'NXDOMAIN');
  t.match(await dig(LINK_LOCAL, `nothing.default.${Z}`), /AUTHORITY SECTION:\ncluster\.local\.\s+\d+\s+IN\s+SOA\s+ns\.dns\.cluster\.local\. hostmaster\.cluster\.local\./);
  t.equal(await status(`hostnames.default.${Z}`, 'TXT'), 'NOERROR');
  t.same(await short(`hostnames.default.${Z}`, 'TXT'), []);
  for (const name of ['cluster.local', Z, 'pod.cluster.local', `default.${Z}`]) t.equal(await status(name, 'A'), 'NOERROR', name);
  t.equal(await status(`nonamespace.${Z}`), 'NXDOMAIN');
  t.same(await short('dns-version.cluster.local', 'TXT'), ['"1.1.0"']);
  t.same(await short('cluster.local', 'NS'), [`kube-dns.kube-system.${Z}.`]);
  t.match(await dig(LINK_LOCAL, 'cluster.local', 'AXFR'), /Transfer failed/);
});

t.test('ExternalName: the CNAME, then the target\'s records', async (t) => {
  t.same(await short(`ext.default.${Z}`, 'A'), ['10.0.0.20', `hostnames.default.${Z}.`]);
});

t.test('pod records (insecure): a dashed address in an existing namespace', async (t) => {
  t.same(await short('10-2-3-4.default.pod.cluster.local'), ['10.2.3.4']);
  t.equal(await status('10-2-3-4.nonamespace.pod.cluster.local'), 'NXDOMAIN');
});

t.test('an answer larger than 512 bytes is truncated over UDP and complete over TCP', async (t) => {
  t.match(await dig(LINK_LOCAL, '+noedns', '+ignore', `many.default.${Z}`), /flags: qr aa tc/);
  t.equal((await short('+noedns', `many.default.${Z}`)).length, 60, 'dig retries over TCP');
  t.equal((await short('+tcp', `many.default.${Z}`)).length, 60);
});

t.test('answers change within a sync of an EndpointSlice or Service change', async (t) => {
  manifests.write(objects(['10.1.0.7']));
  t.ok(await eventually(async () => (await short(`web.default.${Z}`)).join() === '10.1.0.7'), 'the new endpoint is answered');
  t.equal(await status(`10-1-0-5.web.default.${Z}`), 'NXDOMAIN', 'the old endpoint\'s name is gone');
  manifests.write(objects([]));
  t.ok(await eventually(async () => (await status(`web.default.${Z}`)) === 'NXDOMAIN'), 'a headless service without ready endpoints is NXDOMAIN');
  manifests.write(objects(['10.1.0.5', '10.1.0.6']));
  t.ok(await eventually(async () => (await short(`web.default.${Z}`)).length === 2));
});

t.test('other names go upstream, cached; SERVFAIL-free TCP retry when the upstream truncates', async (t) => {
  t.same(await short('www.example', 'A'), ['192.0.2.1']);
  const count = async () => Number((await short('count.example', 'TXT'))[0]?.replace(/"/g, ''));
  const before = await count();
  for (let i = 0; i < 3; i++) t.same(await short('www.example', 'A'), ['192.0.2.1']);
  t.equal(await count(), before + 1, 'the cached name did not reach the upstream again');
  t.equal(await status('missing.example'), 'NXDOMAIN');
  t.equal((await short('+tcp', 'big.example', 'TXT')).join('').replace(/[" ]/g, '').length, 1600, 'the upstream truncated over UDP; kubenft asked it over TCP');
  t.ok(await eventually(async () => /coredns_cache_hits_total\{[^}]*type="success"/.test((await scrape(topology, METRICS)).body)), 'cache hits are counted');
  const oversized = `require('node:dgram').createSocket('udp4').send(Buffer.alloc(5000), 53, '${LINK_LOCAL}', (error) => process.exit(error ? 1 : 0))`;
  t.equal((await topology.exec(topology.client, ['node', '-e', oversized])).code, 0);
  t.ok(await eventually(async () => /kubenft_dns_dropped_requests_total\{server="dns:\/\/169\.254\.20\.10:53",reason="oversized"\} [1-9]/.test((await scrape(topology, METRICS)).body)),
    'a datagram over 4 KiB is dropped and counted');
});

/** Every sample of a metric: its labels (in the order printed) and its value. */
function samples(body: string, name: string): { labels: [string, string][]; value: number }[] {
  return [...body.matchAll(new RegExp(`^${name}\\{([^}]*)\\} (\\S+)$`, 'gm'))].map((match) => ({
    labels: [...match[1].matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((label) => [label[1], label[2]] as [string, string]), value: Number(match[2]),
  }));
}
const sampleOf = (body: string, name: string, wanted: Record<string, string>) =>
  samples(body, name).find((sample) => Object.entries(wanted).every(([key, value]) => sample.labels.some(([k, v]) => k === key && v === value)))?.value ?? 0;

t.test('CoreDNS\'s metrics, names, labels and buckets, after real queries over UDP and TCP to both addresses', async (t) => {
  const server = (address: string) => `dns://${address}:53`;
  const before = (await scrape(topology, METRICS)).body;
  for (let i = 0; i < 3; i++) await dig(LINK_LOCAL, `hostnames.default.${Z}`);
  await dig(LINK_LOCAL, '+tcp', `hostnames.default.${Z}`, 'AAAA');
  await dig(KUBE_DNS_IP, `nothing.default.${Z}`);
  await dig(KUBE_DNS_IP, `hostnames.default.${Z}`, 'NAPTR');
  await dig(LINK_LOCAL, 'forwarded.example');
  await dig(LINK_LOCAL, 'forwarded.example');
  const counted = async (name: string, labels: Record<string, string>, atLeast: number) => {
    const increase = async () => sampleOf((await scrape(topology, METRICS)).body, name, labels) - sampleOf(before, name, labels);
    return eventually(async () => (await increase()) >= atLeast);
  };
  const udpA = { server: server(LINK_LOCAL), zone: '.', view: '', proto: 'udp', family: '1', type: 'A' };
  t.ok(await counted('coredns_dns_requests_total', udpA, 3), 'requests: by the address they came in on, zone ".", family 1, type A');
  t.ok(await counted('coredns_dns_requests_total', { ...udpA, proto: 'tcp', type: 'AAAA' }, 1), 'TCP');
  t.ok(await counted('coredns_dns_requests_total', { ...udpA, server: server(KUBE_DNS_IP), type: 'other' }, 1), 'the ClusterIP\'s, and a type CoreDNS does not name is "other"');
  t.ok(await counted('coredns_dns_responses_total', { server: server(KUBE_DNS_IP), rcode: 'NXDOMAIN', plugin: 'kubernetes' }, 1), 'responses: rcode and the plugin that wrote them');
  t.ok(await counted('coredns_dns_responses_total', { server: server(LINK_LOCAL), rcode: 'NOERROR', plugin: 'forward' }, 1), 'forwarded');
  t.ok(await counted('coredns_dns_responses_total', { server: server(LINK_LOCAL), rcode: 'NOERROR', plugin: 'cache' }, 1), 'from the cache');
  t.ok(await counted('coredns_cache_misses_total', { server: server(LINK_LOCAL), zones: '.', view: '' }, 1));
  t.ok(await counted('coredns_proxy_request_duration_seconds_count', { proxy_name: 'forward', to: `127.0.0.1:${UPSTREAM_PORT}`, rcode: 'NOERROR' }, 1), 'the upstream\'s answers, timed');

  const body = (await scrape(topology, METRICS)).body;
  // The label names, in CoreDNS's order (plugin/metrics/vars/vars.go and the others).
  const labelNames = (name: string) => samples(body, name)[0]?.labels.map(([key]) => key).filter((key) => key !== 'le');
  t.same(labelNames('coredns_dns_requests_total'), ['server', 'zone', 'view', 'proto', 'family', 'type']);
  t.same(labelNames('coredns_dns_responses_total'), ['server', 'zone', 'view', 'rcode', 'plugin']);
  t.same(labelNames('coredns_dns_request_duration_seconds_bucket'), ['server', 'zone', 'view']);
  t.same(labelNames('coredns_cache_requests_total'), ['server', 'zones', 'view']);
  t.same(labelNames('coredns_cache_hits_total'), ['server', 'type', 'zones', 'view']);
  t.same(labelNames('coredns_cache_entries'), ['server', 'type', 'zones', 'view']);
  t.same(labelNames('coredns_proxy_request_duration_seconds_bucket'), ['proxy_name', 'to', 'rcode']);
  t.match(body, /^# TYPE coredns_forward_max_concurrent_rejects_total counter$/m);
  const bounds = samples(body, 'coredns_dns_request_duration_seconds_bucket').filter((sample) => sample.labels.some(([, v]) => v === server(LINK_LOCAL))).map((sample) => sample.labels[0][1]);
  t.same(bounds, [...Array.from({ length: 16 }, (_, index) => String(0.00025 * 2 ** index)), '+Inf'], 'CoreDNS\'s TimeBuckets, ExponentialBuckets(0.00025, 2, 16)');
  t.ok(sampleOf(body, 'coredns_cache_entries', { server: server(LINK_LOCAL), type: 'success' }) >= 1, 'the cache\'s entries');
  t.notMatch(body, /kubenft_dns_requests_total|kubenft_dns_responses_total|kubenft_dns_request_duration/, 'the names kubenft used before are gone, not doubled');
});

t.test('a query slower than the largest bucket (8.192 s) is counted in +Inf', async (t) => {
  const bucket = (body: string, le: string) => sampleOf(body, 'coredns_dns_request_duration_seconds_bucket', { server: `dns://${LINK_LOCAL}:53`, le });
  const count = (body: string) => sampleOf(body, 'coredns_dns_request_duration_seconds_count', { server: `dns://${LINK_LOCAL}:53` });
  // Earlier queries' counts reach the agent every 500 ms: let them land before the baseline.
  await new Promise((resolve) => setTimeout(resolve, 1500));
  const before = (await scrape(topology, METRICS)).body;
  t.equal(bucket(before, '+Inf'), count(before), '+Inf is the count');
  // The responder SERVFAILs, then each silent upstream times out in turn.
  t.match(await dig(LINK_LOCAL, '+time=15', 'servfail.example'), /status: SERVFAIL/);
  t.ok(await eventually(async () => count((await scrape(topology, METRICS)).body) > count(before)), 'the query was counted');
  const after = (await scrape(topology, METRICS)).body;
  t.equal(bucket(after, '8.192') - bucket(before, '8.192'), 0, 'in no finite bucket');
  t.equal(bucket(after, '+Inf') - bucket(before, '+Inf'), 1, 'in +Inf');
  t.equal(bucket(after, '+Inf'), count(after), '+Inf is still the count');
  for (const to of SILENT_UPSTREAMS) t.ok(sampleOf(after, 'kubenft_dns_upstream_failures_total', { to }) >= 1, `${to}'s timeout is counted`);
});

t.test('CoreDNS\'s health and readiness endpoints, on the link-local address', async (t) => {
  t.same(await scrape(topology, `http://${LINK_LOCAL}:8080/health`), { status: 200, body: 'OK' });
  t.same(await scrape(topology, `http://${LINK_LOCAL}:8181/ready`), { status: 200, body: 'OK' });
  t.equal((await scrape(topology, `http://${LINK_LOCAL}:8080/metrics`)).status, 404, 'nothing else there');
});

t.test('the kube-dns ClusterIP is answered by kubenft, with no conntrack entry', async (t) => {
  await topology.exec(topology.node, ['conntrack', '-F']);
  t.same((await dig(KUBE_DNS_IP, '+short', `hostnames.default.${Z}`)).trim(), '10.0.0.20');
  const tracked = await topology.exec(topology.node, ['conntrack', '-L', '-d', KUBE_DNS_IP]);
  t.equal(tracked.stdout.trim(), '', 'no conntrack entry for the query');
});

t.test('a query from the node itself to the kube-dns ClusterIP is answered by kubenft, with no conntrack entry', async (t) => {
  await topology.exec(topology.node, ['conntrack', '-F']);
  t.same((await digFromNode(KUBE_DNS_IP, '+short', `hostnames.default.${Z}`)).trim(), '10.0.0.20');
  t.same((await digFromNode(KUBE_DNS_IP, '+tcp', '+short', `hostnames.default.${Z}`)).trim(), '10.0.0.20', 'over TCP too');
  const tracked = await topology.exec(topology.node, ['conntrack', '-L', '-d', KUBE_DNS_IP]);
  t.equal(tracked.stdout.trim(), '', 'no conntrack entry for the queries');
});

t.test('the notrack table, loaded by the addon, is exactly what nft lists', async (t) => {
  const listed = await listedDnsTable();
  t.same(listed.rules, EXPECTED_DNS_TABLE.rules);
  t.same(sortedElements(listed), sortedElements(EXPECTED_DNS_TABLE));
});

t.test('SIGKILL: the ClusterIP is answered by the DNS Service\'s endpoints, then by kubenft after a restart', async (t) => {
  const responder = topology.spawn(topology.pods[0].ns, ['node', RESPONDER, COREDNS_POD.ipv4, '53', '192.0.2.53']);
  await responder.waitForOutput(/listening/, 10_000);
  try {
    agent!.child.kill('SIGKILL');
    await agent!.exited;
    t.notMatch((await topology.exec(topology.node, ['ip', '-br', 'addr'])).stdout, /10\.0\.0\.10/, 'the TUN device, and the ClusterIP on it, died with the process');
    t.ok(await eventually(async () => (await dig(KUBE_DNS_IP, '+short', `hostnames.default.${Z}`)).trim() === '192.0.2.53', 5_000, 100), 'the CoreDNS pod answers through the DNAT');
    t.equal((await digFromNode(KUBE_DNS_IP, '+short', `hostnames.default.${Z}`)).trim(), '192.0.2.53', 'the node\'s own queries too');
    await startAgent();
    t.ok(await eventually(async () => (await dig(KUBE_DNS_IP, '+short', `hostnames.default.${Z}`)).trim() === '10.0.0.20'), 'kubenft answers again');
    t.same((await listedDnsTable()).rules, EXPECTED_DNS_TABLE.rules, 'the restart replaced the table: no rule twice');
    t.equal((await digFromNode(KUBE_DNS_IP, '+short', `hostnames.default.${Z}`)).trim(), '10.0.0.20', 'kubenft answers the node\'s own queries again');
  } finally {
    await responder.stop();
  }
});

t.test('random and mutated packets: the server keeps answering', async (t) => {
  const fuzz = await topology.exec(topology.client, ['node', FUZZ, LINK_LOCAL, '53', '3000'], { timeoutMs: 60_000 });
  t.equal(fuzz.code, 0, fuzz.stderr);
  t.same(await short(`hostnames.default.${Z}`), ['10.0.0.20']);
  t.match(await dig(LINK_LOCAL, '+tcp', `hostnames.default.${Z}`), /status: NOERROR/);
});

t.test('without /dev/net/tun: a link that outlives the agent, and the node\'s own queries left to the DNAT', async (t) => {
  await agent!.stop();
  // A mount namespace of the agent's own where /dev/net/tun is /dev/null: the TUN ioctl fails.
  await startAgent(['unshare', '--mount', 'sh', '-c', 'mount --bind /dev/null /dev/net/tun && exec "$@"', 'agent']);
  t.match(agent!.output().stderr, /TUNSETIFF|TUN device/, 'the fallback is logged');
  t.match((await topology.exec(topology.node, ['ip', '-d', 'link', 'show', 'kubenft-dns'])).stdout, /dummy|bridge/);
  t.same((await listedDnsTable()).rules, EXPECTED_DNS_TABLE.rules.filter((rule) => !JSON.stringify(rule).includes('fib')), 'no output rule for the node\'s own queries');
  t.same(await short(`hostnames.default.${Z}`), ['10.0.0.20'], 'pods are answered as before');
});

t.test('--cleanup removes the interface, its addresses and the table', async (t) => {
  await agent!.stop();
  agent = undefined;
  const result = await kubenft(topology, ['--cleanup']);
  t.equal(result.code, 0, result.stderr);
  t.notMatch((await topology.exec(topology.node, ['ip', 'link', 'show'])).stdout, /kubenft-dns/);
  t.notMatch((await topology.exec(topology.node, ['nft', 'list', 'tables'])).stdout, /kubenft-dns/);
});
