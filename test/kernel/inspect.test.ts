// `kubenft services` and `kubenft explain` on a real node namespace: the services listing against
// the loaded tables (nft's own JSON as the reference), drift made by hand with nft and marked, and
// explain's outcomes for the drifted rules checked against real packets. (Every semantics
// behaviour also checks explain against its probes: test/kernel/semantics/lib.ts.)
import t from 'tap';
import { explainReport } from '../../src/services/inspect/commands.js';
import { parseOptions } from '../../src/cli/options.js';
import { kubenft } from '../lib/kubenft.js';
import { service, slice } from '../lib/manifests.js';
import { BASE_FLAGS, EXTERNAL, errors, NODE_NAME, OTHER_NODE, podsOf, Semantics, thisNode } from './semantics/lib.js';

const PODS = [
  { name: 'web-a', ipv4: '10.244.1.7' },
  { name: 'web-b', ipv4: '10.244.2.3' },
  { name: 'pod-client', ipv4: '10.244.1.50' },
];
const WEB = '10.0.9.10';
const EXPOSED = '10.0.9.20';
const EMPTY = '10.0.9.30';
const EXTERNAL_IP = '192.168.100.60';
const both = [{ ip: '10.244.1.7', nodeName: NODE_NAME }, { ip: '10.244.2.3', nodeName: OTHER_NODE }];

const objects = [
  thisNode(),
  service('web', WEB, [{ name: 'http', port: 80, targetPort: 9376 }]),
  slice('web', [{ name: 'http', port: 9376 }], [...both, { ip: '10.244.3.9', ready: false, nodeName: OTHER_NODE }]),
  service('exposed', EXPOSED, [{ port: 80, targetPort: 9376, nodePort: 30090 }],
    { type: 'LoadBalancer', externalIPs: [EXTERNAL_IP], externalTrafficPolicy: 'Local', loadBalancerSourceRanges: ['192.168.100.0/24'] },
    { status: { loadBalancer: { ingress: [{ ip: '203.0.113.30' }] } } }),
  slice('exposed', [{ port: 9376 }], both),
  service('empty', EMPTY, [{ port: 80, targetPort: 9376 }]),
];

