// Builders for the ingress tests' objects: Ingresses, classes and TLS Secrets.
import { execFileSync } from 'node:child_process';
import type { KubeObject } from '../../src/cluster/cluster-state.js';

export type IngressPathSpec = { path: string; pathType?: string; service?: string; port?: number | string };

/** A networking/v1 Ingress of class kubenft in namespace default (backends default to web:80). */
export function ingress(name: string, rules: { host?: string; paths: IngressPathSpec[] }[], extra: { spec?: Record<string, unknown>; metadata?: Record<string, unknown> } = {}): KubeObject {
  return {
    apiVersion: 'networking.k8s.io/v1',
    kind: 'Ingress',
    metadata: { name, namespace: 'default', ...extra.metadata },
    spec: {
      ingressClassName: 'kubenft',
      rules: rules.map((rule) => ({
        ...(rule.host ? { host: rule.host } : {}),
        http: {
          paths: rule.paths.map((path) => ({
            path: path.path, ...(path.pathType ? { pathType: path.pathType } : {}),
            backend: { service: { name: path.service ?? 'web', port: typeof path.port === 'string' ? { name: path.port } : { number: path.port ?? 80 } } },
          })),
        },
      })),
      ...extra.spec,
    },
  };
}

export const OUR_CLASS = { apiVersion: 'networking.k8s.io/v1', kind: 'IngressClass', metadata: { name: 'kubenft' }, spec: { controller: 'kubenft.io/ingress-controller' } };

/** A self-signed certificate for the names, made by the openssl CLI. */
export function certificate(...names: string[]): { cert: string; key: string } {
  const out = execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1', '-subj', `/CN=${names[0]}`,
    '-addext', `subjectAltName=${names.map((name) => `DNS:${name}`).join(',')}`, '-keyout', '-', '-out', '-',
  ], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  return { cert: /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n/.exec(out)![0], key: /-----BEGIN PRIVATE KEY-----[\s\S]+?-----END PRIVATE KEY-----\n/.exec(out)![0] };
}

export function tlsSecret(name: string, pair: { cert: string; key: string }): KubeObject {
  return { apiVersion: 'v1', kind: 'Secret', metadata: { name, namespace: 'default' }, type: 'kubernetes.io/tls', data: { 'tls.crt': Buffer.from(pair.cert).toString('base64'), 'tls.key': Buffer.from(pair.key).toString('base64') } };
}

/**
 * The Ingress docs' path table, one row each: the rules (type and path, each to web, api, other in
 * turn), the request path, and the service that must answer ('none': no rule matches).
 */
export const PATH_TABLE: [string, [string, string][], string, string][] = [
  ['Prefix / matches all', [['Prefix', '/']], '/anything/at/all', 'web'],
  ['Exact /foo matches /foo', [['Exact', '/foo']], '/foo', 'web'],
  ['Exact /foo does not match /bar', [['Exact', '/foo']], '/bar', 'none'],
  ['Exact /foo does not match /foo/', [['Exact', '/foo']], '/foo/', 'none'],
  ['Exact /foo/ does not match /foo', [['Exact', '/foo/']], '/foo', 'none'],
  ['Prefix /foo matches /foo', [['Prefix', '/foo']], '/foo', 'web'],
  ['Prefix /foo matches /foo/', [['Prefix', '/foo']], '/foo/', 'web'],
  ['Prefix /foo/ matches /foo', [['Prefix', '/foo/']], '/foo', 'web'],
  ['Prefix /foo/ matches /foo/', [['Prefix', '/foo/']], '/foo/', 'web'],
  ['Prefix /aaa/bb does not match /aaa/bbb', [['Prefix', '/aaa/bb']], '/aaa/bbb', 'none'],
  ['Prefix /aaa/bbb matches /aaa/bbb', [['Prefix', '/aaa/bbb']], '/aaa/bbb', 'web'],
  ['Prefix /aaa/bbb/ matches /aaa/bbb (ignores the trailing slash)', [['Prefix', '/aaa/bbb/']], '/aaa/bbb', 'web'],
  ['Prefix /aaa/bbb matches /aaa/bbb/ (matches the trailing slash)', [['Prefix', '/aaa/bbb']], '/aaa/bbb/', 'web'],
  ['Prefix /aaa/bbb matches /aaa/bbb/ccc (a subpath)', [['Prefix', '/aaa/bbb']], '/aaa/bbb/ccc', 'web'],
  ['Prefix /aaa/bbb does not match /aaa/bbbxyz (no string prefix)', [['Prefix', '/aaa/bbb']], '/aaa/bbbxyz', 'none'],
  ['Prefix /, /aaa: /aaa/ccc matches /aaa', [['Prefix', '/'], ['Prefix', '/aaa']], '/aaa/ccc', 'api'],
  ['Prefix /, /aaa, /aaa/bbb: /aaa/bbb matches /aaa/bbb', [['Prefix', '/'], ['Prefix', '/aaa'], ['Prefix', '/aaa/bbb']], '/aaa/bbb', 'other'],
  ['Prefix /, /aaa, /aaa/bbb: /ccc matches /', [['Prefix', '/'], ['Prefix', '/aaa'], ['Prefix', '/aaa/bbb']], '/ccc', 'web'],
  ['Prefix /aaa does not match /ccc', [['Prefix', '/aaa']], '/ccc', 'none'],
  ['Prefix and Exact /foo: /foo prefers Exact', [['Prefix', '/foo'], ['Exact', '/foo']], '/foo', 'api'],
  ['Exact is case-sensitive', [['Exact', '/foo']], '/FOO', 'none'],
  ['Prefix is case-sensitive', [['Prefix', '/foo']], '/FOO', 'none'],
  ['ImplementationSpecific is Prefix', [['ImplementationSpecific', '/foo']], '/foo/bar', 'web'],
];
