// --feature-gates and the config file's featureGates, read as kube-proxy 1.34 reads them: a known
// gate is accepted, an unknown one and a locked one set away from its default are refused with
// component-base/featuregate's own messages, a gate whose behaviour kubenft lacks is refused when
// turned on, and PreferSameTrafficDistribution switches kubenft's endpoint choice (through the
// real CLI's `render`, which touches nothing).
import t, { type Test } from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { parseOptions } from '../../src/cli/options.js';
import { FEATURE_GATES, GATES_REFUSED, featureEnabled } from '../../src/cluster/feature-gates.js';
import { SOURCE_CLI } from '../lib/source-cli.js';

// k8s.io/component-base/featuregate/feature_gate.go, unsafeSetFromMap, as written there.
const GO_UNRECOGNIZED = 'unrecognized feature gate: %s';
const GO_LOCKED = 'cannot set feature gate %v to %v, feature is locked to %v';
/** Go's fmt for the %s and %v of strings and booleans. */
const goSprintf = (format: string, ...args: (string | boolean)[]) => format.replace(/%[sv]/g, () => String(args.shift()));
const literally = (text: string) => new RegExp(text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));

const HEADER = { apiVersion: 'kubeproxy.config.k8s.io/v1alpha1', kind: 'KubeProxyConfiguration' };
const withFile = (featureGates: object, argv: string[] = []) =>
  parseOptions(['--config', 'kp.yaml', ...argv], () => stringify({ ...HEADER, featureGates }));

t.test('known gates of every stage are accepted, from the flag and from the file', async (t) => {
  const accepted = {
    InOrderInformers: false, // Beta, client-go's
    LoggingAlphaOptions: true, // Alpha, component-base logs
    TopologyManagerPolicyOptions: false, // GA, not locked
    WindowsHostNetwork: true, // Deprecated
    NFTablesProxyMode: true, // locked, at its default
    SidecarContainers: true, // another component's gate, which kube-proxy registers too
    PreferSameTrafficDistribution: false,
  };
  const flag = Object.entries(accepted).map(([name, value]) => `${name}=${value}`).join(',');
  t.same(parseOptions([`--feature-gates=${flag}`]).featureGates, accepted);
  t.same(withFile(accepted).featureGates, accepted);
  t.same(new Set(['Alpha', 'Beta', 'GA', 'Deprecated']), new Set([...FEATURE_GATES.values()].map((spec) => spec.stage)));
});

t.test('an unknown gate is refused with kube-proxy\'s message, naming where it came from', async (t) => {
  for (const name of ['NoSuchGate', 'nftablesproxymode', 'KubeProxyDrainingTerminatingNodes']) {
    const message = goSprintf(GO_UNRECOGNIZED, name);
    t.throws(() => parseOptions([`--feature-gates=${name}=true`]), literally(`--feature-gates: ${message}`), name);
    t.throws(() => withFile({ [name]: true }), literally(`featureGates (in kp.yaml): ${message}`), name);
  }
});

t.test('a locked gate set away from its default is refused with kube-proxy\'s message', async (t) => {
  for (const [name, value, lockedTo] of [['NFTablesProxyMode', false, true], ['TopologyAwareHints', false, true], ['AllowServiceLBStatusOnNonLB', true, false]] as const) {
    const message = goSprintf(GO_LOCKED, name, value, lockedTo);
    t.throws(() => parseOptions([`--feature-gates=${name}=${value}`]), literally(message), name);
    t.throws(() => withFile({ [name]: value }), literally(message), name);
  }
});

t.test('a gate kubenft has no behaviour for is refused when turned on, also through AllAlpha', async (t) => {
  for (const name of GATES_REFUSED.keys()) {
    t.throws(() => parseOptions([`--feature-gates=${name}=true`]), new RegExp(`--feature-gates: ${name}=true is not supported by kubenft: `), name);
    t.same(parseOptions([`--feature-gates=${name}=false`]).featureGates, { [name]: false }, `${name} at its default`);
  }
  t.throws(() => parseOptions(['--feature-gates=AllAlpha=true']), /ComponentFlagz=true is not supported by kubenft: .*set by AllAlpha/);
  const offByName = [...GATES_REFUSED.keys()].map((name) => `${name}=false`).join(',');
  t.same(parseOptions([`--feature-gates=AllAlpha=true,AllBeta=true,${offByName}`]).command, 'run');
});

