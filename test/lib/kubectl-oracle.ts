// kubectl as the judge of a manifests file: `kubectl apply --dry-run=client -f FILE -o json`
// against an API server that knows the usual kinds and holds no objects, so kubectl reads the
// file, maps each object and prints it as it would apply it. Client-side apply needs discovery
// (to map kinds) and a GET of each live object (answered 404): nothing more, so this server
// serves only those. Validation against the OpenAPI schema is off: it judges fields, not YAML.
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { KubeObject } from '../../src/cluster/cluster-state.js';

/** [kind, plural, namespaced] of each group version the server offers. */
const RESOURCES: Record<string, [string, string, boolean][]> = {
  v1: [['Service', 'services', true], ['Endpoints', 'endpoints', true], ['Node', 'nodes', false], ['ConfigMap', 'configmaps', true],
    ['Secret', 'secrets', true], ['Namespace', 'namespaces', false], ['ServiceAccount', 'serviceaccounts', true], ['Pod', 'pods', true]],
  'apps/v1': [['Deployment', 'deployments', true], ['DaemonSet', 'daemonsets', true], ['StatefulSet', 'statefulsets', true]],
  'discovery.k8s.io/v1': [['EndpointSlice', 'endpointslices', true]],
  'networking.k8s.io/v1': [['Ingress', 'ingresses', true], ['IngressClass', 'ingressclasses', false]],
};

export const LAST_APPLIED = 'kubectl.kubernetes.io/last-applied-configuration';

function discovery(path: string): unknown {
  const groups = Object.keys(RESOURCES).filter((groupVersion) => groupVersion.includes('/'));
  if (path === '/api') return { kind: 'APIVersions', versions: ['v1'], serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress: '127.0.0.1' }] };
  if (path === '/apis') {
    return {
      kind: 'APIGroupList', apiVersion: 'v1',
      groups: groups.map((groupVersion) => {
        const [name, version] = groupVersion.split('/');
        return { name, versions: [{ groupVersion, version }], preferredVersion: { groupVersion, version } };
      }),
    };
  }
  const groupVersion = path === '/api/v1' ? 'v1' : path.replace(/^\/apis\//, '');
  const resources = RESOURCES[groupVersion];
  if (!resources) return undefined;
  return {
    kind: 'APIResourceList', apiVersion: 'v1', groupVersion,
    resources: resources.map(([kind, name, namespaced]) => ({ name, singularName: kind.toLowerCase(), namespaced, kind, verbs: ['create', 'delete', 'get', 'list', 'patch', 'update', 'watch'] })),
  };
}

export interface KubectlRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the kubectl on the PATH. */
export function kubectl(args: string[]): Promise<KubectlRun> {
  return new Promise((resolve, reject) => {
    execFile('kubectl', args, { maxBuffer: 64 << 20 }, (error, stdout, stderr) => {
      if ((error as NodeJS.ErrnoException | null)?.code === 'ENOENT') return reject(new Error('kubectl is not installed (scripts/setup.sh installs it)'));
      resolve({ code: error ? Number(error.code ?? 1) : 0, stdout, stderr });
    });
  });
}

/** The installed kubectl's minor version (20 for Debian 12's kubernetes-client). */
export async function kubectlMinorVersion(): Promise<number> {
  const { stdout } = await kubectl(['version', '--client', '-o', 'json']);
  return Number.parseInt((JSON.parse(stdout) as { clientVersion: { minor: string } }).clientVersion.minor, 10);
}

export interface KubectlVerdict {
  /** kubectl's exit code: non-zero when it refused anything. */
  code: number;
  /** The objects kubectl would apply, as `-o name` prints them: `service/web`, `endpointslice.discovery.k8s.io/web-1`. */
  names: string[];
  /**
   * The objects as kubectl would send them (without its last-applied annotation), when it refused
   * nothing: kubectl prints them only then.
   */
  objects?: KubeObject[];
  /** What kubectl printed on stderr: its reasons for what it refused. */
  errors: string;
}

/** An object's name as `kubectl -o name` prints it. */
export function kubectlName(object: KubeObject): string {
  const group = String(object.apiVersion ?? '').split('/').slice(0, -1)[0];
  return `${String(object.kind).toLowerCase()}${group ? `.${group}` : ''}/${object.metadata?.name}`;
}

export class KubectlOracle {
  private readonly directory = mkdtempSync(join(tmpdir(), 'kubectl-oracle-'));
  private readonly kubeconfig = join(this.directory, 'kubeconfig');

  private constructor(private readonly server: Server) {}

  static async start(): Promise<KubectlOracle> {
    const server = createServer((request, response) => {
      const path = new URL(request.url ?? '/', 'http://oracle').pathname;
      const body = discovery(path) ?? { kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'NotFound', code: 404, message: `${path} not found` };
      response.writeHead('code' in body ? 404 : 200, { 'Content-Type': 'application/json' });
      response.end(JSON.stringify(body));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const oracle = new KubectlOracle(server);
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    writeFileSync(oracle.kubeconfig, JSON.stringify({
      apiVersion: 'v1', kind: 'Config',
      clusters: [{ name: 'oracle', cluster: { server: url } }],
      users: [{ name: 'oracle', user: {} }],
      contexts: [{ name: 'oracle', context: { cluster: 'oracle', user: 'oracle', namespace: 'default' } }],
      'current-context': 'oracle',
    }));
    return oracle;
  }

  /** What `kubectl apply -f FILE` would apply, and what it refused. */
  async judge(file: string): Promise<KubectlVerdict> {
    const named = await this.apply(file, 'name');
    const names = named.stdout.split('\n').filter(Boolean);
    if (named.code !== 0) return { code: named.code, names, errors: named.stderr };
    return { code: 0, names, objects: printedObjects((await this.apply(file, 'json')).stdout), errors: named.stderr };
  }

  /** What `kubectl apply -f FILE` prints with `-o FORMAT` (yaml: a List as `kubectl get -o yaml` prints one, for several objects). */
  async print(file: string, format: 'yaml' | 'json'): Promise<string> {
    const printed = await this.apply(file, format);
    if (printed.code !== 0) throw new Error(`kubectl apply -o ${format} -f ${file}: ${printed.stderr}`);
    return printed.stdout;
  }

  private apply(file: string, output: string): Promise<KubectlRun> {
    return kubectl(['apply', '--dry-run=client', '--validate=false', '-o', output, '-f', file, '--kubeconfig', this.kubeconfig, '--cache-dir', join(this.directory, 'cache')]);
  }

  async close(): Promise<void> {
    await new Promise((resolve) => this.server.close(resolve));
    rmSync(this.directory, { recursive: true, force: true });
  }
}

/** kubectl prints one JSON object per applied object, or a List of them when there are several. */
function printedObjects(stdout: string): KubeObject[] {
  const printed: KubeObject[] = [];
  // The objects are printed back to back, each a pretty-printed JSON value ending in a `}` line.
  for (const text of stdout.split(/(?<=^\})\n/m)) if (text.trim() !== '') printed.push(JSON.parse(text) as KubeObject);
  return printed
    .flatMap((object) => (object.kind === 'List' ? object.items as KubeObject[] : [object]))
    .map((object) => {
      const annotations = { ...(object.metadata?.annotations as Record<string, string> | undefined) };
      delete annotations[LAST_APPLIED];
      const { annotations: _, ...metadata } = object.metadata ?? {};
      return { ...object, metadata: Object.keys(annotations).length > 0 ? { ...metadata, annotations } : metadata };
    });
}
