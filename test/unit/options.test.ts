// kube-proxy's command line and KubeProxyConfiguration, as kubenft reads them: every accepted
// flag and field lands where it should, every rejection names what was wrong. Pure: no kernel.
import t from 'tap';
import { stringify } from 'yaml';
import { OptionsError } from '../../src/capability.js';
import { type AgentOptions, helpText, kubeProxyConfiguration, kubeProxyConfigurationYAML, parseOptions } from '../../src/cli/options.js';
import { formatDuration, parseDuration } from '../../src/settings.js';
import { CAPABILITIES } from '../../src/agent/capabilities.js';
import { CAPABILITY_SETTINGS } from '../../src/agent/capability-settings.js';

const HEADER = { apiVersion: 'kubeproxy.config.k8s.io/v1alpha1', kind: 'KubeProxyConfiguration' };

/** parseOptions with --config reading `files` instead of the disk. */
function parseWith(files: Record<string, string | object>, argv: string[]): AgentOptions {
  return parseOptions(argv, (path) => {
    const content = files[path];
    if (content === undefined) throw new Error(`ENOENT: no such file '${path}'`);
    return typeof content === 'string' ? content : stringify(content);
  });
}

const fromConfig = (fields: object, argv: string[] = []) => parseWith({ 'kp.yaml': { ...HEADER, ...fields } }, ['--config', 'kp.yaml', ...argv]);

const valueAt = (options: AgentOptions, path: string): unknown =>
  path.split('.').reduce<unknown>((value, key) => (value as Record<string, unknown>)[key], options);

const DEFAULTS: AgentOptions = {
  command: 'run',
  proxyMode: 'nftables',
  once: false,
  json: false,
  iptablesBackend: 'auto',
  inspect: { protocol: 'tcp', via: 'prerouting' },
  serviceTables: 16,
  socketLb: { enabled: false, hostOnly: false, pinDir: '/sys/fs/bpf/kubenft' },
  cleanup: false,
  initOnly: false,
  clusterCIDRs: [],
  serviceCIDRs: [],
  nodePortAddresses: [],
  masqueradeAll: false,
  masqueradeBit: 14,
  detectLocalMode: 'ClusterCIDR',
  healthzBindAddress: '0.0.0.0:10256',
  metricsBindAddress: '127.0.0.1:10249',
  bindAddress: '0.0.0.0',
  syncPeriodMs: 30_000,
  minSyncPeriodMs: 1_000,
  oomScoreAdj: -999,
  featureGates: {},
  verbosity: 0,
  logFormat: 'text',
  conntrack: {
    maxPerCore: 32768, min: 131072, tcpEstablishedTimeoutMs: 86_400_000, tcpCloseWaitTimeoutMs: 3_600_000, tcpBeLiberal: false, udpTimeoutMs: 0, udpStreamTimeoutMs: 0,
  },
  dns: { addresses: [], zone: 'cluster.local', ttl: 5, pods: 'insecure' },
  ingress: {
    enabled: false, className: 'kubenft', httpAddress: '0.0.0.0:80', httpsAddress: '0.0.0.0:443',
    maxBodyBytes: 104_857_600, maxHeaderBytes: 16_384, clientTimeoutMs: 60_000, backendTimeoutMs: 60_000, connectTimeoutMs: 5_000, workers: 0, statusAddresses: [],
    dataplane: undefined, haproxyDir: '/run/kubenft/ingress-haproxy',
  },
  gateway: {
    enabled: false, className: 'kubenft', httpAddress: '0.0.0.0:80', httpsAddress: '0.0.0.0:443', workers: 0,
    maxBodyBytes: 104_857_600, maxHeaderBytes: 16_384, clientTimeoutMs: 60_000, backendTimeoutMs: 60_000, connectTimeoutMs: 5_000,
    dataplane: 'builtin', haproxyDir: '/run/kubenft/gateway-haproxy',
  },
};

t.test('gateway flags', async (t) => {
  const options = parseOptions(['--gateway', '--gateway-class', 'mine', '--gateway-http-address', '10.0.0.1:8080', '--gateway-https-address', '', '--gateway-workers', '2']);
  t.same(options.gateway, { ...DEFAULTS.gateway, enabled: true, className: 'mine', httpAddress: '10.0.0.1:8080', httpsAddress: undefined, workers: 2 });
  t.throws(() => parseOptions(['--gateway', '--ingress']), /--ingress and --gateway both listen on 0\.0\.0\.0:80/, 'the ingress and the Gateway cannot share a listener');
  t.same(parseOptions(['--gateway', '--ingress', '--gateway-http-address', '0.0.0.0:8080', '--gateway-https-address', '0.0.0.0:8443']).gateway.httpAddress, '0.0.0.0:8080', 'addresses of their own');
  t.throws(() => parseOptions(['--gateway-class', '']), /must not be empty/);
  t.same(parseOptions(['--gateway', '--gateway-dataplane', 'haproxy', '--gateway-haproxy-dir', '/run/gw']).gateway, { ...DEFAULTS.gateway, enabled: true, dataplane: 'haproxy', haproxyDir: '/run/gw' });
  t.throws(() => parseOptions(['--gateway-dataplane', 'envoy']), /--gateway-dataplane.*must be haproxy or builtin/);
});

t.test('cluster DNS flags', async (t) => {
  const { dns } = parseOptions(['--cluster-dns', '169.254.20.10,10.96.0.10', '--cluster-domain', 'Example.Org.', '--dns-upstream', '192.0.2.1,[fd00::1]:5353',
    '--dns-ttl', '30', '--dns-pods', 'disabled']);
  t.same(dns, { addresses: ['169.254.20.10', '10.96.0.10'], zone: 'example.org', ttl: 30, pods: 'disabled', upstreams: [{ address: '192.0.2.1', port: 53 }, { address: 'fd00::1', port: 5353 }] });
  t.throws(() => parseOptions(['--cluster-dns', 'nameserver']), /not an IP address/);
  t.throws(() => parseOptions(['--dns-pods', 'verified']), /insecure or disabled/);
  t.throws(() => parseOptions(['--dns-ttl', '4000']), /0 to 3600/);
  t.throws(() => parseOptions(['--cluster-domain', 'a b']), /domain name/);
  const probes = (...args: string[]) => { const { healthAddress, readyAddress } = parseOptions(['--cluster-dns', '169.254.20.10', ...args]).dns; return { healthAddress, readyAddress }; };
  t.same(probes(), { healthAddress: undefined, readyAddress: undefined }, 'by default on the first address (the dataplane fills them in)');
  t.same(probes('--dns-health-address', ':8080', '--dns-ready-address', ''), { healthAddress: ':8080', readyAddress: '' }, 'CoreDNS\'s :PORT, and off');
  t.same(probes('--dns-health-address', '10.0.0.1', '--dns-ready-address', '[fd00::1]:9181'), { healthAddress: '10.0.0.1:8080', readyAddress: '[fd00::1]:9181' });
  t.throws(() => probes('--dns-health-address', 'localhost:8080'), /not IP or IP:port/);
  t.throws(() => probes('--dns-ready-address', ':70000'), /port must be 1-65535/);
  t.throws(() => parseOptions(['--dns-health-address', ':8080']), /--dns-health-address needs --cluster-dns/, 'not accepted and ignored');
});

