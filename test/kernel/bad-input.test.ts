// Bad input, object by object: each malformed or hostile object is rejected with one log line that
// names it and says why, every valid object in the same input still works (asserted with packets),
// and the process never crashes. A property test feeds random objects, between broken YAML
// documents, through the same path.
import t from 'tap';
import fc from 'fast-check';
import { createTopology, type Topology } from '../../scripts/lib/topology.js';
import { kubenft } from '../lib/kubenft.js';
import { HAZARDS } from '../lib/broken-yaml.js';
import { ManifestFile, manifestYaml, service, slice } from '../lib/manifests.js';

const POD = { name: 'good-pod', ipv4: '10.244.1.7' };
const good = [service('good', '10.0.1.1', [{ name: 'http', port: 80, targetPort: 9376 }]), slice('good', [{ name: 'http', port: 9376 }], [{ ip: POD.ipv4 }])];
const port = (value: unknown) => service('p', '10.0.9.1', [{ port: value as number }]);
const withName = (name: string) => ({ ...service('x', '10.0.9.2', [{ port: 80 }]), metadata: { name, namespace: 'default' } });
const sliceWith = (name: string, overrides: Record<string, unknown>) => ({ ...slice('good', [{ port: 9376 }], [{ ip: '10.244.1.8' }], { name }), ...overrides });
const sliceEndpoint = (name: string, endpoint: Record<string, unknown>) => sliceWith(name, { endpoints: [endpoint] });

