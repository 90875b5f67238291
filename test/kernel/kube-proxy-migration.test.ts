// A node switched from kube-proxy: its leftovers (test/fixtures/kube-proxy: the iptables mode in
// iptables-nft, IPv4 and IPv6; the IPVS mode in iptables-legacy with its ip sets and a kube-ipvs0
// device; the nftables mode's tables) are loaded by hand with the real iptables-restore, ipset and
// nft in the topology's node namespace, beside what must survive (kubelet's, a CNI's and a user's
// chains and rules, another ip set, another nftables table), as a reference namespace holds them
// alone. Then kubenft starts there (or runs --cleanup): kube-proxy's objects go, the others stay, and
// a TCP connection opened under kube-proxy's rules keeps working through the switch.
import t, { type Test } from 'tap';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { projectRoot } from '../../src/kernel/native.js';
import { JUMP_RULES, savedJumpRule } from '../../src/services/iptables-plan.js';
import { createTopology, type ProcessHandle, type Topology } from '../../scripts/lib/topology.js';
import { eventually } from '../lib/eventually.js';
import { CLI, kubenft } from '../lib/kubenft.js';
import { ManifestFile, service, slice } from '../lib/manifests.js';
import { SOCKET_LB_CLIENT } from '../lib/socket-lb-client.js';

const VIP = '10.0.3.10';
/** default/gone: deleted from the cluster while kube-proxy was down; only its leftovers route it. */
const GONE_VIP = '10.0.3.20';
const POD_PORT = 9376;
const PODS = [{ name: 'pod-a', ipv4: '10.244.1.7' }, { name: 'pod-b', ipv4: '10.244.2.3' }];
const FIXTURES = join(projectRoot(), 'test/fixtures/kube-proxy');
const fixture = (name: string) => readFileSync(join(FIXTURES, name), 'utf8');
const GUARD_TABLE = 'table inet guard {\n\tchain input {\n\t\ttype filter hook input priority 10; policy accept;\n\t\ttcp dport 9 counter accept\n\t}\n}\n';
const FLAGS = ['--hostname-override', 'node-a', '--cluster-cidr', '10.244.0.0/16', '--healthz-bind-address', '', '--metrics-bind-address', '', '--logging-format=json'];
/** How long a started agent may take to sync and clean up, on a loaded machine (an upper bound, not a figure). */
const AGENT_WAIT_MS = 60_000;

let topology: Topology;
let reference: string;
const manifests = new ManifestFile([
  service('web', VIP, [{ name: 'http', port: 80, targetPort: POD_PORT }]),
  slice('web', [{ name: 'http', port: POD_PORT }], PODS.map((pod) => ({ ip: pod.ipv4 }))),
]);

