// kube-proxy's node setup, done by the real CLI in a throwaway namespace and read back from the
// kernel: the conntrack sysctls and route_localnet (--init-only and the agent's start), what 0 and
// raise-only leave alone, --oom-score-adj from /proc, NodePorts on 127.0.0.1 with the localnet
// guard, and --bind-address as the node IP that "primary" NodePorts answer on. The root
// namespace's values are read before and after, never written.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { createTopology, type Topology } from '../../scripts/lib/topology.js';
import { conntrackMax, nodePortsOnIPv4Loopback, planKernelSettings, wantedKernelSettings, type KernelSetting } from '../../src/services/node-setup.js';
import { nodeIPsWith } from '../../src/services/node-config.js';
import { parseOptions } from '../../src/cli/options.js';
import { eventually } from '../lib/eventually.js';
import { CLI, kubenft, syncOnce } from '../lib/kubenft.js';
import { ManifestFile, node, service, slice } from '../lib/manifests.js';

const POD = { name: 'pod-a', ipv4: '10.244.1.7' };
const CAP_SYS_RESOURCE = 24;
const SECOND_NODE_ADDRESS = '192.168.100.10';
const NODE_PORT = 30080;
const TIMEOUTS = {
  established: 'net.netfilter.nf_conntrack_tcp_timeout_established',
  closeWait: 'net.netfilter.nf_conntrack_tcp_timeout_close_wait',
  beLiberal: 'net.netfilter.nf_conntrack_tcp_be_liberal',
  udp: 'net.netfilter.nf_conntrack_udp_timeout',
  udpStream: 'net.netfilter.nf_conntrack_udp_timeout_stream',
  routeLocalnet: 'net.ipv4.conf.all.route_localnet',
  max: 'net.netfilter.nf_conntrack_max',
};
const ROOT_PATHS = [...Object.values(TIMEOUTS).map((name) => `/proc/sys/${name.replaceAll('.', '/')}`), '/sys/module/nf_conntrack/parameters/hashsize'];
const readRoot = () => ROOT_PATHS.map((path) => readFileSync(path, 'utf8').trim());

let topology: Topology;
const manifests = new ManifestFile([
  node('node-1', [SECOND_NODE_ADDRESS]),
  service('web', '10.0.7.7', [{ port: 80, targetPort: 9376, nodePort: NODE_PORT }], { type: 'NodePort' }),
  slice('web', [{ port: 9376 }], [{ ip: POD.ipv4 }]),
]);
const rootBefore = readRoot();

t.before(async () => {
  topology = await createTopology({ pods: [POD], nodeAddresses: [SECOND_NODE_ADDRESS] });
});
t.teardown(async () => {
  await topology?.destroy();
  manifests.remove();
});

const sysctl = async (name: string) => {
  const result = await topology.exec(topology.node, ['sysctl', '-n', name]);
  if (result.code !== 0) throw new Error(`sysctl ${name}: ${result.stderr}`);
  return Number(result.stdout.trim());
};
const setSysctl = async (name: string, value: number) => {
  const result = await topology.exec(topology.node, ['sysctl', '-q', '-w', `${name}=${value}`]);
  if (result.code !== 0) throw new Error(`sysctl -w ${name}: ${result.stderr}`);
};
const initOnly = (...flags: string[]) => kubenft(topology, ['--init-only', '--logging-format=json', ...flags]);
const logLines = (stderr: string) => stderr.trim().split('\n').filter(Boolean).map((line) => JSON.parse(line) as { level: string; msg: string; setting?: string });

