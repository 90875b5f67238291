import t from 'tap';
import { readFileSync } from 'node:fs';
import { parseAllDocuments } from 'yaml';
import { DEFAULT_PROXY_CONFIG, MAX_SERVICE_TABLES } from '../../src/services/config.js';
import { planRuleset, SHARED_SETS, serviceTableOf, setNamed } from '../../src/services/nftables-plan.js';
import { rulesetText } from '../../src/kernel/render-text.js';
import { loadState } from '../lib/load-state.js';
import { allServicePortViews } from '../../src/cluster/service-ports.js';
import type { KubeObject } from '../../src/cluster/cluster-state.js';

const hostnames = parseAllDocuments(readFileSync(new URL('../../examples/hostnames.yaml', import.meta.url), 'utf8')).map((document) => document.toJS() as KubeObject);
const config = { ...DEFAULT_PROXY_CONFIG, nodeName: 'node-1', localCIDRs: ['10.244.0.0/16'] };

t.test('hostnames: one service-ips element, an equal-probability cascade, hairpin pairs', async (t) => {
  const { state, errors } = loadState(hostnames, 'node-1');
  t.same(errors, []);
  const [main, services, ...others] = planRuleset(allServicePortViews(state), config).tables;
  t.same([main.family, main.name, services.family, services.name, others], ['ip', 'kubenft', 'ip', serviceTableOf('10.0.1.175', config), []]);
  t.same(setNamed(services, SHARED_SETS.serviceIPs).elements, [
    { key: ['10.0.1.175', 'tcp', 80], verdict: { kind: 'goto', chain: 'svc/default/hostnames/tcp/80' } },
  ]);
  t.same(setNamed(main, SHARED_SETS.hairpin).elements.map((element) => element.key), [
    ['10.244.1.7', '10.244.1.7'], ['10.244.2.3', '10.244.2.3'], ['10.244.3.6', '10.244.3.6'],
  ]);
  const chain = services.chains.find((candidate) => candidate.name === 'svc/default/hostnames/tcp/80')!;
  t.same(chain.rules.map((rule) => rule.statements), [
    [{ kind: 'numgen', modulus: 3, equals: 0 }, { kind: 'match', field: 'meta l4proto', op: '==', value: 'tcp' }, { kind: 'dnat', address: '10.244.1.7', port: 9376 }],
    [{ kind: 'numgen', modulus: 2, equals: 0 }, { kind: 'match', field: 'meta l4proto', op: '==', value: 'tcp' }, { kind: 'dnat', address: '10.244.2.3', port: 9376 }],
    [{ kind: 'match', field: 'meta l4proto', op: '==', value: 'tcp' }, { kind: 'dnat', address: '10.244.3.6', port: 9376 }],
  ]);
});

t.test('hostnames: rendered nft text', async (t) => {
  const { state } = loadState(hostnames, 'node-1');
  const text = rulesetText(planRuleset(allServicePortViews(state), config));
  t.match(text, 'elements = { 10.0.1.175 . tcp . 80 : goto svc/default/hostnames/tcp/80 }');
  t.match(text, `\tchain cluster-ip-masquerade {
\t\tip daddr @cluster-ips ip saddr != 10.244.0.0/16 meta mark set meta mark | 0x00004000
\t}`);
  t.match(text, `\tchain services {
\t\tip daddr . meta l4proto . th dport vmap @service-ips`);
  t.match(text, `\tchain svc/default/hostnames/tcp/80 {
\t\tnumgen random mod 3 0 meta l4proto tcp dnat to 10.244.1.7:9376
\t\tnumgen random mod 2 0 meta l4proto tcp dnat to 10.244.2.3:9376
\t\tmeta l4proto tcp dnat to 10.244.3.6:9376
\t}`);
  t.match(text, 'ip daddr . meta l4proto . th dport vmap @service-ips');
});

t.test('not-ready endpoints are never chosen; no ready endpoint means reject, not DNAT', async (t) => {
  const objects = structuredClone(hostnames);
  const slice = objects[1] as { endpoints: { conditions: { ready: boolean } }[] };
  slice.endpoints[1].conditions.ready = false;
  let { state } = loadState(objects, 'node-1');
  const [, services] = planRuleset(allServicePortViews(state), config).tables;
  const chain = services.chains.find((candidate) => candidate.name === 'svc/default/hostnames/tcp/80')!;
  t.notMatch(JSON.stringify(chain), '10.244.2.3');
  t.equal(chain.rules.length, 2, 'two endpoints');

  for (const endpoint of slice.endpoints) endpoint.conditions.ready = false;
  ({ state } = loadState(objects, 'node-1'));
  const tables = planRuleset(allServicePortViews(state), config).tables;
  t.same(tables.flatMap((table) => table.sets.find((set) => set.name === SHARED_SETS.serviceIPs)?.elements ?? []), [], 'nothing is translated');
  t.same(setNamed(tables[0], SHARED_SETS.noEndpointServices).elements, [
    { key: ['10.0.1.175', 'tcp', 80], verdict: { kind: 'goto', chain: 'reject-chain' } },
  ]);
});

