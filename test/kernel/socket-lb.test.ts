// Socket-level load balancing with real sockets: the programs attach only to a child cgroup this
// test creates (never the root), their pins live on a bpf filesystem mounted in a private mount
// namespace the test owns, and the clients run in the test topology's node namespace, placed in
// the cgroup before they create a socket.
import t from 'tap';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { type SocketLbSandbox, createSocketLbSandbox, sandboxUnavailable } from '../../scripts/lib/socket-lb-sandbox.js';
import { createTopology, type ProcessHandle, type Topology } from '../../scripts/lib/topology.js';
import { eventually } from '../lib/eventually.js';
import { CHI_SQUARE_CRITICAL_P001, CLI, chiSquareUniform } from '../lib/kubenft.js';
import { ManifestFile, service, slice } from '../lib/manifests.js';
import { type ClientSummary, SOCKET_LB_CLIENT, clientSummary } from '../lib/socket-lb-client.js';

const VIP = '10.0.3.10';
const NODE_NAME = 'node-a';
const PODS = [
  { name: 'pod-a', ipv4: '10.244.1.7', nodeName: NODE_NAME },
  { name: 'pod-b', ipv4: '10.244.2.3', nodeName: 'node-b' },
  { name: 'pod-c', ipv4: '10.244.3.6', nodeName: 'node-c' },
];
const POD_PORT = 9376;
/** How long a started agent may take to sync, on a loaded machine (an upper bound, not a figure). */
const AGENT_WAIT_MS = 60_000;
const PORTS = [{ name: 'http', port: 80, targetPort: POD_PORT }, { name: 'dns', port: 53, targetPort: POD_PORT, protocol: 'UDP' as const }];
const SLICE_PORTS = [{ name: 'http', port: POD_PORT }, { name: 'dns', port: POD_PORT, protocol: 'UDP' }];
const web = (pods = PODS, spec: Record<string, unknown> = {}) => [
  service('web', VIP, PORTS, spec),
  slice('web', SLICE_PORTS, pods.map((pod) => ({ ip: pod.ipv4, nodeName: pod.nodeName }))),
];

const unavailable = sandboxUnavailable();
if (unavailable) t.plan(0, unavailable);

let topology: Topology;
let manifests: ManifestFile;
let sandbox: SocketLbSandbox;
let cgroup: string;

t.before(async () => {
  if (unavailable) return;
  topology = await createTopology({ pods: PODS.map(({ name, ipv4 }) => ({ name, ipv4 })) });
  manifests = new ManifestFile();
  sandbox = await createSocketLbSandbox('test', ['clients', 'other']);
  cgroup = sandbox.cgroups.clients;
});

t.teardown(async () => {
  if (unavailable) return;
  try {
    // Detaches and unpins whatever a failed test left, before the cgroup goes: in the node
    // namespace, whose pins they are (and never the root namespace's rules).
    if (topology) await topology.exec(topology.node, sandbox.inMountNamespace([process.execPath, CLI, '--socket-lb-pin-dir', sandbox.pinDir, '--cleanup']));
    await topology?.destroy();
  } finally {
    sandbox?.destroy();
    manifests?.remove();
  }
});

/** kubenft in the node namespace and the sandbox's mount namespace, with the socket LB on the test cgroup. */
function agentArgv(...args: string[]): string[] {
  return sandbox.inMountNamespace([process.execPath, CLI, '--manifests', manifests.path, '--hostname-override', NODE_NAME,
    '--socket-lb', '--socket-lb-cgroup', cgroup, '--socket-lb-pin-dir', sandbox.pinDir, '--healthz-bind-address', '', '--metrics-bind-address', '', ...args]);
}

async function syncOnce(...args: string[]): Promise<void> {
  const result = await topology.exec(topology.node, agentArgv('--once', ...args), { timeoutMs: 60_000 });
  if (result.code !== 0) throw new Error(`kubenft exited ${result.code}: ${result.stderr}`);
}

