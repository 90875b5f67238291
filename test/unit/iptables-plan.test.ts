import { createHash } from 'node:crypto';
import t from 'tap';
import { DEFAULT_PROXY_CONFIG, type ProxyConfig } from '../../src/services/config.js';
import { parseSave } from '../../src/services/iptables-backend.js';
import { kubeProxyLeftovers } from '../../src/services/kube-proxy-leftovers-plan.js';
import { describeRestoreLine, iptablesRestoreInput, planIptables } from '../../src/services/iptables-plan.js';
import { ClusterState, type KubeObject } from '../../src/cluster/cluster-state.js';
import { allServicePortViews } from '../../src/cluster/service-ports.js';

// The planner against kube-proxy's iptables mode: the classic hostnames example rule for rule, and
// the semantics of the other service kinds.

const NODE = 'node-1';
const config: ProxyConfig = { ...DEFAULT_PROXY_CONFIG, nodeName: NODE };

/** Upstream's hash, computed here independently of the planner: base32 via a bit string. */
function upstreamHash(text: string): string {
  const bits = [...createHash('sha256').update(text).digest()].map((byte) => byte.toString(2).padStart(8, '0')).join('');
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  return Array.from({ length: 16 }, (_, index) => alphabet[parseInt(bits.slice(index * 5, index * 5 + 5), 2)]).join('');
}

interface EndpointSpec {
  ip: string;
  node?: string;
  ready?: boolean;
}

function service(name: string, spec: Record<string, unknown>, status: Record<string, unknown> = {}): KubeObject {
  return { apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: 'default' }, spec, status };
}

function slice(serviceName: string, portName: string, port: number, endpoints: EndpointSpec[], family: 4 | 6 = 4): KubeObject {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name: `${serviceName}-ipv${family}`, namespace: 'default', labels: { 'kubernetes.io/service-name': serviceName } },
    addressType: family === 4 ? 'IPv4' : 'IPv6',
    ports: [{ name: portName, protocol: 'TCP', port }],
    endpoints: endpoints.map(({ ip, node, ready = true }) => ({ addresses: [ip], conditions: { ready }, nodeName: node ?? 'node-2' })),
  };
}

function views(...objects: KubeObject[]) {
  const state = new ClusterState(NODE);
  for (const object of objects) state.apply(object);
  return allServicePortViews(state);
}

const HOSTNAMES_SERVICE = service('hostnames', { clusterIP: '10.0.1.175', ports: [{ name: 'default', protocol: 'TCP', port: 80, targetPort: 9376 }] });
const HOSTNAMES_PODS = ['10.244.1.7', '10.244.2.3', '10.244.3.6'];

t.test('the hostnames example, exactly as kube-proxy writes it', async (t) => {
  const plan = planIptables(views(HOSTNAMES_SERVICE, slice('hostnames', 'default', 9376, HOSTNAMES_PODS.map((ip) => ({ ip })))), config, 4);
  const svc = `KUBE-SVC-${upstreamHash('default/hostnames:defaulttcp')}`;
  const [sep1, sep2, sep3] = HOSTNAMES_PODS.map((ip) => `KUBE-SEP-${upstreamHash(`default/hostnames:defaulttcp${ip}:9376`)}`);
  t.equal(svc, 'KUBE-SVC-ODX2UBAZM7RQWOIU', 'the service chain name is stable');
  const comment = '-m comment --comment default/hostnames:default';
  t.equal(
    iptablesRestoreInput(plan),
    `*filter
:KUBE-SERVICES - [0:0]
:KUBE-EXTERNAL-SERVICES - [0:0]
:KUBE-FORWARD - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-PROXY-FIREWALL - [0:0]
-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
COMMIT
*nat
:KUBE-SERVICES - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-MARK-MASQ - [0:0]
:${svc} - [0:0]
:${sep1} - [0:0]
:${sep2} - [0:0]
:${sep3} - [0:0]
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully
-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
-A KUBE-SERVICES -m comment --comment "default/hostnames:default cluster IP" -m tcp -p tcp -d 10.0.1.175 --dport 80 -j ${svc}
-A ${svc} -m comment --comment "default/hostnames:default -> 10.244.1.7:9376" -m statistic --mode random --probability 0.3333333333 -j ${sep1}
-A ${svc} -m comment --comment "default/hostnames:default -> 10.244.2.3:9376" -m statistic --mode random --probability 0.5000000000 -j ${sep2}
-A ${svc} -m comment --comment "default/hostnames:default -> 10.244.3.6:9376" -j ${sep3}
-A ${sep1} ${comment} -s 10.244.1.7 -j KUBE-MARK-MASQ
-A ${sep1} ${comment} -m tcp -p tcp -j DNAT --to-destination 10.244.1.7:9376
-A ${sep2} ${comment} -s 10.244.2.3 -j KUBE-MARK-MASQ
-A ${sep2} ${comment} -m tcp -p tcp -j DNAT --to-destination 10.244.2.3:9376
-A ${sep3} ${comment} -s 10.244.3.6 -j KUBE-MARK-MASQ
-A ${sep3} ${comment} -m tcp -p tcp -j DNAT --to-destination 10.244.3.6:9376
-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
COMMIT
`,
  );
  t.same(planIptables(views(HOSTNAMES_SERVICE), config, 6).nat.filter((rule) => rule.includes('hostnames')), [], 'an IPv4 service has no IPv6 rules');
});