const sh = (ns: string, script: string, input?: string) =>
  execFileSync('ip', ['netns', 'exec', ns, 'sh', '-ec', script], { input, encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'] });

/** What must survive: in both iptables implementations and families, an ip set, a table. */
function loadNeighbours(ns: string): void {
  for (const backend of ['nft', 'legacy']) {
    sh(ns, `iptables-${backend}-restore --noflush`, fixture('neighbours.v4.save'));
    sh(ns, `ip6tables-${backend}-restore --noflush`, fixture('neighbours.v6.save'));
  }
  sh(ns, 'ipset create user-blocklist hash:ip && ipset add user-blocklist 203.0.113.9');
  sh(ns, 'nft -f -', GUARD_TABLE);
}

type Leftover = 'iptables' | 'ipvs' | 'nftables';

/** kube-proxy's leftovers, as its modes write them. */
function loadKubeProxy(ns: string, modes: Leftover[]): void {
  if (modes.includes('iptables')) {
    sh(ns, 'iptables-nft-restore --noflush', fixture('iptables-mode.v4.save'));
    sh(ns, 'ip6tables-nft-restore --noflush', fixture('iptables-mode.v6.save'));
  }
  if (modes.includes('ipvs')) {
    sh(ns, 'ipset restore', fixture('ipvs-mode.ipset'));
    sh(ns, 'iptables-legacy-restore --noflush', fixture('ipvs-mode.v4.save'));
    // IPVS mode's kube-ipvs0 is a dummy link; this kernel has none, and the name is what counts.
    sh(ns, 'ip tuntap add kube-ipvs0 mode tun && ip address add 10.0.3.30/32 dev kube-ipvs0');
  }
  if (modes.includes('nftables')) sh(ns, 'nft -f -', fixture('nftables-mode.nft'));
}

/** iptables-save of one implementation and family, without its comment lines and the built-in chains' counters, sorted. */
const saved = (ns: string, backend: 'nft' | 'legacy', family: 4 | 6) =>
  sh(ns, `${family === 4 ? 'iptables' : 'ip6tables'}-${backend}-save`).split('\n').filter((line) => line && !line.startsWith('#'))
    .map((line) => line.replace(/ \[\d+:\d+\]$/, '')).sort();

/** Everything the neighbours' objects are seen in. */
function neighbourhood(ns: string) {
  return {
    iptables: Object.fromEntries((['nft', 'legacy'] as const).flatMap((backend) => ([4, 6] as const).map((family) => [`${backend} ${family}`, saved(ns, backend, family)]))),
    sets: sh(ns, 'ipset list -n').split('\n').filter(Boolean).sort(),
    tables: sh(ns, 'nft list tables').split('\n').filter((line) => line && !/ (nat|filter|mangle)$/.test(line)).sort(),
    guard: sh(ns, 'nft list table inet guard'),
    links: sh(ns, 'ip -o link show').split('\n').filter(Boolean).map((line) => line.split(': ')[1].split('@')[0]).sort(),
  };
}

/** The node namespace back to the neighbours alone (by hand: not by the code under test), then kube-proxy's leftovers of these modes. */
function prepare(modes: Leftover[]): void {
  for (const tool of ['iptables', 'ip6tables']) sh(topology.node, `for table in filter nat mangle; do ${tool}-legacy -t $table -F; ${tool}-legacy -t $table -X; done`);
  sh(topology.node, 'nft flush ruleset; ipset destroy; ip link delete kube-ipvs0 2>/dev/null || true; conntrack -F 2>/dev/null || true');
  loadNeighbours(topology.node);
  loadKubeProxy(topology.node, modes);
}

/** The `msg` of every JSON log line. */
const messages = (stderr: string) => stderr.split('\n').flatMap((line) => {
  try {
    return [(JSON.parse(line) as { msg: string }).msg];
  } catch {
    return [];
  }
});

const answers = async (address: string, count = 6) => {
  const report = await topology.probe(topology.client, { address, port: 80, protocol: 'tcp', count, timeoutMs: 1000 });
  return PODS.reduce((sum, pod) => sum + (report.counts[pod.name] ?? 0), 0);
};

function checkNeighbours(t: Test, when: string): void {
  const after = neighbourhood(topology.node);
  const expected = neighbourhood(reference);
  for (const key of Object.keys(expected.iptables)) {
    t.same(after.iptables[key], expected.iptables[key], `${when}: iptables-${key.replace(' ', ' IPv')} holds the neighbours' chains and rules, and nothing of kube-proxy's`);
  }
  t.same(after.sets, expected.sets, `${when}: kube-proxy's ip sets are gone, the other one stays`);
  t.notOk(after.tables.some((line) => line.includes('kube-proxy')), `${when}: kube-proxy's nftables tables are gone`);
  t.ok(after.tables.includes('table inet guard'), `${when}: the other table stays`);
  t.equal(after.guard, expected.guard, `${when}: unchanged`);
  t.notOk(after.links.includes('kube-ipvs0'), `${when}: kube-ipvs0 is gone`);
}

const EVERY_LEFTOVER_LOGGED = [
  'removed nftables table ip kube-proxy',
  'removed nftables table ip6 kube-proxy',
  'removed iptables-nft IPv4 nat chain KUBE-SERVICES',
  'removed iptables-nft IPv4 filter rule -A INPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
  'removed iptables-nft IPv4 nat: 6 service and endpoint chains (KUBE-SVC-*, KUBE-SEP-*, ...)',
  'removed iptables-nft IPv6 mangle chain KUBE-PROXY-CANARY',
  'removed iptables-legacy IPv4 filter rule -A INPUT -m comment --comment "kubernetes ipvs access filter" -j KUBE-IPVS-FILTER',
  'removed iptables-legacy IPv4 filter chain KUBE-IPVS-FILTER',
  'removed device kube-ipvs0',
  'removed ip set KUBE-CLUSTER-IP',
  'removed ip set KUBE-6-IPVS-IPS',
  'this kernel has no IPVS loaded (no /proc/net/ip_vs): no IPVS virtual services to remove',
];

t.before(async () => {
  topology = await createTopology({ pods: PODS });
  reference = `knft-mig-${process.pid}`;
  execFileSync('ip', ['netns', 'add', reference]);
  loadNeighbours(reference);
});

t.teardown(async () => {
  try {
    await topology?.destroy();
  } finally {
    if (reference) execFileSync('ip', ['netns', 'delete', reference]);
    manifests.remove();
  }
});

t.test('the agent started on a node kube-proxy left removes its leftovers of every mode, and only those, once its rules are in', async (t) => {
  prepare(['iptables', 'ipvs', 'nftables']);
  t.equal(await answers(GONE_VIP), 6, 'before: kube-proxy\'s leftovers still route a Service that no longer exists');
  const agent: ProcessHandle = topology.spawn(topology.node, ['node', CLI, '--manifests', manifests.path, ...FLAGS]);
  t.teardown(() => agent.stop());
  t.ok(await eventually(async () => messages(agent.output().stderr).includes('removed device kube-ipvs0'), AGENT_WAIT_MS), 'the agent removed the leftovers');
  const logged = messages(agent.output().stderr);
  for (const line of EVERY_LEFTOVER_LOGGED) t.ok(logged.includes(line), `logged: ${line}`);
  checkNeighbours(t, 'after the agent started');
  t.equal(await answers(VIP), 6, 'the Service answers, through kubenft\'s rules');
  t.equal(await answers(GONE_VIP, 2), 0, 'the deleted Service no longer does');
});

t.test('--cleanup removes kube-proxy\'s leftovers of every mode, and only those', async (t) => {
  prepare(['iptables', 'ipvs', 'nftables']);
  const result = await kubenft(topology, ['--cleanup', '--logging-format=json']);
  t.equal(result.code, 0, result.stderr);
  const logged = messages(result.stderr);
  for (const line of EVERY_LEFTOVER_LOGGED) t.ok(logged.includes(line), `logged: ${line}`);
  checkNeighbours(t, 'after --cleanup');
  t.equal(await answers(GONE_VIP, 2), 0, 'nothing routes the deleted Service');
});

t.test('iptables mode takes kube-proxy\'s chains over in the implementation it programs and removes the rest', async (t) => {
  prepare(['iptables', 'ipvs', 'nftables']);
  const result = await kubenft(topology, ['--manifests', manifests.path, '--once', '--proxy-mode', 'iptables', '--iptables-backend', 'nft', ...FLAGS]);
  t.equal(result.code, 0, result.stderr);
  const nft4 = saved(topology.node, 'nft', 4);
  for (const jump of JUMP_RULES) t.equal(nft4.filter((line) => line === savedJumpRule(jump)).length, 1, `kubenft's jump, once: ${savedJumpRule(jump)}`);
  t.notOk(nft4.includes('-A INPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES'), '1.19\'s jump into KUBE-SERVICES is gone');
  t.notOk(nft4.some((line) => line.includes('KUBE-PROXY-CANARY')), 'so are kube-proxy\'s canaries');
  t.ok(nft4.includes(':KUBE-SVC-CDGGSHYLG3RE2FKL -'), 'web\'s chain is kubenft\'s now (the same name)');
  t.notOk(nft4.some((line) => line.includes('KUBE-SVC-VDI6PZEMAYUTK7X7')), 'the deleted Service\'s chain is gone');
  for (const family of [4, 6] as const) t.same(saved(topology.node, 'legacy', family), saved(reference, 'legacy', family), `iptables-legacy IPv${family}: only the neighbours`);
  const after = neighbourhood(topology.node);
  t.same(after.sets, ['user-blocklist']);
  t.notOk(after.tables.some((line) => line.includes('kube-proxy')), 'kube-proxy\'s nftables tables are gone');
  t.notOk(after.links.includes('kube-ipvs0'));
  t.equal(await answers(VIP), 6, 'the Service answers');
  t.equal(await answers(GONE_VIP, 2), 0, 'the deleted Service does not');
});

t.test('switching --proxy-mode removes the other mode\'s rules, saying so', async (t) => {
  prepare([]);
  const once = (mode: string) => kubenft(topology, ['--manifests', manifests.path, '--once', '--proxy-mode', mode, '--iptables-backend', 'nft', ...FLAGS]);
  t.equal((await once('nftables')).code, 0);
  const toIptables = await once('iptables');
  t.equal(toIptables.code, 0, toIptables.stderr);
  t.ok(messages(toIptables.stderr).includes('removed nftables table ip kubenft (kubenft\'s nftables mode)'), 'logged');
  t.notMatch(sh(topology.node, 'nft list tables'), /kubenft/, 'no kubenft table is left');
  t.equal(await answers(VIP), 6, 'the iptables rules serve');
  const toNftables = await once('nftables');
  t.equal(toNftables.code, 0, toNftables.stderr);
  t.ok(messages(toNftables.stderr).includes('removed iptables-nft IPv4 nat chain KUBE-SERVICES'), 'logged');
  t.same(saved(topology.node, 'nft', 4), saved(reference, 'nft', 4), 'no iptables chain or jump of the iptables mode is left');
  t.equal(await answers(VIP), 6, 'the nftables rules serve');
});

for (const leftover of ['iptables', 'nftables'] as const) {
  t.test(`a TCP connection opened under kube-proxy's ${leftover} mode keeps working after kubenft takes over`, async (t) => {
    prepare([leftover]);
    const client = topology.spawn(topology.client, ['node', SOCKET_LB_CLIENT, 'hold', VIP, '80']);
    t.teardown(() => client.stop());
    const lines: string[] = [];
    client.child.stdout!.setEncoding('utf8').on('data', (chunk: string) => lines.push(...chunk.split('\n').filter(Boolean)));
    const reply = async (text: string) => {
      client.child.stdin!.write(`${text}\n`);
      t.ok(await eventually(async () => lines.some((line) => line.endsWith(` ${text}`)), 10_000), `a reply to ${text}`);
      return lines.find((line) => line.endsWith(` ${text}`));
    };
    const before = await reply('before');
    t.match(before, /^pod-[ab] before$/, 'kube-proxy\'s DNAT took the connection to a pod');
    const pod = before!.split(' ')[0];
    const agent = topology.spawn(topology.node, ['node', CLI, '--manifests', manifests.path, ...FLAGS]);
    t.teardown(() => agent.stop());
    const gone = leftover === 'iptables' ? 'removed iptables-nft IPv4 nat chain KUBE-SERVICES' : 'removed nftables table ip kube-proxy';
    t.ok(await eventually(async () => messages(agent.output().stderr).includes(gone), AGENT_WAIT_MS), 'kubenft removed kube-proxy\'s rules');
    t.equal(await reply('after'), `${pod} after`, 'the connection still reaches the same pod: conntrack kept its NAT binding');
    const podIP = PODS.find((candidate) => candidate.name === pod)!.ipv4;
    t.match(sh(topology.node, `conntrack -L -p tcp -d ${VIP} --state ESTABLISHED 2>/dev/null`), ` src=${podIP} `, 'its conntrack entry still holds the translation to the pod');
    t.equal(await answers(VIP), 6, 'new connections go through kubenft\'s rules');
  });
}