/** The client in the test cgroup, in the node namespace (or another). */
const clientInCgroup = (args: string[], netns = topology.node) => sandbox.spawnInCgroup(cgroup, netns, [process.execPath, SOCKET_LB_CLIENT, ...args]);

function clientOutside(args: string[]): ChildProcess {
  return spawn('ip', ['netns', 'exec', topology.node, process.execPath, SOCKET_LB_CLIENT, ...args], { stdio: ['pipe', 'pipe', 'inherit'] });
}

const inCgroup = (...args: string[]) => clientSummary(clientInCgroup(args));
const outside = (...args: string[]) => clientSummary(clientOutside(args));

/** A long-lived client: its stdout lines, one at a time. */
function lines(child: ChildProcess): () => Promise<string> {
  const queue: string[] = [];
  const waiting: ((line: string) => void)[] = [];
  createInterface({ input: child.stdout! }).on('line', (line) => (waiting.length > 0 ? waiting.shift()!(line) : queue.push(line)));
  return () => (queue.length > 0 ? Promise.resolve(queue.shift()!) : new Promise((resolve) => waiting.push(resolve)));
}

async function conntrack(...args: string[]): Promise<string> {
  const result = await topology.exec(topology.node, ['conntrack', ...args]);
  return result.stdout;
}
const dnatEntries = async () => (await conntrack('-L', '--dst-nat')).split('\n').filter((line) => line.includes(VIP)).length;

const podCounts = (report: ClientSummary) => PODS.map((pod) => report.pods[pod.name] ?? 0);

t.test('a client in the cgroup reaches the endpoints evenly, sees the Service address, and leaves no NAT entry', async (t) => {
  manifests.write(web());
  await syncOnce();
  await conntrack('-F');
  const report = await inCgroup('tcp', VIP, '80', '150');
  t.same(report.errors, {});
  t.same(report.peers, { [`${VIP}:80`]: 150 }, 'getpeername() returns the Service address and port');
  const chiSquare = chiSquareUniform(podCounts(report));
  t.ok(chiSquare < CHI_SQUARE_CRITICAL_P001[2], `chi-square ${chiSquare.toFixed(2)} of ${podCounts(report).join('/')} is consistent with uniform`);
  t.equal(await dnatEntries(), 0, 'no connection was translated by nftables');

  const udp = await inCgroup('udp', VIP, '53', '60');
  t.same(udp.errors, {});
  t.same(udp.peers, { [`${VIP}:53`]: 60 }, 'UDP replies come from the Service address');
  t.equal(podCounts(udp).filter((count) => count > 0).length, 3, `UDP sockets spread over every endpoint: ${podCounts(udp).join('/')}`);
  t.equal(await dnatEntries(), 0);
});

