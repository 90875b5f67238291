// One-off commands beside a live agent, as an operator runs them on a node: the agent (socket LB,
// cluster DNS, ingress) in one network namespace; `--once`, `--init-only`, `render`, `services`,
// `explain` and `--cleanup` in another namespace sharing the node's bpf filesystem and cgroups,
// and the read-only ones in the agent's own namespace. None of them may change what the agent
// keeps; the ones that would (`--once`, `--cleanup` in its namespace) are refused. Programs attach
// only to cgroups the sandbox creates; pins live on its private bpf filesystem.
import t, { type Test } from 'tap';
import { spawnSync } from 'node:child_process';
import { type SocketLbSandbox, createSocketLbSandbox, sandboxUnavailable } from '../../scripts/lib/socket-lb-sandbox.js';
import { createTopology, type ProcessHandle, type Topology } from '../../scripts/lib/topology.js';
import { eventually } from '../lib/eventually.js';
import { CLI } from '../lib/kubenft.js';
import { OUR_CLASS, ingress } from '../lib/ingress-manifests.js';
import { ManifestFile, service, slice } from '../lib/manifests.js';
import { SOCKET_LB_CLIENT, clientSummary } from '../lib/socket-lb-client.js';

const VIP = '10.0.3.10';
const DNS_ADDRESS = '169.254.20.10';
const NODE_NAME = 'node-a';
const POD_PORT = 9376;
const PODS = [{ name: 'pod-a', ipv4: '10.244.1.7' }, { name: 'pod-b', ipv4: '10.244.2.3' }];
const OTHER_PODS = [{ name: 'other-a', ipv4: '10.244.9.7' }];
/** How long a started agent may take to serve, on a loaded machine (an upper bound, not a figure). */
const AGENT_WAIT_MS = 60_000;

const objects = (pods = PODS) => [
  OUR_CLASS,
  service('web', VIP, [{ name: 'http', port: 80, targetPort: POD_PORT }]),
  slice('web', [{ name: 'http', port: POD_PORT }], pods.map((pod) => ({ ip: pod.ipv4, nodeName: NODE_NAME }))),
  ingress('web', [{ host: 'web.example', paths: [{ path: '/', pathType: 'Prefix' }] }]),
];

const unavailable = sandboxUnavailable();
if (unavailable) t.plan(0, unavailable);

let live: Topology;
let other: Topology;
let sandbox: SocketLbSandbox;
let agent: ProcessHandle | undefined;
const manifests = new ManifestFile(objects());
/** bpftool's view of the live agent's cgroup at the start: the same programs must stay. */
let attachedAtStart = '';

const attached = (cgroup: string) => spawnSync('bpftool', ['cgroup', 'show', cgroup], { encoding: 'utf8' }).stdout;

/** kubenft in the sandbox's mount namespace (which sees the pins), with the manifests and the socket LB's pin directory. */
const kubenft = (...args: string[]) => sandbox.inMountNamespace([process.execPath, CLI, '--manifests', manifests.path, '--hostname-override', NODE_NAME,
  '--socket-lb-pin-dir', sandbox.pinDir, '--healthz-bind-address', '', '--metrics-bind-address', '', ...args]);

const AGENT_FLAGS = ['--socket-lb', '--socket-lb-cgroup', '', '--cluster-dns', DNS_ADDRESS, '--dns-upstream', '127.0.0.1:5399', '--ingress', '--ingress-dataplane', 'builtin', '--ingress-workers', '1',
  '--iptables-min-sync-period', '50ms'];
const agentFlags = () => AGENT_FLAGS.map((flag) => (flag === '' ? sandbox.cgroups.live : flag));

function startAgent(): ProcessHandle {
  return live.spawn(live.node, kubenft(...agentFlags()));
}

const inLiveCgroup = (count: number) =>
  clientSummary(sandbox.spawnInCgroup(sandbox.cgroups.live, live.node, [process.execPath, SOCKET_LB_CLIENT, 'tcp', VIP, '80', String(count)]));

