// deploy/: the RBAC grants are exactly what the agent asks the API server for, per capability. The
// real agent runs in a node namespace against an API server speaking list/watch (test/lib/
// fake-apiserver.ts) in each configuration; every request becomes the RBAC attributes the real API
// server would authorize (verb, group, resource, subresource, namespace, name), and each must be
// granted by the manifests applied for that configuration, while each grant of those manifests must
// be used. The default manifest thus grants nothing --cluster-dns or --ingress alone needs. Also the
// DaemonSet's image is pinned to this version, and its resources are set.
import t from 'tap';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { projectRoot } from '../../src/kernel/native.js';
import { createTopology, type ProcessHandle, type Topology } from '../../scripts/lib/topology.js';
import { eventually } from '../lib/eventually.js';
import { FakeApiServer, type LoggedRequest } from '../lib/fake-apiserver.js';
import { CLI } from '../lib/kubenft.js';
import { OUR_CLASS, certificate, ingress, tlsSecret } from '../lib/ingress-manifests.js';
import { node, service, slice } from '../lib/manifests.js';
import { gateway, gatewayClass, httpRoute } from '../lib/gateway-manifests.js';

const API_PORT = 16444;
const SERVICE_ACCOUNT = { kind: 'ServiceAccount', name: 'kubenft', namespace: 'kube-system' };

interface Rule { apiGroups: string[]; resources: string[]; verbs: string[]; resourceNames?: string[] }
interface Grant { rule: Rule; namespace?: string; source: string }
interface Attributes { verb: string; group: string; resource: string; namespace?: string; name?: string }

const documents = (file: string) => parseAllDocuments(readFileSync(join(projectRoot(), 'deploy', file), 'utf8')).map((document) => document.toJS() as Record<string, any>);

/** The rules bound to kubenft's service account by the given manifests (ClusterRoles cluster-wide, Roles in their namespace). */
function grantsOf(files: string[]): Grant[] {
  const objects = files.flatMap(documents);
  const roles = new Map(objects.filter((object) => object.kind === 'ClusterRole' || object.kind === 'Role').map((role) => [`${role.kind}/${role.metadata.namespace ?? ''}/${role.metadata.name}`, role]));
  return objects.filter((object) => (object.kind === 'ClusterRoleBinding' || object.kind === 'RoleBinding')
    && object.subjects.some((subject: Record<string, string>) => subject.kind === SERVICE_ACCOUNT.kind && subject.name === SERVICE_ACCOUNT.name && subject.namespace === SERVICE_ACCOUNT.namespace))
    .flatMap((binding) => {
      const role = roles.get(`${binding.roleRef.kind}/${binding.roleRef.kind === 'Role' ? binding.metadata.namespace : ''}/${binding.roleRef.name}`);
      if (!role) throw new Error(`${binding.kind} ${binding.metadata.name} binds ${binding.roleRef.kind} ${binding.roleRef.name}, which the manifests do not define`);
      return (role.rules as Rule[]).map((rule) => ({ rule, namespace: binding.kind === 'RoleBinding' ? binding.metadata.namespace : undefined, source: `${role.kind} ${role.metadata.name}` }));
    });
}

/** What the API server's authorizer would check for a request (k8s.io/apiserver RequestInfo). */
function attributesOf(request: LoggedRequest): Attributes {
  const segments = request.path.split('/').filter(Boolean);
  const [group, rest] = segments[0] === 'api' ? ['', segments.slice(2)] : [segments[1], segments.slice(3)];
  let namespace: string | undefined;
  let parts = rest;
  if (parts[0] === 'namespaces' && parts.length > 2) {
    namespace = parts[1];
    parts = parts.slice(2);
  }
  const [resource, name, subresource] = parts;
  const verb = request.method === 'GET' ? (name ? 'get' : request.watch ? 'watch' : 'list') : ({ POST: 'create', PUT: 'update', PATCH: 'patch', DELETE: 'delete' } as Record<string, string>)[request.method];
  return { verb, group, resource: subresource ? `${resource}/${subresource}` : resource, namespace, name };
}

