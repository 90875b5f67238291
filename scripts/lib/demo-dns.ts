// The demo's answer to "how do containers reach each other by name": kubenft serves cluster DNS on
// the node's 169.254.20.10, and the client resolves `hostnames` through its search path, as a pod
// would with kubelet's resolv.conf, then fetches http://hostnames/.
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import type { Topology } from './topology.js';

const NODE_LOCAL_DNS = '169.254.20.10';
const SERVE_TIMEOUT_MS = 15_000;

/** `ip netns exec` bind-mounts /etc/netns/<ns>/resolv.conf: a file for the client's own namespace only. */
function clientResolvConf(namespace: string): () => void {
  if (!/^[A-Za-z0-9_.-]+$/.test(namespace) || namespace.startsWith('.')) throw new Error(`unexpected namespace name ${namespace}`);
  const directory = `/etc/netns/${namespace}`;
  mkdirSync(directory, { recursive: true });
  writeFileSync(`${directory}/resolv.conf`, `search default.svc.cluster.local svc.cluster.local cluster.local\nnameserver ${NODE_LOCAL_DNS}\noptions ndots:5\n`);
  return () => rmSync(directory, { recursive: true, force: true });
}

export async function serviceNameAccess(topology: Topology, kubenft: string[], manifests: string): Promise<void> {
  const agent = topology.spawn(topology.node, [...kubenft, '--manifests', manifests, '--cluster-dns', NODE_LOCAL_DNS, '--healthz-bind-address', '', '--metrics-bind-address', '']);
  const removeResolvConf = clientResolvConf(topology.client);
  try {
    const started = Date.now();
    const resolve = async () => /^[\d.]+$/m.exec((await topology.exec(topology.client, ['dig', '+search', '+short', '+time=1', '+tries=1', 'hostnames'])).stdout)?.[0];
    let address = await resolve();
    while (address === undefined && Date.now() - started < SERVE_TIMEOUT_MS) {
      await new Promise((wait) => setTimeout(wait, 300));
      address = await resolve();
    }
    if (address === undefined) throw new Error(`kubenft's cluster DNS did not answer: ${agent.output().stderr}`);
    console.log(`\n$ kubenft --manifests examples/hostnames.yaml --cluster-dns ${NODE_LOCAL_DNS}   # serving cluster DNS`);
    console.log(`$ cat /etc/resolv.conf   # the client's, as kubelet writes a pod's\nsearch default.svc.cluster.local svc.cluster.local cluster.local\nnameserver ${NODE_LOCAL_DNS}`);
    console.log(`$ dig +search +short hostnames\n${address}`);
    const fetched = await topology.exec(topology.client, ['curl', '-sS', '--max-time', '3', 'http://hostnames/']);
    if (fetched.code !== 0) throw new Error(`curl http://hostnames/ failed: ${fetched.stderr}`);
    console.log(`$ curl http://hostnames/\n${fetched.stdout.trim()}`);
  } finally {
    removeResolvConf();
    await agent.stop();
  }
}
