// Input fidelity, through the real CLI into the kernel: a broken YAML document costs only itself
// (every hazard is named with its document and line, exit code 1, the valid Services around it
// answer), addresses the API server would refuse never become DNAT targets, the long-running
// --manifests source keeps what a broken edit held, and --cleanup removes only kubenft's own
// objects and creates none. A --manifests path that does not exist fails every command before the
// kernel (read as empty, it emptied the node's rules), one that goes away under the agent keeps
// what it held until it is back, and every command exits as it would with its stdout and stderr
// closed early (`| head -1` left kubenft hanging).
import t from 'tap';
import { mkdirSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { createTopology, type Topology } from '../../scripts/lib/topology.js';
import { HAZARDS, serviceSpec } from '../lib/broken-yaml.js';
import { eventually } from '../lib/eventually.js';
import { CLI, kubenft, syncOnce } from '../lib/kubenft.js';
import { ManifestFile, manifestYaml, service, slice } from '../lib/manifests.js';

const PODS = [
  { name: 'web-a', ipv4: '10.244.1.11' },
  { name: 'web-b', ipv4: '10.244.2.12' },
  { name: 'web-c', ipv4: '10.244.3.13' },
];
const HTTP = [{ name: 'http', port: 80, targetPort: 9376 }];
const SLICE_PORTS = [{ name: 'http', port: 9376 }];
// The log is read line by line as JSON.
const FLAGS = ['--hostname-override', 'node-1', '--logging-format', 'json'];
const MISSING = '/does-not-exist/manifests.yaml';

/** A valid Service answering from one pod, as its two objects. */
const webService = (name: string, vip: string, pod: { ipv4: string }) => [service(name, vip, HTTP), slice(name, SLICE_PORTS, [{ ip: pod.ipv4 }])];

interface LogLine {
  msg: string;
}
const logLines = (stderr: string) => stderr.trim().split('\n').filter(Boolean).map((line) => JSON.parse(line) as LogLine);

let topology: Topology;
const manifests = new ManifestFile();
t.before(async () => {
  delete process.env.NODE_OPTIONS;
  topology = await createTopology({ pods: PODS });
});
t.teardown(async () => {
  await topology?.destroy();
  manifests.remove();
});

const answers = async (vip: string, count = 6) => (await topology.probe(topology.client, { address: vip, port: 80, protocol: 'tcp', count, timeoutMs: 1000 })).counts;

/** `nft list ruleset` of a namespace as JSON objects, without the metainfo (it names the nft version). */
async function ruleset(ns: string): Promise<Record<string, Record<string, unknown>>[]> {
  const listed = await topology.exec(ns, ['nft', '-j', 'list', 'ruleset']);
  if (listed.code !== 0) throw new Error(listed.stderr);
  return (JSON.parse(listed.stdout).nftables as Record<string, Record<string, unknown>>[]).filter((entry) => !('metainfo' in entry));
}

/** kubenft's tables and kube-proxy's (nftables mode), and the KUBE- chains of iptables-nft with the rules into them. */
const isProxyObject = (entry: Record<string, Record<string, unknown>>) => {
  const [type, body] = Object.entries(entry)[0];
  const table = String(type === 'table' ? body.name : body.table);
  if (/^(kubenft|kube-proxy)/.test(table)) return true;
  if (type === 'chain') return String(body.name).startsWith('KUBE-');
  return type === 'rule' && (String(body.chain).startsWith('KUBE-') || JSON.stringify(body.expr).includes('"KUBE-'));
};

// First, before any test loads the node: each case starts from a namespace kubenft never touched.
t.test('--cleanup removes only kubenft\'s objects and creates none: in a fresh namespace and after each mode', async (t) => {
  // Someone else's table, which must come through every cleanup untouched.
  for (const ns of [topology.client, topology.node]) {
    const guard = await topology.exec(ns, ['nft', '-f', '-'], { input: 'table inet guard {\n chain input {\n  type filter hook input priority 10; policy accept;\n  tcp dport 9 counter accept\n }\n}\n' });
    t.equal(guard.code, 0, `someone else's table is loaded in ${ns} ${guard.stderr}`);
  }
  const cleanup = async (ns: string, when: string) => {
    const before = await ruleset(ns);
    const result = await topology.exec(ns, ['node', CLI, '--cleanup']);
    t.equal(result.code, 0, `${when}: --cleanup exits 0 ${result.stderr}`);
    const after = await ruleset(ns);
    t.same(after, before.filter((entry) => !isProxyObject(entry)), `${when}: the ruleset is as it was, less kubenft's objects`);
    t.notOk(after.some(isProxyObject), `${when}: no kubenft table is left behind`);
    return before;
  };
  // The client's namespace: nothing of kubenft's ever ran there.
  await cleanup(topology.client, 'fresh namespace');
  manifests.write(webService('clean', '10.0.22.1', PODS[0]));
  for (const mode of ['iptables', 'nftables']) {
    // iptables-nft, whose chains live in the nftables ruleset where the comparison sees them.
    await syncOnce(topology, manifests.path, '--proxy-mode', mode, '--iptables-backend', 'nft', ...FLAGS);
    const before = await cleanup(topology.node, `after ${mode} mode`);
    t.ok(before.some(isProxyObject), `${mode} mode had loaded something for the cleanup to remove`);
  }
});

t.test('three valid Services between broken documents of every hazard: each named, exit 1, the Services answer', async (t) => {
  const [first, second, third] = [webService('first', '10.0.20.1', PODS[0]), webService('second', '10.0.20.2', PODS[1]), webService('third', '10.0.20.3', PODS[2])];
  // The third Service comes as a List, with an item that is no object: the item alone is skipped.
  const list = { apiVersion: 'v1', kind: 'List', items: [...third, 'not an object'] };
  const documents: { text: string; hazard?: [string, RegExp] }[] = [];
  const valid = [first[0], first[1], second[0], second[1], list];
  HAZARDS.forEach(([what, text, reason], index) => {
    documents.push({ text, hazard: [what, reason] });
    if (index < valid.length) documents.push({ text: manifestYaml(valid[index]) });
  });
  manifests.writeText(documents.map((document) => document.text).join('---\n'));

  const result = await kubenft(topology, ['--manifests', manifests.path, '--once', ...FLAGS]);
  t.equal(result.code, 1, 'exit code 1: documents were skipped');
  const skipped = logLines(result.stderr).filter((line) => line.msg.startsWith('skipped '));
  documents.forEach(({ hazard }, index) => {
    if (!hazard) return;
    const [what, reason] = hazard;
    const named = skipped.find((line) => line.msg.startsWith(`skipped ${manifests.path} document ${index + 1} (line `) && reason.test(line.msg));
    t.ok(named, `${what}: document ${index + 1} is named with its line and reason`);
  });
  const listIndex = documents.findIndex((document) => document.text === manifestYaml(list)) + 1;
  t.ok(skipped.some((line) => line.msg.includes(`document ${listIndex} (line`) && /item 3: a string is not a Kubernetes object/.test(line.msg)), 'the List item that is no object is named');
  t.equal(skipped.length, HAZARDS.length + 1, 'nothing else was skipped');
  t.same(JSON.parse(result.stdout).services, 3, 'three Services loaded');
  for (const [vip, pod] of [['10.0.20.1', 'web-a'], ['10.0.20.2', 'web-b'], ['10.0.20.3', 'web-c']]) {
    t.same(await answers(vip), { [pod]: 6 }, `${vip} answers from ${pod}`);
  }
});

t.test('addresses the API server refuses in the slices of a valid Service: those slices are refused whole', async (t) => {
  const special: [string, string, RegExp][] = [
    ['loopback', '127.0.0.1', /is a loopback address/],
    ['unspecified', '0.0.0.0', /is the unspecified address/],
    ['metadata', '169.254.169.254', /is a link-local address/],
    ['llmc', '224.0.0.1', /is a link-local multicast address/],
    ['multicast', '239.1.2.3', /is a multicast address/],
    ['broadcast', '255.255.255.255', /is the broadcast address/],
  ];
  const slices = [
    slice('mixed', SLICE_PORTS, [{ ip: PODS[0].ipv4 }], { name: 'mixed-good' }),
    // A valid endpoint beside a refused one: the API server refuses the whole slice, and so does kubenft.
    slice('mixed', SLICE_PORTS, [{ ip: PODS[1].ipv4 }, { ip: '127.0.0.2' }], { name: 'mixed-part' }),
    ...special.map(([name, ip]) => slice('mixed', SLICE_PORTS, [{ ip }], { name: `mixed-${name}` })),
  ];
  const list = manifests.writeBeside('mixed.json', JSON.stringify({ apiVersion: 'v1', kind: 'List', items: [service('mixed', '10.0.21.1', HTTP), ...slices] }));
  const result = await kubenft(topology, ['--manifests', list, '--once', ...FLAGS]);
  t.equal(result.code, 1, 'exit code 1: slices were skipped');
  const skipped = logLines(result.stderr).map((line) => line.msg);
  t.ok(skipped.some((msg) => msg.startsWith('skipped EndpointSlice default/mixed-part: endpoints[1].addresses[0] 127.0.0.2 is a loopback address')), 'the partly invalid slice is named');
  for (const [name, , reason] of special) {
    t.ok(skipped.some((msg) => msg.startsWith(`skipped EndpointSlice default/mixed-${name}: `) && reason.test(msg)), `mixed-${name} is named with its reason`);
  }
  t.same(await answers('10.0.21.1', 12), { 'web-a': 12 }, 'the Service answers only from its valid endpoint');
});

t.test('the long-running --manifests source keeps the objects of a document that turns broken', async (t) => {
  const keep = webService('keep', '10.0.23.1', PODS[0]);
  const added = webService('added', '10.0.23.2', PODS[1]);
  manifests.write(keep);
  const agent = topology.spawn(topology.node, ['node', CLI, '--manifests', manifests.path, ...FLAGS, '--iptables-min-sync-period', '100ms', '--healthz-bind-address', '127.0.0.1:10256', '--metrics-bind-address', '127.0.0.1:10249']);
  t.teardown(() => agent.stop());
  t.ok(await eventually(async () => (await answers('10.0.23.1', 1))['web-a'] === 1), 'the Service answers');

  // The Service's document turns broken (tab indentation, on line 4) while another Service is added beside it.
  manifests.writeText([`apiVersion: v1\nkind: Service\nmetadata:\n\tname: keep\n${serviceSpec}`, ...[keep[1], ...added].map(manifestYaml)].join('---\n'));
  t.ok(await eventually(async () => (await answers('10.0.23.2', 1))['web-b'] === 1), 'the added Service answers: the rest of the file was read');
  t.ok(await eventually(async () => /skipped \S+ document 1 \(line 4\): tab characters/.test(agent.output().stderr)), 'the broken document is logged');
  t.same(await answers('10.0.23.1', 6), { 'web-a': 6 }, 'the Service of the broken document still answers');

  // Once the file reads cleanly again, what it no longer holds goes.
  manifests.write(added);
  t.ok(await eventually(async () => (await answers('10.0.23.1', 1))['web-a'] === undefined), 'the Service removed from a clean file stops answering');
  t.same(await answers('10.0.23.2', 3), { 'web-b': 3 }, 'the other Service still answers');
});

t.test('a --manifests path that does not exist: every command fails before the kernel, naming it', async (t) => {
  manifests.write(webService('kept', '10.0.60.1', PODS[0]));
  await syncOnce(topology, manifests.path, ...FLAGS);
  const loaded = await ruleset(topology.node);
  t.match(JSON.stringify(loaded), '10.0.60.1', 'a ruleset is loaded to begin with');
  for (const args of [['--once'], ['render'], ['services'], []]) {
    const result = await kubenft(topology, [...args, '--manifests', MISSING, ...FLAGS]);
    const what = `kubenft ${args.join(' ') || '(the agent)'}`;
    t.equal(result.code, 2, `${what} exits 2`);
    t.equal(result.stderr, `kubenft: --manifests ${MISSING}: no such file or directory\n`, `${what} says why`);
    t.equal(result.stdout, '', `${what} prints nothing`);
  }
  t.same(await ruleset(topology.node), loaded, 'the loaded ruleset is untouched');
  t.same(await answers('10.0.60.1', 4), { 'web-a': 4 }, 'and still serves');
});

t.test('the agent\'s --manifests directory goes away: what it held stays in force until it is back', async (t) => {
  const directory = join(manifests.path, '..', 'watched');
  mkdirSync(directory);
  const write = (objects: unknown[]) => {
    const file = new ManifestFile(objects);
    renameSync(file.path, join(directory, 'services.yaml'));
    file.remove();
  };
  write(webService('watched', '10.0.61.1', PODS[0]));
  const agent = topology.spawn(topology.node, ['node', CLI, '--manifests', directory, ...FLAGS, '--iptables-min-sync-period', '100ms', '--healthz-bind-address', '127.0.0.1:10256', '--metrics-bind-address', '127.0.0.1:10249']);
  t.teardown(() => agent.stop());
  t.ok(await eventually(async () => (await answers('10.0.61.1', 1))['web-a'] === 1), 'the Service answers');

  rmSync(directory, { recursive: true });
  t.ok(await eventually(async () => agent.output().stderr.includes(`skipped ${directory}: no such file or directory; the 2 objects read from it stay in force until it can be read again`)), 'the agent says so');
  t.same(await answers('10.0.61.1', 4), { 'web-a': 4 }, 'the Service still answers');

  // Made again, the directory is a new one: it must be watched afresh to be followed.
  mkdirSync(directory);
  write(webService('returned', '10.0.61.2', PODS[1]));
  t.ok(await eventually(async () => (await answers('10.0.61.2', 1))['web-b'] === 1), 'the Service of the directory made again answers');
  t.ok(await eventually(async () => (await answers('10.0.61.1', 1))['web-a'] === undefined), 'the Service it no longer holds is gone');
  write([...webService('returned', '10.0.61.2', PODS[1]), ...webService('added', '10.0.61.3', PODS[0])]);
  t.ok(await eventually(async () => (await answers('10.0.61.3', 1))['web-a'] === 1), 'and later changes are followed');
  t.match(agent.output().stderr, `${directory} can be read again`, 'the return is logged');
});

t.test('stdout and stderr closed early: every command exits as it would have', async (t) => {
  const broken = manifests.writeBeside('broken.yaml', 'a: 1\n---\nb: 2\n---\nc: {\n');
  const commands: [string, string[], number][] = [
    ['--once', ['--manifests', manifests.path, '--once', ...FLAGS], 0],
    // Its DNS server stops after the line is printed: the closed pipe's error arrives while it does.
    ['--once with the cluster DNS', ['--manifests', manifests.path, '--once', '--cluster-dns', '169.254.20.10', ...FLAGS], 0],
    ['render', ['render', '--manifests', manifests.path, ...FLAGS], 0],
    ['services', ['services', '--manifests', manifests.path, ...FLAGS], 0],
    ['explain', ['explain', '--from', '10.244.1.11', '--to', '10.0.60.1:80'], 0],
    ['render of a file with broken documents', ['render', '--manifests', broken, ...FLAGS], 1],
    ['--help', ['--help'], 0],
    ['--version', ['--version'], 0],
  ];
  for (const [what, args, code] of commands) {
    const child = topology.spawn(topology.node, ['node', CLI, ...args]);
    child.child.stdout!.destroy();
    child.child.stderr!.destroy();
    const exited = await Promise.race([child.exited, new Promise<undefined>((resolve) => setTimeout(resolve, 60_000))]);
    if (!exited) await child.stop();
    t.same(exited, { code, signal: null }, `${what} exits ${code}`);
  }
  // The pipelines of the issue: head reads the first line and goes; what follows meets a closed pipe.
  for (const command of [`render --manifests ${MISSING}`, `render --manifests ${broken} ${FLAGS.join(' ')} 2>&1`, `render --manifests ${manifests.path} ${FLAGS.join(' ')}`]) {
    const pipeline = await topology.exec(topology.node, ['sh', '-c', `node ${CLI} ${command} | head -1`], { timeoutMs: 60_000 });
    t.notOk(pipeline.timedOut, `kubenft ${command} | head -1 exits`);
  }
});