t.test('a service without endpoints is rejected in the filter table and has no nat chain', async (t) => {
  const plan = planIptables(views(HOSTNAMES_SERVICE), config, 4);
  t.same(plan.filter.filter((rule) => rule.includes('hostnames')), [
    '-A KUBE-SERVICES -m comment --comment "default/hostnames:default has no endpoints" -m tcp -p tcp -d 10.0.1.175 --dport 80 -j REJECT',
  ]);
  t.notOk(plan.nat.some((rule) => rule.includes('hostnames')));
  t.notOk(plan.chains.nat.some((chain) => chain.startsWith('KUBE-SVC-') || chain.startsWith('KUBE-SEP-')));
});

t.test('a not-ready endpoint is not used', async (t) => {
  const plan = planIptables(views(HOSTNAMES_SERVICE, slice('hostnames', 'default', 9376, [{ ip: '10.244.1.7' }, { ip: '10.244.2.3', ready: false }])), config, 4);
  t.equal(plan.chains.nat.filter((chain) => chain.startsWith('KUBE-SEP-')).length, 1);
  t.notOk(plan.nat.some((rule) => rule.includes('statistic')), 'one endpoint needs no probability');
});

t.test('masquerading of off-cluster traffic: localCIDRs, or masqueradeAll, and the mark bit', async (t) => {
  const objects = [HOSTNAMES_SERVICE, slice('hostnames', 'default', 9376, [{ ip: '10.244.1.7' }])];
  const masqueradeRules = (custom: Partial<ProxyConfig>) =>
    planIptables(views(...objects), { ...config, ...custom }, 4).nat.filter((rule) => rule.startsWith('-A KUBE-SVC-') && rule.endsWith('-j KUBE-MARK-MASQ'));
  t.match(masqueradeRules({ localCIDRs: ['fd00:10:244::/64', '10.244.0.0/16'] }), [/-d 10\.0\.1\.175 --dport 80 ! -s 10\.244\.0\.0\/16 -j KUBE-MARK-MASQ$/]);
  t.match(masqueradeRules({ masqueradeAll: true, localCIDRs: ['10.244.0.0/16'] }), [/--dport 80 -j KUBE-MARK-MASQ$/]);
  t.same(masqueradeRules({}), [], 'no local-traffic detection: nothing is masqueraded');
  const marks = planIptables(views(...objects), { ...config, masqueradeBit: 5 }, 4).nat.filter((rule) => rule.includes('mark'));
  t.ok(marks.includes('-A KUBE-MARK-MASQ -j MARK --or-mark 0x20'));
  t.ok(marks.includes('-A KUBE-POSTROUTING -m mark ! --mark 0x20/0x20 -j RETURN'));
});

