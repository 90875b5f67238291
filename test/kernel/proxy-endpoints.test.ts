// kube-proxy's /proxyMode and /configz on the metrics server, from the running agent: the mode as
// plain text, and {"kubeproxy.config.k8s.io": {...}} in the shape kube-proxy prints its internal
// configuration (Go field names, durations as Go prints them), filled from the flags given.
import t from 'tap';
import { createTopology, type ProcessHandle, type Topology } from '../../scripts/lib/topology.js';
import { eventually } from '../lib/eventually.js';
import { CLI } from '../lib/kubenft.js';
import { ManifestFile, service } from '../lib/manifests.js';

// kube-proxy's internal KubeProxyConfiguration (pkg/proxy/apis/config/types.go), field by field.
const KUBE_PROXY_FIELDS = ['Linux', 'Windows', 'FeatureGates', 'ClientConnection', 'Logging', 'HostnameOverride', 'BindAddress', 'HealthzBindAddress',
  'MetricsBindAddress', 'BindAddressHardFail', 'EnableProfiling', 'ShowHiddenMetricsForVersion', 'Mode', 'IPTables', 'IPVS', 'Winkernel', 'NFTables',
  'DetectLocalMode', 'DetectLocal', 'NodePortAddresses', 'SyncPeriod', 'MinSyncPeriod', 'ConfigSyncPeriod'];

interface Answer { status: number; type: string | null; nosniff: string | null; body: string }

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root to create network namespaces');
} else {
  let topology: Topology;
  const manifests = new ManifestFile([service('web', '10.0.1.1', [{ port: 80 }])]);
  t.before(async () => {
    topology = await createTopology({ pods: [] });
  });
  t.teardown(async () => {
    await topology?.destroy();
    manifests.remove();
  });
  const get = async (path: string): Promise<Answer> => {
    const script = `const r = await fetch('http://127.0.0.1:10249${path}'); console.log(JSON.stringify({ status: r.status, type: r.headers.get('content-type'), nosniff: r.headers.get('x-content-type-options'), body: await r.text() }));`;
    const result = await topology.exec(topology.node, ['node', '--input-type=module', '-e', script]);
    if (result.code !== 0) throw new Error(result.stderr);
    return JSON.parse(result.stdout) as Answer;
  };

  for (const mode of ['nftables', 'iptables']) {
    t.test(`--proxy-mode=${mode}`, async (t) => {
      const agent: ProcessHandle = topology.spawn(topology.node, ['node', CLI, '--manifests', manifests.path, '--proxy-mode', mode, '--healthz-bind-address', '',
        '--metrics-bind-address', '127.0.0.1:10249', '--iptables-sync-period', '45s', '--cluster-cidr', '10.244.0.0/16', '--conntrack-max-per-core', '0']);
      t.teardown(() => agent.stop());
      t.ok(await eventually(async () => (await get('/proxyMode').catch(() => undefined))?.status === 200), `the metrics server is up: ${agent.output().stderr}`);
      t.same(await get('/proxyMode'), { status: 200, type: 'text/plain; charset=utf-8', nosniff: 'nosniff', body: mode }, 'the mode, as kube-proxy writes it (no newline)');
      const configz = await get('/configz');
      t.equal(configz.status, 200);
      t.equal(configz.type, 'application/json');
      const body = JSON.parse(configz.body) as Record<string, Record<string, unknown>>;
      t.same(Object.keys(body), ['kubeproxy.config.k8s.io']);
      const config = body['kubeproxy.config.k8s.io'];
      t.same(Object.keys(config).sort(), [...KUBE_PROXY_FIELDS].sort(), 'kube-proxy\'s fields, under their Go names');
      t.match(config, {
        Mode: mode, SyncPeriod: '45s', MinSyncPeriod: '1s', ConfigSyncPeriod: '15m0s', MetricsBindAddress: '127.0.0.1:10249', HealthzBindAddress: '',
        DetectLocalMode: 'ClusterCIDR', DetectLocal: { ClusterCIDRs: ['10.244.0.0/16'] },
        Linux: { Conntrack: { MaxPerCore: 0, TCPEstablishedTimeout: '24h0m0s', TCPCloseWaitTimeout: '1h0m0s' }, OOMScoreAdj: -999 },
      }, 'the running configuration, flags included');
    });
  }
}
