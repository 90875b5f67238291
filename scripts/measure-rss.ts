// What deploy/kubenft.yaml's memory request is set from: the agent's resident memory as the
// DaemonSet runs it (agent mode, its API source and client-node loaded), in a throwaway node
// namespace, for a small cluster (100 Services x 3 endpoints, 20 Ingresses, 5 Namespaces, its Node),
// in each configuration the manifests cover. The API server is test/lib/fake-apiserver.ts (list and
// watch as the real one speaks them), reached through a Unix socket. RSS is read from
// /proc/PID/status (VmRSS) of the agent and its ingress workers, five times a second apart, 10 s
// after the first sync; the largest total is printed.
//   node dist/scripts/measure-rss.js   (as root)
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { projectRoot } from '../src/kernel/native.js';
import { FakeApiServer } from '../test/lib/fake-apiserver.js';
import type { KubeObject } from '../src/cluster/cluster-state.js';
import { createTopology } from './lib/topology.js';

const SERVICES = 100;
const ENDPOINTS = 3;
const INGRESSES = 20;
const API_PORT = 16445;
const SETTLE_MS = 10_000;
const SAMPLES = 5;
const CLI = join(projectRoot(), 'dist/src/cli/main.js');
const DNS = ['--cluster-dns', '169.254.20.10', '--dns-upstream', '127.0.0.1:5353'];
const INGRESS = ['--ingress', '--ingress-dataplane', 'builtin', '--ingress-workers', '2'];
const CONFIGURATIONS: [string, string[]][] = [['default', []], ['--cluster-dns', DNS], ['--ingress, 2 workers', INGRESS], ['--cluster-dns --ingress, 2 workers', [...DNS, ...INGRESS]]];

const rssKiB = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
const children = (pid: number): number[] => readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
const tree = (pid: number): number[] => [pid, ...children(pid).flatMap(tree)];
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function cluster(): KubeObject[] {
  const objects: KubeObject[] = [
    { apiVersion: 'v1', kind: 'Node', metadata: { name: 'node-1' }, status: { addresses: [{ type: 'InternalIP', address: '192.168.100.1' }] } },
    { apiVersion: 'networking.k8s.io/v1', kind: 'IngressClass', metadata: { name: 'kubenft' }, spec: { controller: 'kubenft.io/ingress-controller' } },
    ...['default', 'kube-system', 'a', 'b', 'c'].map((name) => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name } })),
  ];
  for (let index = 0; index < SERVICES; index++) {
    const name = `service-${index}`;
    objects.push(
      { apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: 'default' }, spec: { clusterIP: `10.0.1.${index + 1}`, clusterIPs: [`10.0.1.${index + 1}`], ports: [{ name: 'http', protocol: 'TCP', port: 80, targetPort: 9376 }] } },
      {
        apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', metadata: { name: `${name}-a`, namespace: 'default', labels: { 'kubernetes.io/service-name': name } }, addressType: 'IPv4',
        ports: [{ name: 'http', protocol: 'TCP', port: 9376 }],
        endpoints: Array.from({ length: ENDPOINTS }, (_, endpoint) => ({ addresses: [`10.244.${index}.${endpoint + 1}`], conditions: { ready: true } })),
      },
    );
    if (index < INGRESSES) {
      objects.push({
        apiVersion: 'networking.k8s.io/v1', kind: 'Ingress', metadata: { name, namespace: 'default' },
        spec: { ingressClassName: 'kubenft', rules: [{ host: `${name}.example.com`, http: { paths: [{ path: '/', pathType: 'Prefix', backend: { service: { name, port: { number: 80 } } } }] } }] },
      });
    }
  }
  return objects;
}

const topology = await createTopology({ pods: [] });
const directory = mkdtempSync(join(tmpdir(), 'kubenft-rss-'));
const api = await FakeApiServer.create(join(directory, 'apiserver.sock'));
try {
  for (const object of cluster()) api.upsert(object);
  const forwarder = topology.spawn(topology.node, ['node', join(projectRoot(), 'test/fixtures/tcp-to-unix.mjs'), String(API_PORT), join(directory, 'apiserver.sock')]);
  await forwarder.waitForOutput(/ready/, 10_000);
  const kubeconfig = api.kubeconfigPath(`http://127.0.0.1:${API_PORT}`);
  for (const [label, flags] of CONFIGURATIONS) {
    const agent = topology.spawn(topology.node, ['node', CLI, '--kubeconfig', kubeconfig, '--hostname-override', 'node-1', '--cluster-cidr', '10.244.0.0/16', ...flags]);
    const deadline = Date.now() + 60_000;
    while (!/"synced"/.test(agent.output().stderr) && Date.now() < deadline) await sleep(200);
    await sleep(SETTLE_MS);
    let agentKiB = 0;
    let totalKiB = 0;
    for (let sample = 0; sample < SAMPLES; sample++) {
      const [own, ...workers] = tree(agent.pid).map(rssKiB);
      agentKiB = Math.max(agentKiB, own);
      totalKiB = Math.max(totalKiB, own + workers.reduce((sum, kib) => sum + kib, 0));
      await sleep(1000);
    }
    console.log(`${label}: agent ${(agentKiB / 1024).toFixed(1)} MiB, with its workers ${(totalKiB / 1024).toFixed(1)} MiB`);
    await agent.stop();
  }
} finally {
  await topology.destroy();
  await api.close();
  rmSync(directory, { recursive: true, force: true });
}
