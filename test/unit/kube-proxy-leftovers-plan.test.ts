// What of an iptables-save is kube-proxy's and how it is removed (the kernel side is in
// kube-proxy-migration.test.ts), and which IPVS virtual services are its.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseSave } from '../../src/services/iptables-backend.js';
import { projectRoot } from '../../src/kernel/native.js';
import { JUMP_RULES, isOwnChainIn, savedJumpRule } from '../../src/services/iptables-plan.js';
import { kubeProxyLeftovers, kubeProxyVirtualServices } from '../../src/services/kube-proxy-leftovers-plan.js';

const fixture = (name: string) => readFileSync(join(projectRoot(), 'test/fixtures/kube-proxy', name), 'utf8');
/** Both files loaded one after the other, as iptables-save then prints them (chains merged per table). */
function merged(...names: string[]): string {
  const tables = new Map<string, { chains: string[]; rules: string[] }>();
  for (const [table, saved] of names.flatMap((name) => [...parseSave(fixture(name))])) {
    const into = tables.get(table) ?? { chains: [], rules: [] };
    into.chains.push(...saved.chains.filter((chain) => !into.chains.includes(chain)));
    into.rules.push(...saved.rules);
    tables.set(table, into);
  }
  return [...tables].map(([table, { chains, rules }]) => [`*${table}`, ...chains.map((chain) => `:${chain} - [0:0]`), ...rules, 'COMMIT'].join('\n')).join('\n');
}

t.test('kube-proxy\'s iptables mode beside kubelet\'s, a CNI\'s and a user\'s chains: only kube-proxy\'s go', async (t) => {
  const removal = kubeProxyLeftovers(parseSave(merged('iptables-mode.v4.save', 'neighbours.v4.save')));
  const input = removal.input!.split('\n');
  const deleted = input.filter((line) => line.startsWith('-X ')).map((line) => line.slice(3)).sort();
  t.same(deleted, [
    'KUBE-EXT-CDGGSHYLG3RE2FKL', 'KUBE-EXTERNAL-SERVICES', 'KUBE-FORWARD', 'KUBE-MARK-MASQ', 'KUBE-NODEPORTS', 'KUBE-NODEPORTS', 'KUBE-POSTROUTING',
    'KUBE-PROXY-CANARY', 'KUBE-PROXY-CANARY', 'KUBE-PROXY-CANARY', 'KUBE-PROXY-FIREWALL', 'KUBE-SEP-GLY26CD2CRXSPZV6', 'KUBE-SEP-LCXTWRM7YGXPGOXL',
    'KUBE-SEP-Z4THSXVKVKWW4KPD', 'KUBE-SERVICES', 'KUBE-SERVICES', 'KUBE-SVC-CDGGSHYLG3RE2FKL', 'KUBE-SVC-VDI6PZEMAYUTK7X7',
  ], 'kube-proxy\'s chains, in the tables where it made them; not kubelet\'s KUBE-FIREWALL, KUBE-KUBELET-CANARY, KUBE-IPTABLES-HINT');
  const deletedRules = input.filter((line) => line.startsWith('-D '));
  t.equal(deletedRules.length, 13, 'every jump from a built-in chain into kube-proxy\'s (10 filter, including 1.19\'s INPUT one, and 3 nat) is deleted once');
  t.notOk(deletedRules.some((line) => /FLANNEL|KUBE-FIREWALL|198\.51\.100\.1/.test(line)), 'the CNI\'s, kubelet\'s and the user\'s rules stay');
  t.ok(input.indexOf(':KUBE-SERVICES - [0:0]') < input.indexOf('-X KUBE-SERVICES'), 'flushed before it is deleted');
  t.same(removal.serviceChains, new Map([['nat', 6]]), 'the service and endpoint chains are counted');
  t.equal(removal.removed.filter((line) => line.includes(' chain ')).length, 12, 'and every other chain is named');
  t.same(removal.referenced, []);
});

