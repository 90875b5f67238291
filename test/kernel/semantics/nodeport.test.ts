// NodePorts on the node's addresses (the Node object's, or --nodeport-addresses CIDRs), TCP and
// UDP with real packets, SCTP by what is loaded; and services without usable endpoints, refused
// on every kind of address (ClusterIP, NodePort, external IP, load balancer IP), never a timeout.
import t from 'tap';
import { service, slice } from '../../lib/manifests.js';
import { answers, behaviour, errors, EXTERNAL, gatewayOf, NODE_NAME, OTHER_NODE, podsOf, Semantics, thisNode, valuesOf } from './lib.js';

const PODS = [
  { name: 'web-a', ipv4: '10.244.1.7' },
  { name: 'web-b', ipv4: '10.244.2.3' },
];
const SECOND_NODE_IP = '192.168.100.60';
const EXTERNAL_IP = '192.168.100.50';
const LB_IP = '203.0.113.20';
const endpoints = [{ ip: '10.244.1.7', nodeName: NODE_NAME }, { ip: '10.244.2.3', nodeName: OTHER_NODE }];

const semantics = await Semantics.create(t, { pods: PODS, nodeAddresses: [SECOND_NODE_IP, EXTERNAL_IP] });
// Load balancer IPs live elsewhere; on the node they route to the sink like the service range.
await semantics.exec('node', ['ip', 'route', 'add', '203.0.113.0/24', 'dev', 'kube-svc']);
// See 'no-endpoints' below. (Set up before the first subtest: tap ends the file's root test, and
// so tears the topology down, as soon as it runs out of subtests.)
await semantics.startNodeListener([80, 30090]);

const nodePorts = (extraPorts: { name: string; port: number; protocol: 'TCP' | 'UDP' | 'SCTP'; nodePort: number }[] = []) => [
  thisNode(),
  service('web', '10.0.2.10', [
    { name: 'http', port: 80, targetPort: 9376, nodePort: 30080 },
    { name: 'dns', port: 53, targetPort: 9376, protocol: 'UDP', nodePort: 30053 },
    ...extraPorts,
  ], { type: 'NodePort' }),
  slice('web', [{ name: 'http', port: 9376 }, { name: 'dns', port: 9376, protocol: 'UDP' }, ...extraPorts.map((port) => ({ name: port.name, port: 9376, protocol: port.protocol }))], endpoints),
];

await behaviour(t, semantics, { name: 'nodeport-primary', objects: nodePorts() }, async (t) => {
  const tcp = await semantics.probe('client', { address: EXTERNAL.nodeIPv4, port: 30080, count: 12 });
  t.same(podsOf(tcp), ['web-a', 'web-b'], 'the NodePort on the Node object\'s address reaches every endpoint');
  t.ok(answers(tcp).length === 12 && answers(tcp).every((answer) => answer.remote === gatewayOf(answer.local)), 'masqueraded (externalTrafficPolicy Cluster)');
  const udp = await semantics.probe('client', { address: EXTERNAL.nodeIPv4, port: 30053, protocol: 'udp', count: 4 });
  t.equal(answers(udp).length, 4, 'UDP NodePort answered');
  t.same(valuesOf(udp, 'protocol'), ['udp']);
  const fromNode = await semantics.probe('node', { address: EXTERNAL.nodeIPv4, port: 30080, count: 2 });
  t.equal(answers(fromNode).length, 2, 'the node reaches its own NodePort');
  const other = await semantics.probe('client', { address: SECOND_NODE_IP, port: 30080, count: 2 });
  t.same(errors(other), ['ECONNREFUSED', 'ECONNREFUSED'], 'a local address the Node object does not list has no NodePort (primary)');
});

