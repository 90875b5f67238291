// Stale UDP conntrack entries, with the long-running agent (the cleanup follows a sync, never the
// first of a process): a UDP client on a fixed source port must reach a service's first endpoint,
// and must leave an endpoint that went away, instead of staying stuck on its old flow.
import t from 'tap';
import { service, slice } from '../../lib/manifests.js';
import { CLI } from '../../lib/kubenft.js';
import { answers, BASE_FLAGS, errors, MODES, NODE_NAME, podsOf, Semantics, thisNode } from './lib.js';

const PODS = [
  { name: 'dns-a', ipv4: '10.244.1.7' },
  { name: 'dns-b', ipv4: '10.244.2.3' },
];
const VIP = '10.0.7.10';
const SOURCE_PORT = 40053;

const semantics = await Semantics.create(t, { pods: PODS });

const dns = (endpointIPs: string[] | undefined) => [
  thisNode(),
  ...(endpointIPs === undefined ? [] : [
    service('dns', VIP, [{ port: 53, targetPort: 9376, protocol: 'UDP' }]),
    slice('dns', [{ port: 9376, protocol: 'UDP' }], endpointIPs.map((ip) => ({ ip, nodeName: NODE_NAME }))),
  ]),
];

const flows = async () => (await semantics.exec('node', ['conntrack', '-L', '-p', 'udp', '--orig-dst', VIP]).catch(() => ''));

for (const mode of MODES) {
  t.test(`UDP conntrack cleanup by the running agent (${mode})`, async (t) => {
    await semantics.cleanup();
    await semantics.flushConntrack();
    // Start with the address unallocated: in iptables mode the client's flow then goes (unNATed)
    // to the service-range route and stays in conntrack, as a real stale flow would.
    semantics.manifests.write(dns(undefined));
    const agent = semantics.topology.spawn(semantics.topology.node, [process.execPath, CLI, '--manifests', semantics.manifests.path, '--proxy-mode', mode, ...BASE_FLAGS, '--healthz-bind-address=', '--metrics-bind-address=']);
    t.teardown(() => agent.stop());
    const rules = () => semantics.loadedRules(mode);
    /** Rewrites the manifests and waits (bounded) until the loaded rules satisfy `loaded`. */
    const resync = async (objects: unknown[], loaded: (rules: string) => boolean) => {
      semantics.manifests.write(objects);
      for (let attempt = 0; attempt < 40; attempt++) {
        if (loaded(await rules())) {
          // The conntrack cleanup runs right after the sync that loaded them.
          await new Promise((resolve) => setTimeout(resolve, 300));
          return;
        }
        await new Promise((resolve) => setTimeout(resolve, 150));
      }
      throw new Error(`the agent did not load the new rules: ${agent.output().stderr}`);
    };
    const ask = () => semantics.probe('client', { address: VIP, port: 53, protocol: 'udp', count: 1, timeoutMs: 1000, sourcePort: SOURCE_PORT });
    await resync(dns(undefined), (text) => text.includes(mode === 'nftables' ? 'table ip kubenft' : 'KUBE-SERVICES'));

    await ask();
    await resync(dns([]), (text) => text.includes(VIP));
    t.same(errors(await ask()), ['ECONNREFUSED'], 'without endpoints the fixed-port client is refused');

    await resync(dns(['10.244.1.7']), (text) => text.includes('10.244.1.7'));
    const first = await ask();
    t.same(podsOf(first), ['dns-a'], 'the first endpoint answers the same client at once');
    t.match(await flows(), /src=10\.244\.1\.7 dst=/, 'conntrack holds the flow, translated to the endpoint (the reply comes from it)');

    await resync(dns(['10.244.2.3']), (text) => text.includes('10.244.2.3') && !text.includes('10.244.1.7'));
    t.notMatch(await flows(), /10\.244\.1\.7/, 'the flow to the removed endpoint was deleted');
    const moved = await ask();
    t.equal(answers(moved).length, 1);
    t.same(podsOf(moved), ['dns-b'], 'the client now reaches the new endpoint, although the old pod still answers');
    await agent.stop();
  });
}
