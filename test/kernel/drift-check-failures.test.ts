// A drift check that cannot be made is counted (kubenft_drift_check_failures_total) and logged as a
// warning, not only at debug: while it fails, changes to the rules by others go unnoticed. The
// failure is a real one: the running agent's open-files limit is lowered (prlimit) under its
// current count, so the netlink socket each check opens cannot be created.
import t from 'tap';
import { createTopology, type ProcessHandle, type Topology } from '../../scripts/lib/topology.js';
import { eventually } from '../lib/eventually.js';
import { CLI, metricValue, scrape } from '../lib/kubenft.js';
import { ManifestFile, service, slice } from '../lib/manifests.js';

const METRICS = 'http://127.0.0.1:10249/metrics';
const FAILURES = 'kubenft_drift_check_failures_total';

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root to create network namespaces');
} else {
  let topology: Topology;
  let agent: ProcessHandle | undefined;
  const manifests = new ManifestFile([service('web', '10.0.1.1', [{ port: 80, targetPort: 9376 }]), slice('web', [{ port: 9376 }], [{ ip: '10.244.1.7' }])]);
  t.before(async () => {
    topology = await createTopology({ pods: [] });
  });
  t.teardown(async () => {
    await agent?.stop();
    await topology?.destroy();
    manifests.remove();
  });
  const failures = async () => metricValue((await scrape(topology, METRICS)).body, FAILURES);
  const prlimit = async (limit: string) => {
    const result = await topology.exec(topology.node, ['prlimit', `--pid=${agent!.pid}`, `--nofile=${limit}`]);
    if (result.code !== 0) throw new Error(`prlimit: ${result.stderr}`);
  };

  t.test('failed drift checks are counted and warned about', async (t) => {
    agent = topology.spawn(topology.node, ['node', CLI, '--manifests', manifests.path, '--healthz-bind-address', '', '--metrics-bind-address', '127.0.0.1:10249', '--logging-format=json']);
    t.ok(await eventually(async () => (await failures().catch(() => NaN)) === 0), `the agent is up, no failure counted: ${agent.output().stderr}`);
    const [soft, hard] = (await topology.exec(topology.node, ['prlimit', `--pid=${agent.pid}`, '--nofile', '--raw', '--noheadings', '-o', 'SOFT,HARD'])).stdout.trim().split(/\s+/);
    // The fewest descriptors the agent holds at rest: the scrape's keep-alive connection (up to 5 s
    // in Node's server) and a sync's sockets come and go, and a limit above them would let a drift
    // check through once they close.
    const openCounts: number[] = [];
    for (let sample = 0; sample < 14; sample++) {
      openCounts.push((await topology.exec(topology.node, ['ls', `/proc/${agent.pid}/fd`])).stdout.trim().split('\n').length);
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    await prlimit(`${Math.min(...openCounts) - 1}:${hard}`);
    t.ok(await eventually(async () => /drift check failed/.test(agent!.output().stderr), 10_000), 'a warning is logged');
    await prlimit(`${soft}:${hard}`);
    const counted = await failures();
    t.ok(counted >= 1, `counted (${counted})`);
    t.match(agent.output().stderr, /"level":"warn"[^\n]*drift check failed[^\n]*(Too many open files|EMFILE)/, 'a warning naming the cause');
  });
}
