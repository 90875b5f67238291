// `services` and `explain` in a network namespace where no kubenft agent has loaded anything: an
// error saying so (exit 1), in both modes, not an empty listing or a "100% accept" that reads as
// an empty cluster or an open path. Once a sync has loaded kubenft's (empty) ruleset, the same
// commands succeed: "no service ports loaded" is then the truth.
import t from 'tap';
import { createTopology, type Topology } from '../../scripts/lib/topology.js';
import { kubenft, syncOnce } from '../lib/kubenft.js';
import { ManifestFile } from '../lib/manifests.js';

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root to create network namespaces');
} else {
  let topology: Topology;
  const manifests = new ManifestFile([{ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'default' } }]);
  t.before(async () => {
    topology = await createTopology({ pods: [] });
  });
  t.teardown(async () => {
    await topology?.destroy();
    manifests.remove();
  });

  const explain = ['explain', '--from', '10.244.1.50', '--to', '10.0.0.10:80'];

  t.test('nothing loaded: services and explain fail, naming what is missing', async (t) => {
    for (const mode of ['nftables', 'iptables']) {
      for (const args of [['services'], ['services', '--json'], explain]) {
        const result = await kubenft(topology, [...args, '--proxy-mode', mode]);
        t.equal(result.code, 1, `${mode} ${args.join(' ')} exits 1`);
        t.equal(result.stdout, '', 'prints no listing');
        t.match(result.stderr, new RegExp(`nothing of kubenft is loaded in this network namespace in --proxy-mode=${mode}`), 'says nothing is loaded');
        t.match(result.stderr, mode === 'nftables' ? /no table ip kubenft/ : /chain nat KUBE-SERVICES/, 'names what it looked for');
      }
    }
  });

  t.test('an empty ruleset loaded: no service ports, exit 0; explain answers', async (t) => {
    await syncOnce(topology, manifests.path, '--cluster-cidr', '10.244.0.0/16');
    const services = await kubenft(topology, ['services']);
    t.equal(services.code, 0, services.stderr);
    t.equal(services.stdout, 'no service ports loaded\n');
    const path = await kubenft(topology, explain);
    t.equal(path.code, 0, path.stderr);
    t.match(path.stdout, /accept/);
    // The other mode's rules are still absent.
    t.equal((await kubenft(topology, ['services', '--proxy-mode', 'iptables'])).code, 1);
  });
}