t.test('NodePort, externalIPs and a firewalled LoadBalancer with externalTrafficPolicy Local', async (t) => {
  const objects = [
    service('web', {
      type: 'LoadBalancer', clusterIP: '10.0.0.5', externalIPs: ['192.0.2.10'], externalTrafficPolicy: 'Local',
      loadBalancerSourceRanges: ['198.51.100.0/24'], ports: [{ name: 'http', port: 80, nodePort: 30080, targetPort: 8080 }],
    }, { loadBalancer: { ingress: [{ ip: '203.0.113.7' }] } }),
    slice('web', 'http', 8080, [{ ip: '10.244.1.9', node: NODE }, { ip: '10.244.2.9', node: 'node-2' }]),
  ];
  const plan = planIptables(views(...objects), { ...config, localCIDRs: ['10.244.0.0/16'] }, 4);
  const hash = upstreamHash('default/web:httptcp');
  const [svc, svl, ext, fw] = ['SVC', 'SVL', 'EXT', 'FW'].map((kind) => `KUBE-${kind}-${hash}`);
  const [localSep, remoteSep] = ['10.244.1.9', '10.244.2.9'].map((ip) => `KUBE-SEP-${upstreamHash(`default/web:httptcp${ip}:8080`)}`);
  const rulesOf = (chain: string) => plan.nat.filter((rule) => rule.startsWith(`-A ${chain} `));
  t.same(rulesOf(ext), [
    `-A ${ext} -m comment --comment "pod traffic for default/web:http external destinations" -s 10.244.0.0/16 -j ${svc}`,
    `-A ${ext} -m comment --comment "masquerade LOCAL traffic for default/web:http external destinations" -m addrtype --src-type LOCAL -j KUBE-MARK-MASQ`,
    `-A ${ext} -m comment --comment "route LOCAL traffic for default/web:http external destinations" -m addrtype --src-type LOCAL -j ${svc}`,
    `-A ${ext} -j ${svl}`,
  ]);
  t.same(rulesOf(svl), [`-A ${svl} -m comment --comment "default/web:http -> 10.244.1.9:8080" -j ${localSep}`], 'external traffic: local endpoints only');
  t.match(rulesOf(svc).join('\n'), remoteSep, 'cluster traffic: every endpoint');
  t.same(rulesOf(fw), [
    `-A ${fw} -m comment --comment "default/web:http loadbalancer IP" -s 198.51.100.0/24 -j ${ext}`,
    `-A ${fw} -m comment --comment "other traffic to default/web:http will be dropped by KUBE-PROXY-FIREWALL"`,
  ]);
  t.ok(plan.nat.includes(`-A KUBE-SERVICES -m comment --comment "default/web:http external IP" -m tcp -p tcp -d 192.0.2.10 --dport 80 -j ${ext}`));
  t.ok(plan.nat.includes(`-A KUBE-SERVICES -m comment --comment "default/web:http loadbalancer IP" -m tcp -p tcp -d 203.0.113.7 --dport 80 -j ${fw}`));
  t.ok(plan.nat.includes(`-A KUBE-NODEPORTS -m comment --comment default/web:http -m tcp -p tcp --dport 30080 -j ${ext}`));
  t.ok(plan.filter.includes(`-A KUBE-PROXY-FIREWALL -m comment --comment "default/web:http traffic not accepted by ${fw}" -m tcp -p tcp -d 203.0.113.7 --dport 80 -j DROP`));
  t.equal(plan.nat.at(-1), '-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS');

  const remoteOnly = planIptables(views(objects[0], slice('web', 'http', 8080, [{ ip: '10.244.2.9', node: 'node-2' }])), config, 4);
  t.notOk(remoteOnly.chains.nat.includes(svl), 'no local endpoints: no local chain');
  t.notOk(remoteOnly.nat.includes(`-A ${ext} -j ${svl}`));
  t.same(remoteOnly.filter.filter((rule) => rule.startsWith('-A KUBE-EXTERNAL-SERVICES')), [
    '-A KUBE-EXTERNAL-SERVICES -m comment --comment "default/web:http has no local endpoints" -m tcp -p tcp -d 192.0.2.10 --dport 80 -j DROP',
    '-A KUBE-EXTERNAL-SERVICES -m comment --comment "default/web:http has no local endpoints" -m tcp -p tcp -d 203.0.113.7 --dport 80 -j DROP',
    '-A KUBE-EXTERNAL-SERVICES -m comment --comment "default/web:http has no local endpoints" -m addrtype --dst-type LOCAL -m tcp -p tcp --dport 30080 -j DROP',
  ]);

  const noEndpoints = planIptables(views(objects[0]), config, 4);
  t.equal(noEndpoints.filter.filter((rule) => rule.includes('has no endpoints') && rule.endsWith('-j REJECT')).length, 4, 'ClusterIP, external IP, LB IP and NodePort rejected');
});

t.test('nodePortAddresses replace the LOCAL address-type match', async (t) => {
  const plan = planIptables(views(HOSTNAMES_SERVICE), { ...config, nodePortAddresses: ['192.168.1.1', 'fd00::1'] }, 4);
  t.same(plan.nat.filter((rule) => rule.endsWith('-j KUBE-NODEPORTS')), [
    '-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -d 192.168.1.1 -j KUBE-NODEPORTS',
  ]);
});

