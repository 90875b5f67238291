// --ingress-service: the ingress Service's load-balancer and external IPs on the proxy's ports reach
// this node's proxy. The planned rules (redirect or DNAT ahead of the Service's own DNAT), the status
// addresses, and real packets: curl from the client namespace to the LB IP on 80 and 443 is answered
// by kubenft's proxy, while another port of that IP still reaches the Service's endpoint.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { DEFAULT_PROXY_CONFIG, type ProxyConfig } from '../../src/services/config.js';
import { statusAddresses } from '../../src/ingress/dataplane.js';
import { SHARED_SETS, planRuleset, setNamed } from '../../src/services/nftables-plan.js';
import { rulesetText } from '../../src/kernel/render-text.js';
import { helpText, parseOptions } from '../../src/cli/options.js';
import { ClusterState, type KubeObject } from '../../src/cluster/cluster-state.js';
import { allServicePortViews } from '../../src/cluster/service-ports.js';
import { EXTERNAL, SERVICE_INTERFACE, createTopology, type ProcessHandle, type Topology } from '../../scripts/lib/topology.js';
import { eventually } from '../lib/eventually.js';
import { CLI } from '../lib/kubenft.js';
import { ManifestFile, service, slice } from '../lib/manifests.js';
import { OUR_CLASS, ingress } from '../lib/ingress-manifests.js';
import { IngressDataplaneUnderTest } from '../lib/ingress-dataplane.js';

const LB_IP = '203.0.113.10';
const LB_IP_V6 = '2001:db8::10';
const MOVED_LB_IP = '203.0.113.11';
const EXTERNAL_IP = '198.51.100.7';
const POD_PORT = 9376;
const PODS = [{ name: 'lb-pod', ipv4: '10.244.1.5', udp: false }, { name: 'web', ipv4: '10.244.2.5', udp: false }];

/** The ingress Service: ports 80 and 443 (which the proxy takes) and 8080 (which stays the Service's), all to lb-pod. */
const ingressService = (lbIPs: string[]) => ({
  ...service('ingress', '10.0.0.50', [{ name: 'http', port: 80, targetPort: POD_PORT }, { name: 'https', port: 443, targetPort: POD_PORT }, { name: 'other', port: 8080, targetPort: POD_PORT }],
    { type: 'LoadBalancer', externalIPs: [EXTERNAL_IP] }),
  status: { loadBalancer: { ingress: lbIPs.map((ip) => ({ ip })) } },
});
const objects = (lbIPs: string[]): unknown[] => [
  OUR_CLASS,
  ingressService(lbIPs),
  slice('ingress', [{ name: 'http', port: POD_PORT }, { name: 'https', port: POD_PORT }, { name: 'other', port: POD_PORT }], [{ ip: PODS[0].ipv4 }]),
  service('web', '10.0.0.10', [{ name: 'http', port: 80, targetPort: POD_PORT }]),
  slice('web', [{ name: 'http', port: POD_PORT }], [{ ip: PODS[1].ipv4 }]),
  ingress('app', [{ host: 'app.example.com', paths: [{ path: '/', pathType: 'Prefix', service: 'web' }] }]),
];

function stateOf(list: unknown[]): ClusterState {
  const state = new ClusterState('node-1');
  for (const object of list) if ((object as KubeObject).kind !== 'IngressClass' && (object as KubeObject).kind !== 'Ingress') state.apply(object as KubeObject);
  return state;
}

const steering = (listeners: { address: string; port: number }[]): ProxyConfig => ({ ...DEFAULT_PROXY_CONFIG, nodeName: 'node-1', ingressSteering: { service: 'default/ingress', listeners } });
const WILDCARD_V4 = [{ address: '0.0.0.0', port: 80 }, { address: '0.0.0.0', port: 443 }];

t.test('planned: the Service\'s LB and external IPs in ingress-ips; redirects to the listeners first in the main table\'s NAT chains', async (t) => {
  const views = allServicePortViews(stateOf(objects([LB_IP])));
  const [main] = planRuleset(views, steering(WILDCARD_V4)).tables;
  t.same(setNamed(main, SHARED_SETS.ingressIPs).elements.map((element) => element.key), [[EXTERNAL_IP], [LB_IP]]);
  const text = rulesetText(planRuleset(views, steering(WILDCARD_V4)));
  for (const chain of ['nat-prerouting', 'nat-output']) {
    t.match(text, new RegExp(`chain ${chain} \\{\\n\\t\\ttype nat hook \\w+ priority -101; policy accept;\\n`
      + '\\t\\tip daddr @ingress-ips meta l4proto tcp th dport 80 redirect to :80\\n'
      + '\\t\\tip daddr @ingress-ips meta l4proto tcp th dport 443 redirect to :443\\n\\t\\tjump cluster-ip-masquerade'), `${chain}: the redirects come first`);
  }
  t.match(text, `${LB_IP} . tcp . 8080 : goto external/default/ingress/tcp/8080`, 'the Service keeps its own rules for the other ports');

  const plain = rulesetText(planRuleset(views, { ...DEFAULT_PROXY_CONFIG, nodeName: 'node-1' }));
  t.notMatch(plain, 'ingress-ips', 'without --ingress-service: no set, no rule');
  t.notMatch(plain, 'redirect');

  const bound = rulesetText(planRuleset(views, steering([{ address: '192.168.100.1', port: 8443 }])));
  t.match(bound, 'ip daddr @ingress-ips meta l4proto tcp th dport 8443 dnat to 192.168.100.1:8443', 'a listener bound to an address: DNAT to it');
});