await behaviour(t, semantics, { name: 'nodeport-addresses-cidr', objects: nodePorts(), flags: ['--nodeport-addresses', `${SECOND_NODE_IP}/32`] }, async (t) => {
  const chosen = await semantics.probe('client', { address: SECOND_NODE_IP, port: 30080, count: 6 });
  t.equal(answers(chosen).length, 6, 'the NodePort answers on the address inside --nodeport-addresses');
  const primary = await semantics.probe('client', { address: EXTERNAL.nodeIPv4, port: 30080, count: 2 });
  t.same(errors(primary), ['ECONNREFUSED', 'ECONNREFUSED'], 'and not on the node address outside it');
});

await behaviour(t, semantics, { name: 'sctp', objects: nodePorts([{ name: 'sctp', port: 7777, protocol: 'SCTP', nodePort: 30777 }]) }, async (t, mode) => {
  // No SCTP sockets on this kernel: the proof is what the kernel holds.
  const rules = await semantics.loadedRules(mode);
  if (mode === 'nftables') {
    t.match(rules, /10\.0\.2\.10 \. sctp \. 7777 : goto svc\/default\/web\/sctp\/7777/, 'the ClusterIP port dispatches SCTP');
    t.match(rules, /sctp \. 30777 : goto external\/default\/web\/sctp\/7777/, 'the SCTP NodePort dispatches');
    t.match(rules, /chain svc\/default\/web\/sctp\/7777 \{[^}]*meta l4proto sctp dnat to 10\.244\.2\.3:9376/, 'and DNATs to the endpoint');
  } else {
    t.match(rules, /-A KUBE-SERVICES -d 10\.0\.2\.10\/32 -p sctp -m comment --comment "default\/web:sctp cluster IP" -m sctp --dport 7777 -j KUBE-SVC-/);
    t.match(rules, /-A KUBE-NODEPORTS -p sctp -m comment --comment "default\/web:sctp" -m sctp --dport 30777 -j KUBE-EXT-/);
    t.match(rules, /-p sctp -m comment --comment "default\/web:sctp" -m sctp -j DNAT --to-destination 10\.244\.2\.3:9376/);
  }
});

// Not ready anywhere = no usable endpoint. A TCP server on the node answers on every node address,
// so a missing reject shows up as an answer from "node" (or as a timeout for the ClusterIP and LB IP).
const unusable = [
  thisNode(),
  service('idle', '10.0.2.20', [
    { name: 'http', port: 80, targetPort: 9376, nodePort: 30090 },
    { name: 'dns', port: 53, targetPort: 9376, protocol: 'UDP', nodePort: 30091 },
  ], { type: 'LoadBalancer', externalIPs: [EXTERNAL_IP] }, { status: { loadBalancer: { ingress: [{ ip: LB_IP }] } } }),
  slice('idle', [{ name: 'http', port: 9376 }, { name: 'dns', port: 9376, protocol: 'UDP' }], [{ ip: '10.244.1.7', ready: false, nodeName: NODE_NAME }]),
];

await behaviour(t, semantics, { name: 'no-endpoints', objects: unusable }, async (t) => {
  const targets = [
    ['ClusterIP', '10.0.2.20', 80, 53],
    ['NodePort', EXTERNAL.nodeIPv4, 30090, 30091],
    ['external IP', EXTERNAL_IP, 80, 53],
    ['load balancer IP', LB_IP, 80, 53],
  ] as const;
  for (const [kind, address, tcpPort, udpPort] of targets) {
    const tcp = await semantics.probe('client', { address, port: tcpPort, count: 2 });
    t.same(errors(tcp), ['ECONNREFUSED', 'ECONNREFUSED'], `TCP to the ${kind} is refused`);
    const udp = await semantics.probe('client', { address, port: udpPort, protocol: 'udp', count: 2 });
    t.same(errors(udp), ['ECONNREFUSED', 'ECONNREFUSED'], `UDP to the ${kind} is refused`);
  }
  const fromNode = await semantics.probe('node', { address: '10.0.2.20', port: 80, count: 2 });
  t.same(errors(fromNode), ['ECONNREFUSED', 'ECONNREFUSED'], 'the ClusterIP is refused to the node too');
});
