// The pure record planner and the wire helpers, on their own: the kernel test (dns.test.ts) checks
// the same records through dig.
import t from 'tap';
import { dashedAddress, mergeNames, planService, planZone, podAddress, reverseName } from '../../src/dns/records.js';
import { parseQuery } from '../../src/dns/wire.js';
import { defaultUpstreams } from '../../src/dns/network.js';
import { dnsTable } from '../../src/dns/table.js';
import { tableText } from '../../src/kernel/render-text.js';
import { ClusterState } from '../../src/cluster/cluster-state.js';
import { allServicePortViews } from '../../src/cluster/service-ports.js';
import { normalizeEndpointSlice, normalizeNamespace, normalizeService } from '../../src/cluster/normalize.js';
import { ManifestFile, service, slice } from '../lib/manifests.js';

const config = { zone: 'cluster.local', ttl: 5 };

t.test('endpoint, reverse and pod names', async (t) => {
  t.equal(dashedAddress('172.0.0.2'), '172-0-0-2');
  t.equal(dashedAddress('5678:abcd::1'), '5678-abcd--1');
  t.equal(dashedAddress('fd00::'), 'fd00--0');
  t.equal(reverseName('10.0.0.20'), '20.0.0.10.in-addr.arpa');
  t.equal(reverseName('fd00::1'), `1.${'0.'.repeat(29)}d.f.ip6.arpa`);
  t.equal(podAddress('10-2-3-4'), '10.2.3.4');
  t.equal(podAddress('fd00--1'), 'fd00::1');
  t.equal(podAddress('300-2-3-4'), undefined);
  t.equal(podAddress('www'), undefined);
});

t.test('SRV weights are 100/n, at least 1; a headless service without ready endpoints owns no name', async (t) => {
  const headless = { namespace: 'default', name: 'web', headless: true, clusterIPs: [], ports: [] };
  const endpoints = Array.from({ length: 150 }, (_, index) => ({ address: `10.1.${index >> 8}.${index & 255}`, ready: true }));
  const names = planService(headless, [{ service: 'default/web', ports: [{ name: 'http', protocol: 'TCP', port: 80 }], endpoints }], config);
  const srv = names.find((name) => name.name === '_http._tcp.web.default.svc.cluster.local')!;
  t.equal(srv.rrsets.SRV!.answers.length, 150);
  t.equal((srv.rrsets.SRV!.answers[0].data as { weight: number }).weight, 1);
  t.same(planService(headless, [{ service: 'default/web', ports: [], endpoints: [{ address: '10.1.0.1', ready: false }] }], config), []);
});

t.test('a shared endpoint address gives one PTR name holding both services\' records', async (t) => {
  const plan = (name: string) => planService({ namespace: 'default', name, headless: true, clusterIPs: [], ports: [] }, [{ service: `default/${name}`, ports: [], endpoints: [{ address: '10.1.0.1', ready: true }] }], config)
    .find((planned) => planned.name === '1.0.1.10.in-addr.arpa')!;
  t.same(mergeNames([plan('a'), plan('b')]).rrsets.PTR!.answers.map((answer) => answer.data), ['10-1-0-1.a.default.svc.cluster.local', '10-1-0-1.b.default.svc.cluster.local']);
  t.ok(planZone(['default'], undefined, config, 1).some((name) => name.name === 'default.svc.cluster.local'));
});

t.test('malformed queries are named as such', async (t) => {
  t.throws(() => parseQuery(Buffer.alloc(5)), /shorter than a header/);
  const compressed = Buffer.from([0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 0x0c, 0, 1, 0, 1]);
  t.throws(() => parseQuery(compressed), /compressed/);
  t.throws(() => parseQuery(Buffer.from([0, 1, 0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1])), /a response/);
});

t.test('objects: ExternalName kept, hostnames validated, namespaces named', async (t) => {
  t.equal(normalizeService({ kind: 'Service', metadata: { name: 'ext', namespace: 'default' }, spec: { type: 'ExternalName', externalName: 'Example.COM.' } }).externalName, 'example.com');
  t.throws(() => normalizeService({ kind: 'Service', metadata: { name: 'ext', namespace: 'default' }, spec: { type: 'ExternalName', externalName: 'a b' } }), /spec.externalName/);
  const bad = { ...slice('web', [], [{ ip: '10.1.0.1' }]), endpoints: [{ addresses: ['10.1.0.1'], hostname: 'Not_A_Label' }] };
  t.throws(() => normalizeEndpointSlice(bad), /endpoints\[0\]\.hostname/);
  const named = { ...slice('web', [], [{ ip: '10.1.0.1' }]), endpoints: [{ addresses: ['10.1.0.1'], hostname: 'web-0' }] };
  t.equal(normalizeEndpointSlice(named)!.endpoints[0].hostname, 'web-0', 'a valid hostname is kept');
  t.throws(() => normalizeNamespace({ kind: 'Namespace', metadata: { name: 'Bad' } }), /Namespace/);
});

t.test('ExternalName services are in the state for DNS, and give the proxy nothing to program', async (t) => {
  const state = new ClusterState('node');
  const external = { apiVersion: 'v1', kind: 'Service', metadata: { name: 'ext', namespace: 'default' }, spec: { type: 'ExternalName', externalName: 'example.com' } };
  state.apply(external);
  state.apply(service('web', 'None', []));
  t.equal(state.services.get('default/ext')?.externalName, 'example.com', 'DNS finds the alias in the proxy\'s own view');
  t.ok(state.services.get('default/web')?.headless, 'a headless service is marked so');
  t.same(allServicePortViews(state), [], 'neither has a service port for the proxy\'s rules');
  state.delete(external);
  t.notOk(state.services.has('default/ext'));
  t.same(state.takeChanges().services, new Set(['default/ext', 'default/web']));
});

t.test('the notrack table and the upstream default', async (t) => {
  const table = tableText(dnsTable(['169.254.20.10', 'fd00::10'], { hostClients: true }));
  t.match(table, /elements = \{ 169\.254\.20\.10 \. udp \. 53,\s+169\.254\.20\.10 \. tcp \. 53 \}/);
  t.match(table, /meta nfproto ipv4 ip daddr \. meta l4proto \. th dport @served-ipv4 socket wildcard 0 notrack/);
  t.match(table, /meta nfproto ipv4 ip daddr \. meta l4proto \. th dport @served-ipv4 meta l4proto tcp socket wildcard 1 accept/);
  t.match(table, /meta nfproto ipv4 ip daddr \. meta l4proto \. th dport @served-ipv4 meta l4proto tcp socket transparent 0 notrack/);
  t.match(table, /meta nfproto ipv6 ip6 saddr \. meta l4proto \. th sport @served-ipv6 notrack/);
  t.match(table, /meta nfproto ipv6 ip6 daddr \. meta l4proto \. th dport @served-ipv6 fib daddr type local notrack/);
  const persistent = tableText(dnsTable(['169.254.20.10'], { hostClients: false }));
  t.notMatch(persistent, /ipv6/, 'no IPv6 address, no IPv6 set or rules');
  t.notMatch(persistent, /fib/, 'addresses that outlive the server: the node\'s own queries stay tracked');
  const file = new ManifestFile();
  const path = file.writeBeside('resolv.conf', 'search x\nnameserver 169.254.20.10\nnameserver 192.0.2.1\nnameserver fe80::1%eth0\n');
  t.same(defaultUpstreams(['169.254.20.10'], path), [{ address: '192.0.2.1', port: 53 }, { address: 'fe80::1', port: 53 }]);
  t.same(defaultUpstreams([], `${path}.missing`), []);
  file.remove();
});