t.test('kubenft render shows the steering for the listeners the flags give', async (t) => {
  const manifests = new ManifestFile(objects([LB_IP]));
  t.teardown(() => manifests.remove());
  const render = (...flags: string[]) => execFileSync('node', [CLI, 'render', '--manifests', manifests.path, '--hostname-override', 'node-1', ...flags], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  const text = render('--ingress', '--ingress-service', 'default/ingress', '--ingress-http-address', '0.0.0.0:8081', '--ingress-https-address', '');
  t.match(text, 'ip daddr @ingress-ips meta l4proto tcp th dport 8081 redirect to :8081');
  t.notMatch(text, 'th dport 443 redirect', 'no HTTPS listener, no HTTPS steering');
  t.match(text, new RegExp(`set ingress-ips \\{[^}]*elements = \\{ ${EXTERNAL_IP},\\s+${LB_IP} \\}`));
  t.notMatch(render('--ingress'), 'ingress-ips', 'without --ingress-service');
});

t.test('planned, dual-stack: the IPv6 addresses too, when a listener takes IPv6', async (t) => {
  const dualStack = { ...ingressService([LB_IP, LB_IP_V6]), spec: { ...ingressService([]).spec, clusterIPs: ['10.0.0.50', 'fd00:10:96::50'], ipFamilies: ['IPv4', 'IPv6'] } };
  const views = allServicePortViews(stateOf([dualStack]));
  const tablesOf = (config: ProxyConfig) => planRuleset(views, config).tables.filter((table) => table.name === 'kubenft');
  const [, v6] = tablesOf(steering([{ address: '::', port: 80 }]));
  t.same(setNamed(v6, SHARED_SETS.ingressIPs).elements.map((element) => element.key), [[LB_IP_V6]]);
  t.match(rulesetText({ tables: [v6] }), 'ip6 daddr @ingress-ips meta l4proto tcp th dport 80 redirect to :80', ':: takes IPv6 (and IPv4)');
  const [v4Only, v6Unserved] = tablesOf(steering(WILDCARD_V4));
  t.match(rulesetText({ tables: [v4Only] }), 'redirect to :80');
  t.notMatch(rulesetText({ tables: [v6Unserved] }), 'redirect', '0.0.0.0 takes no IPv6: nothing is steered to it');
});

t.test('the status shows --ingress-status-address, else the ingress Service\'s addresses, else the node\'s', async (t) => {
  const state = stateOf(objects([LB_IP]));
  const nodeIPs = ['192.168.100.1'];
  t.same(statusAddresses({ statusAddresses: ['192.0.2.1'], service: 'default/ingress' }, state, nodeIPs), ['192.0.2.1']);
  t.same(statusAddresses({ statusAddresses: [], service: 'default/ingress' }, state, nodeIPs), [LB_IP, EXTERNAL_IP]);
  t.same(statusAddresses({ statusAddresses: [], service: 'default/missing' }, state, nodeIPs), [], 'none while the Service is unknown');
  t.same(statusAddresses({ statusAddresses: [] }, state, nodeIPs), nodeIPs);
});

t.test('--ingress-service: NAMESPACE/NAME, named in --help', async (t) => {
  t.equal(parseOptions(['--ingress', '--ingress-service', 'ingress-system/kubenft']).ingress.service, 'ingress-system/kubenft');
  t.throws(() => parseOptions(['--ingress', '--ingress-service', 'kubenft']), /--ingress-service "kubenft": is not NAMESPACE\/NAME/);
  t.throws(() => parseOptions(['--ingress-service', 'a/b']), /--ingress-service needs --ingress/);
  t.throws(() => parseOptions(['--ingress', '--ingress-service', 'a/b', '--proxy-mode', 'iptables']), /it needs --proxy-mode=nftables/);
  t.match(helpText(), /--ingress-service NAMESPACE\/NAME/);
});

t.test('real packets: the LB IP on 80 and 443 reaches the proxy, its other port the Service\'s endpoint', async (t) => {
  const topology: Topology = await createTopology({ pods: PODS, serverReadyTimeoutMs: 60_000 });
  const manifests = new ManifestFile(objects([LB_IP]));
  let agent: ProcessHandle | undefined;
  const dataplane = new IngressDataplaneUnderTest();
  t.teardown(async () => {
    await agent?.stop();
    await dataplane.remove();
    await topology.destroy();
    manifests.remove();
  });
  agent = topology.spawn(topology.node, [
    'node', CLI, '--manifests', manifests.path, '--hostname-override', 'node-1', '--iptables-min-sync-period', '50ms',
    '--healthz-bind-address', '', '--metrics-bind-address', '', '--ingress', '--ingress-workers', '1', ...dataplane.args, '--ingress-service', 'default/ingress',
  ]);
  /** curl from `ns` with the name app.example.com sent to `address`: the status, the Server header and the answering pod. */
  const request = async (ns: string, url: string, address: string) => {
    const result = await topology.exec(ns, ['curl', '-sS', '-k', '--max-time', '5', '--connect-to', `::${address}:`, '-D', '-', url]);
    return {
      status: Number(/^HTTP\/[\d.]+ (\d+)/.exec(result.stdout)?.[1] ?? 0),
      server: /^server: (.*?)\r?$/im.exec(result.stdout)?.[1],
      pod: /"pod":"([^"]+)"/.exec(result.stdout)?.[1],
    };
  };
  const fromClient = (url: string, address = LB_IP) => request(topology.client, url, address);
  if (!(await eventually(async () => (await fromClient('http://app.example.com/')).status === 200, 30_000))) {
    throw new Error(`the LB IP does not reach the proxy: ${JSON.stringify(agent.output())}`);
  }

  const nft = async (...args: string[]) => (await topology.exec(topology.node, ['nft', ...args])).stdout;
  t.match(await nft('list', 'chain', 'ip', 'kubenft', 'nat-prerouting'), /ip daddr @ingress-ips tcp dport 80 redirect to :80\n\s+ip daddr @ingress-ips tcp dport 443 redirect to :443\n/, 'nft: the redirects are loaded');
  t.match(await nft('list', 'set', 'ip', 'kubenft', 'ingress-ips'), new RegExp(`elements = \\{ ${EXTERNAL_IP}, ${LB_IP} \\}`), 'nft: the set holds the LB and external IPs');

  t.same(await fromClient('http://app.example.com/'), { status: 200, server: 'kubenft', pod: 'web' }, 'LB IP :80: the proxy routes by Host to the Ingress\'s backend');
  t.same(await fromClient('https://app.example.com/'), { status: 200, server: 'kubenft', pod: 'web' }, 'LB IP :443: TLS ends at the proxy');
  t.same(await fromClient('http://unknown.example.com/'), { status: 404, server: 'kubenft', pod: undefined }, 'an unknown host: the proxy\'s own 404');
  t.same(await fromClient('http://app.example.com/', EXTERNAL_IP), { status: 200, server: 'kubenft', pod: 'web' }, 'an external IP :80 too');
  t.same(await fromClient('http://app.example.com:8080/'), { status: 200, server: undefined, pod: 'lb-pod' }, 'LB IP :8080: the Service\'s own DNAT to its endpoint');

  const explain = (to: string) => topology.exec(topology.node, ['node', CLI, 'explain', '--from', EXTERNAL.clientIPv4, '--to', to]);
  const steered = await explain(`${LB_IP}:443`);
  t.match(steered.stdout, /accept, redirect to :443, delivered to this node/, `explain follows the redirect: ${steered.stderr}`);
  t.match((await explain(`${LB_IP}:8080`)).stdout, /accept, dnat to 10\.244\.1\.5:9376/, 'and the Service\'s own DNAT for its other port');

  // From the node itself (nat output): the LB IP needs a route before the output hook sees the packet.
  await topology.exec(topology.node, ['ip', 'route', 'add', `${LB_IP}/32`, 'dev', SERVICE_INTERFACE]);
  t.same(await request(topology.node, 'http://app.example.com/', LB_IP), { status: 200, server: 'kubenft', pod: 'web' }, 'from this node: redirected to the proxy too');

  manifests.write(objects([MOVED_LB_IP]));
  t.ok(await eventually(async () => (await fromClient('http://app.example.com/', MOVED_LB_IP)).server === 'kubenft', 15_000), 'a new LB IP is steered after the next sync');
  t.match(await nft('list', 'set', 'ip', 'kubenft', 'ingress-ips'), new RegExp(`elements = \\{ ${EXTERNAL_IP}, ${MOVED_LB_IP.replaceAll('.', '\\.')} \\}`), 'and the old one is gone');
});
