// The plain reading of a kubeconfig (the agent's first lists, before client-node loads) side by side
// with client-node's own (loadKubeConfig + applyToHTTPSOptions, what every later request uses):
// for each plain form they must describe the same request, and every other form must be left to
// client-node.
import t from 'tap';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { type ApiEndpoint, type ApiSource, plainEndpoint, sameEndpoint } from '../../src/cluster/api-endpoint.js';
import { loadKubeConfig } from '../../src/cluster/kubernetes.js';

const directory = mkdtempSync(join(tmpdir(), 'api-endpoint-'));
t.teardown(() => rmSync(directory, { recursive: true, force: true }));
const file = (name: string, text: string) => {
  const path = join(directory, name);
  writeFileSync(path, text);
  return path;
};
// Contents only: neither reading parses them.
const CA = 'ca bytes\n';
const CERT = 'certificate bytes\n';
const KEY = 'key bytes\n';
const base64 = (text: string) => Buffer.from(text).toString('base64');
file('ca.crt', CA);
file('client.crt', CERT);
file('client.key', KEY);
file('token', 'token-from-file\n');

let configs = 0;
/** A kubeconfig of one cluster and one user, as YAML (what kubectl writes) or JSON. */
function kubeconfig(cluster: Record<string, unknown>, user: Record<string, unknown>, json = false): string {
  const lines = [
    'apiVersion: v1', 'kind: Config', 'current-context: here',
    'clusters:', '- name: here-cluster', '  cluster:', ...Object.entries(cluster).map(([field, value]) => `    ${field}: ${JSON.stringify(value)}`),
    'users:', '- name: here-user', `  user:${Object.keys(user).length === 0 ? ' {}' : ''}`, ...Object.entries(user).map(([field, value]) => `    ${field}: ${JSON.stringify(value)}`),
    'contexts:', '- name: here', '  context:', '    cluster: here-cluster', '    user: here-user',
  ];
  const text = json
    ? JSON.stringify({ apiVersion: 'v1', kind: 'Config', 'current-context': 'here', clusters: [{ name: 'here-cluster', cluster }], users: [{ name: 'here-user', user }], contexts: [{ name: 'here', context: { cluster: 'here-cluster', user: 'here-user' } }] })
    : `${lines.join('\n')}\n`;
  return file(`kubeconfig-${++configs}`, text);
}

async function clientNodeEndpoint(config: KubeConfig): Promise<ApiEndpoint> {
  const options = {};
  await config.applyToHTTPSOptions(options);
  return { server: config.getCurrentCluster()!.server, options };
}

const plainForms: Array<[string, ApiSource]> = [
  ['a token over https with a CA file (relative to the kubeconfig)', { kubeconfig: kubeconfig({ server: 'https://api.example:6443', 'certificate-authority': 'ca.crt' }, { token: 'abc' }) }],
  ['CA data and client certificate data', { kubeconfig: kubeconfig({ server: 'https://api.example:6443/', 'certificate-authority-data': base64(CA) }, { 'client-certificate-data': base64(CERT), 'client-key-data': base64(KEY) }) }],
  ['client certificate files, absolute paths', { kubeconfig: kubeconfig({ server: 'https://10.0.0.1', 'certificate-authority': join(directory, 'ca.crt') }, { 'client-certificate': join(directory, 'client.crt'), 'client-key': join(directory, 'client.key') }) }],
  ['a token file', { kubeconfig: kubeconfig({ server: 'https://api.example' }, { 'token-file': join(directory, 'token') }) }],
  ['plain HTTP with verification off, as JSON', { kubeconfig: kubeconfig({ server: 'http://127.0.0.1:8080', 'insecure-skip-tls-verify': true }, { token: 'x' }, true) }],
  ['https with verification off and no user fields', { kubeconfig: kubeconfig({ server: 'https://[fd00::1]:6443', 'insecure-skip-tls-verify': true }, {}) }],
  ['--master over a kubeconfig (plain HTTP)', { kubeconfig: kubeconfig({ server: 'https://api.example' }, { token: 'abc' }), master: 'http://127.0.0.1:1' }],
  ['--master over a kubeconfig (https, the kubeconfig\'s CA)', { kubeconfig: kubeconfig({ server: 'https://api.example', 'certificate-authority': 'ca.crt' }, { token: 'abc' }), master: 'https://other.example:6443' }],
  ['--master alone, https', { master: 'https://api.example:6443' }],
  ['--master alone, plain HTTP', { master: 'http://127.0.0.1:8080' }],
];

t.test('the plain forms: the same request as client-node\'s', async (t) => {
  for (const [form, source] of plainForms) {
    const plain = plainEndpoint(source);
    t.ok(plain, `${form}: read`);
    t.ok(plain && sameEndpoint(plain, await clientNodeEndpoint(loadKubeConfig(source))), `${form}: the same as client-node's`);
  }
});