t.test('a kube-proxy chain someone else\'s chain jumps to is flushed and kept, and named', async (t) => {
  const saved = parseSave(['*nat', ':POSTROUTING ACCEPT [0:0]', ':KUBE-MARK-MASQ - [0:0]', ':CNI-HOSTPORT-MASQ - [0:0]',
    '-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000', '-A CNI-HOSTPORT-MASQ -j KUBE-MARK-MASQ', 'COMMIT', ''].join('\n'));
  const removal = kubeProxyLeftovers(saved);
  t.same(removal.input!.split('\n'), ['*nat', ':KUBE-MARK-MASQ - [0:0]', 'COMMIT', '']);
  t.match(removal.referenced, [/nat chain KUBE-MARK-MASQ \(flushed; still the target of "-A CNI-HOSTPORT-MASQ -j KUBE-MARK-MASQ"\)/]);
  t.same(removal.removed, []);
});

t.test('kubenft\'s iptables mode keeps its chains and jumps, and loses kube-proxy\'s other jumps into them', async (t) => {
  const keep = { chain: isOwnChainIn, jumps: new Set(JUMP_RULES.map(savedJumpRule)) };
  const ours = ['*filter', ':INPUT ACCEPT [0:0]', ':KUBE-SERVICES - [0:0]', ':KUBE-PROXY-FIREWALL - [0:0]', ':KUBE-IPVS-FILTER - [0:0]',
    savedJumpRule(JUMP_RULES.find((jump) => jump.table === 'filter' && jump.from === 'INPUT' && jump.to === 'KUBE-PROXY-FIREWALL')!),
    '-A INPUT -m comment --comment "kube-proxy firewall rules" -j KUBE-PROXY-FIREWALL',
    '-A INPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
    '-A INPUT -m comment --comment "kubernetes ipvs access filter" -j KUBE-IPVS-FILTER',
    '-A KUBE-SERVICES -d 10.0.3.11/32 -p tcp -j REJECT', 'COMMIT', ''].join('\n');
  const removal = kubeProxyLeftovers(parseSave(ours), keep);
  t.same(removal.input!.split('\n'), [
    '*filter', ':KUBE-IPVS-FILTER - [0:0]',
    '-D INPUT -m comment --comment "kube-proxy firewall rules" -j KUBE-PROXY-FIREWALL',
    '-D INPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
    '-D INPUT -m comment --comment "kubernetes ipvs access filter" -j KUBE-IPVS-FILTER',
    '-X KUBE-IPVS-FILTER', 'COMMIT', '',
  ], 'its own chains are neither flushed nor deleted; IPVS mode\'s and 1.19\'s jumps into them go');
});

t.test('IPVS virtual services on kube-ipvs0\'s addresses are kube-proxy\'s; others stay', async (t) => {
  const dump = [
    '-A -t 10.0.3.30:80 -s rr', '-a -t 10.0.3.30:80 -r 10.244.1.7:9376 -m -w 1',
    '-A -u 10.0.3.31:53 -s rr', '-A -t [fd00:10:96::1e]:443 -s rr', '-A --sctp-service 10.0.3.32:9 -s rr',
    '-A -t 192.168.1.10:30080 -s rr', '-A -f 100 -s rr', '-A -t 10.0.3.300:80 -s rr', '',
  ].join('\n');
  t.same(kubeProxyVirtualServices(dump, new Set(['10.0.3.30', '10.0.3.31', 'fd00:10:96::1e', '10.0.3.32'])), [
    { flag: '-t', service: '10.0.3.30:80', address: '10.0.3.30' },
    { flag: '-u', service: '10.0.3.31:53', address: '10.0.3.31' },
    { flag: '-t', service: '[fd00:10:96::1e]:443', address: 'fd00:10:96::1e' },
    { flag: '--sctp-service', service: '10.0.3.32:9', address: '10.0.3.32' },
  ], 'not a NodePort-looking service on a node address, not a firewall-mark service');
});