t.test('services lists the socket LB maps as the kernel holds them, and marks a frontend changed by hand', async (t) => {
  manifests.write(web());
  await syncOnce();
  interface Listed { services: { service?: string; protocol: string; port: number; drift?: string[]; socketLb?: { endpoints: { address: string; port: number }[] } }[]; socketLb?: { pinDir: string; frontends: { address: string; port: number; protocol: string; endpoints: unknown[] }[] } }
  const services = async (...args: string[]) => {
    const result = await topology.exec(topology.node, sandbox.inMountNamespace([process.execPath, CLI, 'services', '--manifests', manifests.path, '--hostname-override', NODE_NAME, '--socket-lb-pin-dir', sandbox.pinDir, ...args]));
    t.equal(result.code, 0, result.stderr);
    return result.stdout;
  };
  const listed = JSON.parse(await services('--json')) as Listed;
  // The node namespace's pins: a directory per network namespace (its inode) under --socket-lb-pin-dir.
  const nodePins = join(sandbox.pinDir, `netns-${statSync(`/run/netns/${topology.node}`).ino}`);
  const bpftoolDump = (map: string) => JSON.parse(sandbox.run(['bpftool', '-j', 'map', 'dump', 'pinned', join(nodePins, `map_${map}`)]).stdout) as { key: string[] }[];
  t.equal(listed.socketLb?.pinDir, nodePins);
  t.equal(listed.socketLb?.frontends.length, bpftoolDump('services').length, 'one frontend per entry of the services map, as bpftool dumps it');
  const everyPod = PODS.map((pod) => ({ address: pod.ipv4, port: POD_PORT }));
  for (const protocol of ['tcp', 'udp']) {
    const entry = listed.services.find((candidate) => candidate.service === 'default/web' && candidate.protocol === protocol)!;
    t.same(entry.socketLb?.endpoints, everyPod, `${protocol}: the frontend's endpoints`);
    t.same(entry.drift, [], `${protocol}: as planned`);
  }
  t.match(await services(), new RegExp(`socket LB: ${PODS.map((pod) => `${pod.ipv4.replaceAll('.', '\\.')}:${POD_PORT}`).join(', ')}`), 'the text shows them too');

  // One endpoint slot deleted behind the agent's back: the listing follows the kernel, and says it differs.
  const slot = bpftoolDump('slots')[0].key;
  t.equal(sandbox.run(['bpftool', 'map', 'delete', 'pinned', join(nodePins, 'map_slots'), 'key', 'hex', ...slot.map((byte) => byte.replace(/^0x/, ''))]).status, 0);
  const changed = JSON.parse(await services('--json')) as Listed;
  const drifted = changed.services.filter((entry) => entry.drift?.some((difference) => difference.startsWith('socket LB endpoints: loaded')));
  t.equal(drifted.length, 1, `one frontend lost an endpoint: ${JSON.stringify(drifted)}`);
  t.equal(drifted[0].socketLb?.endpoints.length, 2);
  t.match(await services(), /DIFFERS FROM PLAN/);
  await syncOnce();
});

t.test('a client outside the cgroup still goes through the nftables rules', async (t) => {
  manifests.write(web());
  await syncOnce();
  await conntrack('-F');
  const report = await outside('tcp', VIP, '80', '30');
  t.same(report.errors, {});
  t.same(report.peers, { [`${VIP}:80`]: 30 });
  t.equal(podCounts(report).reduce((sum, count) => sum + count, 0), 30);
  t.ok(await dnatEntries() > 0, 'its connections were translated by nftables');
});

t.test('an endpoint removed: no new connection reaches it, and a connected UDP socket aimed at it is destroyed', async (t) => {
  manifests.write(web());
  await syncOnce();
  const holder = clientInCgroup(['udp-hold', VIP, '53']);
  t.teardown(() => { holder.kill(); });
  const next = lines(holder);
  const first = JSON.parse(await next()) as { peer: string; pod: string };
  t.equal(first.peer, `${VIP}:53`, 'the connected socket\'s peer is the Service address');
  const gone = PODS.find((pod) => pod.name === first.pod)!;
  const connectedTo = async () => (await topology.exec(topology.node, ['ss', '-Hnu', 'state', 'established', 'dst', gone.ipv4])).stdout.trim();
  t.not(await connectedTo(), '', `the kernel shows the UDP socket connected to ${gone.ipv4}`);

  manifests.write(web(PODS.filter((pod) => pod !== gone)));
  await syncOnce();
  t.equal(await connectedTo(), '', 'the socket connected to the removed endpoint is gone');
  const report = await inCgroup('tcp', VIP, '80', '60');
  t.same(report.errors, {});
  t.equal(report.pods[gone.name], undefined, `no connection reached ${gone.name}: ${JSON.stringify(report.pods)}`);
  t.equal(Object.keys(report.pods).length, 2);
});