t.test('headless services get nothing; selector-less services with manual EndpointSlices are proxied', async (t) => {
  const headless = { apiVersion: 'v1', kind: 'Service', metadata: { name: 'db', namespace: 'default' }, spec: { clusterIP: 'None', selector: { app: 'db' }, ports: [{ port: 5432 }] } };
  const manual = { apiVersion: 'v1', kind: 'Service', metadata: { name: 'external-db', namespace: 'default' }, spec: { clusterIP: '10.0.7.7', ports: [{ port: 5432 }] } };
  const slices = ['db', 'external-db'].map((name) => ({
    apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', metadata: { name: `${name}-1`, namespace: 'default', labels: { 'kubernetes.io/service-name': name } },
    addressType: 'IPv4', ports: [{ name: '', port: 5432, protocol: 'TCP' }], endpoints: [{ addresses: ['192.0.2.10'] }],
  }));
  const { state, errors } = loadState([headless, manual, ...slices] as KubeObject[], 'node-1');
  t.same(errors, []);
  const tables = planRuleset(allServicePortViews(state), config).tables;
  t.same(tables.map((table) => table.name), ['kubenft', serviceTableOf('10.0.7.7', config)], 'the headless service has no table of its own');
  t.same(tables[1].chains.filter((chain) => chain.name.startsWith('svc/')).map((chain) => chain.name), ['svc/default/external-db/tcp/5432']);
  t.same(setNamed(tables[1], SHARED_SETS.serviceIPs).elements.map((element) => element.key), [['10.0.7.7', 'tcp', 5432]]);
});

t.test('services spread evenly over the service tables by their ClusterIP, each service whole in one of them', async (t) => {
  // Scattered last bytes, as the API server allocates at random.
  const clusterIPOf = (index: number) => `10.0.${index >> 8}.${(index * 37 + 11) & 255}`;
  const objects: KubeObject[] = Array.from({ length: 1600 }, (_, index) => ({
    apiVersion: 'v1', kind: 'Service', metadata: { name: `svc-${index}`, namespace: `ns-${index % 7}` },
    spec: { clusterIP: clusterIPOf(index), ports: [{ name: 'a', port: 80 }, { name: 'b', port: 81 }] },
  }));
  const slices = objects.map((service) => ({
    apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', metadata: { name: `${service.metadata.name}-1`, namespace: service.metadata.namespace, labels: { 'kubernetes.io/service-name': service.metadata.name } },
    addressType: 'IPv4', ports: [{ name: 'a', port: 8080, protocol: 'TCP' }, { name: 'b', port: 8081, protocol: 'TCP' }], endpoints: [{ addresses: ['10.244.0.9'] }],
  })) as KubeObject[];
  const { state } = loadState([...objects, ...slices], 'node-1');
  const ruleset = planRuleset(allServicePortViews(state), config);
  const serviceTables = ruleset.tables.slice(1);
  t.equal(serviceTables.length, config.serviceTables, 'every service table is used');
  const perTable = serviceTables.map((table) => table.chains.filter((chain) => chain.name.startsWith('svc/')).length);
  t.ok(Math.min(...perTable) > 0.7 * (3200 / config.serviceTables) && Math.max(...perTable) < 1.3 * (3200 / config.serviceTables), `balanced: ${perTable.join(' ')}`);
  for (const table of serviceTables) {
    for (const chain of table.chains.filter((candidate) => candidate.name.startsWith('svc/'))) {
      const index = Number(chain.name.split('/')[2].slice('svc-'.length));
      if (serviceTableOf(clusterIPOf(index), config) !== table.name) t.fail(`${chain.name} is in ${table.name}`);
    }
  }
  t.equal(planRuleset(allServicePortViews(state), { ...config, serviceTables: 1 }).tables.length, 2, 'one service table when asked');
  t.ok(config.serviceTables <= MAX_SERVICE_TABLES);
});