t.test('no flags: kube-proxy\'s defaults, in nftables mode', async (t) => {
  t.same(parseOptions([]), DEFAULTS);
});

// [argv, where in AgentOptions, expected value]
const FLAG_CASES: [string[], string, unknown][] = [
  [['render'], 'command', 'render'],
  [['-h'], 'command', 'help'],
  [['--help'], 'command', 'help'],
  [['--version'], 'command', 'version'],
  [['--manifests', 'examples/'], 'manifests', 'examples/'],
  [['--once'], 'once', true],
  [['render', '--json'], 'json', true],
  [['services'], 'command', 'services'],
  [['services', 'default/web', '--json'], 'inspect.service', 'default/web'],
  [['explain', '--from', '10.244.1.5', '--to', '10.0.0.10:80'], 'inspect.to', '10.0.0.10:80'],
  [['explain', '--from=10.244.1.5:4000', '--to', '10.0.0.10:80'], 'inspect.from', '10.244.1.5:4000'],
  [['explain', '--from', '10.244.1.5', '--to', '10.0.0.10:53', '--proto', 'udp'], 'inspect.protocol', 'udp'],
  [['explain', '--from', '10.244.1.5', '--to', '10.0.0.10:53', '--via=output'], 'inspect.via', 'output'],
  [['--iptables-backend=legacy'], 'iptablesBackend', 'legacy'],
  [['--iptables-backend', 'nft'], 'iptablesBackend', 'nft'],
  [['--service-cidr=10.96.0.0/12,fd00:96::/108'], 'serviceCIDRs', ['10.96.0.0/12', 'fd00:96::/108']],
  [['--service-cidr=10.96.0.0/12', '--service-cidr', '10.100.0.0/16'], 'serviceCIDRs', ['10.96.0.0/12', '10.100.0.0/16']],
  [['--service-cidr=10.96.0.1/12'], 'serviceCIDRs', ['10.96.0.0/12']],
  [['--write-config-to', '/tmp/kp.yaml'], 'writeConfigTo', '/tmp/kp.yaml'],
  [['--socket-lb'], 'socketLb.enabled', true],
  [['--socket-lb-cgroup', '/sys/fs/cgroup/kubepods'], 'socketLb.cgroup', '/sys/fs/cgroup/kubepods'],
  [['--socket-lb-host-only'], 'socketLb.hostOnly', true],
  [['--socket-lb-pin-dir=/sys/fs/bpf/other'], 'socketLb.pinDir', '/sys/fs/bpf/other'],
  [['--cleanup'], 'cleanup', true],
  [['--cleanup=false'], 'cleanup', false],
  [['--init-only'], 'initOnly', true],
  [['--proxy-mode=iptables'], 'proxyMode', 'iptables'],
  [['--proxy-mode', 'nftables'], 'proxyMode', 'nftables'],
  [['--proxy-mode='], 'proxyMode', 'nftables'],
  [['--kubeconfig=/var/lib/kube-proxy/kubeconfig.conf'], 'kubeconfig', '/var/lib/kube-proxy/kubeconfig.conf'],
  [['--master', 'https://10.0.0.1:6443'], 'master', 'https://10.0.0.1:6443'],
  [['--kube-api-content-type=application/json'], 'command', 'run'],
  [['--kube-api-content-type='], 'command', 'run'],
  [['--kube-api-qps=12.5'], 'kubeApiQps', 12.5],
  [['--kube-api-burst', '40'], 'kubeApiBurst', 40],
  [['--hostname-override', ' Node-1 '], 'hostnameOverride', 'node-1'],
  [['--bind-address=::'], 'bindAddress', '::'],
  [['--healthz-bind-address=0.0.0.0:9256'], 'healthzBindAddress', '0.0.0.0:9256'],
  [['--healthz-bind-address=10.0.0.5'], 'healthzBindAddress', '10.0.0.5:10256'],
  [['--healthz-bind-address=::'], 'healthzBindAddress', '[::]:10256'],
  [['--healthz-bind-address='], 'healthzBindAddress', ''],
  [['--metrics-bind-address=[::1]:9249'], 'metricsBindAddress', '[::1]:9249'],
  [['--metrics-bind-address', '0.0.0.0'], 'metricsBindAddress', '0.0.0.0:10249'],
  [['--metrics-bind-address='], 'metricsBindAddress', ''],
  [['--feature-gates=InOrderInformers=true,ContextualLogging=false'], 'featureGates', { InOrderInformers: true, ContextualLogging: false }],
  [['--feature-gates=SidecarContainers=true', '--feature-gates=PreferSameTrafficDistribution=false,InOrderInformers=true'], 'featureGates', { SidecarContainers: true, PreferSameTrafficDistribution: false, InOrderInformers: true }],
  [['--masquerade-all'], 'masqueradeAll', true],
  [['--iptables-masquerade-bit=0'], 'masqueradeBit', 0],
  [['--iptables-masquerade-bit', '31'], 'masqueradeBit', 31],
  [['--iptables-sync-period=1m0s'], 'syncPeriodMs', 60_000],
  [['--iptables-sync-period=1h30m'], 'syncPeriodMs', 5_400_000],
  [['--iptables-min-sync-period=500ms'], 'minSyncPeriodMs', 500],
  [['--iptables-min-sync-period=0'], 'minSyncPeriodMs', 0],
  [['--detect-local-mode=NodeCIDR'], 'detectLocalMode', 'NodeCIDR'],
  [['--detect-local-mode', 'ClusterCIDR'], 'detectLocalMode', 'ClusterCIDR'],
  [['--cluster-cidr=10.244.0.0/16'], 'clusterCIDRs', ['10.244.0.0/16']],
  [['--cluster-cidr', '10.244.0.0/16, fd00:10:244::/56'], 'clusterCIDRs', ['10.244.0.0/16', 'fd00:10:244::/56']],
  [['--cluster-cidr='], 'clusterCIDRs', []],
  [['--nodeport-addresses=primary'], 'nodePortAddresses', ['primary']],
  [['--nodeport-addresses=primary,localhost'], 'nodePortAddresses', ['primary', 'localhost']],
  [['--nodeport-addresses=all'], 'nodePortAddresses', ['all']],
  [['--nodeport-addresses=10.0.0.0/8', '--nodeport-addresses', 'localhost,fd00::/64'], 'nodePortAddresses', ['10.0.0.0/8', 'localhost', 'fd00::/64']],
  [['--oom-score-adj=-500'], 'oomScoreAdj', -500],
  [['--conntrack-max-per-core=0'], 'conntrack.maxPerCore', 0],
  [['--conntrack-min', '65536'], 'conntrack.min', 65536],
  [['--conntrack-tcp-timeout-established=12h'], 'conntrack.tcpEstablishedTimeoutMs', 43_200_000],
  [['--conntrack-tcp-timeout-close-wait=0s'], 'conntrack.tcpCloseWaitTimeoutMs', 0],
  [['--conntrack-tcp-be-liberal'], 'conntrack.tcpBeLiberal', true],
  [['--conntrack-udp-timeout=30s'], 'conntrack.udpTimeoutMs', 30_000],
  [['--conntrack-udp-timeout-stream=2m'], 'conntrack.udpStreamTimeoutMs', 120_000],
  [['--config-sync-period=15m'], 'command', 'run'],
  [['-v', '4'], 'verbosity', 4],
  [['-v=5'], 'verbosity', 5],
  [['-v6'], 'verbosity', 6],
  [['--v=2'], 'verbosity', 2],
  [['--v', '3'], 'verbosity', 3],
  // pflag's spellings kube-proxy users have in their manifests
  [['--cluster_cidr=10.0.0.0/8'], 'clusterCIDRs', ['10.0.0.0/8']],
  [['--masquerade-all=True'], 'masqueradeAll', true],
  [['--masquerade-all=0'], 'masqueradeAll', false],
  [['--hostname-override', '--weird'], 'hostnameOverride', '--weird'],
  // accepted at their default value
  [['--bind-address-hard-fail=false'], 'command', 'run'],
  [['--profiling=false'], 'command', 'run'],
  [['--show-hidden-metrics-for-version='], 'command', 'run'],
  [['--proxy-port-range='], 'command', 'run'],
  [['--iptables-localhost-nodeports=true'], 'command', 'run'],
  [['--pod-bridge-interface='], 'command', 'run'],
  [['--pod-interface-name-prefix='], 'command', 'run'],
  [['--logging-format=text'], 'logFormat', 'text'],
  [['--logging-format=json'], 'logFormat', 'json'],
  [['--logging-format='], 'logFormat', 'text'],
  [['--vmodule='], 'command', 'run'],
  [['--log-flush-frequency=5s'], 'command', 'run'],
  [['--ipvs-sync-period=30s', '--ipvs-min-sync-period=0s', '--ipvs-scheduler=', '--ipvs-exclude-cidrs=', '--ipvs-strict-arp=false'], 'command', 'run'],
  [['--ipvs-tcp-timeout=0s', '--ipvs-tcpfin-timeout=0s', '--ipvs-udp-timeout=0s'], 'command', 'run'],
];

