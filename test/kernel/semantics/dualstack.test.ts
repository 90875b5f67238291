// Dual stack: the `ip6 kubenft` table beside `ip kubenft`, IPv6 ClusterIPs and endpoints
// (EndpointSlice addressType IPv6), and a dual-stack Service answering on both of its ClusterIPs.
import t from 'tap';
import { service, slice } from '../../lib/manifests.js';
import { answers, behaviour, EXTERNAL, gatewayOf, NODE_NAME, OTHER_NODE, podsOf, Semantics, thisNode, valuesOf } from './lib.js';

const PODS = [
  { name: 'web-a', ipv4: '10.244.1.7', ipv6: 'fd00:244:0:1::7' },
  { name: 'web-b', ipv4: '10.244.2.3', ipv6: 'fd00:244:0:2::3' },
  { name: 'pod-client', ipv4: '10.244.1.50', ipv6: 'fd00:244:0:1::50' },
];
const VIP4 = '10.0.6.10';
const VIP6 = 'fd00:10:96::6:10';

const semantics = await Semantics.create(t, { pods: PODS });

const ports = [{ name: 'http', port: 80, targetPort: 9376, nodePort: 30080 }, { name: 'dns', port: 53, targetPort: 9376, protocol: 'UDP' as const }];
const slicePorts = [{ name: 'http', port: 9376 }, { name: 'dns', port: 9376, protocol: 'UDP' }];
const objects = [
  thisNode(),
  service('web', [VIP4, VIP6], ports, { type: 'NodePort', ipFamilies: ['IPv4', 'IPv6'], ipFamilyPolicy: 'RequireDualStack' }),
  slice('web', slicePorts, [{ ip: '10.244.1.7', nodeName: NODE_NAME }, { ip: '10.244.2.3', nodeName: OTHER_NODE }]),
  slice('web', slicePorts, [{ ip: 'fd00:244:0:1::7', nodeName: NODE_NAME }, { ip: 'fd00:244:0:2::3', nodeName: OTHER_NODE }], { addressType: 'IPv6' }),
];

await behaviour(t, semantics, { name: 'dual-stack', objects }, async (t, mode) => {
  const v6 = await semantics.probe('client', { address: VIP6, port: 80, count: 12 });
  t.same(podsOf(v6), ['web-a', 'web-b'], 'the IPv6 ClusterIP reaches both IPv6 endpoints');
  t.ok(answers(v6).length === 12 && answers(v6).every((answer) => answer.local.includes(':') && answer.remote === gatewayOf(answer.local)), 'over IPv6, masqueraded from outside the IPv6 cluster CIDR');
  const v6FromPod = await semantics.probe('pod-client', { address: VIP6, port: 53, protocol: 'udp', count: 4 });
  t.equal(answers(v6FromPod).length, 4, 'UDP over IPv6 answered');
  t.same(valuesOf(v6FromPod, 'remote'), ['fd00:244:0:1::50'], 'a pod keeps its IPv6 source');
  const v4 = await semantics.probe('pod-client', { address: VIP4, port: 80, count: 4 });
  t.same(valuesOf(v4, 'remote'), ['10.244.1.50'], 'the IPv4 ClusterIP of the same service answers over IPv4');
  t.equal(answers(v4).length, 4);
  const nodePort6 = await semantics.probe('client', { address: EXTERNAL.nodeIPv6, port: 30080, count: 4 });
  t.equal(answers(nodePort6).length, 4, 'the NodePort answers on the node\'s IPv6 address');
  const rules = await semantics.loadedRules(mode);
  if (mode === 'nftables') {
    t.match(rules, /table ip kubenft \{/, 'an ip table');
    t.match(rules, /table ip6 kubenft \{/, 'an ip6 table');
    t.match(rules, /table ip6 kubenft-services-\d+ \{\s*map service-ips \{[^}]*fd00:10:96::6:10 \. tcp \. 80 : goto/, 'and an ip6 service table holding the IPv6 ClusterIP');
  } else {
    t.match(rules, /-A KUBE-SERVICES -d fd00:10:96::6:10\/128 -p tcp/, 'ip6tables holds the IPv6 ClusterIP');
  }
});