t.test('--init-only writes the conntrack sysctls and route_localnet of its namespace, only where they differ, and nothing else', async (t) => {
  const links = (await topology.exec(topology.node, ['ip', '-o', 'link', 'show'])).stdout.split('\n').map((line) => line.split(':')[1]?.trim()).sort();
  const flags = [
    '--conntrack-tcp-timeout-established=2h', '--conntrack-tcp-timeout-close-wait=30m', '--conntrack-tcp-be-liberal',
    '--conntrack-udp-timeout=45s', '--conntrack-udp-timeout-stream=3m', '--nodeport-addresses=localhost',
  ];
  const first = await initOnly(...flags);
  t.equal(first.code, 0, first.stderr);
  t.same(
    [await sysctl(TIMEOUTS.established), await sysctl(TIMEOUTS.closeWait), await sysctl(TIMEOUTS.beLiberal), await sysctl(TIMEOUTS.udp), await sysctl(TIMEOUTS.udpStream), await sysctl(TIMEOUTS.routeLocalnet)],
    [7200, 1800, 1, 45, 180, 1],
    'each value is the flag\'s, in whole seconds',
  );
  t.ok(logLines(first.stderr).some((line) => line.setting === TIMEOUTS.established && /set .*nf_conntrack_tcp_timeout_established to 7200/.test(line.msg)), 'each write is logged');
  const ruleset = await topology.exec(topology.node, ['nft', 'list', 'ruleset']);
  t.equal(ruleset.stdout.trim(), '', 'no rules');
  const linksAfter = (await topology.exec(topology.node, ['ip', '-o', 'link', 'show'])).stdout.split('\n').map((line) => line.split(':')[1]?.trim()).sort();
  t.same(linksAfter, links, 'no interface (no DNS device)');

  const again = await initOnly(...flags);
  t.equal(again.code, 0, again.stderr);
  t.same(logLines(again.stderr).filter((line) => line.msg.startsWith('set ')), [], 'a value already right is not written again');
});

t.test('0 leaves a value as it is, as in kube-proxy', async (t) => {
  await setSysctl(TIMEOUTS.established, 1234);
  await setSysctl(TIMEOUTS.udp, 33);
  const result = await initOnly('--conntrack-tcp-timeout-established=0', '--conntrack-tcp-timeout-close-wait=0s', '--conntrack-udp-timeout=0', '--conntrack-max-per-core=0');
  t.equal(result.code, 0, result.stderr);
  t.equal(await sysctl(TIMEOUTS.established), 1234);
  t.equal(await sysctl(TIMEOUTS.udp), 33);
  t.equal(await sysctl(TIMEOUTS.closeWait), 1800, 'the earlier value stays');
  t.same(logLines(result.stderr), [], 'nothing to do, nothing said');
});

t.test('nf_conntrack_max is only raised, and only by the initial namespace: a larger value stays, a smaller one is reported', async (t) => {
  const max = await sysctl(TIMEOUTS.max);
  // The module's hash size is global: read here, never written by a test.
  const hashsize = Number(readFileSync('/sys/module/nf_conntrack/parameters/hashsize', 'utf8'));
  const onlyMax = ['--conntrack-tcp-timeout-established=0', '--conntrack-tcp-timeout-close-wait=0', '--conntrack-max-per-core=1'];
  const smaller = await initOnly(...onlyMax, '--conntrack-min=1000');
  t.equal(smaller.code, 0, smaller.stderr);
  t.equal(await sysctl(TIMEOUTS.max), max, 'a larger limit is not lowered');
  t.same(logLines(smaller.stderr), [], 'and nothing is said about it');

  const wanted = Math.max(max, hashsize * 4) * 2;
  const larger = await initOnly(...onlyMax, `--conntrack-min=${wanted}`);
  t.equal(larger.code, 0, 'the agent goes on: the limit is the host\'s');
  t.equal(await sysctl(TIMEOUTS.max), max, 'a namespace cannot raise it (the kernel makes it read-only there)');
  const warned = logLines(larger.stderr).filter((line) => line.level === 'warn');
  t.ok(warned.some((line) => line.setting === TIMEOUTS.max && new RegExp(`stays ${max}, below the ${wanted} .*only its initial network namespace may raise it`).test(line.msg)), 'the limit left low is reported');
  t.ok(warned.some((line) => line.setting === 'nf_conntrack.hashsize' && line.msg.includes(`below the ${wanted / 4}`)), 'the hash size too (a quarter of it), never written from here');
});

