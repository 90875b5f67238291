import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { isIPv6 } from 'node:net';
import { dirname, isAbsolute, join } from 'node:path';
import yaml from 'js-yaml';

// Where the API server is and how a request authenticates, without client-node. client-node's
// config module loads its generated API (3 MB of the bundle: ~0.3 s of a start on this machine),
// so the agent's first lists go out from this reading of the plain kubeconfig forms while
// client-node loads; once it has, the agent compares its options with these (sameEndpoint) and
// lists again if they differ. Anything beyond the plain forms (exec plugins, auth providers, basic
// auth, impersonation, proxies, a TLS server name) is not read here: those lists wait for
// client-node, as every list did before.

/** The API server and the options of a request to it (credentials, CA, the agent), as client-node's applyToHTTPSOptions gives them. */
export interface ApiEndpoint {
  server: string;
  options: https.RequestOptions;
}

/** --kubeconfig, else --master alone, else the pod's service account: how loadKubeConfig chooses. */
export interface ApiSource {
  kubeconfig?: string;
  master?: string;
}

const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';
const PLAIN_CLUSTER_FIELDS = new Set(['server', 'certificate-authority', 'certificate-authority-data', 'insecure-skip-tls-verify']);
const PLAIN_USER_FIELDS = new Set(['token', 'token-file', 'client-certificate', 'client-certificate-data', 'client-key', 'client-key-data']);

type Fields = Record<string, unknown>;

const isFields = (value: unknown): value is Fields => typeof value === 'object' && value !== null && !Array.isArray(value);
const onlyFields = (fields: Fields, allowed: Set<string>) => Object.entries(fields).every(([field, value]) => allowed.has(field) || value === undefined || value === null);

function entry(list: unknown, name: unknown, field: string): Fields | undefined {
  if (!Array.isArray(list)) return undefined;
  const found = (list as unknown[]).find((candidate): candidate is Fields => isFields(candidate) && candidate.name === name);
  const fields = found?.[field];
  return isFields(fields) ? fields : found ? {} : undefined;
}

const fileOrData = (file: unknown, data: unknown, root: string): Buffer | undefined => {
  if (typeof file === 'string' && file) return readFileSync(isAbsolute(file) ? file : join(root, file));
  if (typeof data === 'string' && data) return Buffer.from(data, 'base64');
  return undefined;
};

function endpoint(server: string, skipTLSVerify: boolean, credentials: { ca?: Buffer; cert?: Buffer; key?: Buffer; token?: string }): ApiEndpoint | undefined {
  const plain = server.startsWith('http:');
  // client-node refuses plain HTTP unless TLS verification is off; that refusal is its to report.
  if (plain && !skipTLSVerify) return undefined;
  const options: https.RequestOptions = {};
  if (skipTLSVerify) options.rejectUnauthorized = false;
  for (const field of ['ca', 'cert', 'key'] as const) if (credentials[field]) options[field] = credentials[field];
  options.headers = credentials.token ? { Authorization: `Bearer ${credentials.token}` } : {};
  const { ca, cert, key, rejectUnauthorized } = options;
  options.agent = plain ? new http.Agent() : new https.Agent({ ca, cert, key, ...(rejectUnauthorized === undefined ? {} : { rejectUnauthorized }) });
  return { server, options };
}

function fromKubeconfig(path: string, master: string | undefined): ApiEndpoint | undefined {
  const config = yaml.load(readFileSync(path, 'utf8'));
  if (!isFields(config)) return undefined;
  const context = entry(config.contexts, config['current-context'], 'context');
  const cluster = context && entry(config.clusters, context.cluster, 'cluster');
  const user = context && entry(config.users, context.user, 'user');
  if (!context || !cluster || !user || typeof cluster.server !== 'string' || !cluster.server) return undefined;
  if (!onlyFields(cluster, PLAIN_CLUSTER_FIELDS) || !onlyFields(user, PLAIN_USER_FIELDS)) return undefined;
  const root = dirname(path);
  const server = master ?? cluster.server.replace(/\/$/, '');
  const skipTLSVerify = cluster['insecure-skip-tls-verify'] === true || (master !== undefined && master.startsWith('http:'));
  const tokenFile = user['token-file'];
  const token = typeof user.token === 'string' && user.token ? user.token : typeof tokenFile === 'string' && tokenFile ? readFileSync(tokenFile, 'utf8') : undefined;
  return endpoint(server, skipTLSVerify, {
    ca: fileOrData(cluster['certificate-authority'], cluster['certificate-authority-data'], root),
    cert: fileOrData(user['client-certificate'], user['client-certificate-data'], root),
    key: fileOrData(user['client-key'], user['client-key-data'], root),
    token,
  });
}

function inCluster(pathPrefix: string): ApiEndpoint | undefined {
  const host = process.env.KUBERNETES_SERVICE_HOST;
  const port = process.env.KUBERNETES_SERVICE_PORT;
  if (!host || !port) return undefined;
  const server = `${['80', '8080', '8001'].includes(port) ? 'http' : 'https'}://${isIPv6(host) ? `[${host}]` : host}:${port}`;
  return endpoint(server, false, { ca: readFileSync(`${pathPrefix}${SERVICE_ACCOUNT_DIR}/ca.crt`), token: readFileSync(`${pathPrefix}${SERVICE_ACCOUNT_DIR}/token`, 'utf8') });
}

/**
 * The endpoint of a source whose kubeconfig uses only the plain forms (or --master alone, or the
 * pod's service account), else undefined. Any failure to read also gives undefined: client-node
 * reads the same files next and reports what is wrong. `pathPrefix` is client-node's loadFromCluster's
 * (the service account's files under another root, for tests).
 */
export function plainEndpoint(source: ApiSource, pathPrefix = ''): ApiEndpoint | undefined {
  try {
    if (source.kubeconfig) return fromKubeconfig(source.kubeconfig, source.master);
    if (source.master) return endpoint(source.master, source.master.startsWith('http:'), {});
    return inCluster(pathPrefix);
  } catch {
    return undefined;
  }
}

const sameBytes = (a: unknown, b: unknown) => (Buffer.isBuffer(a) && Buffer.isBuffer(b) ? a.equals(b) : a === b);
const agentKind = (agent: unknown) => (agent?.constructor === https.Agent ? 'https' : agent?.constructor === http.Agent ? 'http' : 'other');

/** Whether a request with `a` is the request client-node's options `b` would make (server, TLS, credentials, a plain agent). */
export function sameEndpoint(a: ApiEndpoint, b: ApiEndpoint): boolean {
  const fields = new Set([...Object.keys(a.options), ...Object.keys(b.options)]);
  fields.delete('agent');
  fields.delete('headers');
  const headers = (endpoint: ApiEndpoint) => JSON.stringify(Object.entries(endpoint.options.headers ?? {}).sort());
  return a.server === b.server
    && agentKind(a.options.agent) !== 'other' && agentKind(a.options.agent) === agentKind(b.options.agent)
    && headers(a) === headers(b)
    && [...fields].every((field) => sameBytes((a.options as Fields)[field], (b.options as Fields)[field]));
}
