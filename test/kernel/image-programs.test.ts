// The image's runtime stage provides every program kubenft executes. The agent runs under strace
// in a node namespace in each of its modes (the agent with --cluster-dns and --ingress through an
// endpoint change, --proxy-mode=iptables, services and explain, --cleanup); every program it
// executed is mapped to the Debian package owning it (dpkg -S, on this Debian 12 machine, the
// image's distribution), and each must be one the Dockerfile's runtime stage installs, or node.
// The default certificate is made in-process: openssl is not among them.
import t from 'tap';
import { readFileSync, realpathSync, rmSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { projectRoot } from '../../src/kernel/native.js';
import { createTopology, type Topology } from '../../scripts/lib/topology.js';
import { eventually } from '../lib/eventually.js';
import { CLI } from '../lib/kubenft.js';
import { ManifestFile, service, slice } from '../lib/manifests.js';
import { OUR_CLASS, ingress } from '../lib/ingress-manifests.js';

/** The packages the Dockerfile's last stage installs with apt-get. */
function runtimePackages(): string[] {
  const dockerfile = readFileSync(join(projectRoot(), 'Dockerfile'), 'utf8');
  const runtime = dockerfile.slice(dockerfile.lastIndexOf('\nFROM '));
  const install = /apt-get install[^\n]*\\\n([\s\S]*?)&&/.exec(runtime.replace(/\\\n\s*/g, '\\\n'))?.[1] ?? '';
  return install.replace(/\\\n/g, ' ').split(/\s+/).filter((word) => word && !word.startsWith('-'));
}

/** The package owning a program: dpkg knows it by the path it installed, /bin or /usr/bin (merged /usr), behind symlinks. */
function owner(path: string): string {
  const real = realpathSync(path);
  for (const candidate of new Set([path, real, real.replace(/^\/usr/, ''), `/usr${real}`])) {
    try {
      return execFileSync('dpkg', ['-S', candidate], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).split(':')[0];
    } catch { /* not under that name */ }
  }
  return `no package owns ${path}`;
}

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root to create network namespaces');
} else {
  let topology: Topology;
  const traces: string[] = [];
  const udp = (endpoints: string[]) => [service('dns', '10.0.1.53', [{ name: 'dns', port: 53, targetPort: 5353, protocol: 'UDP' }]), slice('dns', [{ name: 'dns', port: 5353, protocol: 'UDP' }], endpoints.map((ip) => ({ ip })))];
  const objects = [
    { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'default' } }, OUR_CLASS,
    service('web', '10.0.1.1', [{ name: 'http', port: 80, targetPort: 9376 }]), slice('web', [{ name: 'http', port: 9376 }], [{ ip: '10.244.1.7' }]),
    ingress('web', [{ host: 'web.example.com', paths: [{ path: '/', pathType: 'Prefix', service: 'web' }] }]),
  ];
  const manifests = new ManifestFile([...objects, ...udp(['10.244.1.7', '10.244.1.8'])]);
  t.before(async () => {
    topology = await createTopology({ pods: [] });
  });
  t.teardown(async () => {
    await topology?.destroy();
    manifests.remove();
    for (const trace of traces) rmSync(trace, { force: true });
  });

  /** argv under strace, following children; the trace file's path. */
  const traced = (argv: string[]) => {
    const trace = join(tmpdir(), `kubenft-exec-${process.pid}-${traces.length}.trace`);
    traces.push(trace);
    return ['strace', '-f', '-qq', '-e', 'trace=execve', '-e', 'signal=none', '-o', trace, ...argv];
  };
  const kubenft = (...args: string[]) => traced(['node', CLI, '--healthz-bind-address', '', '--metrics-bind-address', '', ...args]);

  t.test('every program executed comes with the image', async (t) => {
    const agent = topology.spawn(topology.node, kubenft('--manifests', manifests.path, '--iptables-min-sync-period', '100ms', '--cluster-dns', '169.254.20.10',
      '--dns-upstream', '127.0.0.1:5353', '--ingress', '--ingress-dataplane', 'builtin', '--ingress-workers', '1', '--ingress-http-address', '127.0.0.1:18080', '--ingress-https-address', '127.0.0.1:18443'));
    // strace does not pass signals on: the agent (its child) is stopped by its own pid.
    const stopAgent = async () => {
      for (const pid of readFileSync(`/proc/${agent.pid}/task/${agent.pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean)) process.kill(Number(pid), 'SIGTERM');
      await agent.exited;
    };
    try {
      const started = await eventually(async () => /ingress proxy listening/.test(agent.output().stderr) && /cluster DNS serving/.test(agent.output().stderr), 30_000);
      t.ok(started, started ? 'the agent serves DNS and the ingress' : agent.output().stderr);
      // A UDP endpoint gone: the agent deletes its conntrack flows.
      manifests.write([...objects, ...udp(['10.244.1.7'])]);
      t.ok(await eventually(async () => (readFileSync(traces[0], 'utf8')).includes('conntrack'), 20_000), 'conntrack ran');
    } finally {
      await stopAgent().catch(() => agent.stop());
    }
    for (const argv of [
      kubenft('--manifests', manifests.path, '--once', '--proxy-mode', 'iptables'),
      kubenft('services', '--proxy-mode', 'iptables'),
      kubenft('--manifests', manifests.path, '--once'),
      kubenft('services'),
      kubenft('explain', '--from', '10.244.1.50', '--to', '10.0.1.1:80'),
      kubenft('--cleanup'),
    ]) {
      const result = await topology.exec(topology.node, argv, { timeoutMs: 120_000 });
      t.equal(result.code, 0, result.code === 0 ? argv.slice(argv.indexOf(CLI) + 5).join(' ') : result.stderr);
    }
    const executed = new Set(traces.flatMap((trace) => [...readFileSync(trace, 'utf8').matchAll(/execve\("([^"]+)", .*\) = 0$/gm)].map((match) => match[1])));
    const programs = [...executed].filter((path) => realpathSync(path) !== realpathSync(process.execPath));
    t.ok(programs.some((path) => path.endsWith('/ip')) && programs.some((path) => path.endsWith('/nft')) && programs.some((path) => /iptables/.test(path)), `the modes ran their tools: ${programs.join(' ')}`);
    const installed = runtimePackages();
    t.ok(installed.includes('nftables'), `the Dockerfile's runtime packages were read: ${installed.join(' ')}`);
    for (const path of programs) t.ok(installed.includes(owner(path)), `${path} (${owner(path)}) is installed by the runtime stage`);
    t.notOk(programs.some((path) => path.endsWith('/openssl')), 'openssl is not run');
  });
}