t.test('every flag lands in AgentOptions', async (t) => {
  for (const [argv, path, expected] of FLAG_CASES) {
    t.same(valueAt(parseOptions(argv), path), expected, `${argv.join(' ')} → ${path}`);
  }
});

t.test('the last of a repeated flag wins; -- ends the flags', async (t) => {
  t.equal(parseOptions(['--iptables-masquerade-bit=3', '--iptables-masquerade-bit=4']).masqueradeBit, 4);
  t.throws(() => parseOptions(['--', '--once']), /unknown command "--once"/);
  t.equal(parseOptions(['--', 'render']).command, 'render');
  t.throws(() => parseOptions(['services', 'default/web', 'extra']), /services: unexpected "extra"/);
  t.throws(() => parseOptions(['explain', 'default/web']), /explain: unexpected "default\/web"/);
});

// [fields of a KubeProxyConfiguration, where in AgentOptions, expected value]
const FIELD_CASES: [object, string, unknown][] = [
  [{ mode: 'iptables' }, 'proxyMode', 'iptables'],
  [{ mode: 'nftables' }, 'proxyMode', 'nftables'],
  [{ clusterCIDR: '10.244.0.0/16,fd00:10:244::/56' }, 'clusterCIDRs', ['10.244.0.0/16', 'fd00:10:244::/56']],
  [{ nodePortAddresses: ['10.0.0.0/8', '192.168.0.0/16'] }, 'nodePortAddresses', ['10.0.0.0/8', '192.168.0.0/16']],
  [{ nodePortAddresses: ['primary'] }, 'nodePortAddresses', ['primary']],
  [{ detectLocalMode: 'NodeCIDR' }, 'detectLocalMode', 'NodeCIDR'],
  [{ detectLocal: { bridgeInterface: '', interfaceNamePrefix: '' } }, 'detectLocalMode', 'ClusterCIDR'],
  [{ nftables: { masqueradeBit: 5 } }, 'masqueradeBit', 5],
  [{ nftables: { masqueradeBit: 0 } }, 'masqueradeBit', 0],
  [{ nftables: { masqueradeAll: true } }, 'masqueradeAll', true],
  [{ nftables: { syncPeriod: '45s' } }, 'syncPeriodMs', 45_000],
  [{ nftables: { minSyncPeriod: '250ms' } }, 'minSyncPeriodMs', 250],
  [{ mode: 'iptables', iptables: { masqueradeBit: 6 } }, 'masqueradeBit', 6],
  [{ mode: 'iptables', iptables: { masqueradeAll: true } }, 'masqueradeAll', true],
  [{ mode: 'iptables', iptables: { syncPeriod: '1m' } }, 'syncPeriodMs', 60_000],
  [{ mode: 'iptables', iptables: { minSyncPeriod: '2s' } }, 'minSyncPeriodMs', 2_000],
  [{ mode: 'iptables', iptables: { localhostNodePorts: true } }, 'proxyMode', 'iptables'],
  [{ healthzBindAddress: '0.0.0.0:1234' }, 'healthzBindAddress', '0.0.0.0:1234'],
  [{ metricsBindAddress: '0.0.0.0' }, 'metricsBindAddress', '0.0.0.0:10249'],
  [{ bindAddress: '::' }, 'bindAddress', '::'],
  [{ hostnameOverride: 'Node-7' }, 'hostnameOverride', 'node-7'],
  [{ clientConnection: { kubeconfig: '/k.conf' } }, 'kubeconfig', '/k.conf'],
  [{ clientConnection: { qps: 50 } }, 'kubeApiQps', 50],
  [{ clientConnection: { burst: 100 } }, 'kubeApiBurst', 100],
  [{ clientConnection: { contentType: 'application/json' } }, 'command', 'run'],
  [{ clientConnection: { acceptContentTypes: '' } }, 'command', 'run'],
  [{ conntrack: { maxPerCore: 0 } }, 'conntrack.maxPerCore', 0],
  [{ conntrack: { min: 1000 } }, 'conntrack.min', 1000],
  [{ conntrack: { tcpEstablishedTimeout: '2h' } }, 'conntrack.tcpEstablishedTimeoutMs', 7_200_000],
  [{ conntrack: { tcpEstablishedTimeout: '0s' } }, 'conntrack.tcpEstablishedTimeoutMs', 0],
  [{ conntrack: { tcpCloseWaitTimeout: '30m' } }, 'conntrack.tcpCloseWaitTimeoutMs', 1_800_000],
  [{ conntrack: { tcpBeLiberal: true } }, 'conntrack.tcpBeLiberal', true],
  [{ conntrack: { udpTimeout: '30s' } }, 'conntrack.udpTimeoutMs', 30_000],
  [{ conntrack: { udpStreamTimeout: '5m' } }, 'conntrack.udpStreamTimeoutMs', 300_000],
  [{ featureGates: { ContextualLogging: true, InOrderInformers: false } }, 'featureGates', { ContextualLogging: true, InOrderInformers: false }],
  [{ configSyncPeriod: '15m' }, 'command', 'run'],
  [{ logging: { format: 'json' } }, 'logFormat', 'json'],
  [{ oomScoreAdj: 0 }, 'oomScoreAdj', 0],
  [{ logging: { verbosity: 3, format: 'text', flushFrequency: '5s', vmodule: [], options: { json: { infoBufferSize: '0' } } } }, 'verbosity', 3],
  [{ enableProfiling: false, bindAddressHardFail: false, showHiddenMetricsForVersion: '', portRange: '' }, 'command', 'run'],
  [{ ipvs: { scheduler: '', excludeCIDRs: null, strictARP: false, syncPeriod: '30s', minSyncPeriod: '0s', tcpTimeout: '0s', tcpFinTimeout: '0s', udpTimeout: '0s' } }, 'command', 'run'],
  [{ winkernel: { enableDSR: false, forwardHealthCheckVip: false, networkName: '', rootHnsEndpointName: '', sourceVip: '' } }, 'command', 'run'],
];

