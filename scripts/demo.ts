// The hostnames demo: three pods behind the classic ClusterIP service, programmed by kubenft in a
// throwaway "node" namespace; 300 requests from a client namespace, a bar chart of who answered,
// the ruleset as `nft list ruleset` shows it, and service-name access through kubenft's cluster DNS.
// Every namespace is deleted at the end.
import { join } from 'node:path';
import { projectRoot } from '../src/backend/native.js';
import { serviceNameAccess } from './lib/demo-dns.js';
import { withTopology } from './lib/topology.js';

const REQUESTS = 300;
const VIP = '10.0.1.175';
const PODS = [
  { name: 'hostnames-632524106-bbpiw', ipv4: '10.244.1.7' },
  { name: 'hostnames-632524106-ly40y', ipv4: '10.244.2.3' },
  { name: 'hostnames-632524106-tlaok', ipv4: '10.244.3.6' },
];

function barChart(counts: Record<string, number>, total: number): string {
  const width = 40;
  const label = Math.max(...Object.keys(counts).map((name) => name.length));
  return Object.entries(counts)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([name, count]) => `  ${name.padEnd(label)} ${'█'.repeat(Math.round((count / total) * width)).padEnd(width)} ${String(count).padStart(4)} (${((count / total) * 100).toFixed(1)}%)`)
    .join('\n');
}

async function main(): Promise<void> {
  const root = projectRoot();
  await withTopology({ pods: PODS }, async (topology) => {
    const kubenft = ['node', join(root, 'dist/src/cli.js')];
    const manifests = join(root, 'examples/hostnames.yaml');
    console.log(`kubenft demo: node namespace ${topology.node}, client ${topology.client}, ${PODS.length} hostnames pods\n`);
    const sync = await topology.exec(topology.node, [...kubenft, '--manifests', manifests, '--once', '--cluster-cidr', '10.244.0.0/16']);
    if (sync.code !== 0) throw new Error(`kubenft failed: ${sync.stderr}`);
    console.log(`$ kubenft --manifests examples/hostnames.yaml --once\n${sync.stdout}`);

    const report = await topology.probe(topology.client, { address: VIP, port: 80, protocol: 'tcp', count: REQUESTS, timeoutMs: 2000 });
    console.log(`${REQUESTS} requests from the client (${topology.external.clientIPv4}) to ${VIP}:80 — who answered:\n`);
    console.log(barChart(report.counts, REQUESTS));

    const listing = await topology.exec(topology.node, ['nft', 'list', 'ruleset']);
    console.log(`\n$ nft list ruleset   # kubenft's main table and the service table holding hostnames\n${listing.stdout}`);
    const answered = PODS.filter((pod) => (report.counts[pod.name] ?? 0) > 0).length;
    if (answered !== PODS.length) throw new Error(`only ${answered} of ${PODS.length} pods answered`);
    await serviceNameAccess(topology, kubenft, manifests);
  });
  console.log('all namespaces deleted.');
}

main().catch((error: Error) => {
  console.error(`demo failed: ${error.message}`);
  process.exit(1);
});
