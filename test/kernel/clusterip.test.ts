// The foundation's promises, proven in throwaway namespaces with real packets: equal-probability
// endpoint choice, not-ready endpoints never chosen, updates that leave nothing stale, render
// output that is exactly what gets loaded, atomic failure, bad input skipped, and 10,000 services.
import t, { type Test } from 'tap';
import { join } from 'node:path';
import { DEFAULT_PROXY_CONFIG } from '../../src/services/config.js';
import { projectRoot } from '../../src/kernel/native.js';
import { CHAINS, planRuleset, serviceTableIndexOf, serviceTableLabel } from '../../src/services/nftables-plan.js';
import { loadState } from '../lib/load-state.js';
import { allServicePortViews } from '../../src/cluster/service-ports.js';
import { createTopology, type Topology } from '../../scripts/lib/topology.js';
import { CHI_SQUARE_CRITICAL_P001, chiSquareUniform, kubenft, listRulesetJson, syncOnce } from '../lib/kubenft.js';
import { ManifestFile, service, slice } from '../lib/manifests.js';

const VIP = '10.0.1.175';
const PODS = [
  { name: 'hostnames-a', ipv4: '10.244.1.7' },
  { name: 'hostnames-b', ipv4: '10.244.2.3' },
  { name: 'hostnames-c', ipv4: '10.244.3.6' },
];
const hostnamesService = service('hostnames', VIP, [{ name: 'default', port: 80, targetPort: 9376 }]);
const hostnamesSlice = (ready: boolean[] = [true, true, true]) =>
  slice('hostnames', [{ name: 'default', port: 9376 }], PODS.map((pod, index) => ({ ip: pod.ipv4, ready: ready[index] })));

let topology: Topology;
let manifests: ManifestFile;
t.before(async () => {
  topology = await createTopology({ pods: PODS });
  manifests = new ManifestFile();
});
t.teardown(async () => {
  await topology?.destroy();
  manifests?.remove();
});

const countsOf = (report: { counts: Record<string, number> }) => PODS.map((pod) => report.counts[pod.name] ?? 0);

t.test('300 connections to the VIP spread evenly over the three endpoints', async (t) => {
  manifests.write([hostnamesService, hostnamesSlice()]);
  const result = await syncOnce(topology, manifests.path);
  t.match(JSON.parse(result.stdout), { mode: 'nftables', services: 1, endpoints: 3, syncMs: Number });
  const report = await topology.probe(topology.client, { address: VIP, port: 80, protocol: 'tcp', count: 300, timeoutMs: 2000 });
  const counts = countsOf(report);
  t.equal(counts.reduce((a, b) => a + b, 0), 300, 'every connection answered by a hostnames pod');
  const chiSquare = chiSquareUniform(counts);
  t.ok(chiSquare < CHI_SQUARE_CRITICAL_P001[2], `chi-square ${chiSquare.toFixed(2)} of ${counts.join('/')} is consistent with uniform`);
});

t.test('the main table labels a new connection for its service table, and only that table translates it', async (t) => {
  manifests.write([hostnamesService, hostnamesSlice()]);
  await syncOnce(topology, manifests.path);
  const index = serviceTableIndexOf(VIP, DEFAULT_PROXY_CONFIG);
  const label = serviceTableLabel(index);
  // The kernel's own label match is the oracle: counters in a table of the test's, after DNAT.
  const nft = (...args: string[]) => topology.exec(topology.node, ['nft', ...args]);
  const witness = await topology.exec(topology.node, ['nft', '-f', '-'], { input: `table ip label-witness {
    chain forward { type filter hook forward priority 10; policy accept;
      ct state new tcp dport 9376 counter
      ct state new tcp dport 9376 ct label ${label} counter
    }
  }` });
  t.equal(witness.code, 0, witness.stderr);
  t.teardown(() => nft('delete', 'table', 'ip', 'label-witness'));
  const report = await topology.probe(topology.client, { address: VIP, port: 80, protocol: 'tcp', count: 30, timeoutMs: 2000 });
  t.equal(countsOf(report).reduce((a, b) => a + b, 0), 30);
  const listed = JSON.parse((await nft('-j', 'list', 'table', 'ip', 'label-witness')).stdout);
  const counters = listed.nftables.filter((item: { rule?: unknown }) => item.rule)
    .map((item: { rule: { expr: { counter?: { packets: number } }[] } }) => item.rule.expr.find((expr) => expr.counter)!.counter!.packets);
  t.same(counters, [30, 30], `every new connection to the service carries label ${label}`);

  // Without the main table's label, the service table lets the connection pass untranslated, and
  // the ClusterIP check refuses it: the table acts on labelled connections only.
  const flushed = await nft('flush', 'chain', 'ip', DEFAULT_PROXY_CONFIG.tableName, CHAINS.serviceTable(index));
  t.equal(flushed.code, 0, flushed.stderr);
  const unlabelled = await topology.probe(topology.client, { address: VIP, port: 80, protocol: 'tcp', count: 3, timeoutMs: 2000 });
  t.same(unlabelled.counts, { 'error:ECONNREFUSED': 3 });
});

