import { execFileSync } from 'node:child_process';
import t, { type Test } from 'tap';
import { IptablesBackend, IptablesRestoreError, type IptablesBackendName } from '../../src/services/iptables-backend.js';
import { DEFAULT_PROXY_CONFIG, type ProxyConfig } from '../../src/services/config.js';
import type { ServiceInfo } from '../../src/cluster/model.js';
import type { ServicePortView } from '../../src/cluster/service-ports.js';

// IptablesBackend against real iptables-restore, legacy and nft, each run in a network namespace
// of its own (never the root namespace's rules), read back with iptables-save.

const config: ProxyConfig = { ...DEFAULT_PROXY_CONFIG, nodeName: 'node-1', localCIDRs: ['10.244.0.0/16'] };
const HOSTNAMES_SVC = 'KUBE-SVC-ODX2UBAZM7RQWOIU';
const USER_RULE = '-A INPUT -s 198.51.100.1/32 -j ACCEPT';

function serviceInfo(name: string, clusterIPs: string[]): ServiceInfo {
  return {
    namespace: 'default', name, type: 'ClusterIP', headless: false, clusterIPs, ports: [], externalIPs: [], loadBalancerIPs: [],
    loadBalancerSourceRanges: [], externalTrafficPolicyLocal: false, internalTrafficPolicyLocal: false,
  };
}

/** A view of one TCP service port with ready endpoints, built directly (so invalid addresses can be fed in). */
function view(name: string, clusterIP: string, portName: string, port: number, targetPort: number, endpoints: string[]): ServicePortView {
  return {
    service: serviceInfo(name, [clusterIP]),
    port: { name: portName, protocol: 'TCP', port, targetPort },
    family: clusterIP.includes(':') ? 6 : 4,
    clusterIP,
    endpoints: endpoints.map((address) => ({ address, port: targetPort, ready: true, serving: true, terminating: false })),
  };
}

const hostnames = (...pods: string[]) => view('hostnames', '10.0.1.175', 'default', 80, 9376, pods);
const ipv6Service = view('six', 'fd00:10:96::6', 'p', 80, 8080, ['fd00:244::6']);

let namespaces = 0;
function createNamespace(t: Test): string {
  const name = `knft-ipt-${process.pid}-${namespaces++}`;
  execFileSync('ip', ['netns', 'add', name]);
  t.teardown(() => execFileSync('ip', ['netns', 'delete', name]));
  return name;
}

