// A partial sync writes only the changed service's objects. The transaction is recorded instead of
// committed (the kernel side of partial syncs is exercised with packets in agent.test.ts).
import t from 'tap';
import { DEFAULT_PROXY_CONFIG } from '../../src/services/config.js';
import { NftablesBackend, type SyncTimings } from '../../src/kernel/nftables.js';
import type { NftTransaction } from '../../src/kernel/nft-transaction.js';
import { NftablesProxier } from '../../src/services/nftables-proxier.js';
import { NftablesDataplane } from '../../src/services/dataplane.js';
import { planRuleset, serviceTableOf } from '../../src/services/nftables-plan.js';
import type { Table } from '../../src/kernel/ruleset.js';
import { ClusterState } from '../../src/cluster/cluster-state.js';
import { allServicePortViews } from '../../src/cluster/service-ports.js';
import { service, slice } from '../lib/manifests.js';

class RecordingBackend extends NftablesBackend {
  transactions: string[][] = [];
  override async replace(tables: Iterable<Table>): Promise<SyncTimings> {
    Array.from(tables); // the proxier plans and records as the tables are taken
    this.transactions.push(['full replace']);
    return { messages: 0, bytes: 0, encodeMs: 0, kernelMs: 0, serializeMs: 0, wallMs: 0 };
  }
  override async commit(transaction: NftTransaction): Promise<SyncTimings> {
    this.transactions.push(Array.from({ length: transaction.messageCount }, (_, index) => transaction.describe(index)));
    return { messages: transaction.messageCount, bytes: 0, encodeMs: 0, kernelMs: 0, serializeMs: 0, wallMs: 0 };
  }
}

const endpointsOf = (index: number, hosts: number[]) => hosts.map((host) => ({ ip: `10.${200 + host}.${Math.floor(index / 250)}.${(index % 250) + 1}` }));

t.test('after one endpoint change among 1,000 services only that service is in the transaction', async (t) => {
  const state = new ClusterState('node-1');
  for (let index = 0; index < 1000; index++) {
    state.apply(service(`svc-${index}`, `10.0.${10 + Math.floor(index / 250)}.${(index % 250) + 1}`, [{ port: 80, targetPort: 9376 }]));
    state.apply(slice(`svc-${index}`, [{ port: 9376 }], endpointsOf(index, [1, 2, 3])));
  }
  const backend = new RecordingBackend();
  const proxier = new NftablesProxier(backend);
  const config = { ...DEFAULT_PROXY_CONFIG, nodeName: 'node-1' };
  t.equal((await proxier.sync(state, config, state.takeChanges().services)).kind, 'full', 'the first sync is full');

  state.apply(slice('svc-500', [{ port: 9376 }], endpointsOf(500, [1, 2])));
  const result = await proxier.sync(state, config, state.takeChanges().services);
  t.equal(result.kind, 'partial');
  const [change, cleanup] = backend.transactions.slice(-2);
  t.same(change, [
    'table ip kubenft',
    'rule in front of chain svc/default/svc-500/tcp/80',
    'rule in front of chain svc/default/svc-500/tcp/80',
  ], 'the new cascade goes in front of the old one, which it makes unreachable: nothing is deleted');
  t.same(cleanup, [
    'table ip kubenft',
    'removal of elements from hairpin-endpoints',
    'flush of chain svc/default/svc-500/tcp/80',
    'rule in chain svc/default/svc-500/tcp/80',
    'rule in chain svc/default/svc-500/tcp/80',
  ], 'afterwards the chain is rewritten and the gone endpoint\'s hairpin pair removed');
  t.equal(result.tables, 2, 'rules change in one service table; the main table loses an element');

  state.delete(service('svc-7', '10.0.10.8', [{ port: 80 }]));
  const removal = await proxier.sync(state, config, state.takeChanges().services);
  t.equal(removal.kind, 'partial');
  t.same(backend.transactions.slice(-2), [[
    'table ip kubenft',
    'removal of elements from cluster-ips',
    'removal of elements from service-ips',
    'flush of chain svc/default/svc-7/tcp/80',
    'delete of chain svc/default/svc-7/tcp/80',
  ], [
    'table ip kubenft',
    'removal of elements from hairpin-endpoints',
  ]], 'a deleted service takes its elements and chain with it at once; its hairpin pairs follow');
});

