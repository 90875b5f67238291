// Two ways a one-off command used to go wrong, in a throwaway namespace: a --manifests path that
// does not exist was read as empty (and --once emptied the node's rules), and a reader closing the
// pipe early (`| head -1`) left kubenft hanging. Now a missing path fails every command before
// anything reaches the kernel, a path that goes away under the agent keeps what it held until it
// is back, and every command exits as it would with its stdout and stderr closed.
import t from 'tap';
import { mkdirSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { createTopology, type Topology } from '../scripts/lib/topology.js';
import { eventually } from './lib/eventually.js';
import { CLI, kubenft, syncOnce } from './lib/kubenft.js';
import { ManifestFile, service, slice } from './lib/manifests.js';

const PODS = [{ name: 'web-a', ipv4: '10.244.1.11' }, { name: 'web-b', ipv4: '10.244.2.12' }];
const HTTP = [{ name: 'http', port: 80, targetPort: 9376 }];
const webService = (name: string, vip: string, pod: { ipv4: string }) => [service(name, vip, HTTP), slice(name, [{ name: 'http', port: 9376 }], [{ ip: pod.ipv4 }])];
const FLAGS = ['--hostname-override', 'node-1'];
const MISSING = '/does-not-exist/manifests.yaml';

let topology: Topology;
const manifests = new ManifestFile(webService('kept', '10.0.60.1', PODS[0]));
t.before(async () => {
  delete process.env.NODE_OPTIONS;
  topology = await createTopology({ pods: PODS });
});
t.teardown(async () => {
  await topology?.destroy();
  manifests.remove();
});

const answers = async (vip: string, count = 4) => (await topology.probe(topology.client, { address: vip, port: 80, protocol: 'tcp', count, timeoutMs: 1000 })).counts;
const ruleset = async () => (await topology.exec(topology.node, ['nft', 'list', 'ruleset'])).stdout;

t.test('a --manifests path that does not exist: every command fails before the kernel, naming it', async (t) => {
  await syncOnce(topology, manifests.path, ...FLAGS);
  const loaded = await ruleset();
  t.match(loaded, '10.0.60.1', 'a ruleset is loaded to begin with');
  for (const args of [['--once'], ['render'], ['services'], []]) {
    const result = await kubenft(topology, [...args, '--manifests', MISSING, ...FLAGS]);
    const what = `kubenft ${args.join(' ') || '(the agent)'}`;
    t.equal(result.code, 2, `${what} exits 2`);
    t.equal(result.stderr, `kubenft: --manifests ${MISSING}: no such file or directory\n`, `${what} says why`);
    t.equal(result.stdout, '', `${what} prints nothing`);
  }
  t.equal(await ruleset(), loaded, 'the loaded ruleset is untouched');
  t.same(await answers('10.0.60.1'), { 'web-a': 4 }, 'and still serves');
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
  t.same(await answers('10.0.61.1'), { 'web-a': 4 }, 'the Service still answers');

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