const allows = (grant: Grant, request: Attributes) => grant.rule.apiGroups.includes(request.group) && grant.rule.resources.includes(request.resource)
  && grant.rule.verbs.includes(request.verb) && (grant.namespace === undefined || grant.namespace === request.namespace)
  && (grant.rule.resourceNames === undefined || (request.name !== undefined && grant.rule.resourceNames.includes(request.name)));

const describe = (request: Attributes) => `${request.verb} ${request.group || 'core'}/${request.resource}${request.namespace ? ` in ${request.namespace}` : ''}${request.name ? ` named ${request.name}` : ''}`;

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root to create network namespaces');
} else {
  let topology: Topology;
  let api: FakeApiServer;
  const directory = mkdtempSync(join(tmpdir(), 'kubenft-deploy-'));
  t.before(async () => {
    topology = await createTopology({ pods: [] });
    api = await FakeApiServer.create(join(directory, 'apiserver.sock'));
    const tea = certificate('tea.example.com');
    for (const object of [
      node('node-1', ['192.168.100.1']), service('web', '10.0.1.1', [{ name: 'http', port: 80, targetPort: 9376 }]), slice('web', [{ name: 'http', port: 9376 }], [{ ip: '10.244.1.7' }]),
      { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'default' } }, OUR_CLASS, tlsSecret('tea', tea),
      ingress('web', [{ host: 'tea.example.com', paths: [{ path: '/', pathType: 'Prefix', service: 'web' }] }], { spec: { tls: [{ hosts: ['tea.example.com'], secretName: 'tea' }] } }),
      gatewayClass('kubenft'), gateway('gw', [{ name: 'http', port: 18081 }, { name: 'https', protocol: 'HTTPS', port: 18444, certificate: { name: 'tea' } }]),
      httpRoute('web', { parents: [{ name: 'gw' }], rules: [{ backends: [{ name: 'web' }] }] }),
    ]) api.upsert(object);
    const forwarder = topology.spawn(topology.node, ['node', join(projectRoot(), 'test/fixtures/tcp-to-unix.mjs'), String(API_PORT), join(directory, 'apiserver.sock')]);
    await forwarder.waitForOutput(/ready/, 10_000);
  });
  t.teardown(async () => {
    await topology?.destroy();
    await api?.close();
    rmSync(directory, { recursive: true, force: true });
  });

  /** Runs the agent until `done` holds, and returns the requests it made. */
  const requestsOf = async (flags: string[], done: (requests: LoggedRequest[]) => boolean): Promise<Attributes[]> => {
    api.requests.length = 0;
    const agent: ProcessHandle = topology.spawn(topology.node, ['node', CLI, '--kubeconfig', api.kubeconfigPath(`http://127.0.0.1:${API_PORT}`), '--hostname-override', 'node-1',
      '--healthz-bind-address', '', '--metrics-bind-address', '', '--logging-format=json', ...flags]);
    try {
      if (!(await eventually(async () => /"synced"/.test(agent.output().stderr) && done(api.requests), 30_000))) throw new Error(`the agent did not get there: ${agent.output().stderr}`);
    } finally {
      await agent.stop();
    }
    return api.requests.map(attributesOf);
  };

  const check = (t: Tap.Test, requests: Attributes[], granted: Grant[], mustUse: Grant[]) => {
    const refused = [...new Set(requests.filter((request) => !granted.some((grant) => allows(grant, request))).map(describe))];
    t.same(refused, [], 'every request is granted');
    for (const grant of mustUse) {
      for (const resource of grant.rule.resources) {
        for (const verb of grant.rule.verbs) {
          for (const group of grant.rule.apiGroups) {
            t.ok(requests.some((request) => request.group === group && request.resource === resource && request.verb === verb && allows(grant, request)), `${grant.source} grants ${verb} ${group || 'core'}/${resource}: used`);
          }
        }
      }
    }
  };

  const base = grantsOf(['kubenft.yaml']);
  const watching = (resource: string) => (requests: LoggedRequest[]) => requests.some((request) => request.watch && request.path.endsWith(`/${resource}`));

  t.test('the default agent: what deploy/kubenft.yaml grants, and all of it', async (t) => {
    const requests = await requestsOf([], watching('endpointslices'));
    check(t, requests, base, base);
    t.notOk(base.some((grant) => grant.rule.resources.includes('secrets')), 'no Secret can be read');
    t.notOk(base.some((grant) => grant.rule.resources.includes('events')), 'no events are written');
  });

  t.test('--cluster-dns: deploy/kubenft-cluster-dns.yaml adds what it needs, and no more', async (t) => {
    const dns = grantsOf(['kubenft.yaml', 'kubenft-cluster-dns.yaml']).filter((grant) => !base.includes(grant) && grant.source.includes('cluster-dns'));
    const requests = await requestsOf(['--cluster-dns', '169.254.20.10', '--dns-upstream', '127.0.0.1:5353'], watching('namespaces'));
    check(t, requests, [...base, ...dns], dns);
    const withoutIt = requests.filter((request) => !base.some((grant) => allows(grant, request)));
    t.ok(withoutIt.length > 0, 'the default manifest alone would refuse some of its requests');
  });

  t.test('--ingress: deploy/kubenft-ingress.yaml adds what it needs (status, Lease, Secrets), and no more', async (t) => {
    const ingressGrants = grantsOf(['kubenft.yaml', 'kubenft-ingress.yaml']).filter((grant) => grant.source.includes('ingress'));
    // The elected writer writes the status, then renews its Lease (every 5 s).
    const requests = await requestsOf(['--ingress', '--ingress-dataplane', 'builtin', '--ingress-http-address', '127.0.0.1:18080', '--ingress-https-address', '127.0.0.1:18443', '--ingress-workers', '1'],
      (seen) => seen.some((request) => request.method === 'PUT' && request.path.endsWith('/status')) && seen.some((request) => request.method === 'PUT' && request.path.includes('/leases/')));
    check(t, requests, [...base, ...ingressGrants], ingressGrants);
  });

  t.test('--gateway: deploy/kubenft-gateway.yaml adds what it needs (Gateway API objects, their status, Lease, Secrets, Namespaces), and no more', async (t) => {
    const gatewayGrants = grantsOf(['kubenft.yaml', 'kubenft-gateway.yaml']).filter((grant) => grant.source.includes('gateway'));
    const statusWrites = (seen: LoggedRequest[], resource: string) => seen.some((request) => request.method === 'PUT' && request.path.endsWith(`/${resource}/${resource === 'gatewayclasses' ? 'kubenft' : resource === 'gateways' ? 'gw' : 'web'}/status`));
    const requests = await requestsOf(['--gateway', '--gateway-http-address', '127.0.0.1:18081', '--gateway-https-address', '127.0.0.1:18444', '--gateway-workers', '1'],
      (seen) => ['gatewayclasses', 'gateways', 'httproutes'].every((resource) => statusWrites(seen, resource)) && seen.some((request) => request.method === 'PUT' && request.path.includes('/leases/kubenft-gateway-status')));
    check(t, requests, [...base, ...gatewayGrants], gatewayGrants);
  });

  t.test('the DaemonSet: an image pinned to this version, resource requests', async (t) => {
    const daemonSet = documents('kubenft.yaml').find((object) => object.kind === 'DaemonSet')!;
    const [container] = daemonSet.spec.template.spec.containers;
    const { version } = JSON.parse(readFileSync(join(projectRoot(), 'package.json'), 'utf8')) as { version: string };
    t.equal(container.image, `ghcr.io/kubenft/kubenft:${version}`, 'the tag is the package version, not latest');
    t.match(container.resources, { requests: { cpu: /^\d+m$/, memory: /^\d+Mi$/ } });
  });
}