t.test('every config field lands in AgentOptions', async (t) => {
  for (const [fields, path, expected] of FIELD_CASES) {
    const options = fromConfig(fields);
    t.same(valueAt(options, path), expected, `${JSON.stringify(fields)} → ${path}`);
    t.equal(options.configFile, 'kp.yaml');
  }
});

// What kubeadm puts in the kube-proxy ConfigMap: every field, nearly all at zero values, which
// kube-proxy reads as "the default". kubenft must read it the same way.
const KUBEADM_CONFIG = `apiVersion: kubeproxy.config.k8s.io/v1alpha1
bindAddress: 0.0.0.0
bindAddressHardFail: false
clientConnection:
  acceptContentTypes: ""
  burst: 0
  contentType: ""
  kubeconfig: /var/lib/kube-proxy/kubeconfig.conf
  qps: 0
clusterCIDR: 10.244.0.0/16
configSyncPeriod: 0s
conntrack:
  maxPerCore: null
  min: null
  tcpBeLiberal: false
  tcpCloseWaitTimeout: null
  tcpEstablishedTimeout: null
  udpStreamTimeout: 0s
  udpTimeout: 0s
detectLocal:
  bridgeInterface: ""
  interfaceNamePrefix: ""
detectLocalMode: ""
enableProfiling: false
healthzBindAddress: ""
hostnameOverride: ""
iptables:
  localhostNodePorts: null
  masqueradeAll: false
  masqueradeBit: null
  minSyncPeriod: 0s
  syncPeriod: 0s
ipvs:
  excludeCIDRs: null
  minSyncPeriod: 0s
  scheduler: ""
  strictARP: false
  syncPeriod: 0s
  tcpFinTimeout: 0s
  tcpTimeout: 0s
  udpTimeout: 0s
kind: KubeProxyConfiguration
logging:
  flushFrequency: 0
  options:
    json:
      infoBufferSize: "0"
    text:
      infoBufferSize: "0"
  verbosity: 0
metricsBindAddress: ""
mode: ""
nftables:
  masqueradeAll: false
  masqueradeBit: null
  minSyncPeriod: 0s
  syncPeriod: 0s
nodePortAddresses: null
oomScoreAdj: null
portRange: ""
showHiddenMetricsForVersion: ""
winkernel:
  enableDSR: false
  forwardHealthCheckVip: false
  networkName: ""
  rootHnsEndpointName: ""
  sourceVip: ""
`;

t.test('kubeadm\'s kube-proxy ConfigMap reads as the defaults plus what it sets', async (t) => {
  const options = parseWith({ '/var/lib/kube-proxy/config.conf': KUBEADM_CONFIG }, ['--config=/var/lib/kube-proxy/config.conf', '--hostname-override=node-a']);
  t.same(options, {
    ...DEFAULTS,
    configFile: '/var/lib/kube-proxy/config.conf',
    kubeconfig: '/var/lib/kube-proxy/kubeconfig.conf',
    clusterCIDRs: ['10.244.0.0/16'],
    hostnameOverride: 'node-a',
  });
});

t.test('flags override the config file', async (t) => {
  const file = {
    mode: 'iptables',
    clusterCIDR: '10.244.0.0/16',
    nodePortAddresses: ['10.0.0.0/8'],
    iptables: { masqueradeBit: 5, syncPeriod: '1m', minSyncPeriod: '5s' },
    featureGates: { ContextualLogging: true, InOrderInformers: true },
    conntrack: { min: 5 },
    logging: { verbosity: 2 },
    hostnameOverride: 'from-file',
  };
  const options = fromConfig(file, [
    '--proxy-mode=nftables', '--cluster-cidr=10.10.0.0/16', '--nodeport-addresses=primary', '--iptables-masquerade-bit=7',
    '--iptables-sync-period=2m', '--feature-gates=InOrderInformers=false', '--v=4',
  ]);
  t.equal(options.proxyMode, 'nftables');
  t.same(options.clusterCIDRs, ['10.10.0.0/16']);
  t.same(options.nodePortAddresses, ['primary']);
  t.equal(options.masqueradeBit, 7);
  t.equal(options.syncPeriodMs, 120_000);
  // the flag chose nftables, so the file's iptables section no longer applies
  t.equal(options.minSyncPeriodMs, 1_000);
  t.same(options.featureGates, { ContextualLogging: true, InOrderInformers: false });
  t.equal(options.verbosity, 4);
  t.equal(options.conntrack.min, 5, 'what no flag overrides stays as the file says');
  t.equal(options.hostnameOverride, 'from-file');
  t.equal(fromConfig({ healthzBindAddress: '1.2.3.4:5' }, ['--healthz-bind-address=']).healthzBindAddress, '', 'a flag may disable what the file sets');
});

