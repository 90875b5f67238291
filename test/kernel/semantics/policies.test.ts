// Which endpoints serve: internalTrafficPolicy Local, ready before serving+terminating, and
// topology hints (forZones by the Node's zone label, forNodes) with the fall-back to all.
import t from 'tap';
import { type EndpointSpec, service, slice } from '../../lib/manifests.js';
import { answers, behaviour, errors, NODE_NAME, OTHER_NODE, podsOf, Semantics, thisNode, ZONE } from './lib.js';

const PODS = [
  { name: 'web-a', ipv4: '10.244.1.7' },
  { name: 'web-b', ipv4: '10.244.2.3' },
  { name: 'pod-client', ipv4: '10.244.1.50' },
];
const A = { ip: '10.244.1.7', nodeName: NODE_NAME };
const B = { ip: '10.244.2.3', nodeName: OTHER_NODE };

const semantics = await Semantics.create(t, { pods: PODS });

/** One service per case, all loaded together; `vip` is its ClusterIP. */
const cases: { name: string; vip: string; endpoints: EndpointSpec[]; spec?: Record<string, unknown>; expected: string[] }[] = [
  { name: 'itp-local', vip: '10.0.4.1', endpoints: [A, B], spec: { internalTrafficPolicy: 'Local' }, expected: ['web-a'] },
  { name: 'itp-local-none-here', vip: '10.0.4.2', endpoints: [B], spec: { internalTrafficPolicy: 'Local' }, expected: [] },
  { name: 'ready-only', vip: '10.0.4.3', endpoints: [A, { ...B, ready: false }], expected: ['web-a'] },
  { name: 'ready-before-terminating', vip: '10.0.4.4', endpoints: [A, { ...B, ready: false, serving: true, terminating: true }], expected: ['web-a'] },
  { name: 'terminating-when-none-ready', vip: '10.0.4.5', endpoints: [{ ...A, ready: false, serving: true, terminating: true }, { ...B, ready: false, serving: false, terminating: true }], expected: ['web-a'] },
  { name: 'zone-hints', vip: '10.0.4.6', endpoints: [{ ...A, forZones: ['zone-b'] }, { ...B, forZones: [ZONE] }], expected: ['web-b'] },
  { name: 'node-hints', vip: '10.0.4.7', endpoints: [{ ...A, forNodes: [OTHER_NODE] }, { ...B, forNodes: [NODE_NAME] }], expected: ['web-b'] },
  { name: 'hints-no-match', vip: '10.0.4.8', endpoints: [{ ...A, forZones: ['zone-x'] }, { ...B, forZones: ['zone-y'] }], expected: ['web-a', 'web-b'] },
  { name: 'hints-partial', vip: '10.0.4.9', endpoints: [{ ...A, forZones: ['zone-b'] }, { ...B }], expected: ['web-a', 'web-b'] },
];
const objects = [
  thisNode(),
  ...cases.flatMap((entry) => [service(entry.name, entry.vip, [{ port: 80, targetPort: 9376 }], entry.spec), slice(entry.name, [{ port: 9376 }], entry.endpoints)]),
];

await behaviour(t, semantics, { name: 'endpoint-selection', objects }, async (t) => {
  for (const entry of cases) {
    const report = await semantics.probe('pod-client', { address: entry.vip, port: 80, count: entry.expected.length > 0 ? 12 : 2, timeoutMs: 1000 });
    if (entry.expected.length === 0) {
      t.same(errors(report), ['ETIMEDOUT', 'ETIMEDOUT'], `${entry.name}: dropped`);
    } else {
      t.same(podsOf(report), entry.expected, `${entry.name}: served by ${entry.expected.join(' and ')}`);
      t.equal(answers(report).length, 12, `${entry.name}: every connection answered`);
    }
  }
});
