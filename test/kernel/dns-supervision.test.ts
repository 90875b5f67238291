// The cluster DNS worker supervised: one that crashes, or hangs, is restarted with a backoff and
// given every name again, and the proxy's sync never waits on it for long: Services added after
// the crash or hang get their rules. The crash and the hang are made from outside, through the
// inspector (test/fixtures/inspect-worker.mjs), as a bug would make them. /readyz, CoreDNS's
// /health and /ready, and the worker metrics say what happened, watched every 25 ms.
import t from 'tap';
import { join } from 'node:path';
import { projectRoot } from '../../src/kernel/native.js';
import { createTopology, type ProcessHandle, type Topology } from '../../scripts/lib/topology.js';
import { eventually } from '../lib/eventually.js';
import { CLI, metricValue, scrape } from '../lib/kubenft.js';
import { ManifestFile, service, slice } from '../lib/manifests.js';

const LINK_LOCAL = '169.254.20.10';
const KUBE_DNS_IP = '10.0.0.10';
const INSPECT_PORT = '9229';
const INSPECT = join(projectRoot(), 'test/fixtures/inspect-worker.mjs');
const WATCH = join(projectRoot(), 'test/fixtures/watch-endpoints.mjs');
const Z = 'svc.cluster.local';
const ENDPOINTS = ['http://127.0.0.1:10256/readyz', `http://${LINK_LOCAL}:8080/health`, `http://${LINK_LOCAL}:8181/ready`];
/** The restarted worker waits a backoff, then its start, then the whole update: longer than eventually's default on a loaded machine. */
const RESTART_WAIT_MS = 40_000;