t.test('the agent does the setup as it starts, with kube-proxy\'s defaults, and sets its oom_score_adj', async (t) => {
  await setSysctl(TIMEOUTS.established, 432000);
  await setSysctl(TIMEOUTS.closeWait, 60);
  // Lowering a score needs CAP_SYS_RESOURCE, which some sandboxes withhold even from root.
  const capEff = BigInt(`0x${/^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'))![1]}`);
  const mayLower = ((capEff >> BigInt(CAP_SYS_RESOURCE)) & 1n) === 1n;
  const inherited = readFileSync('/proc/self/oom_score_adj', 'utf8').trim();
  for (const [flags, score] of [[[], -999], [['--oom-score-adj=321'], 321]] as const) {
    const agent = topology.spawn(topology.node, ['node', CLI, '--manifests', manifests.path, '--hostname-override', 'node-1', '--healthz-bind-address=', '--metrics-bind-address=', ...flags]);
    try {
      const started = () => /kubenft started/.test(agent.output().stderr);
      t.ok(await eventually(async () => started(), 20_000), 'the agent started');
      const adj = readFileSync(`/proc/${agent.pid}/oom_score_adj`, 'utf8').trim();
      if (score > 0 || mayLower) t.equal(adj, String(score), `oom_score_adj ${score} in /proc/${agent.pid}`);
      else {
        t.equal(adj, inherited, `without CAP_SYS_RESOURCE the score stays ${inherited}`);
        t.match(agent.output().stderr, /^W.* --oom-score-adj -999: cannot set \/proc\/self\/oom_score_adj: EACCES/m, 'and the agent says so');
      }
      t.equal(await sysctl(TIMEOUTS.established), 86400, '24h: kube-proxy\'s default established timeout');
      t.equal(await sysctl(TIMEOUTS.closeWait), 3600, '1h: kube-proxy\'s default close-wait timeout');
    } finally {
      await agent.stop();
    }
  }
});

t.test('NodePorts on 127.0.0.1: route_localnet makes them work, and the localnet guard drops other sources', async (t) => {
  for (const mode of ['nftables', 'iptables']) {
    await setSysctl(TIMEOUTS.routeLocalnet, 0);
    const setup = await initOnly('--nodeport-addresses=localhost');
    t.equal(setup.code, 0, setup.stderr);
    await syncOnce(topology, manifests.path, '--proxy-mode', mode, '--iptables-backend', 'nft', '--hostname-override', 'node-1', '--nodeport-addresses=localhost');
    const report = await topology.probe(topology.node, { address: '127.0.0.1', port: NODE_PORT, protocol: 'tcp', count: 3, timeoutMs: 2000 });
    t.same(report.counts, { [POD.name]: 3 }, `${mode}: 127.0.0.1:${NODE_PORT} reaches the endpoint`);
    // A connection to 127.0.0.1 from the node's own address takes the path a packet from the network
    // would with route_localnet: the guard must drop it.
    const listener = topology.spawn(topology.node, ['node', '-e', 'require("net").createServer((s) => s.end()).listen(9999, "127.0.0.1", () => console.log("listening"))']);
    await listener.waitForOutput(/listening/, 10_000);
    const connect = `const s = require('net').connect({ host: '127.0.0.1', port: 9999, localAddress: process.argv[1] });
      s.setTimeout(2000, () => { console.log('dropped'); process.exit(0); });
      s.on('connect', () => { console.log('connected'); process.exit(0); });
      s.on('error', (e) => { console.log(e.code); process.exit(0); });`;
    const fromLoopback = await topology.exec(topology.node, ['node', '-e', connect, '127.0.0.1']);
    const fromNodeIP = await topology.exec(topology.node, ['node', '-e', connect, topology.external.nodeIPv4]);
    await listener.stop();
    t.equal(fromLoopback.stdout.trim(), 'connected', `${mode}: loopback to loopback is untouched`);
    t.equal(fromNodeIP.stdout.trim(), 'dropped', `${mode}: a new connection to 127.0.0.0/8 from another source is dropped`);
    const cleanup = await kubenft(topology, ['--cleanup']);
    t.equal(cleanup.code, 0, cleanup.stderr);
  }
});