t.test('the iptables and nftables sections apply by mode', async (t) => {
  const sections = { iptables: { masqueradeBit: 1 }, nftables: { masqueradeBit: 2 } };
  t.equal(fromConfig({ ...sections, mode: 'iptables' }).masqueradeBit, 1);
  t.equal(fromConfig({ ...sections, mode: 'nftables' }).masqueradeBit, 2);
  t.equal(fromConfig(sections, ['--proxy-mode=iptables']).masqueradeBit, 1);
  // no mode: kube-proxy would read iptables, kubenft runs nftables; either section may say it
  t.equal(fromConfig({ iptables: { masqueradeAll: true } }).masqueradeAll, true);
  t.equal(fromConfig({ nftables: { syncPeriod: '10s' } }).syncPeriodMs, 10_000);
  t.equal(fromConfig({ iptables: { masqueradeBit: 3 }, nftables: { masqueradeBit: 3 } }).masqueradeBit, 3);
  t.throws(() => fromConfig(sections), /iptables\.masqueradeBit \(in kp\.yaml\) and nftables\.masqueradeBit \(in kp\.yaml\) differ and no mode is set/);
});

// [argv, the error it must give]
const FLAG_REJECTIONS: [string[], RegExp][] = [
  [['--no-such-flag'], /^unknown flag --no-such-flag$/],
  [['--ipvs'], /^unknown flag --ipvs$/],
  [['-x'], /^unknown shorthand flag -x$/],
  [['-kubeconfig=/k'], /unknown shorthand flag -kubeconfig=\/k: kube-proxy's flags take two dashes \(--kubeconfig\)/],
  [['frobnicate'], /unknown command "frobnicate"/],
  [['render', 'extra'], /unknown command "render extra"/],
  [['--kubeconfig'], /flag --kubeconfig needs a value/],
  [['-v'], /flag -v needs a value/],
  [['--proxy-mode=ipvs'], /--proxy-mode "ipvs": kubenft does not implement the ipvs mode/],
  [['--proxy-mode=kernelspace'], /--proxy-mode "kernelspace": kernelspace is the Windows mode/],
  [['--proxy-mode=userspace'], /--proxy-mode "userspace": is not a proxy mode/],
  [['--iptables-backend=xtables'], /--iptables-backend "xtables": must be auto, legacy or nft/],
  [['--cleanup=yes'], /--cleanup "yes": is not true or false/],
  [['--iptables-masquerade-bit=32'], /--iptables-masquerade-bit 32: must be an integer from 0 to 31/],
  [['--iptables-masquerade-bit=-1'], /--iptables-masquerade-bit -1: must be an integer from 0 to 31/],
  [['--iptables-masquerade-bit=x'], /--iptables-masquerade-bit "x": is not an integer/],
  [['--cluster-cidr=10.0.0.0/33'], /--cluster-cidr "10.0.0.0\/33": is not a CIDR/],
  [['--cluster-cidr=banana'], /--cluster-cidr "banana": is not a CIDR/],
  [['--cluster-cidr=10.0.0.0/8,10.1.0.0/16'], /--cluster-cidr "10.0.0.0\/8,10.1.0.0\/16": give one CIDR, or two of different families/],
  [['--service-cidr=10.96.0.0'], /--service-cidr "10.96.0.0": is not a CIDR/],
  [['--nodeport-addresses=nodes'], /--nodeport-addresses "nodes": is not a CIDR/],
  [['--nodeport-addresses=all,localhost'], /"all" cannot be combined/],
  [['--nodeport-addresses=primary,10.0.0.0/8'], /"primary" cannot be combined with CIDRs/],
  [['--iptables-sync-period=30'], /--iptables-sync-period "30": is not a duration/],
  [['--iptables-sync-period=0s'], /--iptables-sync-period "0s": must be greater than 0/],
  [['--iptables-sync-period=-5s'], /--iptables-sync-period "-5s": must be greater than 0/],
  [['--iptables-min-sync-period=-1s'], /--iptables-min-sync-period "-1s": must not be negative/],
  [['--iptables-min-sync-period=1m', '--iptables-sync-period=30s'], /min sync period 1m0s is longer than sync period 30s/],
  [['--conntrack-tcp-timeout-established=-1h'], /--conntrack-tcp-timeout-established "-1h0m0s": must be 0 \(leave the kernel's\) or at least 1s/],
  [['--conntrack-udp-timeout=500ms'], /--conntrack-udp-timeout "500ms": must be 0 \(leave the kernel's\) or at least 1s \(the kernel counts whole seconds\)/],
  [['--conntrack-min=-1'], /--conntrack-min -1: must not be negative/],
  [['--config-sync-period=5m'], /flag --config-sync-period "5m" is not supported by kubenft: kubenft's informers keep no copy of the objects/],
  [['--kube-api-content-type=application/vnd.kubernetes.protobuf'], /flag --kube-api-content-type "application\/vnd.kubernetes.protobuf" is not supported by kubenft: kubenft lists and watches in application\/json/],
  [['--logging-format=logfmt'], /--logging-format "logfmt": is not a logging format: use text or json/],
  [['--init-only', '--once'], /--init-only does the node setup and exits: it does not combine with --once/],
  [['--init-only', '--cleanup'], /--init-only .* does not combine/],
  [['render', '--init-only'], /--init-only .* does not combine/],
  [['--oom-score-adj=1001'], /--oom-score-adj 1001: must be an integer from -1000 to 1000/],
  [['--kube-api-qps=fast'], /--kube-api-qps "fast": is not a number/],
  [['--kube-api-burst=-3'], /--kube-api-burst -3: must not be negative/],
  [['--detect-local-mode=BridgeInterface'], /--detect-local-mode "BridgeInterface": is not supported by kubenft/],
  [['--detect-local-mode=InterfaceNamePrefix'], /--detect-local-mode "InterfaceNamePrefix": is not supported by kubenft/],
  [['--detect-local-mode=Pods'], /--detect-local-mode "Pods": is not a detect-local mode/],
  [['--bind-address=localhost'], /--bind-address "localhost": is not an IP address/],
  [['--healthz-bind-address=host:80'], /--healthz-bind-address "host:80": is not IP or IP:port/],
  [['--metrics-bind-address=0.0.0.0:70000'], /--metrics-bind-address "0.0.0.0:70000": port must be 1-65535/],
  [['--feature-gates=A'], /--feature-gates "A": is not NAME=true or NAME=false/],
  [['--feature-gates=A=maybe'], /--feature-gates "A=maybe": is not NAME=true or NAME=false/],
  [['-v=-1'], /-v -1: must be an integer from 0/],
  [['--json'], /--json applies to render, services and explain only/],
  [['render', '--once'], /--once does not apply to render/],
  [['--bind-address-hard-fail'], /flag --bind-address-hard-fail "true" is not supported by kubenft/],
  [['--profiling'], /flag --profiling "true" is not supported by kubenft: kubenft has no \/debug\/pprof/],
  [['--show-hidden-metrics-for-version=1.32'], /flag --show-hidden-metrics-for-version "1.32" is not supported by kubenft/],
  [['--proxy-port-range=30000-32767'], /flag --proxy-port-range "30000-32767" is not supported by kubenft/],
  [['--iptables-localhost-nodeports=false'], /flag --iptables-localhost-nodeports "false" is not supported by kubenft: choose NodePort addresses/],
  [['--pod-bridge-interface=cbr0'], /flag --pod-bridge-interface "cbr0" is not supported by kubenft: kubenft detects pod traffic by address/],
  [['--pod-interface-name-prefix=veth'], /flag --pod-interface-name-prefix "veth" is not supported by kubenft/],
  [['--vmodule=proxier=4'], /flag --vmodule "proxier=4" is not supported by kubenft/],
  [['--log-flush-frequency=soon'], /--log-flush-frequency "soon": is not a duration/],
  [['--ipvs-scheduler=rr'], /flag --ipvs-scheduler "rr" is not supported by kubenft: it configures the ipvs mode/],
  [['--ipvs-strict-arp'], /flag --ipvs-strict-arp "true" is not supported by kubenft/],
  [['--ipvs-sync-period=10s'], /flag --ipvs-sync-period "10s" is not supported by kubenft/],
  [['--ipvs-min-sync-period=1s'], /flag --ipvs-min-sync-period "1s" is not supported by kubenft/],
  [['--ipvs-exclude-cidrs=10.0.0.0/8'], /flag --ipvs-exclude-cidrs "10.0.0.0\/8" is not supported by kubenft/],
  [['--ipvs-tcp-timeout=1s'], /flag --ipvs-tcp-timeout "1s" is not supported by kubenft/],
  [['--ipvs-tcpfin-timeout=1s'], /flag --ipvs-tcpfin-timeout "1s" is not supported by kubenft/],
  [['--ipvs-udp-timeout=1s'], /flag --ipvs-udp-timeout "1s" is not supported by kubenft/],
  [['--config=missing.yaml'], /--config missing\.yaml: cannot read it: ENOENT/],
];

t.test('bad flags are rejected, naming the flag and the value', async (t) => {
  for (const [argv, message] of FLAG_REJECTIONS) {
    t.throws(() => parseWith({}, argv), message, argv.join(' '));
    t.throws(() => parseWith({}, argv), OptionsError);
  }
});

// [config file text or fields, the error it must give]
const FILE_REJECTIONS: [string | object, RegExp][] = [
  ['mode: [', /--config kp\.yaml: not valid YAML/],
  ['- a list', /not a KubeProxyConfiguration \(the file is not a mapping\)/],
  [{ kind: 'KubeProxyConfiguration' }, /apiVersion undefined kind "KubeProxyConfiguration": want kubeproxy\.config\.k8s\.io\/v1alpha1 KubeProxyConfiguration/],
  [{ ...HEADER, kind: 'KubeletConfiguration' }, /kind "KubeletConfiguration": want/],
  [{ ...HEADER, clusterCidr: '10.0.0.0/8' }, /--config kp\.yaml: unknown field clusterCidr/],
  [{ ...HEADER, nftables: { masqueradeBits: 3 } }, /unknown field nftables\.masqueradeBits/],
  [{ ...HEADER, logging: { colour: true } }, /unknown field logging\.colour/],
  [{ ...HEADER, conntrack: 5 }, /conntrack \(in kp\.yaml\) 5: must be a mapping/],
  [{ ...HEADER, mode: 'ipvs' }, /mode \(in kp\.yaml\) "ipvs": kubenft does not implement the ipvs mode/],
  [{ ...HEADER, mode: 'kernelspace' }, /mode \(in kp\.yaml\) "kernelspace": kernelspace is the Windows mode/],
  [{ ...HEADER, mode: 3 }, /mode \(in kp\.yaml\) 3: must be a string/],
  [{ ...HEADER, nftables: { masqueradeBit: 40 } }, /nftables\.masqueradeBit \(in kp\.yaml\) 40: must be an integer from 0 to 31/],
  [{ ...HEADER, nftables: { masqueradeBit: '14' } }, /nftables\.masqueradeBit \(in kp\.yaml\) "14": must be an integer/],
  [{ ...HEADER, nftables: { syncPeriod: 30 } }, /nftables\.syncPeriod \(in kp\.yaml\) 30: must be a duration string/],
  [{ ...HEADER, nftables: { syncPeriod: '-30s' } }, /nftables\.syncPeriod \(in kp\.yaml\) "-30s": must be greater than 0/],
  [{ ...HEADER, nftables: { syncPeriod: '10s', minSyncPeriod: '20s' } }, /min sync period 20s is longer than sync period 10s/],
  [{ ...HEADER, nftables: { masqueradeAll: 'yes' } }, /nftables\.masqueradeAll \(in kp\.yaml\) "yes": must be true or false/],
  [{ ...HEADER, mode: 'iptables', nftables: { syncPeriod: 'soon' } }, /nftables\.syncPeriod \(in kp\.yaml\) "soon": is not a duration/],
  [{ ...HEADER, clusterCIDR: '10.0.0.0/8,300.0.0.0/8' }, /clusterCIDR \(in kp\.yaml\) "300\.0\.0\.0\/8": is not a CIDR/],
  [{ ...HEADER, nodePortAddresses: '10.0.0.0/8' }, /nodePortAddresses \(in kp\.yaml\) "10\.0\.0\.0\/8": must be a list of strings/],
  [{ ...HEADER, detectLocalMode: 'BridgeInterface', detectLocal: { bridgeInterface: 'cbr0' } }, /detectLocalMode \(in kp\.yaml\) "BridgeInterface": is not supported by kubenft/],
  [{ ...HEADER, detectLocal: { bridgeInterface: 'cbr0' } }, /field detectLocal\.bridgeInterface \(in kp\.yaml\) "cbr0" is not supported by kubenft/],
  [{ ...HEADER, detectLocal: { interfaceNamePrefix: 'veth' } }, /field detectLocal\.interfaceNamePrefix \(in kp\.yaml\) "veth" is not supported by kubenft/],
  [{ ...HEADER, detectLocalMode: 'Everything' }, /detectLocalMode \(in kp\.yaml\) "Everything": is not a detect-local mode/],
  [{ ...HEADER, featureGates: { A: 'on' } }, /featureGates \(in kp\.yaml\) \{"A":"on"\}: must be a mapping of names to true or false/],
  [{ ...HEADER, conntrack: { maxPerCore: -1 } }, /conntrack\.maxPerCore \(in kp\.yaml\) -1: must not be negative/],
  [{ ...HEADER, conntrack: { udpTimeout: '-1s' } }, /conntrack\.udpTimeout \(in kp\.yaml\) "-1s": must be 0/],
  [{ ...HEADER, clientConnection: { contentType: 'application/vnd.kubernetes.protobuf' } }, /field clientConnection\.contentType \(in kp\.yaml\) "application\/vnd\.kubernetes\.protobuf" is not supported/],
  [{ ...HEADER, configSyncPeriod: '1m' }, /field configSyncPeriod \(in kp\.yaml\) "1m" is not supported/],
  [{ ...HEADER, oomScoreAdj: -2000 }, /oomScoreAdj \(in kp\.yaml\) -2000: must be an integer from -1000 to 1000/],
  [{ ...HEADER, healthzBindAddress: 'everywhere' }, /healthzBindAddress \(in kp\.yaml\) "everywhere": is not IP or IP:port/],
  [{ ...HEADER, enableProfiling: true }, /field enableProfiling \(in kp\.yaml\) true is not supported by kubenft/],
  [{ ...HEADER, bindAddressHardFail: true }, /field bindAddressHardFail \(in kp\.yaml\) true is not supported by kubenft/],
  [{ ...HEADER, portRange: '30000-32767' }, /field portRange \(in kp\.yaml\) "30000-32767" is not supported by kubenft/],
  [{ ...HEADER, showHiddenMetricsForVersion: '1.31' }, /field showHiddenMetricsForVersion \(in kp\.yaml\) "1\.31" is not supported/],
  [{ ...HEADER, iptables: { localhostNodePorts: false } }, /field iptables\.localhostNodePorts \(in kp\.yaml\) false is not supported/],
  [{ ...HEADER, ipvs: { scheduler: 'rr' } }, /field ipvs\.scheduler \(in kp\.yaml\) "rr" is not supported by kubenft: it configures the ipvs mode/],
  [{ ...HEADER, ipvs: { strictARP: true } }, /field ipvs\.strictARP \(in kp\.yaml\) true is not supported/],
  [{ ...HEADER, winkernel: { enableDSR: true } }, /field winkernel\.enableDSR \(in kp\.yaml\) true is not supported by kubenft: it configures the Windows/],
  [{ ...HEADER, clientConnection: { acceptContentTypes: 'application/json' } }, /field clientConnection\.acceptContentTypes \(in kp\.yaml\) "application\/json" is not supported/],
  [{ ...HEADER, logging: { format: 'klog' } }, /logging\.format \(in kp\.yaml\) "klog": is not a logging format/],
  [{ ...HEADER, logging: { vmodule: [{ filePattern: 'proxier', verbosity: 4 }] } }, /field logging\.vmodule \(in kp\.yaml\) .* is not supported/],
];

t.test('bad config files are rejected, naming the field and the value', async (t) => {
  for (const [content, message] of FILE_REJECTIONS) {
    t.throws(() => parseWith({ 'kp.yaml': content }, ['--config', 'kp.yaml']), message, JSON.stringify(content));
  }
});

t.test('--write-config-to writes a KubeProxyConfiguration that reads back the same', async (t) => {
  const argv = [
    '--proxy-mode=iptables', '--kubeconfig=/k.conf', '--kube-api-content-type=application/json', '--kube-api-qps=7.5', '--kube-api-burst=20',
    '--hostname-override=node-9', '--bind-address=::', '--healthz-bind-address=[::]:9256', '--metrics-bind-address=0.0.0.0',
    '--feature-gates=LoggingAlphaOptions=true,InOrderInformers=false', '--masquerade-all', '--iptables-masquerade-bit=0', '--iptables-sync-period=1h30m',
    '--iptables-min-sync-period=1.5s', '--detect-local-mode=NodeCIDR', '--cluster-cidr=10.244.0.0/16,fd00:10:244::/56',
    '--nodeport-addresses=localhost,10.0.0.0/8', '--oom-score-adj=-100', '--conntrack-max-per-core=0', '--conntrack-min=7',
    '--conntrack-tcp-timeout-established=0s', '--conntrack-tcp-timeout-close-wait=90s', '--conntrack-tcp-be-liberal',
    '--conntrack-udp-timeout=30s', '--conntrack-udp-timeout-stream=2m', '--config-sync-period=15m', '--logging-format=json', '-v', '3',
  ];
  // kubenft's own flags and --master are not KubeProxyConfiguration fields: they stay flags.
  const notInFile = ['--manifests=m/', '--once', '--iptables-backend=nft', '--service-cidr=10.96.0.0/12', '--master=https://api:6443'];
  for (const flags of [[], argv]) {
    const written = parseOptions([...flags, ...notInFile, '--write-config-to=out.yaml']);
    t.equal(written.writeConfigTo, 'out.yaml');
    const yaml = kubeProxyConfigurationYAML(written);
    const reread = parseWith({ 'out.yaml': yaml }, [...notInFile, '--config', 'out.yaml']);
    const files = { configFile: undefined, writeConfigTo: undefined };
    t.same({ ...reread, ...files }, { ...written, ...files }, `round trip of ${flags.length} flags`);
  }
  const document = kubeProxyConfiguration(parseOptions(argv)) as Record<string, any>;
  t.match(document, {
    apiVersion: 'kubeproxy.config.k8s.io/v1alpha1', kind: 'KubeProxyConfiguration', mode: 'iptables', clusterCIDR: '10.244.0.0/16,fd00:10:244::/56',
    iptables: { syncPeriod: '1h30m0s', minSyncPeriod: '1.5s', masqueradeBit: 0 }, conntrack: { tcpEstablishedTimeout: '0s', tcpCloseWaitTimeout: '1m30s' },
  });
  t.same(document.iptables, document.nftables, 'either mode reads the same section values');
});

t.test('--write-config-to quotes a string a YAML 1.1 reader (kube-proxy\'s) would take for another type', async (t) => {
  // Each is a valid hostname; unquoted, YAML 1.1 reads a boolean, a null or a number.
  for (const hostname of ['on', 'yes', 'off', 'null', '0x1f', '0b101', '0o17', '012', '1e3']) {
    const written = parseOptions([`--hostname-override=${hostname}`]);
    const yaml = kubeProxyConfigurationYAML(written);
    t.match(yaml, new RegExp(`^hostnameOverride: (['"])${hostname}\\1$`, 'm'), `${hostname} is quoted`);
    t.equal(parseWith({ 'out.yaml': yaml }, ['--config', 'out.yaml']).hostnameOverride, hostname, `${hostname} reads back as the string`);
  }
});

t.test('what a KubeProxyConfiguration cannot say is refused, not changed', async (t) => {
  t.throws(() => kubeProxyConfiguration(parseOptions(['--healthz-bind-address='])), /a disabled health server .* cannot be written/);
  t.throws(() => kubeProxyConfiguration(parseOptions(['--metrics-bind-address='])), /a disabled metrics server .* cannot be written/);
  t.throws(() => kubeProxyConfiguration(parseOptions(['--iptables-min-sync-period=0'])), /--iptables-min-sync-period=0 .* cannot be written/);
});

t.test('Go durations', async (t) => {
  const cases: [string, number, string][] = [
    ['0', 0, '0s'], ['30s', 30_000, '30s'], ['1m0s', 60_000, '1m0s'], ['500ms', 500, '500ms'], ['1h30m', 5_400_000, '1h30m0s'],
    ['24h0m0s', 86_400_000, '24h0m0s'], ['1.5s', 1_500, '1.5s'], ['2h45m30.25s', 9_930_250, '2h45m30.25s'], ['100us', 0.1, '100µs'],
    ['100µs', 0.1, '100µs'], ['7ns', 0.000007, '7ns'], ['-1m', -60_000, '-1m0s'], ['1h1s', 3_601_000, '1h0m1s'],
  ];
  for (const [text, ms, canonical] of cases) {
    t.equal(parseDuration(text), ms, text);
    t.equal(formatDuration(ms), canonical, `${ms}ms`);
  }
  for (const bad of ['', '30', 's', '1x', '1.2.3s', '1h 30m', '--1s']) t.equal(parseDuration(bad), undefined, JSON.stringify(bad));
});

t.test('help and version win over everything else on the line', async (t) => {
  t.equal(parseOptions(['--proxy-mode=ipvs', '--help']).command, 'help');
  t.equal(parseOptions(['--version', '--config=nowhere']).command, 'version');
  t.equal(parseOptions(['--version=false']).command, 'run');
  t.throws(() => parseOptions(['--bogus', '-h']), /unknown flag --bogus/, 'an unknown flag is still an error');
});

// Every flag kube-proxy's reference lists, those kube-proxy has beyond it, and kubenft's own.
const ALL_FLAGS = [
  'manifests', 'once', 'json', 'iptables-backend', 'service-cidr', 'dns-health-address', 'dns-ready-address',
  'proxy-mode', 'config', 'write-config-to', 'cleanup', 'init-only', 'kubeconfig', 'master', 'kube-api-content-type', 'kube-api-qps',
  'kube-api-burst', 'hostname-override', 'bind-address', 'healthz-bind-address', 'metrics-bind-address', 'bind-address-hard-fail',
  'feature-gates', 'masquerade-all', 'iptables-sync-period', 'iptables-min-sync-period', 'iptables-masquerade-bit', 'detect-local-mode',
  'cluster-cidr', 'pod-bridge-interface', 'pod-interface-name-prefix', 'nodeport-addresses', 'oom-score-adj', 'conntrack-max-per-core',
  'conntrack-min', 'conntrack-tcp-timeout-established', 'conntrack-tcp-timeout-close-wait', 'conntrack-tcp-be-liberal',
  'conntrack-udp-timeout', 'conntrack-udp-timeout-stream', 'config-sync-period', 'v', 'help', 'version',
  'profiling', 'show-hidden-metrics-for-version', 'proxy-port-range', 'iptables-localhost-nodeports', 'logging-format', 'vmodule',
  'log-flush-frequency', 'ipvs-sync-period', 'ipvs-min-sync-period', 'ipvs-scheduler', 'ipvs-exclude-cidrs', 'ipvs-strict-arp',
  'ipvs-tcp-timeout', 'ipvs-tcpfin-timeout', 'ipvs-udp-timeout',
];

t.test('each capability\'s flags come from its folder: its defaults in its settings, its flags among kubenft\'s own', async (t) => {
  const text = helpText();
  const own = text.slice(text.indexOf('kubenft\'s own flags:'), text.indexOf('kube-proxy\'s flags:'));
  const defaults = parseOptions([]) as unknown as Record<string, unknown>;
  t.ok(CAPABILITIES.length >= 3);
  for (const capability of CAPABILITIES) {
    t.same(defaults[capability.settingsKey], capability.settings.defaults(), `${capability.name}'s defaults under options.${capability.settingsKey}`);
    for (const { flag } of capability.settings.flags) t.match(own, new RegExp(`--${flag}\\b`), `--${flag} is listed as kubenft's own`);
  }
});

t.test('the capabilities and the settings the CLI reads before they load are one list: each capability is its settings and more', async (t) => {
  t.same(CAPABILITIES.map(({ name }) => name), CAPABILITY_SETTINGS.map(({ name }) => name), 'the same capabilities, in the same order');
  CAPABILITIES.forEach((capability, index) => {
    const settings = CAPABILITY_SETTINGS[index];
    t.equal(capability.settingsKey, settings.settingsKey, `${capability.name}: its settings' key`);
    t.equal(capability.settings, settings.settings, `${capability.name}: its flags and defaults`);
    t.equal(capability.enabled, settings.enabled, `${capability.name}: what turns it on`);
    // Its watch is its lists with each kind's validation: the first lists asked before it loads are the ones its informers take over.
    const listed = (needs: typeof settings.lists) => needs && { ...needs, kinds: needs.kinds?.map(({ kind, apiVersion, path, fieldSelector }) => ({ kind, apiVersion, path, fieldSelector })) };
    t.same(listed(capability.watch), listed(settings.lists), `${capability.name}: what it lists is what it watches`);
  });
});

t.test('helpText mentions every flag, grouped, with defaults', async (t) => {
  const text = helpText();
  for (const flag of ALL_FLAGS) t.match(text, new RegExp(`--${flag}\\b`), `--${flag}`);
  const own = text.indexOf('kubenft\'s own flags:');
  const kubeProxy = text.indexOf('kube-proxy\'s flags:');
  t.ok(own >= 0 && kubeProxy > own, 'kubenft\'s own flags come first, then kube-proxy\'s');
  t.ok(text.indexOf('--manifests') < kubeProxy && text.indexOf('--cluster-cidr') > kubeProxy);
  t.match(text, /override the same settings in the --config file/);
  t.match(text, /--iptables-sync-period DURATION\s+.*\(default 30s\)/);
  t.match(text, /--iptables-masquerade-bit BIT\s+.*\(default 14\)/);
  t.ok(text.split('\n').every((line) => line.length <= 200), 'one line per flag');
});