t.test('AllBeta and AllAlpha set the gates of their stage that are not given by name', async (t) => {
  t.equal(featureEnabled({}, 'PreferSameTrafficDistribution'), true, 'Beta, on by default');
  t.equal(featureEnabled({ AllBeta: false }, 'PreferSameTrafficDistribution'), false);
  t.equal(featureEnabled({ AllBeta: false, PreferSameTrafficDistribution: true }, 'PreferSameTrafficDistribution'), true, 'by name wins');
  t.equal(featureEnabled({ AllAlpha: true }, 'LoggingAlphaOptions'), true);
  t.equal(featureEnabled({ AllBeta: false }, 'NFTablesProxyMode'), true, 'GA gates keep their value');
});

// One service, three ready endpoints: a on this node (zone-a), b on another node of zone-a, c in
// zone-b; each hinted for its own node (trafficDistribution PreferSameNode) and its zone.
const directory = mkdtempSync(join(tmpdir(), 'kubenft-gates-'));
t.teardown(() => rmSync(directory, { recursive: true, force: true }));
const manifests = join(directory, 'prefer-same-node.yaml');
const endpoint = (ip: string, node: string, zone: string) => ({
  addresses: [ip], conditions: { ready: true }, nodeName: node, zone, hints: { forZones: [{ name: zone }], forNodes: [{ name: node }] },
});
writeFileSync(manifests, [
  { apiVersion: 'v1', kind: 'Node', metadata: { name: 'node-1', labels: { 'topology.kubernetes.io/zone': 'zone-a' } }, status: { addresses: [{ type: 'InternalIP', address: '192.0.2.1' }] } },
  { apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', namespace: 'default' }, spec: { clusterIP: '10.96.0.10', trafficDistribution: 'PreferSameNode', ports: [{ port: 80, protocol: 'TCP' }] } },
  {
    apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', addressType: 'IPv4',
    metadata: { name: 'web-1', namespace: 'default', labels: { 'kubernetes.io/service-name': 'web' } },
    ports: [{ port: 8080, protocol: 'TCP' }],
    endpoints: [endpoint('10.244.1.5', 'node-1', 'zone-a'), endpoint('10.244.2.5', 'node-2', 'zone-a'), endpoint('10.244.3.5', 'node-3', 'zone-b')],
  },
].map((object) => stringify(object)).join('---\n'));

const renderedDNATs = (t: Test, gates: string[]) => {
  const result = spawnSync(process.execPath, [...SOURCE_CLI, 'render', '--manifests', manifests, '--hostname-override=node-1', ...gates], { encoding: 'utf8' });
  t.equal(result.status, 0, result.stderr);
  return [...result.stdout.matchAll(/dnat to (10\.244\.\d+\.\d+):8080/g)].map((match) => match[1]).sort();
};

t.test('PreferSameTrafficDistribution: on, forNodes hints pick this node\'s endpoint; off, the zone\'s', async (t) => {
  t.same(renderedDNATs(t, []), ['10.244.1.5'], 'default (Beta, on): same node');
  t.same(renderedDNATs(t, ['--feature-gates=PreferSameTrafficDistribution=true']), ['10.244.1.5']);
  t.same(renderedDNATs(t, ['--feature-gates=PreferSameTrafficDistribution=false']), ['10.244.1.5', '10.244.2.5'], 'off: same zone');
  t.same(renderedDNATs(t, ['--feature-gates=AllBeta=false']), ['10.244.1.5', '10.244.2.5'], 'off through AllBeta');
});

t.test('the real CLI refuses an unknown gate and exits 2 with kube-proxy\'s message', async (t) => {
  const result = spawnSync(process.execPath, [...SOURCE_CLI, 'render', '--manifests', manifests, '--feature-gates=NoSuchGate=true'], { encoding: 'utf8' });
  t.equal(result.status, 2);
  t.match(result.stderr, literally(goSprintf(GO_UNRECOGNIZED, 'NoSuchGate')));
  t.equal(result.stdout, '', 'nothing rendered');
});
