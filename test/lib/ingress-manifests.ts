// Builders for the ingress tests' objects: Ingresses, classes and TLS Secrets.
import { execFileSync } from 'node:child_process';
import type { KubeObject } from '../../src/state/cluster-state.js';

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