t.test('a not-ready endpoint is never chosen, and updates leave nothing stale', async (t) => {
  manifests.write([hostnamesService, hostnamesSlice([true, false, true])]);
  await syncOnce(topology, manifests.path);
  let report = await topology.probe(topology.client, { address: VIP, port: 80, protocol: 'tcp', count: 90, timeoutMs: 2000 });
  t.equal(report.counts['hostnames-b'] ?? 0, 0, 'the not-ready endpoint got nothing');
  t.equal((report.counts['hostnames-a'] ?? 0) + (report.counts['hostnames-c'] ?? 0), 90);

  manifests.write([hostnamesService, slice('hostnames', [{ name: 'default', port: 9376 }], [{ ip: PODS[1].ipv4 }])]);
  await syncOnce(topology, manifests.path);
  report = await topology.probe(topology.client, { address: VIP, port: 80, protocol: 'tcp', count: 30, timeoutMs: 2000 });
  t.same(report.counts, { 'hostnames-b': 30 }, 'traffic follows the new endpoint list');
  const listing = JSON.stringify(await listRulesetJson(topology));
  t.notMatch(listing, PODS[0].ipv4, 'no rule or element mentions a removed endpoint');
  t.notMatch(listing, PODS[2].ipv4);
});

t.test('a full sync deletes the tables an earlier --service-tables left, and no one else\'s', async (t) => {
  const tableNames = async () => {
    const listing = await topology.exec(topology.node, ['nft', '-j', 'list', 'tables']);
    const entries = JSON.parse(listing.stdout).nftables as { table?: { family: string; name: string } }[];
    return entries.flatMap(({ table }) => (table ? [`${table.family} ${table.name}`] : [])).sort();
  };
  manifests.write([hostnamesService, hostnamesSlice()]);
  await syncOnce(topology, manifests.path, '--service-tables', '16');
  t.ok((await tableNames()).includes('ip kubenft-services-15'), 'the last byte of hostnames\' ClusterIP (175 = 10 × 16 + 15) picks the last of sixteen');
  await topology.exec(topology.node, ['nft', 'add', 'table', 'ip', 'kubenft-neighbour']);
  // Three is no power of two: the main table then tells all 256 last bytes apart.
  await syncOnce(topology, manifests.path, '--service-tables', '3');
  const after = await tableNames();
  t.ok(after.includes('ip kubenft-neighbour'), 'a table kubenft does not own stays');
  t.same(after.filter((name) => name.includes('kubenft-services-')).filter((name) => !/-[01]$/.test(name)), [], 'only a table of the three remains (175 mod 3 = 1)');
  t.equal(after.filter((name) => name.includes('kubenft-services-')).length, 1);
  await topology.exec(topology.node, ['nft', 'delete', 'table', 'ip', 'kubenft-neighbour']);
  const report = await topology.probe(topology.client, { address: VIP, port: 80, protocol: 'tcp', count: 30, timeoutMs: 2000 });
  t.equal(countsOf(report).reduce((a, b) => a + b, 0), 30, 'the service still answers');
  // The kernel's table order depends on this history, and the next test compares listings.
  await topology.exec(topology.node, ['nft', 'flush', 'ruleset']);
});

t.test('render --json describes exactly what the addon loads (nft is the oracle)', async (t) => {
  manifests.write([hostnamesService, hostnamesSlice()]);
  await syncOnce(topology, manifests.path, '--cluster-cidr', '10.244.0.0/16');
  const loaded = await listRulesetJson(topology);
  await topology.exec(topology.node, ['nft', 'flush', 'ruleset']);
  const rendered = await kubenft(topology, ['render', '--json', '--manifests', manifests.path, '--cluster-cidr', '10.244.0.0/16']);
  t.equal(rendered.code, 0);
  t.equal((await topology.exec(topology.node, ['nft', 'list', 'tables'])).stdout, '', 'render loads nothing');
  const viaNft = await topology.exec(topology.node, ['nft', '-j', '-f', manifests.writeBeside('rendered.json', rendered.stdout)]);
  t.equal(viaNft.code, 0, viaNft.stderr);
  // The kernel lists tables in the order they were created, which differs between the two loads.
  type Entry = Record<string, { family?: string; table?: string; name?: string }>;
  const tableOf = (entry: Entry) => Object.values(entry).map(({ family, table, name }) => `${family} ${table ?? name}`)[0] ?? '';
  const comparable = (listing: unknown) => {
    const entries = JSON.parse(JSON.stringify(listing, (key, inner) => (key === 'handle' || key === 'metainfo' ? undefined : inner))).nftables as Entry[];
    return entries.sort((a, b) => tableOf(a).localeCompare(tableOf(b)));
  };
  t.same(comparable(await listRulesetJson(topology)), comparable(loaded));
});

/** Runs test/fixtures/commit-invalid in the node namespace and checks the refusal it reports. */
function hostnamesRuleset() {
  const { state } = loadState([hostnamesService, hostnamesSlice()], 'node-1');
  return planRuleset(allServicePortViews(state), { ...DEFAULT_PROXY_CONFIG, nodeName: 'node-1' });
}

