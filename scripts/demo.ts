// The hostnames demo: three pods behind the classic ClusterIP service, programmed by kubenft in a
// throwaway "node" namespace; 300 requests from a client namespace, a bar chart of who answered,
// the ruleset as `nft list ruleset` shows it, and service-name access through kubenft's cluster DNS.
// Then the seed's cafe-ingress: kubenft --ingress routes https://cafe.example.com/tea and /coffee to
// the tea and coffee pods with a generated certificate, through HAProxy where it is installed. Every namespace is deleted at the end.
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { projectRoot } from '../src/kernel/native.js';
import { serviceNameAccess } from './lib/demo-dns.js';
import { findHaproxy } from '../src/kernel/haproxy-process.js';
import { IngressDataplaneUnderTest } from '../test/lib/ingress-dataplane.js';
import { type Topology, withTopology } from './lib/topology.js';

const REQUESTS = 300;
const VIP = '10.0.1.175';
const PODS = [
  { name: 'hostnames-632524106-bbpiw', ipv4: '10.244.1.7' },
  { name: 'hostnames-632524106-ly40y', ipv4: '10.244.2.3' },
  { name: 'hostnames-632524106-tlaok', ipv4: '10.244.3.6' },
];
const CAFE_PODS = [
  { name: 'tea-5c457db9-lkzqx', ipv4: '10.244.4.5' },
  { name: 'tea-5c457db9-vtc9n', ipv4: '10.244.4.6' },
  { name: 'coffee-7dbb5795f6-mltpf', ipv4: '10.244.5.5' },
  { name: 'coffee-7dbb5795f6-xh4sn', ipv4: '10.244.5.6' },
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
  await withTopology({ pods: [...PODS, ...CAFE_PODS], serverReadyTimeoutMs: 30_000 }, async (topology) => {
    const kubenft = ['node', join(root, 'dist/src/cli/main.js')];
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
    await cafe(topology, kubenft);
  });
  console.log('all namespaces deleted.');
}

/** A certificate for cafe.example.com from the openssl CLI, as the Secret the Ingress names. */
function cafeSecret(directory: string): string {
  const certificate = join(directory, 'cafe.crt');
  const key = join(directory, 'cafe.key');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1', '-subj', '/CN=cafe.example.com',
    '-addext', 'subjectAltName=DNS:cafe.example.com', '-keyout', key, '-out', certificate], { stdio: 'ignore' });
  const data = (path: string) => execFileSync('base64', ['-w0', path], { encoding: 'utf8' });
  writeFileSync(join(directory, 'cafe-secret.yaml'), `apiVersion: v1\nkind: Secret\nmetadata: { name: cafe-secret, namespace: default }\ntype: kubernetes.io/tls\ndata:\n  tls.crt: ${data(certificate)}\n  tls.key: ${data(key)}\n`);
  return certificate;
}

async function cafe(topology: Topology, kubenft: string[]): Promise<void> {
  const directory = mkdtempSync(join(tmpdir(), 'kubenft-cafe-'));
  try {
    copyFileSync(join(projectRoot(), 'examples/cafe-ingress.yaml'), join(directory, 'cafe-ingress.yaml'));
    const certificate = cafeSecret(directory);
    // Served through HAProxy where it is installed (setup.sh installs it), else by the built-in proxy.
    const dataplane = new IngressDataplaneUnderTest(findHaproxy() ? 'haproxy' : 'builtin');
    const agent = topology.spawn(topology.node, [...kubenft, '--manifests', directory, '--ingress', ...dataplane.args, '--hostname-override', 'node-1', '--healthz-bind-address', '', '--metrics-bind-address', '']);
    const node = topology.external.nodeIPv4;
    const curl = (path: string) => topology.exec(topology.client, ['curl', '-sS', '--max-time', '5', '--cacert', certificate, '--resolve', `cafe.example.com:443:${node}`, `https://cafe.example.com${path}`]);
    try {
      console.log(`\n$ kubenft --manifests DIR --ingress --ingress-dataplane=${dataplane.name}   # DIR: examples/cafe-ingress.yaml and a generated cafe-secret`);
      const deadline = Date.now() + 30_000;
      while ((await curl('/tea')).code !== 0) {
        if (Date.now() > deadline) throw new Error(`the ingress proxy did not answer: ${agent.output().stderr}`);
        await new Promise((resolve) => setTimeout(resolve, 300));
      }
      for (const path of ['/tea', '/tea', '/coffee', '/coffee']) {
        const reply = await curl(path);
        const pod = (JSON.parse(reply.stdout) as { pod: string }).pod;
        console.log(`$ curl --cacert cafe.crt --resolve cafe.example.com:443:${node} https://cafe.example.com${path}\n  answered by ${pod}`);
        if (!pod.startsWith(path.slice(1))) throw new Error(`${path} was answered by ${pod}`);
      }
      const redirect = await topology.exec(topology.client, ['curl', '-sS', '-o', '/dev/null', '-w', '%{http_code} %{redirect_url}', '--resolve', `cafe.example.com:80:${node}`, 'http://cafe.example.com/tea']);
      console.log(`$ curl http://cafe.example.com/tea   # plain HTTP to a TLS host\n  ${redirect.stdout}`);
    } finally {
      await agent.stop();
      // HAProxy outlives the agent by design: the demo ends it by its PID.
      await dataplane.remove();
    }
  } finally {
    rmSync(directory, { recursive: true, force: true });
  }
}

main().catch((error: Error) => {
  console.error(`demo failed: ${error.message}`);
  process.exit(1);
});
