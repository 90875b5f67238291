// sessionAffinity ClientIP, and masquerading: the mark bit (default, and --iptables-masquerade-bit 31,
// the top bit, which must stay an unsigned mark),
// fully-random masquerade, hairpin, and which ClusterIP traffic is masqueraded under ClusterCIDR,
// NodeCIDR (the Node's podCIDR) and --masquerade-all.
import t from 'tap';
import { service, slice } from '../../lib/manifests.js';
import { answers, behaviour, gatewayOf, NODE_NAME, OTHER_NODE, podsOf, Semantics, thisNode, valuesOf } from './lib.js';

const PODS = [
  { name: 'web-a', ipv4: '10.244.1.7' },
  { name: 'web-b', ipv4: '10.244.2.3' },
  { name: 'web-c', ipv4: '10.244.3.6' },
  { name: 'pod-client', ipv4: '10.244.1.50' },
];
const VIP = '10.0.5.10';
const ONLY_A = '10.0.5.20';
const all = [{ ip: '10.244.1.7', nodeName: NODE_NAME }, { ip: '10.244.2.3', nodeName: OTHER_NODE }, { ip: '10.244.3.6', nodeName: OTHER_NODE }];

const semantics = await Semantics.create(t, { pods: PODS });

const sticky = [
  thisNode(),
  service('sticky', VIP, [{ name: 'http', port: 80, targetPort: 9376 }, { name: 'dns', port: 53, targetPort: 9376, protocol: 'UDP' }],
    { sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: 60 } } }),
  slice('sticky', [{ name: 'http', port: 9376 }, { name: 'dns', port: 9376, protocol: 'UDP' }], all),
];

await behaviour(t, semantics, { name: 'session-affinity', objects: sticky }, async (t) => {
  for (const from of ['client', 'pod-client']) {
    const report = await semantics.probe(from, { address: VIP, port: 80, count: 30 });
    t.equal(answers(report).length, 30, `${from}: 30 connections answered`);
    t.equal(podsOf(report).length, 1, `${from}: all by one endpoint (${podsOf(report).join(', ')})`);
  }
  const udp = await semantics.probe('pod-client', { address: VIP, port: 53, protocol: 'udp', count: 12 });
  t.equal(answers(udp).length, 12);
  t.equal(podsOf(udp).length, 1, 'UDP is sticky too');
});

// web-a is the only endpoint of ONLY_A: it reaching that VIP is a hairpin; web-b is a pod of
// another node's podCIDR (the Node says 10.244.1.0/24 is this node's).
const masquerading = [
  thisNode(),
  service('web', VIP, [{ port: 80, targetPort: 9376 }]),
  slice('web', [{ port: 9376 }], all),
  service('only-a', ONLY_A, [{ port: 80, targetPort: 9376 }]),
  slice('only-a', [{ port: 9376 }], [all[0]]),
];

const masqueradeCases = [
  { name: 'masquerade-cluster-cidr', flags: [], mark: 0x4000, podClient: false, otherNodePod: false },
  { name: 'masquerade-node-cidr', flags: ['--detect-local-mode', 'NodeCIDR'], mark: 0x4000, podClient: false, otherNodePod: true },
  { name: 'masquerade-all', flags: ['--masquerade-all', '--iptables-masquerade-bit', '31'], mark: 0x80000000, podClient: true, otherNodePod: true },
];

for (const entry of masqueradeCases) {
  await behaviour(t, semantics, { name: entry.name, objects: masquerading, flags: entry.flags }, async (t, mode) => {
    const sourceSeen = async (from: string) => {
      const report = await semantics.probe(from, { address: ONLY_A, port: 80, count: 3 });
      t.equal(answers(report).length, 3, `${from} is answered`);
      return valuesOf(report, 'remote');
    };
    const gateway = gatewayOf('10.244.1.7');
    t.same(await sourceSeen('client'), [gateway], 'off-cluster traffic is masqueraded');
    t.same(await sourceSeen('pod-client'), [entry.podClient ? gateway : '10.244.1.50'], `a pod of this node is ${entry.podClient ? '' : 'not '}masqueraded`);
    t.same(await sourceSeen('web-b'), [entry.otherNodePod ? gateway : '10.244.2.3'], `a pod of another node's podCIDR is ${entry.otherNodePod ? '' : 'not '}masqueraded`);
    t.same(await sourceSeen('web-a'), [gateway], 'hairpin: an endpoint reaching itself through the VIP is masqueraded (and answered)');
    const rules = await semantics.loadedRules(mode);
    const hex = entry.mark.toString(16);
    if (mode === 'nftables') {
      t.match(rules, new RegExp(`meta mark set meta mark \\| 0x0*${hex}\\b`), `the masquerade mark is 0x${hex}`);
      t.match(rules, /masquerade fully-random/);
    } else {
      t.match(rules, new RegExp(`-j MARK --set-xmark 0x${hex}/0x${hex}`), `the masquerade mark is 0x${hex}`);
      t.match(rules, /-j MASQUERADE --random-fully/);
    }
  });
}

await behaviour(t, semantics, { name: 'spread-without-affinity', objects: masquerading }, async (t) => {
  const report = await semantics.probe('client', { address: VIP, port: 80, count: 30 });
  t.same(podsOf(report), ['web-a', 'web-b', 'web-c'], 'without affinity one client reaches every endpoint (so the affinity case can fail)');
});
