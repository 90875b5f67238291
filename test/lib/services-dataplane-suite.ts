// The services' nftables dataplane against a kernel, one suite for two: nftables in memory
// (test/unit/services-dataplane.test.ts, no root) and the real kernel in a throwaway network
// namespace (test/kernel/services-dataplane.test.ts). Full and partial syncs, what each
// transaction holds, drift and its repair, the last good state after a refusal, cleanup, and the
// kernel's own answers that the in-memory one copies (atomicity, EEXIST, ENOENT, EBUSY, flushes):
// the same assertions on both, so the in-memory kernel cannot drift from the real one.
import type { Test } from 'tap';
import { constants } from 'node:os';
import { DEFAULT_PROXY_CONFIG } from '../../src/services/config.js';
import { NftablesBackend, TransactionError } from '../../src/kernel/nftables.js';
import { NftTransaction } from '../../src/kernel/nft-transaction.js';
import type { CommitResult, KernelError, NftablesKernel } from '../../src/kernel/native.js';
import { NFPROTO, NFT_MSG, NLM_F } from '../../src/kernel/uapi.js';
import { type WireMessage, attributeNames, readTransaction } from '../../src/kernel/wire.js';
import { NftablesProxier } from '../../src/services/nftables-proxier.js';
import { NftablesDataplane } from '../../src/services/dataplane.js';
import { allTableNames, planRuleset, serviceTableOf } from '../../src/services/nftables-plan.js';
import { kernelTables, plannedTables, tableDifferences } from '../../src/services/inspect/tables.js';
import { describeElement } from '../../src/services/inspect/values.js';
import { findDrift } from '../../src/services/drift.js';
import type { NamedSet, Table } from '../../src/kernel/ruleset.js';
import { ClusterState } from '../../src/cluster/cluster-state.js';
import { allServicePortViews } from '../../src/cluster/service-ports.js';
import { eventually } from './eventually.js';
import { service, slice } from './manifests.js';

/** The kernel a run of the suite programs. */
export interface SuiteKernel {
  /** A kernel holding no table at all. */
  fresh(): Promise<NftablesKernel>;
}

const FAMILY_NAMES = new Map<number, string>(Object.entries(NFPROTO).map(([name, number]) => [number, name]));

/** A message as nft's command would name it: `add rule CHAIN`, `delete element SET`, `flush chain CHAIN`. */
function commandOf(message: WireMessage): string {
  const { attrs } = message;
  switch (message.type) {
    case NFT_MSG.NEWTABLE: return `add table ${FAMILY_NAMES.get(message.family)} ${attrs.name}`;
    case NFT_MSG.DELTABLE: return `delete table ${FAMILY_NAMES.get(message.family)} ${attrs.name}`;
    case NFT_MSG.NEWCHAIN: return `add chain ${attrs.name}`;
    case NFT_MSG.DELCHAIN: return `delete chain ${attrs.name}`;
    case NFT_MSG.NEWRULE: return `${message.flags & NLM_F.APPEND ? 'add' : 'insert'} rule ${attrs.chain}`;
    case NFT_MSG.DELRULE: return `flush chain ${attrs.chain}`;
    case NFT_MSG.NEWSET: return `add set ${attrs.name}`;
    case NFT_MSG.DELSET: return `delete set ${attrs.name}`;
    case NFT_MSG.NEWSETELEM: return `add element ${attrs.name}`;
    default: return `${message.elements.length > 0 ? 'delete element' : 'flush set'} ${attrs.name}`;
  }
}

/** Passes everything to a kernel, keeping each batch's messages read back from the wire format. */
class RecordingKernel implements NftablesKernel {
  readonly batches: WireMessage[][] = [];
  compactions = 0;
  private readonly names;

  /** `bytesPerCommit`: what each commit reports having written, to stand for a large sync. */
  constructor(private readonly kernel: NftablesKernel, private readonly bytesPerCommit?: number) {
    this.names = attributeNames(kernel.attributes);
  }

  get attributes() {
    return this.kernel.attributes;
  }

  /** Each batch as its commands. */
  get commands(): string[][] {
    return this.batches.map((batch) => batch.map(commandOf));
  }

  async commit(transaction: Buffer): Promise<CommitResult> {
    this.batches.push(readTransaction(transaction, this.names));
    const result = await this.kernel.commit(transaction);
    return this.bytesPerCommit === undefined ? result : { ...result, bytes: this.bytesPerCommit };
  }

  dump(family: number, table: string) {
    return this.kernel.dump(family, table);
  }

  tables() {
    return this.kernel.tables();
  }

  generation() {
    return this.kernel.generation();
  }

  trimNativeHeap(): boolean {
    return this.kernel.trimNativeHeap();
  }