t.test('ClientIP affinity keeps a client on one endpoint', async (t) => {
  manifests.write(web(PODS, { sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: 60 } } }));
  await syncOnce();
  const report = await inCgroup('tcp', VIP, '80', '30');
  t.same(report.errors, {});
  t.equal(Object.keys(report.pods).length, 1, `every connection on one pod: ${JSON.stringify(report.pods)}`);
});

t.test('internalTrafficPolicy Local: only this node\'s endpoint', async (t) => {
  manifests.write(web(PODS, { internalTrafficPolicy: 'Local' }));
  await syncOnce();
  const report = await inCgroup('tcp', VIP, '80', '30');
  t.same(report.errors, {});
  t.same(report.pods, { 'pod-a': 30 });
  t.same(report.peers, { [`${VIP}:80`]: 30 });
});

t.test('a service without endpoints and an unknown address fall through to the rules', async (t) => {
  manifests.write([...web([]), service('other', '10.0.3.11', PORTS), slice('other', SLICE_PORTS, [{ ip: PODS[0].ipv4 }])]);
  await syncOnce();
  const empty = await inCgroup('tcp', VIP, '80', '3');
  t.same(empty.errors, { ECONNREFUSED: 3 }, 'the nftables reject answers, as it does outside the cgroup');
  t.same(await outside('tcp', VIP, '80', '3'), empty);
  const unknownPort = await inCgroup('tcp', '10.0.3.11', '81', '1');
  t.same(unknownPort, await outside('tcp', '10.0.3.11', '81', '1'), 'an unknown port of a known address: what the rules do');
  t.equal(Object.keys(unknownPort.pods).length, 0);
});

t.test('a restarted agent takes the pinned programs over; open connections and the pause in between keep working', async (t) => {
  manifests.write(web());
  let agent: ProcessHandle = topology.spawn(topology.node, agentArgv());
  t.teardown(() => agent.stop());
  t.ok(await eventually(async () => (await inCgroup('tcp', VIP, '80', '1')).peers[`${VIP}:80`] === 1, AGENT_WAIT_MS), 'the first agent balances');
  const held = clientInCgroup(['hold', VIP, '80']);
  t.teardown(() => { held.kill(); });
  const next = lines(held);
  t.same(JSON.parse(await next()), { peer: `${VIP}:80` });
  held.stdin!.write('one\n');
  const pod = (await next()).split(' ')[0];

  await agent.stop();
  const between = await inCgroup('tcp', VIP, '80', '15');
  t.same(between.peers, { [`${VIP}:80`]: 15 }, 'with no agent running, the pinned programs still balance');
  t.same(between.errors, {});

  agent = topology.spawn(topology.node, agentArgv());
  held.stdin!.write('two\n');
  t.equal(await next(), `${pod} two`, 'the connection opened before the restart still works');
  // A change after the restart reaches the maps through the new agent's partial syncs.
  const gone = PODS.find((candidate) => candidate.name !== pod)!;
  manifests.write(web(PODS.filter((candidate) => candidate !== gone)));
  t.ok(await eventually(async () => {
    const report = await inCgroup('tcp', VIP, '80', '20');
    return report.pods[gone.name] === undefined && report.peers[`${VIP}:80`] === 20;
  }, AGENT_WAIT_MS), `the new agent removed ${gone.name} from the maps`);
  held.stdin!.write('three\n');
  t.equal(await next(), `${pod} three`);
});

t.test('--socket-lb-host-only: a socket of another network namespace is left to the rules', async (t) => {
  manifests.write(web());
  await syncOnce('--socket-lb-host-only');
  t.same((await inCgroup('tcp', VIP, '80', '5')).peers, { [`${VIP}:80`]: 5 });
  await conntrack('-F');
  // The external client namespace, in the cgroup too: routed through the node, translated there.
  const fromClientNs = await clientSummary(clientInCgroup(['tcp', VIP, '80', '5'], topology.client));
  t.same(fromClientNs.errors, {});
  t.equal(await dnatEntries(), 5, 'its connections were translated by nftables');
  await conntrack('-F');
  await inCgroup('tcp', VIP, '80', '5');
  t.equal(await dnatEntries(), 0, 'the node namespace\'s were not');
});