t.test('the pod\'s service account, as client-node\'s loadFromCluster reads it', async (t) => {
  const root = join(directory, 'pod');
  mkdirSync(join(root, 'var/run/secrets/kubernetes.io/serviceaccount'), { recursive: true });
  writeFileSync(join(root, 'var/run/secrets/kubernetes.io/serviceaccount/ca.crt'), CA);
  writeFileSync(join(root, 'var/run/secrets/kubernetes.io/serviceaccount/token'), 'pod-token');
  const saved = { host: process.env.KUBERNETES_SERVICE_HOST, port: process.env.KUBERNETES_SERVICE_PORT };
  t.teardown(() => {
    for (const [name, value] of [['KUBERNETES_SERVICE_HOST', saved.host], ['KUBERNETES_SERVICE_PORT', saved.port]] as const) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  });
  for (const [host, port] of [['10.96.0.1', '443'], ['fd00:10:96::1', '443']]) {
    process.env.KUBERNETES_SERVICE_HOST = host;
    process.env.KUBERNETES_SERVICE_PORT = port;
    const config = new KubeConfig();
    config.loadFromCluster(root);
    const plain = plainEndpoint({}, root);
    t.ok(plain && sameEndpoint(plain, await clientNodeEndpoint(config)), `in a pod, API at ${host}:${port}`);
  }
  // client-node's in-cluster config on port 8080 is plain HTTP with verification on, which it refuses: that refusal is its own.
  process.env.KUBERNETES_SERVICE_PORT = '8080';
  t.equal(plainEndpoint({}, root), undefined, 'an in-cluster port client-node reads as plain HTTP');
  delete process.env.KUBERNETES_SERVICE_HOST;
  t.equal(plainEndpoint({}, root), undefined, 'not in a pod');
});

t.test('every other form is left to client-node', async (t) => {
  const server = { server: 'https://api.example:6443' };
  const others: Array<[string, ApiSource]> = [
    ['an exec plugin', { kubeconfig: kubeconfig(server, { exec: { apiVersion: 'client.authentication.k8s.io/v1', command: 'get-token' } }) }],
    ['an auth provider', { kubeconfig: kubeconfig(server, { 'auth-provider': { name: 'oidc', config: {} } }) }],
    ['basic auth', { kubeconfig: kubeconfig(server, { username: 'u', password: 'p' }) }],
    ['impersonation', { kubeconfig: kubeconfig(server, { token: 'abc', as: 'someone' }) }],
    ['a proxy', { kubeconfig: kubeconfig({ ...server, 'proxy-url': 'http://proxy:3128' }, { token: 'abc' }) }],
    ['a TLS server name', { kubeconfig: kubeconfig({ ...server, 'tls-server-name': 'kubernetes' }, { token: 'abc' }) }],
    ['plain HTTP with verification on (client-node refuses it)', { kubeconfig: kubeconfig({ server: 'http://127.0.0.1:8080' }, { token: 'abc' }) }],
    ['a CA file that does not exist', { kubeconfig: kubeconfig({ ...server, 'certificate-authority': 'missing.crt' }, { token: 'abc' }) }],
    ['a kubeconfig that does not exist', { kubeconfig: join(directory, 'missing') }],
    ['no current context', { kubeconfig: file('no-context', 'apiVersion: v1\nkind: Config\nclusters: []\n') }],
  ];
  for (const [form, source] of others) t.equal(plainEndpoint(source), undefined, form);
});

t.test('sameEndpoint tells requests apart by server, credentials, CA and verification', async (t) => {
  const base = { server: 'https://api.example', 'certificate-authority': 'ca.crt' };
  const reference = plainEndpoint({ kubeconfig: kubeconfig(base, { token: 'abc' }) })!;
  const variants: Array<[string, ApiSource]> = [
    ['another token', { kubeconfig: kubeconfig(base, { token: 'abd' }) }],
    ['another server', { kubeconfig: kubeconfig({ ...base, server: 'https://api.example:6443' }, { token: 'abc' }) }],
    ['another CA', { kubeconfig: kubeconfig({ server: base.server, 'certificate-authority-data': base64('another CA') }, { token: 'abc' }) }],
    ['verification off', { kubeconfig: kubeconfig({ ...base, 'insecure-skip-tls-verify': true }, { token: 'abc' }) }],
    ['a client certificate too', { kubeconfig: kubeconfig(base, { token: 'abc', 'client-certificate': 'client.crt', 'client-key': 'client.key' }) }],
  ];
  for (const [what, source] of variants) t.notOk(sameEndpoint(reference, await clientNodeEndpoint(loadKubeConfig(source))), what);
  const proxied = loadKubeConfig({ kubeconfig: kubeconfig({ ...base, 'proxy-url': 'http://proxy:3128' }, { token: 'abc' }) });
  t.notOk(sameEndpoint(reference, await clientNodeEndpoint(proxied)), 'client-node going through a proxy');
});