  compactJsHeap(): void {
    this.compactions++;
    this.kernel.compactJsHeap();
  }
}

const servicesBackendOn = (kernel: NftablesKernel, tableName = DEFAULT_PROXY_CONFIG.tableName) => new NftablesBackend(tableName, allTableNames({ tableName }), kernel);

const CONFIG = { ...DEFAULT_PROXY_CONFIG, nodeName: 'node-1' };

/** What the kernel holds of the services' tables that the planner would not load, in words (empty when it holds the plan). */
async function differencesFromPlan(kernel: NftablesKernel, state: ClusterState, config = CONFIG): Promise<string[]> {
  const loaded = await kernelTables(servicesBackendOn(kernel, config.tableName), config.tableName, () => kernel.tables());
  return tableDifferences(loaded, plannedTables(planRuleset(allServicePortViews(state), config), kernel.attributes), describeElement);
}

/** The kernel's refusal of a transaction; fails the test when it is accepted. */
async function refusal(kernel: NftablesKernel, write: (transaction: NftTransaction) => void): Promise<KernelError> {
  const transaction = new NftTransaction(kernel.attributes);
  write(transaction);
  try {
    await kernel.commit(transaction.finish());
  } catch (error) {
    return error as KernelError;
  }
  throw new Error('the kernel accepted the transaction');
}

const commit = async (kernel: NftablesKernel, write: (transaction: NftTransaction) => void) => {
  const transaction = new NftTransaction(kernel.attributes);
  write(transaction);
  await kernel.commit(transaction.finish());
};

const { EEXIST, ENOENT, EBUSY } = constants.errno;