t.test('another --socket-lb-cgroup: the programs move there, attached before the old links go', async (t) => {
  manifests.write(web());
  await syncOnce();
  const attachedTo = (path: string) => /connect4/.test(spawnSync('bpftool', ['cgroup', 'show', path], { encoding: 'utf8' }).stdout);
  await syncOnce('--socket-lb-cgroup', sandbox.cgroups.other);
  t.ok(attachedTo(sandbox.cgroups.other), 'attached to the other cgroup');
  t.notOk(attachedTo(cgroup), 'and no longer to the first');
  await syncOnce();
  t.ok(attachedTo(cgroup));
  t.notOk(attachedTo(sandbox.cgroups.other));
});

t.test('a start that cannot attach says why and leaves nothing attached or pinned', async (t) => {
  manifests.write(web());
  t.equal((await topology.exec(topology.node, agentArgv('--cleanup'))).code, 0);
  const missing = await topology.exec(topology.node, agentArgv('--once', '--socket-lb-cgroup', join(cgroup, 'missing')));
  t.equal(missing.code, 1);
  t.match(missing.stderr, /socket LB: opening cgroup .*missing failed: No such file or directory \(ENOENT\)/, 'the errno is kept, by name');
  const notBpffs = await topology.exec(topology.node, agentArgv('--once', '--socket-lb-pin-dir', join(manifests.path, '..', 'pins')));
  t.equal(notBpffs.code, 1);
  t.match(notBpffs.stderr, /is not a bpf filesystem/);
  t.notMatch(spawnSync('bpftool', ['cgroup', 'show', cgroup], { encoding: 'utf8' }).stdout, /connect4/, 'nothing is attached');
});

t.test('an agent started without --socket-lb detaches the programs a previous one pinned', async (t) => {
  manifests.write(web());
  await syncOnce();
  t.match(spawnSync('bpftool', ['cgroup', 'show', cgroup], { encoding: 'utf8' }).stdout, /connect4/);
  const withoutFlag = await topology.exec(topology.node, sandbox.inMountNamespace([process.execPath, CLI, '--manifests', manifests.path, '--once',
    '--socket-lb-pin-dir', sandbox.pinDir, '--healthz-bind-address', '', '--metrics-bind-address', '']));
  t.equal(withoutFlag.code, 0, withoutFlag.stderr);
  t.notMatch(spawnSync('bpftool', ['cgroup', 'show', cgroup], { encoding: 'utf8' }).stdout, /connect4/, 'nothing is attached');
  await conntrack('-F');
  const report = await inCgroup('tcp', VIP, '80', '20');
  t.same(report.errors, {});
  t.ok(await dnatEntries() > 0, 'the rules serve the cgroup\'s clients again');
});

t.test('--cleanup detaches the programs and removes the pins', async (t) => {
  manifests.write(web());
  await syncOnce();
  const attached = spawnSync('bpftool', ['cgroup', 'show', cgroup], { encoding: 'utf8' }).stdout;
  t.match(attached, /connect4/, 'bpftool shows the programs on the test cgroup');
  const result = await topology.exec(topology.node, agentArgv('--cleanup'));
  t.equal(result.code, 0, result.stderr);
  t.notMatch(spawnSync('bpftool', ['cgroup', 'show', cgroup], { encoding: 'utf8' }).stdout, /connect4/, 'nothing is attached');
  const pins = sandbox.run(['ls', sandbox.pinRoot]).stdout.split('\n');
  t.notOk(pins.includes('kubenft'), `no pin is left: ${pins.join(' ')}`);
  const report = await inCgroup('tcp', VIP, '80', '1');
  t.equal(report.peers[`${VIP}:80`], undefined, 'no longer balanced by the programs (and --cleanup removed the rules too)');
});