t.test('a full sync hands each table over whole once, then only what each later group adds, every element once', async (t) => {
  const state = new ClusterState('node-1');
  for (let index = 0; index < 200; index++) {
    // Every service shares an endpoint, two services in different service tables share an external
    // IP and port, and every tenth is dual-stack, its IPv6 part in a table of another group.
    const clusterIPs = index % 10 === 0 ? [`10.0.10.${index + 1}`, `fd00:10::${(index * 7 + 3).toString(16)}`] : `10.0.10.${index + 1}`;
    state.apply(service(`svc-${index}`, clusterIPs, [{ port: 80, targetPort: 9376 }], index < 2 ? { externalIPs: ['192.0.2.1'] } : {}));
    state.apply(slice(`svc-${index}`, [{ port: 9376 }], [...endpointsOf(index, [1]), { ip: '10.250.0.1' }]));
    if (index % 10 === 0) state.apply({ ...slice(`svc-${index}`, [{ port: 9376 }], [{ ip: `fd00:244::${index + 1}` }]), addressType: 'IPv6', metadata: { name: `svc-${index}-v6`, namespace: 'default', labels: { 'kubernetes.io/service-name': `svc-${index}` } } });
  }
  t.not(serviceTableOf('10.0.10.1', DEFAULT_PROXY_CONFIG), serviceTableOf('10.0.10.2', DEFAULT_PROXY_CONFIG));
  const handedOver: Table[] = [];
  class TableCollector extends NftablesBackend {
    override async replace(tables: Iterable<Table>): Promise<SyncTimings> {
      handedOver.push(...tables);
      return { messages: 0, bytes: 0, encodeMs: 0, kernelMs: 0, serializeMs: 0, wallMs: 0 };
    }
  }
  const config = { ...DEFAULT_PROXY_CONFIG, nodeName: 'node-1' };
  await new NftablesProxier(new TableCollector()).sync(state, config, 'full');

  const expected = planRuleset(allServicePortViews(state), config).tables;
  t.ok(expected.some((table) => table.family === 'ip6' && table.name !== config.tableName), 'IPv6 service tables too');
  t.ok(handedOver.filter((table) => table.name === config.tableName && table.family === 'ip').length > 1, 'the main table comes with each group of services');
  for (const table of expected) {
    const [whole, ...additions] = handedOver.filter((candidate) => candidate.family === table.family && candidate.name === table.name);
    const skeleton = whole.chains.filter((chain) => !/^(svc|local|external|firewall)\//.test(chain.name)).map((chain) => chain.name);
    const chains = [whole, ...additions].flatMap((part) => part.chains.map((chain) => chain.name));
    t.same(chains.sort(), table.chains.map((chain) => chain.name).sort(), `${table.family} ${table.name}: every chain once, the skeleton's in the first part`);
    t.ok(additions.every((part) => part.chains.every((chain) => !skeleton.includes(chain.name))));
    for (const set of table.sets) {
      const keys = [whole, ...additions].flatMap((part) => part.sets.find((candidate) => candidate.name === set.name)?.elements.map((element) => element.key.join(' . ')) ?? []);
      if (keys.length !== set.elements.length || JSON.stringify(keys.sort()) !== JSON.stringify(set.elements.map((element) => element.key.join(' . ')).sort())) {
        t.fail(`${table.family} ${table.name} ${set.name}: ${keys.length} elements handed over, ${set.elements.length} planned`);
      }
    }
  }
});

t.test('an element shared by two services stays until its last owner goes', async (t) => {
  const state = new ClusterState('node-1');
  for (const name of ['one', 'two']) {
    state.apply(service(name, name === 'one' ? '10.0.0.1' : '10.0.0.2', [{ port: 80 }]));
    state.apply(slice(name, [{ port: 80 }], [{ ip: '10.244.1.1' }]));
  }
  const backend = new RecordingBackend();
  const proxier = new NftablesProxier(backend);
  const config = { ...DEFAULT_PROXY_CONFIG, nodeName: 'node-1' };
  await proxier.sync(state, config, 'full');
  state.takeChanges();
  state.delete(service('one', '10.0.0.1', [{ port: 80 }]));
  await proxier.sync(state, config, state.takeChanges().services);
  t.notOk(backend.transactions.at(-1)!.includes('removal of elements from hairpin-endpoints'), 'the shared hairpin pair stays');
});

t.test('a service whose service table is not loaded yet creates it in the partial sync', async (t) => {
  const state = new ClusterState('node-1');
  state.apply(service('first', '10.0.0.1', [{ port: 80 }]));
  state.apply(slice('first', [{ port: 80 }], [{ ip: '10.244.1.1' }]));
  const backend = new RecordingBackend();
  const proxier = new NftablesProxier(backend);
  const config = { ...DEFAULT_PROXY_CONFIG, nodeName: 'node-1' };
  await proxier.sync(state, config, 'full');
  state.takeChanges();
  const first = serviceTableOf('10.0.0.1', config);
  const name = 'second';
  t.not(serviceTableOf('10.0.0.2', config), first);
  state.apply(service(name, '10.0.0.2', [{ port: 80 }]));
  state.apply(slice(name, [{ port: 80 }], [{ ip: '10.244.1.2' }]));
  const result = await proxier.sync(state, config, state.takeChanges().services);
  t.equal(result.kind, 'partial');
  const transaction = backend.transactions.at(-1)!;
  t.ok(transaction.includes(`table ip ${serviceTableOf('10.0.0.2', config)}`), 'the new service table is created');
  t.ok(transaction.indexOf('chain services') < transaction.indexOf(`chain svc/default/${name}/tcp/80`), 'its skeleton comes before the service');
  t.same(proxier.expectedShape().map((shape) => shape.name).sort(), ['kubenft', first, serviceTableOf('10.0.0.2', config)].sort(), 'drift checks expect all three tables');
});

t.test('when the service whose table an external IP leads to goes, the other service claiming it gets it', async (t) => {
  const state = new ClusterState('node-1');
  const claimant = (name: string, clusterIP: string) => [
    service(name, clusterIP, [{ port: 80, targetPort: 9376 }], { externalIPs: ['192.0.2.1'] }),
    slice(name, [{ port: 9376 }], [{ ip: `10.244.1.${clusterIP.split('.')[3]}` }]),
  ];
  for (const object of [...claimant('first', '10.0.0.1'), ...claimant('second', '10.0.0.2')]) state.apply(object);
  const config = { ...DEFAULT_PROXY_CONFIG, nodeName: 'node-1' };
  t.not(serviceTableOf('10.0.0.1', config), serviceTableOf('10.0.0.2', config));
  const backend = new RecordingBackend();
  const proxier = new NftablesProxier(backend);
  await proxier.sync(state, config, state.takeChanges().services);

  state.delete(claimant('first', '10.0.0.1')[0]);
  await proxier.sync(state, config, state.takeChanges().services);
  const [change] = backend.transactions.slice(-2);
  t.ok(change.includes('removal of elements from service-ip-tables') && change.includes('elements of service-ip-tables'),
    'the routing element is replaced by the remaining owner\'s');
  state.delete(claimant('second', '10.0.0.2')[0]);
  await proxier.sync(state, config, state.takeChanges().services);
  t.ok(backend.transactions.slice(-2)[0].includes('removal of elements from service-ip-tables'), 'and removed with the last owner');
});

t.test('a kept key with a new verdict is replaced: removed and added again in the same transaction', async (t) => {
  const state = new ClusterState('node-1');
  state.apply(service('web', '10.0.0.1', [{ port: 80 }]));
  state.apply(slice('web', [{ port: 80 }], [{ ip: '10.244.1.1', nodeName: 'node-1' }, { ip: '10.244.2.1', nodeName: 'node-2' }]));
  const backend = new RecordingBackend();
  const proxier = new NftablesProxier(backend);
  const config = { ...DEFAULT_PROXY_CONFIG, nodeName: 'node-1' };
  await proxier.sync(state, config, 'full');
  state.takeChanges();
  state.apply(service('web', '10.0.0.1', [{ port: 80 }], { internalTrafficPolicy: 'Local' }));
  await proxier.sync(state, config, state.takeChanges().services);
  const change = backend.transactions.at(-2)!;
  const removal = change.indexOf('removal of elements from service-ips');
  t.ok(removal >= 0, 'the ClusterIP entry pointing at the cluster-wide chain is removed');
  t.ok(change.indexOf('elements of service-ips', removal) > removal, 'and added again, pointing at the local chain');
});

t.test('after partial syncs the expected shape is the one a full sync of the same state expects', async (t) => {
  const state = new ClusterState('node-1');
  const config = { ...DEFAULT_PROXY_CONFIG, nodeName: 'node-1' };
  for (let index = 0; index < 20; index++) {
    state.apply(service(`svc-${index}`, `10.0.0.${index + 1}`, [{ port: 80 }, { name: 'dns', port: 53, protocol: 'UDP' }], index % 3 === 0 ? { sessionAffinity: 'ClientIP' } : {}));
    state.apply(slice(`svc-${index}`, [{ port: 80 }, { name: 'dns', port: 53, protocol: 'UDP' }], endpointsOf(index % 5, [1, 2, 3])));
  }
  const proxier = new NftablesProxier(new RecordingBackend());
  await proxier.sync(state, config, 'full');
  state.takeChanges();
  state.delete(service('svc-3', '10.0.0.4', [{ port: 80 }]));
  state.apply(slice('svc-4', [{ port: 80 }, { name: 'dns', port: 53, protocol: 'UDP' }], endpointsOf(7, [1])));
  state.apply(service('svc-5', '10.0.0.6', [{ port: 80 }]));
  state.apply(service('new', '10.0.1.1', [{ port: 80 }]));
  state.apply(slice('new', [{ port: 80 }], endpointsOf(0, [1, 2])));
  t.equal((await proxier.sync(state, config, state.takeChanges().services)).kind, 'partial');
  const fresh = new NftablesProxier(new RecordingBackend());
  await fresh.sync(state, config, 'full');
  const comparable = (shapes: ReturnType<NftablesProxier['expectedShape']>) =>
    shapes.map((shape) => ({ ...shape, chains: [...shape.chains].sort(), sets: [...shape.sets].sort() })).sort((a, b) => a.name.localeCompare(b.name));
  t.same(comparable(proxier.expectedShape()), comparable(fresh.expectedShape()));
});

t.test('the dataplane compacts memory after a large full sync, not after a small one or a partial one', async (t) => {
  class SizedBackend extends RecordingBackend {
    releases = 0;
    constructor(private readonly fullSyncBytes: number) {
      super();
    }
    override async replace(tables: Iterable<Table>): Promise<SyncTimings> {
      return { ...(await super.replace(tables)), bytes: this.fullSyncBytes };
    }
    override releaseMemory(): void {
      this.releases++;
    }
  }
  const state = new ClusterState('node-1');
  state.apply(service('web', '10.0.0.1', [{ port: 80 }]));
  state.apply(slice('web', [{ port: 80 }], [{ ip: '10.244.1.1' }]));
  const config = { ...DEFAULT_PROXY_CONFIG, nodeName: 'node-1' };
  for (const [bytes, expected] of [[64 * 2 ** 20, 1], [2 ** 20, 0]] as const) {
    const backend = new SizedBackend(bytes);
    const dataplane = new NftablesDataplane(backend);
    await dataplane.sync(state, config, 'full');
    await dataplane.sync(state, config, new Set(['default/web']));
    t.equal(backend.releases, expected, `${bytes} bytes written by the full sync: ${expected} release`);
  }
});
