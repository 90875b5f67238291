// The test bed itself, before any ruleset exists: pods must answer the client
// directly, refusals and drops must be told apart, and nothing may survive.
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import t from 'tap';
import { createTopology, EXTERNAL, withTopology, type Topology, type TopologySpec } from '../../scripts/lib/topology.js';

const SPEC: TopologySpec = {
  pods: [
    { name: 'pod-a', ipv4: '10.244.1.7', ipv6: 'fd00:10:244:1::7' },
    { name: 'pod-b', ipv4: '10.244.2.3', ipv6: 'fd00:10:244:2::3' },
    { name: 'pod-c', ipv4: '10.244.3.6', ipv6: 'fd00:10:244:3::6' },
  ],
};
const PORT = 9376;
const UNUSED_PORT = 9999;

function liveNamespaces(): string[] {
  return execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
    .split('\n')
    .map((line) => line.split(' ')[0] ?? '')
    .filter((name) => name !== '');
}

// A zombie (killed, not yet reaped by init) counts as gone.
function isRunning(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

function namespacesOf(topology: Topology): string[] {
  return [topology.node, topology.client, ...topology.pods.map((pod) => pod.ns)];
}

t.test('pods answer the client directly, and destroy() removes every namespace', async (t) => {
  const topology = await createTopology(SPEC);
  const namespaces = namespacesOf(topology);
  t.equal(new Set(namespaces).size, 5, 'five distinct namespaces');
  t.same(liveNamespaces().filter((name) => namespaces.includes(name)).sort(), [...namespaces].sort());
  try {
    for (const pod of topology.pods) {
      const targets = [
        { address: pod.ipv4!, clientAddress: EXTERNAL.clientIPv4 },
        { address: pod.ipv6!, clientAddress: EXTERNAL.clientIPv6 },
      ];
      for (const { address, clientAddress } of targets) {
        for (const protocol of ['tcp', 'udp'] as const) {
          const report = await topology.probe(topology.client, { address, port: PORT, protocol, count: 2, timeoutMs: 2000 });
          t.same(report.counts, { [pod.name]: 2 }, `${pod.name} answers ${protocol} ${address}`);
          t.match(report.results[0], { ok: true, pod: pod.name, local: address, remote: clientAddress, protocol });
        }
      }
    }

    for (const protocol of ['tcp', 'udp'] as const) {
      const address = topology.pods[1]!.ipv4!;
      const refused = await topology.probe(topology.client, { address, port: UNUSED_PORT, protocol, count: 2, timeoutMs: 2000 });
      t.same(refused.counts, { 'error:ECONNREFUSED': 2 }, `${protocol} to a closed port is refused`);
      // The service CIDR is routed into a silent sink: a drop, not a refusal.
      const dropped = await topology.probe(topology.client, { address: '10.0.0.1', port: 80, protocol, count: 1, timeoutMs: 300 });
      t.same(dropped.counts, { 'error:ETIMEDOUT': 1 }, `${protocol} into the void times out`);
    }

    const [podA, podB] = topology.pods;
    const podToPod = await topology.probe(podA!.ns, { address: podB!.ipv6!, port: PORT, protocol: 'tcp', count: 1, timeoutMs: 2000 });
    t.match(podToPod.results[0], { ok: true, pod: 'pod-b', remote: podA!.ipv6 }, 'pod to pod via the node');
    const fromNode = await topology.probe(topology.node, { address: podA!.ipv4!, port: PORT, protocol: 'tcp', count: 1, timeoutMs: 2000 });
    t.match(fromNode.results[0], { ok: true, pod: 'pod-a', remote: podA!.gatewayIPv4 }, 'node to pod from its gateway address');

    const latency = await topology.probe(topology.client, {
      address: podA!.ipv4!, port: PORT, protocol: 'tcp', count: 20, timeoutMs: 2000, latency: true, sourcePort: 40000,
    });
    t.same(latency.counts, { 'pod-a': 20 }, 'a fixed source port can be reused attempt after attempt');
    t.equal(latency.latency?.samples, 20);
    t.ok(latency.results.every((result) => result.ok && result.remotePort === 40000));
  } finally {
    await topology.destroy();
  }
  t.same(liveNamespaces().filter((name) => namespaces.includes(name)), [], 'no namespace survives destroy()');
  await topology.destroy(); // idempotent
});

t.test('the hostnames server speaks HTTP and echoes', async (t) => {
  await withTopology({ pods: [SPEC.pods[0]!] }, async (topology) => {
    const [pod] = topology.pods;
    const http = await topology.exec(topology.client, ['curl', '-sS', '--max-time', '5', `http://[${pod!.ipv6}]:${PORT}/`]);
    if (http.code === 127 || /No such file/.test(http.stderr)) t.comment('curl is not installed: HTTP not checked');
    else t.match(JSON.parse(http.stdout), { pod: 'pod-a', local: pod!.ipv6, remote: EXTERNAL.clientIPv6 });

    const echoClient = `
      const socket = require('node:net').connect(${PORT}, '${pod!.ipv4}', () => socket.write('ECHO\\nhello\\nworld\\n'));
      let received = '';
      socket.on('data', (chunk) => { received += chunk; if (received.split('\\n').length > 2) socket.end(); });
      socket.on('close', () => process.stdout.write(received));`;
    const echo = await topology.exec(topology.client, [process.execPath, '-e', echoClient], { timeoutMs: 5000 });
    t.equal(echo.stdout, 'pod-a hello\npod-a world\n');
  });
});

t.test('withTopology destroys after a failure', async (t) => {
  let namespaces: string[] = [];
  await t.rejects(
    withTopology({ pods: [SPEC.pods[0]!] }, async (topology) => {
      namespaces = namespacesOf(topology);
      throw new Error('test body failed');
    }),
    { message: 'test body failed' },
  );
  t.equal(namespaces.length, 3);
  t.same(liveNamespaces().filter((name) => namespaces.includes(name)), []);
});

/** A child process with a topology of its own; its namespaces and pod servers, once it is built. */
async function childWithTopology() {
  const moduleUrl = new URL('../../dist/scripts/lib/topology.js', import.meta.url).href;
  const script = `
    const { createTopology } = await import(${JSON.stringify(moduleUrl)});
    const topology = await createTopology({ pods: [{ ipv4: '10.244.9.9' }] });
    const pids = topology.pods.map((pod) => pod.server.pid);
    process.stdout.write(JSON.stringify({ namespaces: [topology.node, topology.client, topology.pods[0].ns], pids }) + '\\n');
    setTimeout(() => {}, 30000);`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  const [firstLine] = (await once(child.stdout!.setEncoding('utf8'), 'data')) as [string];
  return { child, ...(JSON.parse(firstLine) as { namespaces: string[]; pids: number[] }) };
}

// SIGALRM is tap's signal for a test file past its timeout.
for (const exitSignal of ['SIGTERM', 'SIGALRM'] as const) {
  t.test(`a process killed by ${exitSignal} leaves nothing behind`, async (t) => {
    const { child, namespaces, pids } = await childWithTopology();
    t.equal(liveNamespaces().filter((name) => namespaces.includes(name)).length, 3);
    process.kill(child.pid!, exitSignal);
    const [, signal] = (await once(child, 'exit')) as [number | null, string | null];
    t.equal(signal, exitSignal, 'the signal still terminates the process');
    t.same(liveNamespaces().filter((name) => namespaces.includes(name)), []);
    for (const pid of pids) t.notOk(isRunning(pid), `pod server ${pid} is gone`);
  });
}

t.test('the namespaces of a process killed by SIGKILL go with the next topology', async (t) => {
  const { child, namespaces } = await childWithTopology();
  process.kill(child.pid!, 'SIGKILL');
  await once(child, 'exit');
  t.equal(liveNamespaces().filter((name) => namespaces.includes(name)).length, 3, 'SIGKILL leaves no chance to clean up');
  await withTopology({ pods: [SPEC.pods[0]!] }, async () => {
    t.same(liveNamespaces().filter((name) => namespaces.includes(name)), [], 'the next topology deleted them');
  });
});