t.test('session affinity and internalTrafficPolicy Local', async (t) => {
  const affinity = service('sticky', {
    clusterIP: '10.0.0.9', sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: 60 } },
    internalTrafficPolicy: 'Local', ports: [{ name: 'p', port: 80, targetPort: 80 }],
  });
  const plan = planIptables(views(affinity, slice('sticky', 'p', 80, [{ ip: '10.244.1.3', node: NODE }, { ip: '10.244.2.3' }])), config, 4);
  const svl = `KUBE-SVL-${upstreamHash('default/sticky:ptcp')}`;
  const sep = `KUBE-SEP-${upstreamHash('default/sticky:ptcp10.244.1.3:80')}`;
  t.same(plan.nat.filter((rule) => rule.includes('sticky')), [
    `-A KUBE-SERVICES -m comment --comment "default/sticky:p cluster IP" -m tcp -p tcp -d 10.0.0.9 --dport 80 -j ${svl}`,
    `-A ${svl} -m comment --comment "default/sticky:p -> 10.244.1.3:80" -m recent --name ${sep} --rcheck --seconds 60 --reap -j ${sep}`,
    `-A ${svl} -m comment --comment "default/sticky:p -> 10.244.1.3:80" -j ${sep}`,
    `-A ${sep} -m comment --comment default/sticky:p -s 10.244.1.3 -j KUBE-MARK-MASQ`,
    `-A ${sep} -m comment --comment default/sticky:p -m recent --name ${sep} --set -m tcp -p tcp -j DNAT --to-destination 10.244.1.3:80`,
  ]);
  const remoteOnly = planIptables(views(affinity, slice('sticky', 'p', 80, [{ ip: '10.244.2.3' }])), config, 4);
  t.same(remoteOnly.filter.filter((rule) => rule.includes('sticky')), [
    '-A KUBE-SERVICES -m comment --comment "default/sticky:p has no local endpoints" -m tcp -p tcp -d 10.0.0.9 --dport 80 -j DROP',
  ]);
});

t.test('IPv6 service ports go to the IPv6 plan with bracketed endpoints', async (t) => {
  const dual = service('dual', { clusterIPs: ['10.0.0.7', 'fd00:10:96::7'], ipFamilies: ['IPv4', 'IPv6'], ipFamilyPolicy: 'RequireDualStack', ports: [{ name: 'p', port: 80, targetPort: 80 }] });
  const objects = [dual, slice('dual', 'p', 80, [{ ip: '10.244.1.3' }]), slice('dual', 'p', 80, [{ ip: 'fd00:244::3' }], 6)];
  const plan = planIptables(views(...objects), config, 6);
  const sep = `KUBE-SEP-${upstreamHash('default/dual:ptcp[fd00:244::3]:80')}`;
  t.ok(plan.nat.includes(`-A ${sep} -m comment --comment default/dual:p -m tcp -p tcp -j DNAT --to-destination [fd00:244::3]:80`));
  t.ok(plan.nat.some((rule) => rule.includes('-d fd00:10:96::7 --dport 80')));
  t.notOk(plan.nat.some((rule) => rule.includes('10.0.0.7')));
  t.match(plan.nat.at(-1), /--dst-type LOCAL ! -d ::1\/128 -j KUBE-NODEPORTS$/);
});

t.test('stale chains are flushed and deleted, and restore lines map back to their service', async (t) => {
  const plan = planIptables(views(HOSTNAMES_SERVICE, slice('hostnames', 'default', 9376, [{ ip: '10.244.1.7' }])), config, 4);
  const input = iptablesRestoreInput(plan, ['KUBE-SEP-OLD']);
  const lines = input.split('\n');
  t.ok(lines.indexOf(':KUBE-SEP-OLD - [0:0]') < lines.indexOf('-X KUBE-SEP-OLD'));
  t.equal(lines.indexOf('-X KUBE-SEP-OLD'), lines.lastIndexOf('COMMIT') - 1, 'deleted after every rule that could reference it');
  const dnat = lines.findIndex((line) => line.includes('DNAT')) + 1;
  t.match(describeRestoreLine(plan, input, dnat), { number: dnat, table: 'nat', servicePort: 'default/hostnames:default', text: /DNAT/ });
  t.notOk(describeRestoreLine(plan, input, 2).servicePort, 'a fixed chain belongs to no service');
});

t.test('the cleanup input of a 300k-chain table is built (no spread of every chain onto the stack)', async (t) => {
  const chains = Array.from({ length: 300_000 }, (_, index) => `KUBE-SEP-${String(index).padStart(16, '0')}`);
  const saved = parseSave(['*nat', ':PREROUTING ACCEPT [0:0]', ':KUBE-SERVICES - [0:0]', ...chains.map((chain) => `:${chain} - [0:0]`),
    '-A PREROUTING -j KUBE-SERVICES', 'COMMIT', ''].join('\n'));
  const input = kubeProxyLeftovers(saved).input!;
  t.match(input, /^\*nat\n:KUBE-SERVICES - \[0:0\]\n/);
  t.match(input, '-D PREROUTING -j KUBE-SERVICES\n');
  t.equal(input.split('\n').filter((line) => line.startsWith('-X ')).length, 300_001, 'every chain of ours is deleted');
});