t.test('bad explain requests are usage errors naming what is wrong', async (t) => {
  for (const [args, message] of [
    [['--to', `${WEB}:80`], /explain needs --from ADDR\[:PORT\] and --to ADDR:PORT/],
    [['--from', '10.244.1.50', '--to', `${WEB}:80`, '--proto', 'icmp'], /--proto.*must be tcp or udp/],
    [['--from', '10.244.1.50', '--to', `${WEB}:80`, '--via', 'input'], /--via.*must be prerouting or output/],
  ] as const) {
    t.throws(() => parseOptions(['explain', ...args]), { name: 'OptionsError', message }, args.join(' '));
  }
  t.throws(() => parseOptions(['services', 'web']), { message: /"web" is not NAMESPACE\/NAME/ });
  const target = { mode: 'nftables' as const, tableName: 'kubenft', iptablesBackend: 'auto' as const };
  for (const [from, to, message] of [
    ['10.244.1.50', WEB, /--to "10\.0\.9\.10": needs a port/],
    ['pod-a', `${WEB}:80`, /--from "pod-a": not an address/],
    ['fd00::1', `${WEB}:80`, /are of different address families/],
    ['10.244.1.50', `${WEB}:70000`, /port out of range/],
  ] as const) {
    await t.rejects(explainReport(target, { from, to, protocol: 'tcp', via: 'prerouting' }), { name: 'OptionsError', message }, `${from} -> ${to}`);
  }
});

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root to create network namespaces');
} else {
  const semantics = await Semantics.create(t, { pods: PODS, nodeAddresses: [EXTERNAL_IP] });
  await semantics.load('nftables', objects);

  interface Entry {
    service?: string; name?: string; protocol: string; port: number; clusterIP?: string; externalAddresses: string[]; nodePort?: number;
    internalTrafficPolicy?: string; externalTrafficPolicy?: string; sourceRanges: string[];
    cluster: { address: string; port: number; probability: number }[]; local: { address: string; probability: number }[];
    noEndpoints: { key: string; verdict: string }[]; endpointStates?: string[]; drift?: string[];
  }
  const services = async (...args: string[]) => {
    const result = await kubenft(semantics.topology, ['services', '--json', '--manifests', semantics.manifests.path, ...BASE_FLAGS, ...args]);
    t.equal(result.code, 0, `services exited 0: ${result.stderr}`);
    return JSON.parse(result.stdout) as { services: Entry[]; ruleset: string[] };
  };
  const entryOf = (report: { services: Entry[] }, name: string) => report.services.find((entry) => entry.service === name)!;
  /** The endpoints a chain DNATs to, from nft's own JSON: the reference the listing is checked against. */
  const dnatTargets = async (table: string, chain: string) => {
    const listing = JSON.parse(await semantics.exec('node', ['nft', '-j', 'list', 'chain', 'ip', table, chain])) as { nftables: { rule?: { expr: { dnat?: { addr: string; port: number } }[] } }[] };
    return listing.nftables.flatMap((item) => item.rule?.expr.flatMap((expression) => (expression.dnat ? [`${expression.dnat.addr}:${expression.dnat.port}`] : [])) ?? []).sort();
  };

  await t.test('services lists every port as loaded, matching the plan', async (t) => {
    const report = await services();
    t.same(report.ruleset, [], 'the loaded tables are exactly the planned ones');
    const web = entryOf(report, 'default/web');
    t.match(web, { name: 'default/web:http', protocol: 'tcp', port: 80, clusterIP: WEB, internalTrafficPolicy: 'Cluster', drift: [] });
    t.same(web.cluster.map((selection) => `${selection.address}:${selection.port}`), await dnatTargets('kubenft-services-10', 'svc/default/web/tcp/80'), 'the endpoints are the chain\'s DNAT targets');
    t.same(web.cluster.map((selection) => selection.probability), [0.5, 0.5], 'each with probability 1/2');
    t.same(web.endpointStates, ['10.244.1.7:9376 ready on node-1', '10.244.2.3:9376 ready on node-2', '10.244.3.9:9376 not ready on node-2'], 'the API\'s endpoint states beside them');
    const exposed = entryOf(report, 'default/exposed');
    t.match(exposed, { clusterIP: EXPOSED, externalAddresses: ['192.168.100.60', '203.0.113.30'], nodePort: 30090, externalTrafficPolicy: 'Local', sourceRanges: ['192.168.100.0/24'], drift: [] });
    t.same(exposed.local.map((selection) => [selection.address, selection.probability]), [['10.244.1.7', 1]], 'Local: this node\'s endpoint only');
    t.match(entryOf(report, 'default/empty'), { clusterIP: EMPTY, noEndpoints: [{ key: `${EMPTY}:80`, verdict: 'reject' }], drift: [] }, 'a port without endpoints: rejected');
  });

  await t.test('services for one service, as text', async (t) => {
    const result = await kubenft(semantics.topology, ['services', 'default/web']);
    t.equal(result.code, 0, result.stderr);
    t.equal(result.stdout, 'default/web tcp/80 (ip)\n  ClusterIP 10.0.9.10:80, internalTrafficPolicy Cluster\n  cluster endpoints: 10.244.1.7:9376 50%, 10.244.2.3:9376 50%\n',
      'without manifests: the kernel\'s facts alone');
  });

  await t.test('explain as text: the rules passed and every outcome', async (t) => {
    const result = await kubenft(semantics.topology, ['explain', '--from', `${EXTERNAL.clientIPv4}:40000`, '--to', `${WEB}:80`]);
    t.equal(result.code, 0, result.stderr);
    t.match(result.stdout, /^new tcp connection 192\.168\.100\.2:40000 -> 10\.0\.9\.10:80, entering at prerouting \(ip tables\)\n/);
    t.match(result.stdout, /kubenft nat-prerouting #\d+: ip daddr @cluster-ips ip daddr & 0\.0\.0\.15 vmap @cluster-ip-tables {2}\[matched 0\.0\.0\.10 : goto service-table-10\]/, 'nft\'s text of each rule, with the element it matched');
    t.match(result.stdout, / +50% {2}accept, dnat to 10\.244\.1\.7:9376, masquerade, forwarded\n {12}kubenft-services-10 svc\/default\/web\/tcp\/80 #\d+: numgen random mod 2 0 meta l4proto tcp dnat to 10\.244\.1\.7:9376/);
    t.match(result.stdout, / +50% {2}accept, dnat to 10\.244\.2\.3:9376, masquerade, forwarded\n/);
    const denied = await kubenft(semantics.topology, ['explain', '--from', '10.244.1.50', '--to', '203.0.113.30:80', '--json']);
    t.equal(denied.code, 0, denied.stderr);
    t.match(JSON.parse(denied.stdout).outcomes, [{ probability: 1, fate: 'drop', reason: 'source not in the service\'s loadBalancerSourceRanges' }]);
  });

  await t.test('drift made by another writer is marked, and explain follows the kernel', async (t) => {
    // Another writer removes web's ClusterIP element and exposed's first endpoint rule.
    await semantics.exec('node', ['nft', 'delete', 'element', 'ip', 'kubenft-services-10', 'service-ips', `{ ${WEB} . tcp . 80 }`]);
    const report = await services();
    t.same(entryOf(report, 'default/web').drift, ['ClusterIP: loaded none, planned 10.0.9.10', 'internal policy: loaded none, planned Cluster'], 'the service whose element went is marked');
    t.same(entryOf(report, 'default/exposed').drift, [], 'the others are not');
    t.same(report.ruleset, ['table ip kubenft-services-10: set service-ips lacks 10.0.9.10 . tcp . 80 : goto svc/default/web/tcp/80'], 'the missing element, exactly');

    const explained = await kubenft(semantics.topology, ['explain', '--from', '10.244.1.50', '--to', `${WEB}:80`, '--json']);
    t.match(JSON.parse(explained.stdout).outcomes, [{ probability: 1, fate: 'reject', reason: 'a ClusterIP, on a port no service defines' }], 'explain: now refused');
    await semantics.flushConntrack();
    t.same(errors(await semantics.probe('pod-client', { address: WEB, port: 80, count: 2 })), ['ECONNREFUSED', 'ECONNREFUSED'], 'as real packets are');

    const rules = JSON.parse(await semantics.exec('node', ['nft', '-j', '-a', 'list', 'chain', 'ip', 'kubenft-services-4', 'svc/default/exposed/tcp/80'])) as { nftables: { rule?: { handle: number } }[] };
    const first = rules.nftables.find((item) => item.rule)!.rule!.handle;
    await semantics.exec('node', ['nft', 'delete', 'rule', 'ip', 'kubenft-services-4', 'svc/default/exposed/tcp/80', 'handle', String(first)]);
    const after = await services();
    t.same(entryOf(after, 'default/exposed').drift, ['cluster endpoints: loaded 10.244.2.3:9376 100%, planned 10.244.1.7:9376 50%, 10.244.2.3:9376 50%'], 'a removed endpoint rule is marked');
    const toExposed = await kubenft(semantics.topology, ['explain', '--from', '10.244.1.50', '--to', `${EXPOSED}:80`, '--json']);
    t.match(JSON.parse(toExposed.stdout).outcomes, [{ probability: 1, fate: 'accept', dnat: { address: '10.244.2.3', port: 9376 } }], 'explain: one endpoint left');
    t.same(podsOf(await semantics.probe('pod-client', { address: EXPOSED, port: 80, count: 8 })), ['web-b'], 'as real packets find');
  });

  await t.test('iptables mode: services from iptables-save, a deleted rule marked, explain following it', async (t) => {
    await semantics.load('iptables', objects);
    const report = await services('--proxy-mode', 'iptables');
    const web = entryOf(report, 'default/web');
    t.match(web, { clusterIP: WEB, internalTrafficPolicy: 'Cluster', drift: [] });
    t.same(web.cluster.map((selection) => [selection.address, selection.probability]), [['10.244.1.7', 0.5], ['10.244.2.3', 0.5]], 'the statistic cascade read back as 1/2 each');
    t.match(entryOf(report, 'default/exposed'), { externalTrafficPolicy: 'Local', nodePort: 30090, local: [{ address: '10.244.1.7', probability: 1 }], drift: [] });
    t.match(entryOf(report, 'default/empty'), { noEndpoints: [{ key: `${EMPTY}:80`, verdict: 'reject' }], drift: [] });

    // Another writer deletes the rule choosing web's first endpoint.
    const saved = (await semantics.exec('node', ['iptables-save', '-t', 'nat'])).split('\n');
    const line = saved.find((text) => text.includes('"default/web:http -> 10.244.1.7:9376"'))!;
    const chain = line.split(' ')[1];
    const position = saved.filter((text) => text.startsWith(`-A ${chain} `)).indexOf(line) + 1;
    await semantics.exec('node', ['iptables', '-t', 'nat', '-D', chain, String(position)]);
    t.same(entryOf(await services('--proxy-mode', 'iptables'), 'default/web').drift,
      ['cluster endpoints: loaded 10.244.2.3:9376 100%, planned 10.244.1.7:9376 50%, 10.244.2.3:9376 50%'], 'marked');
    const explained = await kubenft(semantics.topology, ['explain', '--proxy-mode', 'iptables', '--from', '10.244.1.50', '--to', `${WEB}:80`, '--json']);
    t.match(JSON.parse(explained.stdout).outcomes, [{ probability: 1, fate: 'accept', dnat: { address: '10.244.2.3', port: 9376 } }], 'explain: one endpoint left');
    t.same(podsOf(await semantics.probe('pod-client', { address: WEB, port: 80, count: 8 })), ['web-b'], 'as real packets find');
  });
}