const namespace = (name: string) => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name } });
const kubeDns = [
  { ...service('kube-dns', KUBE_DNS_IP, [{ name: 'dns', port: 53, protocol: 'UDP' }]), metadata: { name: 'kube-dns', namespace: 'kube-system' } },
];
const web = (name: string, ip: string) => [service(name, ip, [{ port: 80, targetPort: 9376 }]), slice(name, [{ port: 9376 }], [{ ip: '10.244.1.7' }])];

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root to create network namespaces');
} else {
  let topology: Topology;
  let agent: ProcessHandle;
  const objects = [namespace('default'), namespace('kube-system'), ...kubeDns, ...web('first', '10.0.1.1')];
  const manifests = new ManifestFile(objects);
  t.before(async () => {
    topology = await createTopology({ pods: [] });
    agent = topology.spawn(topology.node, ['node', `--inspect=127.0.0.1:${INSPECT_PORT}`, CLI, '--manifests', manifests.path, '--cluster-dns', `${LINK_LOCAL},${KUBE_DNS_IP}`,
      '--dns-upstream', '127.0.0.1:5353', '--iptables-min-sync-period', '100ms', '--healthz-bind-address', '127.0.0.1:10256', '--metrics-bind-address', '127.0.0.1:10249']);
  });
  t.teardown(async () => {
    await agent?.stop();
    await topology?.destroy();
    manifests.remove();
  });

  const answer = async (name: string) => (await topology.exec(topology.node, ['dig', '+time=1', '+tries=1', '+short', `@${LINK_LOCAL}`, `${name}.default.${Z}`])).stdout.trim();
  const inRules = async (ip: string) => (await topology.exec(topology.node, ['nft', 'list', 'ruleset'])).stdout.includes(ip);
  const metric = async (name: string) => metricValue((await scrape(topology, 'http://127.0.0.1:10249/metrics')).body, name);
  const inWorker = async (expression: string) => {
    const result = await topology.exec(topology.node, ['node', INSPECT, INSPECT_PORT, 'cluster DNS', expression]);
    if (result.code !== 0) throw new Error(`inspect-worker: ${result.stderr}`);
  };
  /** Watches the endpoints while `during` runs; returns each one's answers, in order of change. */
  const watching = async (during: () => Promise<void>) => {
    const watcher = topology.spawn(topology.node, ['node', WATCH, ...ENDPOINTS]);
    await watcher.waitForOutput(/watching/, 10_000);
    try {
      await during();
      await new Promise((resolve) => setTimeout(resolve, 200));
    } finally {
      await watcher.stop();
    }
    const lines = watcher.output().stdout.split('\n').slice(1).filter(Boolean);
    return Object.fromEntries(ENDPOINTS.map((url) => [url, lines.filter((line) => line.startsWith(`${url} `)).map((line) => line.slice(url.length + 1))]));
  };
  const ready = async () => (await scrape(topology, ENDPOINTS[0]).catch(() => ({ status: 0 }))).status === 200;

  t.test('serving: /readyz, /health and /ready answer 200, the worker is up', async (t) => {
    t.ok(await eventually(async () => (await answer('first')) === '10.0.1.1', 20_000), `DNS answers: ${agent.output().stderr}`);
    t.ok(await eventually(ready), '/readyz is 200');
    for (const url of ENDPOINTS.slice(1)) t.same(await scrape(topology, url), { status: 200, body: 'OK' }, `${url}: CoreDNS's answer`);
    t.equal(await metric('kubenft_dns_worker_up'), 1);
    t.equal(await metric('kubenft_dns_worker_restarts_total'), 0);
  });

  t.test('a crashed worker: the sync goes on, the worker comes back with every name', async (t) => {
    const seen = await watching(async () => {
      await inWorker('setImmediate(() => { throw new Error("crashed by the test") })');
      // Two changes in a row: with a sync waiting on the dead worker, the second would never be synced.
      manifests.write([...objects, ...web('second', '10.0.1.2')]);
      t.ok(await eventually(() => inRules('10.0.1.2'), 20_000), 'a Service added after the crash has its rules');
      manifests.write([...objects, ...web('second', '10.0.1.2'), ...web('third', '10.0.1.3')]);
      t.ok(await eventually(() => inRules('10.0.1.3'), 20_000), 'and the next one too');
      t.ok(await eventually(async () => (await answer('third')) === '10.0.1.3', RESTART_WAIT_MS), 'the restarted worker answers for the Services added meanwhile');
      t.ok(await eventually(ready, RESTART_WAIT_MS));
    });
    t.match(agent.output().stderr, /cluster DNS worker exited with code 1; starting another in 0\.5s/, 'the crash and the restart are logged');
    t.equal(await metric('kubenft_dns_worker_restarts_total'), 1, 'one restart counted');
    t.equal(await metric('kubenft_dns_worker_up'), 1);
    // Each: serving, then only 503s (down, starting, maybe not yet synced), then serving again.
    for (const [url, down] of [[ENDPOINTS[0], /^503 dns: cluster DNS worker down \(exited with code 1\)$/], [ENDPOINTS[1], /^503 cluster DNS worker down: exited with code 1$/],
      [ENDPOINTS[2], /^503 cluster DNS worker down \(exited with code 1\)$/]] as const) {
      const answers = seen[url];
      const ok = url.endsWith('/readyz') ? '200 ok' : '200 OK';
      t.ok(answers.length >= 3 && answers[0] === ok && answers.at(-1) === ok && answers.slice(1, -1).every((seen) => seen.startsWith('503 ')) && answers.some((seen) => down.test(seen)),
        `${url} went 503, saying why, and back: ${answers.join(' | ')}`);
    }
  });

  t.test('a hung worker: taken for hung once an update is not applied in time, restarted; the rules keep syncing', async (t) => {
    await inWorker('for (;;) {}');
    manifests.write([...objects, ...web('fourth', '10.0.1.4')]);
    t.ok(await eventually(() => inRules('10.0.1.4'), 20_000), 'a Service added while the worker hangs has its rules');
    manifests.write([...objects, ...web('fourth', '10.0.1.4'), ...web('fifth', '10.0.1.5')]);
    t.ok(await eventually(() => inRules('10.0.1.5'), 30_000), 'the next one too: the sync waited at most the update\'s timeout');
    t.ok(await eventually(async () => (await answer('fifth')) === '10.0.1.5', RESTART_WAIT_MS), 'the restarted worker answers for it');
    t.match(agent.output().stderr, /cluster DNS worker it did not (apply an update of \d+ services within [\d.]+s|answer for 10s); starting another in 1s/, 'the hang is logged, the second restart backs off longer');
    t.equal(await metric('kubenft_dns_worker_restarts_total'), 2);
    t.ok(await eventually(ready));
  });
}