/** [what is wrong, the object, the kind/namespace/name its log line must name, the reason it must give]. */
const CORPUS: [string, unknown, string, RegExp][] = [
  ['invalid IPv4 clusterIP', service('a1', '10.0.300.1', [{ port: 80 }]), 'Service default/a1', /not an IP address/],
  ['clusterIP with a prefix', service('a2', '10.0.0.1/32', [{ port: 80 }]), 'Service default/a2', /not an IP address/],
  ['IPv4-mapped IPv6 clusterIP', service('a3', '::ffff:10.0.0.1', [{ port: 80 }]), 'Service default/a3', /IPv4-mapped/],
  ['clusterIP of the wrong family', { ...service('a4', 'fd00::1', [{ port: 80 }]), spec: { clusterIP: 'fd00::1', clusterIPs: ['fd00::1'], ipFamilies: ['IPv4'], ports: [{ port: 80 }] } }, 'Service default/a4', /not of family IPv4/],
  ['two clusterIPs of one family', service('a5', ['10.0.0.5', '10.0.0.6'], [{ port: 80 }]), 'Service default/a5', /two addresses of one family/],
  ['clusterIP and clusterIPs disagree', { ...service('a6', '10.0.0.7', [{ port: 80 }]), spec: { clusterIP: '10.0.0.7', clusterIPs: ['10.0.0.8'], ports: [{ port: 80 }] } }, 'Service default/a6', /differs/],
  ['numeric clusterIP', { ...service('a7', '10.0.0.9', [{ port: 80 }]), spec: { clusterIP: 167772169, ports: [{ port: 80 }] } }, 'Service default/a7', /non-empty string/],
  ['port 0', { ...port(0), metadata: { name: 'b1', namespace: 'default' } }, 'Service default/b1', /not a port number/],
  ['port 65536', { ...port(65536), metadata: { name: 'b2', namespace: 'default' } }, 'Service default/b2', /not a port number/],
  ['port -1', { ...port(-1), metadata: { name: 'b3', namespace: 'default' } }, 'Service default/b3', /not a port number/],
  ['port "http"', { ...port('http'), metadata: { name: 'b4', namespace: 'default' } }, 'Service default/b4', /not a port number/],
  ['port 80.5', { ...port(80.5), metadata: { name: 'b5', namespace: 'default' } }, 'Service default/b5', /not a port number/],
  ['port null', { ...port(null), metadata: { name: 'b6', namespace: 'default' } }, 'Service default/b6', /not a port number/],
  ['targetPort 0x10000', service('b7', '10.0.0.10', [{ port: 80, targetPort: 65536 }]), 'Service default/b7', /targetPort.*not a port number/],
  ['nodePort 99999', service('b8', '10.0.0.11', [{ port: 80, nodePort: 99999 }], { type: 'NodePort' }), 'Service default/b8', /nodePort.*not a port number/],
  ['unknown protocol', service('c1', '10.0.0.12', [{ port: 80, protocol: 'ICMP' as 'TCP' }]), 'Service default/c1', /not TCP, UDP or SCTP/],
  ['lower-case protocol', service('c2', '10.0.0.13', [{ port: 80, protocol: 'tcp' as 'TCP' }]), 'Service default/c2', /not TCP, UDP or SCTP/],
  ['duplicate port names', service('c3', '10.0.0.14', [{ name: 'web', port: 80 }, { name: 'web', port: 81 }]), 'Service default/c3', /used twice/],
  ['two unnamed ports', service('c4', '10.0.0.15', [{ port: 80 }, { port: 81 }]), 'Service default/c4', /used twice/],
  ['port name with spaces', service('c5', '10.0.0.16', [{ name: 'my port', port: 80 }]), 'Service default/c5', /not a DNS-1123 label/],
  ['no ports', service('c6', '10.0.0.17', []), 'Service default/c6', /spec.ports is empty/],
  ['ports is a string', { ...service('c7', '10.0.0.18', []), spec: { clusterIP: '10.0.0.18', ports: '80' } }, 'Service default/c7', /must be a list/],
  ['port entry is a number', { ...service('c8', '10.0.0.19', []), spec: { clusterIP: '10.0.0.19', ports: [80] } }, 'Service default/c8', /must be an object/],
  ['missing spec', { apiVersion: 'v1', kind: 'Service', metadata: { name: 'd1', namespace: 'default' } }, 'Service default/d1', /spec must be an object/],
  ['spec is a list', { apiVersion: 'v1', kind: 'Service', metadata: { name: 'd2', namespace: 'default' }, spec: [] }, 'Service default/d2', /spec must be an object/],
  ['unknown type', service('d3', '10.0.0.20', [{ port: 80 }], { type: 'Headless' }), 'Service default/d3', /spec.type/],
  ['missing name', { apiVersion: 'v1', kind: 'Service', metadata: { namespace: 'default' }, spec: { clusterIP: '10.0.0.21', ports: [{ port: 80 }] } }, 'Service default/<unnamed>', /metadata.name must be a non-empty string/],
  ['name of 300 characters', withName('n'.repeat(300)), `Service default/"${'n'.repeat(100)}…"`, /not a DNS-1035 label/],
  ['unicode name', withName('sérvice'), 'Service default/"sérvice"', /not a DNS-1035 label/],
  ['shell metacharacters in the name', withName('x;rm -rf /'), 'Service default/"x;rm -rf /"', /not a DNS-1035 label/],
  ['nft metacharacters in the name', withName('a}chain{'), 'Service default/"a}chain{"', /not a DNS-1035 label/],
  ['newline in the name', withName('a\nb'), 'Service default/"a\\nb"', /not a DNS-1035 label/],
  ['upper-case name', withName('Good'), 'Service default/Good', /not a DNS-1035 label/],
  ['name starting with a digit', withName('1abc'), 'Service default/1abc', /not a DNS-1035 label/],
  ['quote in the namespace', { ...service('e1', '10.0.0.22', [{ port: 80 }]), metadata: { name: 'e1', namespace: 'ns"x' } }, 'Service "ns\\"x"/e1', /namespace is not a DNS-1123 label/],
  ['affinity timeout 0', service('e2', '10.0.0.23', [{ port: 80 }], { sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: 0 } } }), 'Service default/e2', /timeoutSeconds/],
  ['affinity timeout as text', service('e3', '10.0.0.24', [{ port: 80 }], { sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: '3h' } } }), 'Service default/e3', /timeoutSeconds/],
  ['invalid externalIP', service('e4', '10.0.0.25', [{ port: 80 }], { externalIPs: ['1.2.3'] }), 'Service default/e4', /externalIPs\[0\].*not an IP address/],
  ['invalid source range', service('e5', '10.0.0.26', [{ port: 80 }], { type: 'LoadBalancer', loadBalancerSourceRanges: ['10.0.0.0/33'] }), 'Service default/e5', /not a CIDR/],
  ['invalid LB ingress IP', service('e6', '10.0.0.27', [{ port: 80 }], { type: 'LoadBalancer' }, { status: { loadBalancer: { ingress: [{ ip: 'lb.example.com' }] } } }), 'Service default/e6', /ingress\[0\].ip.*not an IP address/],
  ['externalIPs is an object', service('e7', '10.0.0.28', [{ port: 80 }], { externalIPs: { ip: '1.2.3.4' } }), 'Service default/e7', /must be a list/],
  ['slice endpoint with an invalid IP', sliceEndpoint('s1', { addresses: ['10.244.1.999'] }), 'EndpointSlice default/s1', /not an IP address/],
  ['slice endpoint of the wrong family', sliceEndpoint('s2', { addresses: ['fd00::1'] }), 'EndpointSlice default/s2', /not an IPv4 address/],
  ['slice endpoint without addresses', sliceEndpoint('s3', { addresses: [] }), 'EndpointSlice default/s3', /addresses is empty/],
  ['slice endpoint ready "yes"', sliceEndpoint('s4', { addresses: ['10.244.1.9'], conditions: { ready: 'yes' } }), 'EndpointSlice default/s4', /ready must be true or false/],
  ['slice port 0', sliceWith('s5', { ports: [{ name: '', port: 0, protocol: 'TCP' }] }), 'EndpointSlice default/s5', /not a port number/],
  ['slice port protocol HTTP', sliceWith('s6', { ports: [{ name: '', port: 80, protocol: 'HTTP' }] }), 'EndpointSlice default/s6', /not TCP, UDP or SCTP/],
  ['slice address type IPX', sliceWith('s7', { addressType: 'IPX' }), 'EndpointSlice default/s7', /addressType/],
  ['slice with 10,000 endpoints', sliceWith('s8', { endpoints: Array.from({ length: 10_000 }, (_, i) => ({ addresses: [`10.245.${Math.floor(i / 250)}.${(i % 250) + 1}`] })) }), 'EndpointSlice default/s8', /10000 endpoints, more than the 1000/],
  ['slice pointing at an invalid service name', { ...sliceWith('s9', {}), metadata: { name: 's9', namespace: 'default', labels: { 'kubernetes.io/service-name': 'Not_A_Service' } } }, 'EndpointSlice default/s9', /not a Service name/],
  ['slice endpoints is a string', sliceWith('s10', { endpoints: '10.244.1.7' }), 'EndpointSlice default/s10', /must be a list/],
  ['slice hints forZones without names', sliceEndpoint('s11', { addresses: ['10.244.1.9'], hints: { forZones: [{}] } }), 'EndpointSlice default/s11', /forZones\[0\].name/],
  ['Endpoints with an invalid IP', { apiVersion: 'v1', kind: 'Endpoints', metadata: { name: 'legacy', namespace: 'default' }, subsets: [{ addresses: [{ ip: 'nope' }], ports: [{ port: 80 }] }] }, 'Endpoints default/legacy', /not an IP address/],
  ['unspecified clusterIP', service('a8', '0.0.0.0', [{ port: 80 }]), 'Service default/a8', /clusterIPs\[0\] 0.0.0.0 is the unspecified address/],
  ['externalIP on loopback', service('e8', '10.0.0.29', [{ port: 80 }], { externalIPs: ['127.0.0.1'] }), 'Service default/e8', /externalIPs\[0\] 127.0.0.1 is a loopback address/],
  ['externalIP in the link-local multicast range', service('e9', '10.0.0.30', [{ port: 80 }], { externalIPs: ['ff02::1'] }), 'Service default/e9', /ff02::1 is a link-local multicast address/],
  ['slice endpoint on the metadata address', sliceEndpoint('s12', { addresses: ['169.254.169.254'] }), 'EndpointSlice default/s12', /is a link-local address/],
  ['slice endpoint with a loopback second address', sliceEndpoint('s13', { addresses: ['10.244.1.9', '127.0.0.1'] }), 'EndpointSlice default/s13', /addresses\[1\] 127.0.0.1 is a loopback address/],
  ['slice endpoint with 101 addresses', sliceEndpoint('s14', { addresses: Array.from({ length: 101 }, (_, i) => `10.246.0.${i + 1}`) }), 'EndpointSlice default/s14', /101 addresses, more than the 100/],
  ['Endpoints with a multicast address', { apiVersion: 'v1', kind: 'Endpoints', metadata: { name: 'legacy2', namespace: 'default' }, subsets: [{ addresses: [{ ip: '232.1.2.3' }], ports: [{ port: 80 }] }] }, 'Endpoints default/legacy2', /is a multicast address/],
  ['Node with an invalid address', { apiVersion: 'v1', kind: 'Node', metadata: { name: 'node-a' }, status: { addresses: [{ type: 'InternalIP', address: '999.1.1.1' }] } }, 'Node default/node-a', /not an IP address/],
  ['Node with an invalid podCIDR', { apiVersion: 'v1', kind: 'Node', metadata: { name: 'node-b' }, spec: { podCIDR: 'ten/8' } }, 'Node default/node-b', /not a CIDR/],
];