const inNamespace = (namespace: string, command: string, args: string[] = [], input?: string) =>
  execFileSync('ip', ['netns', 'exec', namespace, command, ...args], { input, encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'] });

/** The saved tables without the timestamped comment lines. */
const save = (namespace: string, backend: IptablesBackendName, family: 4 | 6 = 4) =>
  inNamespace(namespace, `${family === 4 ? 'iptables' : 'ip6tables'}-${backend}-save`)
    .split('\n')
    .filter((line) => line && !line.startsWith('#'));

const chainsWithPrefix = (saved: string[], prefix: string) => saved.filter((line) => line.startsWith(`:${prefix}`));

t.test('IptablesBackend in throwaway network namespaces', { skip: process.getuid?.() !== 0 ? 'not root' : false }, async (t) => {
  for (const backend of ['legacy', 'nft'] as const) {
    t.test(`${backend}: load, re-sync, failure and cleanup`, async (t) => {
      const namespace = createNamespace(t);
      inNamespace(namespace, `iptables-${backend}-restore`, ['--noflush'], `*filter\n${USER_RULE}\nCOMMIT\n`);
      const iptables = new IptablesBackend({ backend, netns: namespace });

      const result = await iptables.replace([hostnames('10.244.1.7', '10.244.2.3', '10.244.3.6'), ipv6Service], config);
      t.equal(result.backend, backend);
      t.ok(result.restoreMs >= 0);
      let saved = save(namespace, backend);
      t.ok(saved.includes(`-A KUBE-SERVICES -d 10.0.1.175/32 -p tcp -m comment --comment "default/hostnames:default cluster IP" -m tcp --dport 80 -j ${HOSTNAMES_SVC}`));
      t.ok(saved.includes(`-A ${HOSTNAMES_SVC} ! -s 10.244.0.0/16 -d 10.0.1.175/32 -p tcp -m comment --comment "default/hostnames:default cluster IP" -m tcp --dport 80 -j KUBE-MARK-MASQ`));
      t.match(saved.join('\n'), /-A KUBE-SVC-\S+ -m comment --comment "default\/hostnames:default -> 10\.244\.1\.7:9376" -m statistic --mode random --probability 0\.33333333349 -j KUBE-SEP-/);
      t.match(saved.join('\n'), /-m statistic --mode random --probability 0\.50000000000 -j KUBE-SEP-/);
      t.match(saved.join('\n'), /-A KUBE-SEP-\S+ -s 10\.244\.3\.6\/32 -m comment --comment "default\/hostnames:default" -j KUBE-MARK-MASQ/);
      t.match(saved.join('\n'), /-A KUBE-SEP-\S+ -p tcp -m comment --comment "default\/hostnames:default" -m tcp -j DNAT --to-destination 10\.244\.3\.6:9376/);
      t.ok(saved.includes('-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000'));
      t.ok(saved.includes('-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN'));
      t.ok(saved.includes('-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING'));
      t.ok(saved.includes('-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES'));
      t.ok(saved.includes('-A FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES'));
      t.ok(saved.includes(USER_RULE), 'other rules of the built-in chains are kept');
      t.equal(chainsWithPrefix(saved, 'KUBE-SEP-').length, 3);
      const saved6 = save(namespace, backend, 6);
      t.match(saved6.join('\n'), /-A KUBE-SERVICES -d fd00:10:96::6\/128 -p tcp .* -j KUBE-SVC-/);
      t.match(saved6.join('\n'), /-j DNAT --to-destination \[fd00:244::6\]:8080/);
      const other = backend === 'legacy' ? 'nft' : 'legacy';
      t.same(chainsWithPrefix(save(namespace, other), 'KUBE-'), [], `nothing loaded through ${other}`);

      await iptables.replace([hostnames('10.244.1.7', '10.244.4.4')], config);
      const resynced = save(namespace, backend);
      const oldSeps = chainsWithPrefix(saved, 'KUBE-SEP-');
      const newSeps = chainsWithPrefix(resynced, 'KUBE-SEP-');
      t.equal(newSeps.length, 2, 'one chain per current endpoint');
      t.equal(newSeps.filter((chain) => oldSeps.includes(chain)).length, 1, 'the chain of the endpoint that stayed is kept');
      t.notOk(resynced.some((line) => line.includes('10.244.2.3') || line.includes('10.244.3.6')), 'stale endpoint chains are gone');
      t.match(resynced.join('\n'), /-m statistic --mode random --probability 0\.50000000000 -j KUBE-SEP-/);
      const jumpRules = resynced.filter((line) => / -j KUBE-/.test(line) && /^-A (PREROUTING|INPUT|FORWARD|OUTPUT|POSTROUTING) /.test(line));
      t.equal(jumpRules.length, 12, 'jump rules are not duplicated');
      t.equal(new Set(jumpRules).size, 12);
      t.same(chainsWithPrefix(save(namespace, backend, 6), 'KUBE-SVC-'), [], 'the IPv6 service that went away is removed');

      saved = resynced;
      const broken = view('broken', '10.0.0.66', 'p', 80, 80, ['10.244.1.999']);
      const failure = await iptables.replace([hostnames('10.244.1.7'), broken], config).then(
        () => undefined,
        (error: unknown) => error,
      );
      t.type(failure, IptablesRestoreError);
      const restoreError = failure as IptablesRestoreError;
      t.equal(restoreError.servicePort, 'default/broken:p');
      t.match(restoreError.rule, /-s 10\.244\.1\.999 -j KUBE-MARK-MASQ/);
      t.match(restoreError.message, /rejected line \d+ \(service port default\/broken:p, nat table\): .*10\.244\.1\.999.*not found/);
      t.same(save(namespace, backend), saved, 'the previous rules stay loaded, in both tables');

      await iptables.cleanup();
      for (const family of [4, 6] as const) {
        const cleaned = save(namespace, backend, family);
        t.same(cleaned.filter((line) => line.includes('KUBE-')), [], `IPv${family}: no KUBE- chain or jump left`);
      }
      t.ok(save(namespace, backend).includes(USER_RULE), 'cleanup leaves other rules alone');
      await iptables.cleanup();
      t.pass('cleaning up twice is harmless');
    });
  }

  t.test('auto: the implementation already holding rules wins, nft otherwise', async (t) => {
    const fresh = createNamespace(t);
    t.equal((await new IptablesBackend({ netns: fresh }).replace([hostnames('10.244.1.7')], config)).backend, 'nft');
    await new IptablesBackend({ netns: fresh }).cleanup();

    const legacyInUse = createNamespace(t);
    inNamespace(legacyInUse, 'iptables-legacy-restore', ['--noflush'], `*filter\n${USER_RULE}\nCOMMIT\n`);
    const iptables = new IptablesBackend({ backend: 'auto', netns: legacyInUse });
    t.equal((await iptables.replace([hostnames('10.244.1.7')], config)).backend, 'legacy');
    t.ok(save(legacyInUse, 'legacy').some((line) => line.startsWith(`:${HOSTNAMES_SVC}`)));
    await iptables.cleanup();
  });
});
