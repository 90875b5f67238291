// External IPs and load balancer IPs: externalTrafficPolicy Cluster (masqueraded) and Local
// (this node's endpoints only, client source kept, none here = drop), the short-circuit of pod and
// node traffic to cluster-wide endpoints, and loadBalancerSourceRanges.
import t from 'tap';
import { service, slice } from '../../lib/manifests.js';
import { answers, behaviour, errors, EXTERNAL, gatewayOf, NODE_NAME, OTHER_NODE, podsOf, Semantics, thisNode, valuesOf } from './lib.js';

const PODS = [
  { name: 'web-a', ipv4: '10.244.1.7' },
  { name: 'web-b', ipv4: '10.244.2.3' },
  { name: 'pod-client', ipv4: '10.244.1.50' },
];
const POD_CLIENT = '10.244.1.50';
const EXTERNAL_IP = '192.168.100.50';
const LB_IP = '203.0.113.20';
const both = [{ ip: '10.244.1.7', nodeName: NODE_NAME }, { ip: '10.244.2.3', nodeName: OTHER_NODE }];

const semantics = await Semantics.create(t, { pods: PODS, nodeAddresses: [EXTERNAL_IP] });
await semantics.exec('node', ['ip', 'route', 'add', '203.0.113.0/24', 'dev', 'kube-svc']);

const exposed = (policy: 'Cluster' | 'Local', endpoints = both) => [
  thisNode(),
  service('web', '10.0.3.10', [{ port: 80, targetPort: 9376, nodePort: 30080 }], { type: 'LoadBalancer', externalIPs: [EXTERNAL_IP], externalTrafficPolicy: policy },
    { status: { loadBalancer: { ingress: [{ ip: LB_IP }] } } }),
  slice('web', [{ port: 9376 }], endpoints),
];
const masqueraded = (report: Awaited<ReturnType<typeof semantics.probe>>) =>
  answers(report).length > 0 && answers(report).every((answer) => answer.remote === gatewayOf(answer.local));

await behaviour(t, semantics, { name: 'external-cluster', objects: exposed('Cluster') }, async (t) => {
  for (const [kind, address, port] of [['external IP', EXTERNAL_IP, 80], ['load balancer IP', LB_IP, 80], ['NodePort', EXTERNAL.nodeIPv4, 30080]] as const) {
    const report = await semantics.probe('client', { address, port, count: 12 });
    t.same(podsOf(report), ['web-a', 'web-b'], `the ${kind} reaches every endpoint`);
    t.ok(answers(report).length === 12 && masqueraded(report), `the ${kind} is masqueraded`);
  }
});

await behaviour(t, semantics, { name: 'external-local', objects: exposed('Local') }, async (t) => {
  for (const [kind, address, port] of [['external IP', EXTERNAL_IP, 80], ['load balancer IP', LB_IP, 80], ['NodePort', EXTERNAL.nodeIPv4, 30080]] as const) {
    const report = await semantics.probe('client', { address, port, count: 8 });
    t.same(podsOf(report), ['web-a'], `the ${kind} reaches only this node's endpoint`);
    t.same(valuesOf(report, 'remote'), [EXTERNAL.clientIPv4], `the ${kind} keeps the client's source`);
  }
  const fromPod = await semantics.probe('pod-client', { address: EXTERNAL_IP, port: 80, count: 16 });
  t.same(podsOf(fromPod), ['web-a', 'web-b'], 'a pod reaching the external IP short-circuits to every endpoint');
  t.same(valuesOf(fromPod, 'remote'), [POD_CLIENT], 'with its own source');
  const fromNode = await semantics.probe('node', { address: EXTERNAL_IP, port: 80, count: 16 });
  t.same(podsOf(fromNode), ['web-a', 'web-b'], 'the node reaching the external IP short-circuits to every endpoint');
  t.ok(masqueraded(fromNode), 'masqueraded');
});

await behaviour(t, semantics, { name: 'external-local-none-here', objects: exposed('Local', [both[1]]) }, async (t) => {
  for (const [kind, address, port] of [['external IP', EXTERNAL_IP, 80], ['load balancer IP', LB_IP, 80], ['NodePort', EXTERNAL.nodeIPv4, 30080]] as const) {
    const report = await semantics.probe('client', { address, port, count: 2, timeoutMs: 1000 });
    t.same(errors(report), ['ETIMEDOUT', 'ETIMEDOUT'], `the ${kind} drops: no endpoint on this node`);
  }
  const fromPod = await semantics.probe('pod-client', { address: EXTERNAL_IP, port: 80, count: 4 });
  t.same(podsOf(fromPod), ['web-b'], 'pods still reach the endpoint elsewhere');
  t.equal(answers(fromPod).length, 4);
  const clusterIP = await semantics.probe('client', { address: '10.0.3.10', port: 80, count: 4 });
  t.equal(answers(clusterIP).length, 4, 'the ClusterIP (policy Cluster) is unaffected');
});

const firewalled = [
  thisNode(),
  service('guarded', '10.0.3.20', [{ port: 80, targetPort: 9376, nodePort: 30081 }], { type: 'LoadBalancer', loadBalancerSourceRanges: [`${EXTERNAL.clientIPv4}/32`] },
    { status: { loadBalancer: { ingress: [{ ip: LB_IP }] } } }),
  slice('guarded', [{ port: 9376 }], both),
];

await behaviour(t, semantics, { name: 'load-balancer-source-ranges', objects: firewalled }, async (t) => {
  const inside = await semantics.probe('client', { address: LB_IP, port: 80, count: 4 });
  t.equal(answers(inside).length, 4, 'a source inside the ranges reaches the load balancer IP');
  const outside = await semantics.probe('pod-client', { address: LB_IP, port: 80, count: 2, timeoutMs: 1000 });
  t.same(errors(outside), ['ETIMEDOUT', 'ETIMEDOUT'], 'a source outside the ranges is dropped');
  const nodePort = await semantics.probe('pod-client', { address: EXTERNAL.nodeIPv4, port: 30081, count: 2 });
  t.equal(answers(nodePort).length, 2, 'the NodePort ignores the ranges');
});