async function commitInvalid(t: Test, when: 'after a valid load' | 'first'): Promise<void> {
  const driver = join(projectRoot(), 'dist/test/fixtures/commit-invalid.js');
  const run = await topology.exec(topology.node, ['node', driver, JSON.stringify(hostnamesRuleset()), when === 'first' ? 'first' : 'second']);
  t.equal(run.code, 0, run.stderr);
  const outcome = JSON.parse(run.stdout);
  t.equal(outcome.committed, false);
  t.equal(outcome.object, 'rule in chain svc/default/hostnames/tcp/80');
  t.match(outcome.message, /svc\/default\/hostnames\/tcp\/80.*No such file or directory/);
}

t.test('a refused first load (loaded table by table, dormant) leaves nothing behind', async (t) => {
  await topology.exec(topology.node, ['nft', 'flush', 'ruleset']);
  await commitInvalid(t, 'first');
  const tables = await topology.exec(topology.node, ['nft', 'list', 'tables']);
  t.equal(tables.stdout.trim(), '', 'the tables loaded before the refused one were deleted');
});

t.test('a first load whose planning fails half way leaves nothing behind', async (t) => {
  const run = await topology.exec(topology.node, ['node', join(projectRoot(), 'dist/test/fixtures/commit-invalid.js'), JSON.stringify(hostnamesRuleset()), 'planning-fails']);
  t.same(JSON.parse(run.stdout), { committed: false, message: 'the planner failed' }, run.stderr);
  const tables = await topology.exec(topology.node, ['nft', 'list', 'tables']);
  t.equal(tables.stdout.trim(), '', 'the table handed over before the failure was deleted');
});

t.test('a rejected transaction names the object and leaves the previous ruleset as it was', async (t) => {
  await commitInvalid(t, 'after a valid load');
  const listing = JSON.stringify(await listRulesetJson(topology));
  t.notMatch(listing, 'no-such-chain');
  const report = await topology.probe(topology.client, { address: VIP, port: 80, protocol: 'tcp', count: 30, timeoutMs: 2000 });
  t.equal(countsOf(report).reduce((a, b) => a + b, 0), 30, 'the previous ruleset still serves');
});

t.test('malformed objects are reported by name and skipped; the rest still loads', async (t) => {
  manifests.write([
    hostnamesService,
    hostnamesSlice(),
    service('bad-ip', '10.0.300.1', [{ port: 80 }]),
    service('port-zero', '10.0.1.2', [{ port: 0 }]),
    service('big-port', '10.0.1.3', [{ port: 65536 }]),
    service('bad-protocol', '10.0.1.4', [{ port: 80, protocol: 'ICMP' as 'TCP' }]),
    service('twice', '10.0.1.5', [{ name: 'web', port: 80 }, { name: 'web', port: 81 }]),
    { apiVersion: 'v1', kind: 'Service', metadata: { name: 'no-spec', namespace: 'default' } },
  ]);
  const result = await kubenft(topology, ['--manifests', manifests.path, '--once']);
  t.not(result.code, 0, 'non-zero exit when something was skipped');
  for (const [name, reason] of [
    ['bad-ip', /not an IP address/], ['port-zero', /not a port number/], ['big-port', /not a port number/],
    ['bad-protocol', /not TCP, UDP or SCTP/], ['twice', /used twice/], ['no-spec', /spec must be an object/],
  ] as const) {
    t.match(result.stderr, new RegExp(`Service default/${name}: .*${reason.source}`), `${name} is named with its reason`);
  }
  t.match(JSON.parse(result.stdout), { services: 1 });
  const report = await topology.probe(topology.client, { address: VIP, port: 80, protocol: 'tcp', count: 15, timeoutMs: 2000 });
  t.equal(countsOf(report).reduce((a, b) => a + b, 0), 15, 'the valid service answers');
});

t.test('10,000 services load in one transaction and the last VIP answers', async (t) => {
  const objects: unknown[] = [];
  for (let index = 0; index < 10_000; index++) {
    const clusterIP = `10.0.${100 + Math.floor(index / 250)}.${(index % 250) + 1}`;
    const name = `svc-${index}`;
    objects.push(service(name, clusterIP, [{ port: 80, targetPort: 9376 }]), slice(name, [{ port: 9376 }], PODS.map((pod) => ({ ip: pod.ipv4 }))));
  }
  const scale = new ManifestFile(objects);
  t.teardown(() => scale.remove());
  const result = await syncOnce(topology, scale.path);
  const summary = JSON.parse(result.stdout);
  t.match(summary, { services: 10_000, endpoints: 30_000 });
  t.comment(`10,000 services x 3 endpoints: syncMs ${summary.syncMs}`);
  const report = await topology.probe(topology.client, { address: '10.0.139.250', port: 80, protocol: 'tcp', count: 6, timeoutMs: 2000 });
  t.equal(countsOf(report).reduce((a, b) => a + b, 0), 6, 'service #10,000 answers');
});