const dig = async () => (await live.exec(live.node, ['dig', '+short', '+time=2', '+tries=1', `@${DNS_ADDRESS}`, 'web.default.svc.cluster.local'])).stdout.trim();
const curlStatus = async () => (await live.exec(live.node, ['curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '5', '-H', 'Host: web.example', 'http://127.0.0.1/'])).stdout;
const dnatEntries = async () => (await live.exec(live.node, ['conntrack', '-L', '--dst-nat'])).stdout.split('\n').filter((line) => line.includes(VIP)).length;

/** Everything the live agent keeps: its programs on its cgroup, balancing; its DNS device, table and answers; its ingress. */
async function liveAgentIntact(t: Test, after: string): Promise<void> {
  t.equal(attached(sandbox.cgroups.live), attachedAtStart, `after ${after}: the agent's programs are still the ones on its cgroup`);
  await live.exec(live.node, ['conntrack', '-F']);
  const report = await inLiveCgroup(10);
  t.same(report.peers, { [`${VIP}:80`]: 10 }, `after ${after}: connections in the cgroup reach the Service`);
  t.equal(await dnatEntries(), 0, `after ${after}: the socket LB translated them, not the rules`);
  t.equal(await dig(), VIP, `after ${after}: the agent's DNS answers`);
  t.equal((await live.exec(live.node, ['nft', 'list', 'table', 'inet', 'kubenft-dns'])).code, 0, `after ${after}: the DNS table is there`);
  t.equal((await live.exec(live.node, ['ip', 'link', 'show', 'kubenft-dns'])).code, 0, `after ${after}: the DNS device is there`);
  t.equal(await curlStatus(), '200', `after ${after}: the ingress proxy answers`);
}

t.before(async () => {
  if (unavailable) return;
  live = await createTopology({ pods: PODS });
  other = await createTopology({ pods: OTHER_PODS });
  sandbox = await createSocketLbSandbox('oneoff', ['live', 'other']);
  agent = startAgent();
  const ready = await eventually(async () => (await inLiveCgroup(1)).peers[`${VIP}:80`] === 1 && (await dig()) === VIP && (await curlStatus()) === '200', AGENT_WAIT_MS);
  if (!ready) throw new Error(`the agent does not serve: ${JSON.stringify(agent.output())}`);
  attachedAtStart = attached(sandbox.cgroups.live);
});

t.teardown(async () => {
  if (unavailable) return;
  try {
    await agent?.stop();
    // The agent's namespace, then the other's: each --cleanup removes its own namespace's pins.
    for (const topology of [live, other]) if (topology) await topology.exec(topology.node, kubenft('--cleanup'));
    await live?.destroy();
    await other?.destroy();
  } finally {
    sandbox?.destroy();
    manifests.remove();
  }
});

t.test('one-off commands in another network namespace leave the live agent alone', async (t) => {
  t.match(attachedAtStart, /connect4/, 'the agent attached its programs');
  const commands: [string, string[]][] = [
    ['--once (socket LB off)', ['--once']],
    ['--once with cluster DNS and ingress', ['--once', '--cluster-dns', DNS_ADDRESS, '--dns-upstream', '127.0.0.1:5399', '--ingress', '--ingress-dataplane', 'builtin', '--ingress-workers', '1']],
    // Last of the --once: one without --socket-lb removes what an earlier one of its namespace pinned.
    ['--once --socket-lb on another cgroup', ['--once', '--socket-lb', '--socket-lb-cgroup', sandbox.cgroups.other]],
    ['--init-only', ['--init-only']],
    ['render', ['render']],
    ['services', ['services']],
    ['explain', ['explain', '--from', '10.244.9.50', '--to', `${VIP}:80`]],
  ];
  for (const [what, args] of commands) {
    const result = await other.exec(other.node, kubenft(...args), { timeoutMs: 120_000 });
    t.equal(result.code, 0, `${what} in the other namespace exits 0: ${result.stderr}`);
    await liveAgentIntact(t, `${what} in another namespace`);
  }
  t.match(attached(sandbox.cgroups.other), /connect4/, 'the other namespace\'s --once attached its own programs to its cgroup');
  const cleanup = await other.exec(other.node, kubenft('--cleanup'));
  t.equal(cleanup.code, 0, cleanup.stderr);
  t.notMatch(attached(sandbox.cgroups.other), /connect4/, '--cleanup there detached the programs of its own namespace');
  await liveAgentIntact(t, '--cleanup in another namespace');
});

t.test('the read-only commands in the agent\'s own namespace leave it alone', async (t) => {
  for (const [what, args] of [['render', ['render']], ['services', ['services']], ['explain', ['explain', '--from', '10.244.1.50', '--to', `${VIP}:80`]], ['--init-only', ['--init-only']]] as const) {
    const result = await live.exec(live.node, kubenft(...args));
    t.equal(result.code, 0, `${what} exits 0: ${result.stderr}`);
    await liveAgentIntact(t, `${what} in the agent's namespace`);
  }
});

t.test('--once and --cleanup in the agent\'s namespace are refused, naming the agent', async (t) => {
  for (const args of [['--once'], ['--once', ...agentFlags()], ['--cleanup']]) {
    const result = await live.exec(live.node, kubenft(...args));
    t.equal(result.code, 1, `${args.join(' ')}: refused`);
    t.match(result.stderr, new RegExp(`a kubenft agent \\(pid ${agent!.pid} in its PID namespace, started .*\\) owns this network namespace \\(net:\\[\\d+\\]\\): ${args[0]} would change`));
    await liveAgentIntact(t, `${args.join(' ')} in the agent's namespace`);
  }
  const second = await live.exec(live.node, kubenft(...agentFlags()), { timeoutMs: 60_000 });
  t.equal(second.code, 1, 'a second agent in the namespace is refused');
  t.match(second.stderr, /owns this network namespace .*: another agent would change/);
  await liveAgentIntact(t, 'a second agent');
});

t.test('after all that, the agent\'s changes still reach its maps', async (t) => {
  manifests.write(objects(PODS.slice(0, 1)));
  t.ok(await eventually(async () => {
    const report = await inLiveCgroup(10);
    return report.pods[PODS[1].name] === undefined && report.peers[`${VIP}:80`] === 10;
  }, AGENT_WAIT_MS), `the agent removed ${PODS[1].name} from the maps the programs read`);
  manifests.write(objects());
});

t.test('a killed agent\'s pins are its namespace\'s to adopt: the next agent takes them over', async (t) => {
  agent!.child.kill('SIGKILL');
  await agent!.exited;
  agent = undefined;
  t.same((await inLiveCgroup(5)).peers, { [`${VIP}:80`]: 5 }, 'with no agent, the pinned programs still balance');
  const once = await live.exec(live.node, kubenft('--once', ...agentFlags()), { timeoutMs: 120_000 });
  t.equal(once.code, 0, once.stderr);
  t.match(once.stderr, /socket LB took over its pinned programs/);
  t.match(attached(sandbox.cgroups.live), /connect4/, 'attached still');
  const cleanup = await live.exec(live.node, kubenft('--cleanup'));
  t.equal(cleanup.code, 0, cleanup.stderr);
  t.notMatch(attached(sandbox.cgroups.live), /connect4/, '--cleanup in its namespace detaches them');
});
