// The evaluator and the services summary over the planner's own tables (decoded back from the
// addon's wire format), without a kernel: a large service's endpoint map, a cascade, IPv6, and the
// planned and loaded forms agreeing. The kernel-facing checks are in inspect.test.ts and the
// semantics suite.
import t from 'tap';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { DEFAULT_PROXY_CONFIG } from '../../src/services/config.js';
import { native, projectRoot } from '../../src/kernel/native.js';
import { Evaluator } from '../../src/services/inspect/evaluate.js';
import { summarize } from '../../src/services/inspect/services.js';
import { plannedTables } from '../../src/services/inspect/tables.js';
import { planRuleset } from '../../src/services/nftables-plan.js';
import { loadState } from '../lib/load-state.js';
import { allServicePortViews } from '../../src/cluster/service-ports.js';
import type { KubeObject } from '../../src/cluster/cluster-state.js';
import { node, service, slice } from '../lib/manifests.js';

const NODE_IP = '192.168.100.1';
const large = Array.from({ length: 70 }, (_, index) => ({ ip: `10.244.${1 + (index >> 6)}.${index & 63}`, nodeName: 'node-2' }));
const objects = [
  node('node-1', [NODE_IP, 'fd00:100::1']),
  service('large', '10.0.2.1', [{ port: 80, targetPort: 9376 }]),
  slice('large', [{ port: 9376 }], large),
  service('three', ['10.0.2.2', 'fd00:10:96::2'], [{ port: 53, targetPort: 5353, protocol: 'UDP', nodePort: 30053 }], { type: 'NodePort', ipFamilies: ['IPv4', 'IPv6'], ipFamilyPolicy: 'RequireDualStack' }),
  slice('three', [{ port: 5353, protocol: 'UDP' }], [{ ip: '10.244.1.7' }, { ip: '10.244.2.3' }, { ip: '10.244.3.6' }]),
  slice('three', [{ port: 5353, protocol: 'UDP' }], [{ ip: 'fd00:244::7' }], { name: 'three-v6', addressType: 'IPv6' }),
] as KubeObject[];

if (!existsSync(join(projectRoot(), 'build/Release/kubenft_native.node'))) {
  t.fail('native addon not built: run npx node-gyp rebuild');
} else {
  const { state, errors } = loadState(objects, 'node-1');
  t.same(errors, []);
  const config = { ...DEFAULT_PROXY_CONFIG, nodeName: 'node-1', localCIDRs: ['10.244.0.0/16', 'fd00:244::/48'], nodeIPs: [NODE_IP, 'fd00:100::1'], nodePortAddresses: [NODE_IP, 'fd00:100::1'], serviceCIDRs: ['10.0.0.0/16'] };
  const tables = plannedTables(planRuleset(allServicePortViews(state), config), native().attributes);
  const environment = { isLocalAddress: (address: string) => address === NODE_IP || address === 'fd00:100::1' };
  const explain = (family: 'ip' | 'ip6', saddr: string, daddr: string, dport: number, protocol: 'tcp' | 'udp' = 'tcp', via: 'prerouting' | 'output' = 'prerouting') =>
    new Evaluator(tables, family, environment).explain({ family, protocol, saddr, sport: 40000, daddr, dport }, via);

  t.test('a service above 64 endpoints: one map lookup, each endpoint 1/70', async (t) => {
    const outcomes = explain('ip', '10.244.9.9', '10.0.2.1', 80);
    t.equal(outcomes.length, 70);
    t.ok(outcomes.every((outcome) => outcome.fate === 'accept' && Math.abs(outcome.probability - 1 / 70) < 1e-12), 'equal probabilities');
    t.same(outcomes.map((outcome) => outcome.dnat!.address).sort(), large.map((endpoint) => endpoint.ip).sort(), 'every endpoint once');
    t.match(outcomes[0].steps.at(-4), { chain: 'svc/default/large/tcp/80' }, 'through the service chain');
  });

  t.test('a cascade of three, a NodePort from this node, IPv6', async (t) => {
    const outcomes = explain('ip', NODE_IP, NODE_IP, 30053, 'udp', 'output');
    t.same(outcomes.map((outcome) => [outcome.dnat!.address, outcome.dnat!.port, outcome.masquerade]).sort(), [['10.244.1.7', 5353, true], ['10.244.2.3', 5353, true], ['10.244.3.6', 5353, true]]);
    t.ok(outcomes.every((outcome) => Math.abs(outcome.probability - 1 / 3) < 1e-12), '1/3 each, from numgen mod 3 then mod 2');
    t.match(explain('ip6', 'fd00:244::9', 'fd00:10:96::2', 53, 'udp'), [{ probability: 1, fate: 'accept', dnat: { address: 'fd00:244::7', port: 5353 }, masquerade: false }]);
    t.match(explain('ip', '10.244.9.9', '10.0.2.2', 54, 'udp'), [{ probability: 1, fate: 'reject' }], 'an undefined port of a ClusterIP is rejected');
    t.match(explain('ip', '10.244.9.9', '10.0.2.2', 53, 'tcp'), [{ probability: 1, fate: 'reject' }], 'so is the other protocol');
    t.match(explain('ip', '10.244.9.9', '10.0.200.200', 80), [{ probability: 1, fate: 'drop' }], 'an unallocated service address is dropped');
    t.match(explain('ip', '10.244.9.9', '10.9.9.9', 80), [{ probability: 1, fate: 'accept', delivery: 'forwarded', dnat: undefined, steps: [] }], 'other traffic passes untouched');
  });

  t.test('services: the summary of the planned tables', async (t) => {
    const summaries = summarize(tables, environment);
    const three = summaries.filter((summary) => summary.service === 'default/three');
    t.match(three, [
      { family: 'ip', clusterIP: '10.0.2.2', nodePort: 30053, externalTrafficPolicy: 'Cluster', cluster: [{ address: '10.244.1.7' }, { address: '10.244.2.3' }, { address: '10.244.3.6' }] },
      { family: 'ip6', clusterIP: 'fd00:10:96::2', nodePort: 30053, cluster: [{ address: 'fd00:244::7', port: 5353, probability: 1 }] },
    ]);
    const largeSummary = summaries.find((summary) => summary.service === 'default/large')!;
    t.equal(largeSummary.cluster.length, 70);
    t.ok(Math.abs(largeSummary.cluster.reduce((sum, selection) => sum + selection.probability, 0) - 1) < 1e-9, 'probabilities add up to 1');
  });
}