let topology: Topology;
const manifests = new ManifestFile();
t.before(async () => {
  topology = await createTopology({ pods: [POD] });
});
t.teardown(async () => {
  await topology?.destroy();
  manifests.remove();
});

t.test(`${CORPUS.length} malformed objects: each named once with its reason; the valid service still answers`, async (t) => {
  t.ok(CORPUS.length >= 50, 'the corpus has at least 50 objects');
  manifests.write([...good, ...CORPUS.map(([, object]) => object)]);
  const result = await kubenft(topology, ['--manifests', manifests.path, '--once', '--hostname-override', 'node-1', '--logging-format', 'json']);
  t.equal(result.code, 1, 'exit code 1: objects were skipped, nothing crashed');
  const lines = result.stderr.trim().split('\n').map((line) => JSON.parse(line) as { msg: string });
  const skipped = lines.filter((line) => line.msg.startsWith('skipped '));
  t.equal(skipped.length, CORPUS.length, 'one log line per bad object');
  for (const [what, , named, reason] of CORPUS) {
    const line = skipped.find((candidate) => candidate.msg.startsWith(`skipped ${named}: `) && reason.test(candidate.msg));
    t.ok(line, `${what}: "${named}" is named with its reason`);
  }
  const report = await topology.probe(topology.client, { address: '10.0.1.1', port: 80, protocol: 'tcp', count: 5, timeoutMs: 1500 });
  t.same(report.counts, { 'good-pod': 5 }, 'the valid service answers');
});

