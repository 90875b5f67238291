// ClusterIP semantics with real packets: who answers, which source the endpoint sees, and how
// traffic the Service cannot serve fails (refused vs dropped). Multiple, named and numbered ports.
import t from 'tap';
import { service, slice } from '../../lib/manifests.js';
import { answers, behaviour, errors, gatewayOf, NODE_NAME, OTHER_NODE, podsOf, Semantics, thisNode, valuesOf } from './lib.js';

const PODS = [
  { name: 'web-a', ipv4: '10.244.1.7', ports: [9376, 9377] },
  { name: 'web-b', ipv4: '10.244.2.3', ports: [9376, 9377] },
  { name: 'pod-client', ipv4: '10.244.1.50' },
];
const VIP = '10.0.1.10';
const UNALLOCATED = '10.0.1.99';
const endpoints = [
  { ip: '10.244.1.7', nodeName: NODE_NAME },
  { ip: '10.244.2.3', nodeName: OTHER_NODE },
];

const semantics = await Semantics.create(t, { pods: PODS });

// Named target ports resolve through the EndpointSlice's ports: "http" is 9377 there (not the
// usual 9376), so an answer on 9377 proves the name was resolved and not guessed.
const web = [
  thisNode(),
  service('web', VIP, [
    { name: 'http', port: 80, targetPort: 'http' },
    { name: 'metrics', port: 8080, targetPort: 9376 },
    { name: 'dns', port: 53, targetPort: 9376, protocol: 'UDP' },
  ]),
  slice('web', [{ name: 'http', port: 9377 }, { name: 'metrics', port: 9376 }, { name: 'dns', port: 9376, protocol: 'UDP' }], endpoints),
];

await behaviour(t, semantics, { name: 'clusterip', objects: web }, async (t) => {
  const fromClient = await semantics.probe('client', { address: VIP, port: 80, count: 12 });
  t.equal(answers(fromClient).length, 12, 'every connection from outside is answered');
  t.same(podsOf(fromClient), ['web-a', 'web-b'], 'by both endpoints');
  t.same(valuesOf(fromClient, 'localPort'), [9377], 'the named port "http" resolved through the slice');
  t.ok(answers(fromClient).every((answer) => answer.remote === gatewayOf(answer.local)), 'traffic from outside --cluster-cidr is masqueraded to the node');

  const fromPod = await semantics.probe('pod-client', { address: VIP, port: 8080, count: 8 });
  t.equal(answers(fromPod).length, 8);
  t.same(valuesOf(fromPod, 'localPort'), [9376], 'a numeric targetPort is used as is');
  t.same(valuesOf(fromPod, 'remote'), ['10.244.1.50'], 'pod traffic keeps its source');

  const fromNode = await semantics.probe('node', { address: VIP, port: 80, count: 4 });
  t.equal(answers(fromNode).length, 4, 'the node itself reaches the ClusterIP');
  t.ok(answers(fromNode).every((answer) => answer.remote === gatewayOf(answer.local)), 'node traffic is masqueraded');

  const udp = await semantics.probe('pod-client', { address: VIP, port: 53, protocol: 'udp', count: 4 });
  t.equal(answers(udp).length, 4, 'UDP is answered');
  t.same([valuesOf(udp, 'protocol'), valuesOf(udp, 'localPort'), valuesOf(udp, 'remote')], [['udp'], [9376], ['10.244.1.50']], 'on the slice\'s UDP port, source kept');
});

const sinkPackets = async () => {
  const stats = JSON.parse(await semantics.exec('node', ['ip', '-s', '-j', 'link', 'show', 'kube-svc']));
  return stats[0].stats64.tx.packets as number;
};

await behaviour(t, semantics, {
  name: 'clusterip-unknown-port',
  objects: web,
  skip: { iptables: "kube-proxy's iptables mode does not reject ports a ClusterIP does not define nor drop unallocated service addresses" },
}, async (t) => {
  const sinkBefore = await sinkPackets();
  for (const from of ['client', 'pod-client', 'node']) {
    const tcp = await semantics.probe(from, { address: VIP, port: 81, count: 2 });
    t.same(errors(tcp), ['ECONNREFUSED', 'ECONNREFUSED'], `TCP to an undefined port from ${from} is refused`);
    const udp = await semantics.probe(from, { address: VIP, port: 54, protocol: 'udp', count: 2 });
    t.same(errors(udp), ['ECONNREFUSED', 'ECONNREFUSED'], `UDP to an undefined port from ${from} is refused`);
  }
  for (const from of ['client', 'pod-client']) {
    const unallocated = await semantics.probe(from, { address: UNALLOCATED, port: 80, count: 2, timeoutMs: 1000 });
    t.same(errors(unallocated), ['ETIMEDOUT', 'ETIMEDOUT'], `an unallocated service address is silent to ${from}`);
  }
  t.equal(await sinkPackets(), sinkBefore, 'nothing reached the service-range route: kubenft dropped (and refused) it all');
});