export function servicesDataplaneSuite(t: Test, target: SuiteKernel): void {
const endpointsOf = (index: number, hosts: number[]) => hosts.map((host) => ({ ip: `10.${200 + host}.${Math.floor(index / 250)}.${(index % 250) + 1}` }));

/** A dataplane and its proxier over a recording of `kernel`. */
function servicesOn(kernel: NftablesKernel, bytesPerCommit?: number) {
  const recording = new RecordingKernel(kernel, bytesPerCommit);
  const backend = servicesBackendOn(recording);
  return { recording, backend, proxier: new NftablesProxier(backend) };
}

const chainOfService = (name: string, port = 80, protocol = 'tcp') => `svc/default/${name}/${protocol}/${port}`;

/** A set as the planner declares it in an ip table. */
function plannedSet(state: ClusterState, table: string, name: string): NamedSet {
  const planned = planRuleset(allServicePortViews(state), CONFIG).tables.find((candidate) => candidate.family === 'ip' && candidate.name === table)!;
  return planned.sets.find((set) => set.name === name)!;
}

/** What a partial sync leaves that a full sync would not: a service table emptied of its services keeps its skeleton. */
const emptiedTable = (clusterIP: string) => `table ip ${serviceTableOf(clusterIP, CONFIG)}: loaded, not planned`;

/** The ip table holding a chain, as loaded now. */
async function tableHolding(kernel: NftablesKernel, chain: string): Promise<string> {
  for (const { family, name } of await kernel.tables()) {
    if (family === NFPROTO.ip && (await kernel.dump(family, name))?.chains.some((candidate) => candidate.name === chain)) return name;
  }
  throw new Error(`no table holds chain ${chain}`);
}

t.test('after one endpoint change among 1,000 services only that service is in the transaction', async (t) => {
  const kernel = await target.fresh();
  const state = new ClusterState('node-1');
  for (let index = 0; index < 1000; index++) {
    state.apply(service(`svc-${index}`, `10.0.${10 + Math.floor(index / 250)}.${(index % 250) + 1}`, [{ port: 80, targetPort: 9376 }]));
    state.apply(slice(`svc-${index}`, [{ port: 9376 }], endpointsOf(index, [1, 2, 3])));
  }
  const { recording, proxier } = servicesOn(kernel);
  t.equal((await proxier.sync(state, CONFIG, state.takeChanges().services)).kind, 'full', 'the first sync is full');

  state.apply(slice('svc-500', [{ port: 9376 }], endpointsOf(500, [1, 2])));
  const result = await proxier.sync(state, CONFIG, state.takeChanges().services);
  t.equal(result.kind, 'partial');
  const [change, cleanup] = recording.commands.slice(-2);
  t.same(change, [
    'add table ip kubenft',
    `insert rule ${chainOfService('svc-500')}`,
    `insert rule ${chainOfService('svc-500')}`,
  ], 'the new cascade goes in front of the old one, which it makes unreachable: nothing is deleted');
  t.same(cleanup, [
    'add table ip kubenft',
    'delete element hairpin-endpoints',
    `flush chain ${chainOfService('svc-500')}`,
    `add rule ${chainOfService('svc-500')}`,
    `add rule ${chainOfService('svc-500')}`,
  ], 'afterwards the chain is rewritten and the gone endpoint\'s hairpin pair removed');
  t.equal(result.tables, 2, 'rules change in one service table; the main table loses an element');
  t.same(await differencesFromPlan(kernel, state), [], 'the kernel holds what a full sync of the new state would load');

  state.delete(service('svc-7', '10.0.10.8', [{ port: 80 }]));
  const removal = await proxier.sync(state, CONFIG, state.takeChanges().services);
  t.equal(removal.kind, 'partial');
  t.same(recording.commands.slice(-2), [[
    'add table ip kubenft',
    'delete element cluster-ips',
    'delete element service-ips',
    `flush chain ${chainOfService('svc-7')}`,
    `delete chain ${chainOfService('svc-7')}`,
  ], [
    'add table ip kubenft',
    'delete element hairpin-endpoints',
  ]], 'a deleted service takes its elements and chain with it at once; its hairpin pairs follow');
  t.same(await differencesFromPlan(kernel, state), []);
});

t.test('a full sync hands each table over whole once, then only what each later group adds, every element once', async (t) => {
  const kernel = await target.fresh();
  const state = new ClusterState('node-1');
  for (let index = 0; index < 200; index++) {
    // Every service shares an endpoint, two services in different service tables share an external
    // IP and port, and every tenth is dual-stack, its IPv6 part in a table of another group.
    const clusterIPs = index % 10 === 0 ? [`10.0.10.${index + 1}`, `fd00:10::${(index * 7 + 3).toString(16)}`] : `10.0.10.${index + 1}`;
    state.apply(service(`svc-${index}`, clusterIPs, [{ port: 80, targetPort: 9376 }], index < 2 ? { externalIPs: ['192.0.2.1'] } : {}));
    state.apply(slice(`svc-${index}`, [{ port: 9376 }], [...endpointsOf(index, [1]), { ip: '10.250.0.1' }]));
    if (index % 10 === 0) state.apply({ ...slice(`svc-${index}`, [{ port: 9376 }], [{ ip: `fd00:244::${index + 1}` }]), addressType: 'IPv6', metadata: { name: `svc-${index}-v6`, namespace: 'default', labels: { 'kubernetes.io/service-name': `svc-${index}` } } });
  }
  t.not(serviceTableOf('10.0.10.1', CONFIG), serviceTableOf('10.0.10.2', CONFIG));
  const { recording, proxier } = servicesOn(kernel);
  await proxier.sync(state, CONFIG, 'full');

  // A first load goes in stages: each part of a table handed over is a batch of its own, which
  // declares the table dormant first.
  const parts = recording.batches.filter(([first]) => first.type === NFT_MSG.NEWTABLE && first.attrs.flags === 1);
  const expected = plannedTables(planRuleset(allServicePortViews(state), CONFIG), kernel.attributes);
  t.ok(expected.some((table) => table.family === 'ip6' && table.table.name !== CONFIG.tableName), 'IPv6 service tables too');
  const partsOf = (table: (typeof expected)[number]) => parts.filter(([first]) => first.family === NFPROTO[table.family] && first.attrs.name === table.table.name);
  t.ok(partsOf(expected.find((table) => table.family === 'ip' && table.table.name === CONFIG.tableName)!).length > 1, 'the main table comes with each group of services');
  for (const table of expected) {
    const [whole, ...additions] = partsOf(table);
    const chainsOf = (part: WireMessage[]) => part.filter((message) => message.type === NFT_MSG.NEWCHAIN).map((message) => message.attrs.name as string);
    const skeleton = chainsOf(whole).filter((chain) => !/^(svc|local|external|firewall)\//.test(chain));
    t.same([whole, ...additions].flatMap(chainsOf).sort(), table.chains.map((chain) => chain.name).sort(), `${table.family} ${table.table.name}: every chain once, the skeleton's in the first part`);
    t.ok(additions.every((part) => chainsOf(part).every((chain) => !skeleton.includes(chain))));
    for (const set of table.sets) {
      const keys = [whole, ...additions].flatMap((part) => part.filter((message) => message.type === NFT_MSG.NEWSETELEM && message.attrs.name === set.name))
        .flatMap((message) => message.elements.map((element) => (element.key as Buffer).toString('hex')));
      const planned = set.elements.map((element) => element.key.toString('hex'));
      if (keys.length !== planned.length || JSON.stringify(keys.sort()) !== JSON.stringify(planned.sort())) {
        t.fail(`${table.family} ${table.table.name} ${set.name}: ${keys.length} elements handed over, ${planned.length} planned`);
      }
    }
  }
  // The one external IP and port two services claim leads to the table of the claimant whose group
  // came first; the planner, planning all at once, picks the other one.
  const contested = (difference: string) => difference.includes('set service-ip-tables') && difference.includes('192.0.2.1 . tcp . 80');
  t.same((await differencesFromPlan(kernel, state)).filter((difference) => !contested(difference)), [], 'once woken, the tables hold the plan, none dormant');
});

t.test('an element shared by two services stays until its last owner goes', async (t) => {
  const kernel = await target.fresh();
  const state = new ClusterState('node-1');
  for (const name of ['one', 'two']) {
    state.apply(service(name, name === 'one' ? '10.0.0.1' : '10.0.0.2', [{ port: 80 }]));
    state.apply(slice(name, [{ port: 80 }], [{ ip: '10.244.1.1' }]));
  }
  const { recording, proxier } = servicesOn(kernel);
  await proxier.sync(state, CONFIG, 'full');
  state.takeChanges();
  state.delete(service('one', '10.0.0.1', [{ port: 80 }]));
  await proxier.sync(state, CONFIG, state.takeChanges().services);
  t.notOk(recording.commands.at(-1)!.includes('delete element hairpin-endpoints'), 'the shared hairpin pair stays');
  t.same(await differencesFromPlan(kernel, state), [emptiedTable('10.0.0.1')]);
});

t.test('a service whose service table is not loaded yet creates it in the partial sync', async (t) => {
  const kernel = await target.fresh();
  const state = new ClusterState('node-1');
  state.apply(service('first', '10.0.0.1', [{ port: 80 }]));
  state.apply(slice('first', [{ port: 80 }], [{ ip: '10.244.1.1' }]));
  const { recording, proxier } = servicesOn(kernel);
  await proxier.sync(state, CONFIG, 'full');
  state.takeChanges();
  const first = serviceTableOf('10.0.0.1', CONFIG);
  const name = 'second';
  t.not(serviceTableOf('10.0.0.2', CONFIG), first);
  state.apply(service(name, '10.0.0.2', [{ port: 80 }]));
  state.apply(slice(name, [{ port: 80 }], [{ ip: '10.244.1.2' }]));
  const result = await proxier.sync(state, CONFIG, state.takeChanges().services);
  t.equal(result.kind, 'partial');
  const transaction = recording.commands.at(-1)!;
  t.ok(transaction.includes(`add table ip ${serviceTableOf('10.0.0.2', CONFIG)}`), 'the new service table is created');
  t.ok(transaction.indexOf('add chain services') < transaction.indexOf(`add chain ${chainOfService(name)}`), 'its skeleton comes before the service');
  t.same(proxier.expectedShape().map((shape) => shape.name).sort(), ['kubenft', first, serviceTableOf('10.0.0.2', CONFIG)].sort(), 'drift checks expect all three tables');
  t.same(await differencesFromPlan(kernel, state), []);
  t.same(await findDrift(servicesBackendOn(kernel), proxier.expectedShape()), [], 'and find them as expected');
});

t.test('when the service whose table an external IP leads to goes, the other service claiming it gets it', async (t) => {
  const kernel = await target.fresh();
  const state = new ClusterState('node-1');
  const claimant = (name: string, clusterIP: string) => [
    service(name, clusterIP, [{ port: 80, targetPort: 9376 }], { externalIPs: ['192.0.2.1'] }),
    slice(name, [{ port: 9376 }], [{ ip: `10.244.1.${clusterIP.split('.')[3]}` }]),
  ];
  for (const object of [...claimant('first', '10.0.0.1'), ...claimant('second', '10.0.0.2')]) state.apply(object);
  t.not(serviceTableOf('10.0.0.1', CONFIG), serviceTableOf('10.0.0.2', CONFIG));
  const { recording, proxier } = servicesOn(kernel);
  await proxier.sync(state, CONFIG, state.takeChanges().services);

  state.delete(claimant('first', '10.0.0.1')[0]);
  await proxier.sync(state, CONFIG, state.takeChanges().services);
  const [change] = recording.commands.slice(-2);
  t.ok(change.includes('delete element service-ip-tables') && change.includes('add element service-ip-tables'),
    'the routing element is replaced by the remaining owner\'s');
  t.same(await differencesFromPlan(kernel, state), [emptiedTable('10.0.0.1')]);
  state.delete(claimant('second', '10.0.0.2')[0]);
  await proxier.sync(state, CONFIG, state.takeChanges().services);
  t.ok(recording.commands.slice(-2)[0].includes('delete element service-ip-tables'), 'and removed with the last owner');
  t.same(await differencesFromPlan(kernel, state), [emptiedTable('10.0.0.1'), emptiedTable('10.0.0.2')]);
});

t.test('a kept key with a new verdict is replaced: removed and added again in the same transaction', async (t) => {
  const kernel = await target.fresh();
  const state = new ClusterState('node-1');
  state.apply(service('web', '10.0.0.1', [{ port: 80 }]));
  state.apply(slice('web', [{ port: 80 }], [{ ip: '10.244.1.1', nodeName: 'node-1' }, { ip: '10.244.2.1', nodeName: 'node-2' }]));
  const { recording, proxier } = servicesOn(kernel);
  await proxier.sync(state, CONFIG, 'full');
  state.takeChanges();
  state.apply(service('web', '10.0.0.1', [{ port: 80 }], { internalTrafficPolicy: 'Local' }));
  await proxier.sync(state, CONFIG, state.takeChanges().services);
  const change = recording.commands.at(-2)!;
  const removal = change.indexOf('delete element service-ips');
  t.ok(removal >= 0, 'the ClusterIP entry pointing at the cluster-wide chain is removed');
  t.ok(change.indexOf('add element service-ips', removal) > removal, 'and added again, pointing at the local chain');
  t.same(await differencesFromPlan(kernel, state), [], 'the kernel took it (adding the key with another verdict alone it refuses: see below)');
});

t.test('after partial syncs the expected shape is the one a full sync of the same state expects', async (t) => {
  const kernel = await target.fresh();
  const state = new ClusterState('node-1');
  for (let index = 0; index < 20; index++) {
    state.apply(service(`svc-${index}`, `10.0.0.${index + 1}`, [{ port: 80 }, { name: 'dns', port: 53, protocol: 'UDP' }], index % 3 === 0 ? { sessionAffinity: 'ClientIP' } : {}));
    state.apply(slice(`svc-${index}`, [{ port: 80 }, { name: 'dns', port: 53, protocol: 'UDP' }], endpointsOf(index % 5, [1, 2, 3])));
  }
  const { proxier } = servicesOn(kernel);
  await proxier.sync(state, CONFIG, 'full');
  state.takeChanges();
  state.delete(service('svc-3', '10.0.0.4', [{ port: 80 }]));
  state.apply(slice('svc-4', [{ port: 80 }, { name: 'dns', port: 53, protocol: 'UDP' }], endpointsOf(7, [1])));
  state.apply(service('svc-5', '10.0.0.6', [{ port: 80 }]));
  state.apply(service('new', '10.0.1.1', [{ port: 80 }]));
  state.apply(slice('new', [{ port: 80 }], endpointsOf(0, [1, 2])));
  t.equal((await proxier.sync(state, CONFIG, state.takeChanges().services)).kind, 'partial');
  t.same(await differencesFromPlan(kernel, state), [], 'the kernel holds what a full sync would load');
  t.same(await findDrift(servicesBackendOn(kernel), proxier.expectedShape()), [], 'and what the proxier expects');
  const fresh = servicesOn(kernel).proxier;
  await fresh.sync(state, CONFIG, 'full');
  const comparable = (shapes: ReturnType<NftablesProxier['expectedShape']>) =>
    shapes.map((shape) => ({ ...shape, chains: [...shape.chains].sort(), sets: [...shape.sets].sort() })).sort((a, b) => a.name.localeCompare(b.name));
  t.same(comparable(proxier.expectedShape()), comparable(fresh.expectedShape()));
});

t.test('the dataplane compacts memory after a large full sync, not after a small one or a partial one', async (t) => {
  const state = new ClusterState('node-1');
  state.apply(service('web', '10.0.0.1', [{ port: 80 }]));
  state.apply(slice('web', [{ port: 80 }], [{ ip: '10.244.1.1' }]));
  for (const [bytes, expected] of [[64 * 2 ** 20, 1], [2 ** 20, 0]] as const) {
    const { recording, backend } = servicesOn(await target.fresh(), bytes);
    const dataplane = new NftablesDataplane(backend);
    await dataplane.sync(state, CONFIG, 'full');
    await dataplane.sync(state, CONFIG, new Set(['default/web']));
    t.equal(recording.compactions, expected, `${bytes} bytes written by each commit of the full sync: ${expected} compaction`);
  }
});

t.test('drift made by someone else is noticed by the generation and repaired by a full sync', async (t) => {
  const kernel = await target.fresh();
  const state = new ClusterState('node-1');
  state.apply(service('web', '10.0.0.1', [{ port: 80 }]));
  state.apply(slice('web', [{ port: 80 }], [{ ip: '10.244.1.1' }, { ip: '10.244.2.1' }]));
  const { backend } = servicesOn(kernel);
  const dataplane = new NftablesDataplane(backend);
  await dataplane.sync(state, CONFIG, 'full');
  const serviceTable = await tableHolding(kernel, chainOfService('web'));

  let noticed: string[] | undefined;
  const watch = dataplane.watchDrift((differences) => (noticed ??= differences), (error) => t.error(error));
  t.teardown(() => watch.stop());
  await commit(kernel, (outsider) => {
    outsider.flushSet('ip', serviceTable, plannedSet(state, serviceTable, 'service-ips'));
    outsider.flushChain('ip', serviceTable, chainOfService('web'));
  });
  // The watch's timer does not keep the process up; this wait does.
  t.ok(await eventually(async () => noticed !== undefined), 'the watch notices');
  t.same(noticed!.sort(), [`chain ${chainOfService('web')} has 0 rules, not 2`, 'set service-ips has 0 elements, not 1'], 'the flushed set and chain are named');
  t.not((await differencesFromPlan(kernel, state)).length, 0);
  await dataplane.sync(state, CONFIG, 'full');
  t.same(await differencesFromPlan(kernel, state), [], 'a full sync restores them');
});

t.test('a transaction the kernel refuses changes nothing: the last good rules stay, named by the refused object', async (t) => {
  const kernel = await target.fresh();
  const state = new ClusterState('node-1');
  for (const [name, clusterIP] of [['web', '10.0.0.1'], ['other', '10.0.0.2']]) {
    state.apply(service(name, clusterIP, [{ port: 80 }]));
    state.apply(slice(name, [{ port: 80 }], [{ ip: `10.244.1.${clusterIP.split('.')[3]}` }]));
  }
  const { backend } = servicesOn(kernel);
  const dataplane = new NftablesDataplane(backend);
  await dataplane.sync(state, CONFIG, 'full');
  state.takeChanges();
  // Someone else's rule jumps to web's chain, so the kernel will not delete it.
  const serviceTable = await tableHolding(kernel, chainOfService('web'));
  await commit(kernel, (outsider) => {
    outsider.addChain('ip', serviceTable, { name: 'outsider', rules: [] });
    outsider.addRule('ip', serviceTable, 'outsider', { statements: [{ kind: 'verdict', verdict: { kind: 'jump', chain: chainOfService('web') } }] });
  });
  const listed = () => kernelTables(backend, CONFIG.tableName, () => kernel.tables());
  const before = await listed();

  state.delete(service('web', '10.0.0.1', [{ port: 80 }]));
  const error = await dataplane.sync(state, CONFIG, state.takeChanges().services).catch((error: unknown) => error);
  t.type(error, TransactionError);
  t.match(error, { errno: EBUSY, object: `delete of chain ${chainOfService('web')}` }, 'the error names the chain the kernel kept');
  t.same(tableDifferences(await listed(), before, describeElement), [], 'nothing of the transaction stays: web\'s elements too');

  dataplane.invalidate();
  await dataplane.sync(state, CONFIG, state.takeChanges().services);
  t.same(await differencesFromPlan(kernel, state), [], 'the next sync is full and replaces the tables whole, the outsider\'s chain with them');
});

t.test('cleanup deletes the services\' tables that exist and nothing else', async (t) => {
  const kernel = await target.fresh();
  const state = new ClusterState('node-1');
  state.apply(service('web', '10.0.0.1', [{ port: 80 }], { ipFamilies: ['IPv4', 'IPv6'], ipFamilyPolicy: 'PreferDualStack', clusterIPs: ['10.0.0.1', 'fd00:10::1'] }));
  state.apply(slice('web', [{ port: 80 }], [{ ip: '10.244.1.1' }]));
  await commit(kernel, (outsider) => {
    outsider.addTable('ip', 'outsider');
    outsider.addChain('ip', 'outsider', { name: 'input', rules: [] });
  });
  const { backend } = servicesOn(kernel);
  const dataplane = new NftablesDataplane(backend);
  await dataplane.sync(state, CONFIG, 'full');
  t.ok((await kernel.tables()).length > 2, 'the services loaded tables beside the outsider\'s');
  await dataplane.cleanup();
  t.same(await kernel.tables(), [{ family: NFPROTO.ip, name: 'outsider' }], 'only the outsider\'s table is left');
  t.same(await backend.cleanup(), [], 'a second cleanup finds nothing to delete');
});

// ---- the kernel's answers, which nftables in memory copies ------------------------------------------

const SCRATCH = 'kubenft-suite';
const addresses: NamedSet = { name: 'addresses', keyType: ['ipv4_addr'], elements: [] };
const verdicts: NamedSet = { name: 'verdicts', keyType: ['ipv4_addr'], dataType: 'verdict', elements: [] };
const jumpTo = (chain: string): Table['chains'][number]['rules'][number] => ({ statements: [{ kind: 'verdict', verdict: { kind: 'jump', chain } }] });

/** A table with chains first and second (first jumps to second), a set and a verdict map. */
const scratch = (transaction: NftTransaction) => {
  transaction.addTable('ip', SCRATCH);
  transaction.addSet('ip', SCRATCH, addresses);
  transaction.addSet('ip', SCRATCH, verdicts);
  transaction.addChain('ip', SCRATCH, { name: 'first', rules: [] });
  transaction.addChain('ip', SCRATCH, { name: 'second', rules: [] });
  transaction.addChain('ip', SCRATCH, { name: 'third', rules: [] });
  transaction.addElements('ip', SCRATCH, addresses, [{ key: ['10.0.0.1'] }, { key: ['10.0.0.2'] }]);
  transaction.addElements('ip', SCRATCH, verdicts, [{ key: ['10.0.0.1'], verdict: { kind: 'accept' } }]);
  transaction.addRule('ip', SCRATCH, 'first', jumpTo('second'));
  transaction.addRule('ip', SCRATCH, 'second', { statements: [{ kind: 'lookup', fields: ['ip daddr'], set: addresses.name, op: '==' }, { kind: 'verdict', verdict: { kind: 'accept' } }] });
};
const scratchDump = (kernel: NftablesKernel) => kernel.dump(NFPROTO.ip, SCRATCH);

t.test('a batch is all or nothing: one refused message and nothing of it stays', async (t) => {
  const kernel = await target.fresh();
  const error = await refusal(kernel, (transaction) => {
    scratch(transaction);
    transaction.deleteChain('ip', SCRATCH, 'missing');
  });
  t.match(error, { errno: ENOENT, code: 'ENOENT', index: 10 }, 'the last message is refused');
  t.same(await kernel.tables(), [], 'the table the batch created is not there');

  await commit(kernel, scratch);
  const loaded = await scratchDump(kernel);
  t.match(await refusal(kernel, (transaction) => {
    transaction.flushSet('ip', SCRATCH, addresses);
    transaction.flushChain('ip', SCRATCH, 'second');
    transaction.deleteChain('ip', SCRATCH, 'third');
    transaction.deleteTable('ip', 'missing');
  }), { errno: ENOENT, index: 3 });
  t.same(await scratchDump(kernel), loaded, 'the flushes and the delete before the refused message did not happen');
});

t.test('every refused message of a batch is reported, in order', async (t) => {
  const kernel = await target.fresh();
  await commit(kernel, scratch);
  const error = await refusal(kernel, (transaction) => {
    transaction.deleteChain('ip', SCRATCH, 'missing');
    transaction.addChain('ip', SCRATCH, { name: 'fourth', rules: [] });
    transaction.deleteSet('ip', SCRATCH, 'missing');
  });
  t.match(error, { errno: ENOENT, index: 0 });
  t.match(error.failures, [{ index: 0, errno: ENOENT }, { index: 2, errno: ENOENT }]);
  t.equal(error.failures!.length, 2);
});

t.test('creating what exists is accepted unless it differs: EEXIST', async (t) => {
  const kernel = await target.fresh();
  await commit(kernel, scratch);
  const loaded = await scratchDump(kernel);
  await commit(kernel, (transaction) => {
    transaction.addTable('ip', SCRATCH);
    transaction.addSet('ip', SCRATCH, addresses);
    transaction.addChain('ip', SCRATCH, { name: 'first', rules: [] });
    transaction.addElements('ip', SCRATCH, addresses, [{ key: ['10.0.0.1'] }]);
    transaction.addElements('ip', SCRATCH, verdicts, [{ key: ['10.0.0.1'], verdict: { kind: 'accept' } }]);
  });
  t.same(await scratchDump(kernel), loaded, 'the same table, set, chain and elements again change nothing');
  t.match(await refusal(kernel, (transaction) => transaction.addElements('ip', SCRATCH, verdicts, [{ key: ['10.0.0.1'], verdict: { kind: 'drop' } }])),
    { errno: EEXIST }, 'a key already mapped to another verdict');
  t.match(await refusal(kernel, (transaction) => transaction.addSet('ip', SCRATCH, { ...addresses, keyType: ['ipv6_addr'] })),
    { errno: EEXIST }, 'a set of the same name and another type');
});

t.test('deleting, flushing or adding into what does not exist: ENOENT', async (t) => {
  const kernel = await target.fresh();
  await commit(kernel, scratch);
  const cases: [string, (transaction: NftTransaction) => void][] = [
    ['delete a table', (transaction) => transaction.deleteTable('ip', 'missing')],
    ['delete a chain', (transaction) => transaction.deleteChain('ip', SCRATCH, 'missing')],
    ['flush a chain', (transaction) => transaction.flushChain('ip', SCRATCH, 'missing')],
    ['delete a set', (transaction) => transaction.deleteSet('ip', SCRATCH, 'missing')],
    ['flush a set', (transaction) => transaction.flushSet('ip', SCRATCH, { ...addresses, name: 'missing' })],
    ['delete an element', (transaction) => transaction.deleteElements('ip', SCRATCH, addresses, [{ key: ['10.9.9.9'] }])],
    ['add a chain into a table', (transaction) => transaction.addChain('ip', 'missing', { name: 'first', rules: [] })],
    ['add a rule into a chain', (transaction) => transaction.addRule('ip', SCRATCH, 'missing', jumpTo('second'))],
    ['add a rule jumping to a chain', (transaction) => transaction.addRule('ip', SCRATCH, 'first', jumpTo('missing'))],
    ['add a rule looking up a set', (transaction) => transaction.addRule('ip', SCRATCH, 'first', { statements: [{ kind: 'lookup', fields: ['ip daddr'], set: 'missing', op: '==' }] })],
    ['add an element into a set', (transaction) => transaction.addElements('ip', SCRATCH, { ...addresses, name: 'missing' }, [{ key: ['10.0.0.1'] }])],
    ['add an element jumping to a chain', (transaction) => transaction.addElements('ip', SCRATCH, verdicts, [{ key: ['10.0.0.3'], verdict: { kind: 'goto', chain: 'missing' } }])],
  ];
  for (const [what, write] of cases) t.match(await refusal(kernel, write), { errno: ENOENT, index: 0 }, what);
});

t.test('deleting a chain something jumps to, or a set a rule looks up: EBUSY; a chain goes with its own rules', async (t) => {
  const kernel = await target.fresh();
  await commit(kernel, (transaction) => {
    scratch(transaction);
    transaction.addElements('ip', SCRATCH, verdicts, [{ key: ['10.0.0.3'], verdict: { kind: 'goto', chain: 'third' } }]);
  });
  t.match(await refusal(kernel, (transaction) => transaction.deleteChain('ip', SCRATCH, 'second')), { errno: EBUSY }, 'a rule jumps to it');
  t.match(await refusal(kernel, (transaction) => transaction.deleteChain('ip', SCRATCH, 'third')), { errno: EBUSY }, 'a map element goes to it');
  t.match(await refusal(kernel, (transaction) => transaction.deleteSet('ip', SCRATCH, addresses.name)), { errno: EBUSY }, 'a rule looks it up');
  await commit(kernel, (transaction) => {
    transaction.deleteChain('ip', SCRATCH, 'first');
    transaction.deleteChain('ip', SCRATCH, 'second');
    transaction.deleteSet('ip', SCRATCH, addresses.name);
  });
  const dump = (await scratchDump(kernel))!;
  t.same(dump.chains.map((chain) => chain.name), ['third'], 'first went with its rule; then nothing jumped to second, which went with its lookup');
  t.same(dump.sets.map((set) => set.name), ['verdicts']);
  t.same(dump.rules, []);
  await commit(kernel, (transaction) => transaction.deleteTable('ip', SCRATCH));
  t.same(await kernel.tables(), [], 'a table goes with everything in it');
});

t.test('flushes empty a chain or a set and keep it; an inserted rule comes first', async (t) => {
  const kernel = await target.fresh();
  await commit(kernel, scratch);
  await commit(kernel, (transaction) => {
    transaction.flushChain('ip', SCRATCH, 'first');
    transaction.flushSet('ip', SCRATCH, verdicts);
    transaction.deleteElements('ip', SCRATCH, addresses, [{ key: ['10.0.0.2'] }]);
    transaction.addRule('ip', SCRATCH, 'third', { statements: [{ kind: 'verdict', verdict: { kind: 'accept' } }] });
    transaction.prependRule('ip', SCRATCH, 'third', { statements: [{ kind: 'verdict', verdict: { kind: 'drop' } }] });
  });
  const dump = (await scratchDump(kernel))!;
  t.same(dump.chains.map((chain) => chain.name), ['first', 'second', 'third'], 'every chain stays');
  t.same(dump.rules.filter((rule) => rule.chain === 'first'), [], 'first has no rule');
  t.same(dump.sets.find((set) => set.name === 'verdicts')!.elements, [], 'the map is empty');
  t.same(dump.sets.find((set) => set.name === 'addresses')!.elements.map((element) => element.key.toString('hex')), ['0a000001'], 'one element removed, one kept');
  const third = dump.rules.filter((rule) => rule.chain === 'third').map((rule) => rule.expressions.find((expression) => expression.name === 'immediate')!.attrs.verdict);
  t.same(third, [0, 1], 'drop (inserted) before accept (appended)');
});
}