t.test('--bind-address is the node\'s IP of its family: "primary" NodePorts answer on it, not on the Node object\'s', async (t) => {
  const answers = async (address: string) => (await topology.probe(topology.client, { address, port: NODE_PORT, protocol: 'tcp', count: 2, timeoutMs: 1000 })).counts[POD.name] ?? 0;
  await syncOnce(topology, manifests.path, '--hostname-override', 'node-1');
  t.equal(await answers(SECOND_NODE_ADDRESS), 2, 'the Node object\'s address answers');
  t.equal(await answers(topology.external.nodeIPv4), 0, 'another local address does not');
  await syncOnce(topology, manifests.path, '--hostname-override', 'node-1', `--bind-address=${topology.external.nodeIPv4}`);
  t.equal(await answers(topology.external.nodeIPv4), 2, 'the bind address answers');
  t.equal(await answers(SECOND_NODE_ADDRESS), 0, 'the Node object\'s IPv4 address no longer does');
  await syncOnce(topology, manifests.path, '--hostname-override', 'node-1', '--bind-address=::');
  t.equal(await answers(SECOND_NODE_ADDRESS), 2, ':: leaves the Node object\'s addresses');
  const cleanup = await kubenft(topology, ['--cleanup']);
  t.equal(cleanup.code, 0, cleanup.stderr);
});

t.test('the policy, case by case', async (t) => {
  t.equal(conntrackMax({ maxPerCore: 32768, min: 131072 }, 2), 131072, 'min wins on a small node');
  t.equal(conntrackMax({ maxPerCore: 32768, min: 131072 }, 16), 524288, 'per core on a large one');
  t.equal(conntrackMax({ maxPerCore: 0, min: 131072 }, 16), 0, 'maxPerCore 0 leaves the limit (and ignores min)');
  for (const [addresses, loopback] of [
    [[], false], [['primary'], false], [['localhost'], true], [['all'], true], [['127.0.0.0/8'], true], [['127.0.0.1/32'], true],
    [['0.0.0.0/0'], true], [['10.0.0.0/8'], false], [['::1/128'], false], [['primary', 'localhost'], true],
  ] as [string[], boolean][]) {
    t.equal(nodePortsOnIPv4Loopback(addresses), loopback, `${JSON.stringify(addresses)}: route_localnet ${loopback}`);
  }
  const defaults = wantedKernelSettings(parseOptions([]), 2);
  t.same(defaults.map(({ name, value }) => [name, value]), [
    ['net.netfilter.nf_conntrack_max', 131072], ['nf_conntrack.hashsize', 32768],
    ['net.netfilter.nf_conntrack_tcp_timeout_established', 86400], ['net.netfilter.nf_conntrack_tcp_timeout_close_wait', 3600],
  ], 'kube-proxy\'s defaults ask for the limit, the hash size and two timeouts; be_liberal, UDP and route_localnet stay');
  const setting = (name: string, value: number, extra: Partial<KernelSetting> = {}): KernelSetting => ({ name, value, source: '--x', ...extra });
  const current: Record<string, number> = { low: 10, high: 100, same: 5, hostLow: 10 };
  const plan = planKernelSettings(
    [setting('low', 50, { raiseOnly: true }), setting('high', 50, { raiseOnly: true }), setting('same', 5), setting('high', 7), setting('hostLow', 50, { raiseOnly: true, hostWide: true })],
    { read: (name) => current[name], ownsHostWide: false },
  );
  t.same(plan.changes.map((change) => [change.setting.name, change.from, change.setting.value]), [['low', 10, 50], ['high', 100, 7]], 'raise-only raises; others change where they differ, down too');
  t.same(plan.left.map((left) => [left.setting.name, left.current]), [['hostLow', 10]], 'a host-wide value is left outside the initial namespace');
  const owner = planKernelSettings([setting('hostLow', 50, { raiseOnly: true, hostWide: true })], { read: (name) => current[name], ownsHostWide: true });
  t.same(owner.changes.map((change) => change.setting.name), ['hostLow'], 'the initial namespace raises it');
  t.same(nodeIPsWith('0.0.0.0', ['192.0.2.1', 'fd00::1']), ['192.0.2.1', 'fd00::1']);
  t.same(nodeIPsWith('::', ['192.0.2.1']), ['192.0.2.1']);
  t.same(nodeIPsWith('198.51.100.7', ['192.0.2.1', 'fd00::1']), ['198.51.100.7', 'fd00::1'], 'the bind address replaces its family\'s');
  t.same(nodeIPsWith('fd00::9', ['192.0.2.1', 'fd00::1']), ['fd00::9', '192.0.2.1']);
});

t.test('the root namespace\'s values are as they were', async (t) => {
  t.same(readRoot(), rootBefore, 'conntrack sysctls, route_localnet and the hash size');
});