t.test('random Services and EndpointSlices between broken documents: rejected cleanly or accepted by the kernel', async (t) => {
  const address = fc.oneof(fc.ipV4(), fc.ipV6(), fc.constantFrom('10.0.0.1', 'not-an-ip', '', '1.2.3.4/8', '127.0.0.1', '0.0.0.0', '169.254.169.254', '224.0.0.1', '255.255.255.255', 'fe80::1'));
  const portNumber = fc.oneof(fc.integer({ min: -5, max: 70_000 }), fc.constantFrom('http', null));
  const name = fc.oneof(fc.stringMatching(/^[a-z][a-z0-9-]{0,10}[a-z0-9]$/), fc.string({ maxLength: 12 }));
  const randomService = fc.record({
    name, clusterIP: address, type: fc.constantFrom('ClusterIP', 'NodePort', 'LoadBalancer', 'Bogus'),
    ports: fc.array(fc.record({ name: fc.constantFrom('', 'web', 'dns'), port: portNumber, protocol: fc.constantFrom('TCP', 'UDP', 'SCTP', 'ICMP'), nodePort: portNumber }), { maxLength: 3 }),
    affinity: fc.boolean(), externalIPs: fc.array(address, { maxLength: 2 }), local: fc.boolean(),
  }).map((spec) => service(spec.name, spec.clusterIP, spec.ports.map((p) => ({ ...p, nodePort: spec.type === 'ClusterIP' ? undefined : p.nodePort })) as never, {
    type: spec.type, externalIPs: spec.externalIPs, ...(spec.affinity ? { sessionAffinity: 'ClientIP' } : {}), ...(spec.local ? { externalTrafficPolicy: 'Local', internalTrafficPolicy: 'Local' } : {}),
  }));
  const randomSlice = fc.record({
    service: name, addresses: fc.array(address, { maxLength: 4 }), port: portNumber, ready: fc.boolean(), family: fc.constantFrom<'IPv4' | 'IPv6'>('IPv4', 'IPv6'),
  }).map((spec) => slice(spec.service, [{ name: 'web', port: spec.port as number }], spec.addresses.map((ip) => ({ ip, ready: spec.ready, nodeName: 'node-1' })), { addressType: spec.family }));
  // A document no reader may accept: one of each hazard, or random text (never a document marker,
  // and never blank, a comment or null: kubectl skips those, as kubenft does).
  const brokenDocument = fc.oneof(
    fc.constantFrom(...HAZARDS.map(([, text]) => text)),
    fc.string({ maxLength: 20 })
      .filter((text) => !/(^|\n)(---|\.\.\.)/.test(text) && /^[ \t\r]*[^\s#]/m.test(text) && !/^\s*(~|null|Null|NULL)\s*$/.test(text))
      .map((text) => `${text}\n`),
  );
  const document = fc.oneof(
    fc.oneof(randomService, randomSlice).map((object) => ({ text: manifestYaml(object), broken: false })),
    brokenDocument.map((text) => ({ text, broken: true })),
  );
  const file = new ManifestFile();
  t.teardown(() => file.remove());
  await fc.assert(
    fc.asyncProperty(fc.array(document, { minLength: 1, maxLength: 12 }), async (documents) => {
      file.writeText([...good.map(manifestYaml), ...documents.map(({ text }) => text)].join('---\n'));
      const result = await kubenft(topology, ['--manifests', file.path, '--once', '--hostname-override', 'node-1']);
      // 0: all loaded; 1: some objects skipped. Anything else (a crash, a kernel rejection) fails.
      if (result.code !== 0 && result.code !== 1) throw new Error(`exit ${result.code}: ${result.stderr}`);
      if (/kernel rejected/.test(result.stderr)) throw new Error(result.stderr);
      const broken = documents.flatMap(({ broken }, index) => (broken ? [good.length + index + 1] : []));
      if (broken.length > 0 && result.code !== 1) throw new Error(`broken documents ${broken.join(', ')} skipped with exit ${result.code}`);
      for (const index of broken) {
        if (!result.stderr.includes(`${file.path} document ${index} (line `)) throw new Error(`broken document ${index} not named: ${result.stderr}`);
      }
      // The valid objects around broken documents still load.
      if (JSON.parse(result.stdout).services < 1) throw new Error(`the valid service was lost: ${result.stderr}`);
    }),
    { numRuns: 20, seed: 20261125 },
  );
  const report = await topology.probe(topology.client, { address: '10.0.1.1', port: 80, protocol: 'tcp', count: 3, timeoutMs: 1500 });
  t.same(report.counts, { 'good-pod': 3 }, 'the valid service still answers after the random inputs');
});
