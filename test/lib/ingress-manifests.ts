// Builders for the ingress tests' objects: Ingresses, classes and TLS Secrets.
import { execFileSync } from 'node:child_process';
import { type KeyObject, generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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

export type KeyKind = 'rsa2048' | 'rsa4096' | 'ec256' | 'ec384';
/** How the key is written: PKCS#8 ("BEGIN PRIVATE KEY"), or the traditional form of its type (PKCS#1 "BEGIN RSA PRIVATE KEY", SEC1 "BEGIN EC PRIVATE KEY"). */
export type KeyEncoding = 'pkcs8' | 'traditional';

export interface Issued {
  cert: string;
  key: string;
}

export interface IssueOptions {
  key?: KeyKind;
  encoding?: KeyEncoding;
  /** Signs the certificate (a CA's); without one it is self-signed. */
  issuer?: Issued;
  /** A CA certificate (the self-signed ones are too, so that a client can trust them as they are). */
  ca?: boolean;
  /** The subject's O, to tell a rotated certificate from the one before. */
  organization?: string;
}

function newKey(kind: KeyKind): KeyObject {
  const { privateKey } = kind.startsWith('rsa')
    ? generateKeyPairSync('rsa', { modulusLength: Number(kind.slice(3)) })
    : generateKeyPairSync('ec', { namedCurve: kind === 'ec256' ? 'prime256v1' : 'secp384r1' });
  return privateKey;
}

/** A certificate for the names (the first is the CN), with a new key, made by the openssl CLI. */
export function issue(names: string[], options: IssueOptions = {}): Issued {
  const key = newKey(options.key ?? 'ec256');
  const directory = mkdtempSync(join(tmpdir(), 'kubenft-cert-'));
  try {
    const file = (name: string, text: string) => {
      writeFileSync(join(directory, name), text);
      return join(directory, name);
    };
    const ca = options.ca || !options.issuer;
    const config = file('openssl.cnf', [
      '[req]', 'distinguished_name = dn', '[dn]', '[extensions]',
      `basicConstraints = critical, CA:${ca ? 'TRUE' : 'FALSE'}`,
      `keyUsage = critical, digitalSignature${ca ? ', keyCertSign' : ''}${options.key?.startsWith('rsa') ? ', keyEncipherment' : ''}`,
      'subjectKeyIdentifier = hash',
      ...(options.ca ? [] : ['extendedKeyUsage = serverAuth', `subjectAltName = ${names.map((name) => `DNS:${name}`).join(',')}`]),
    ].join('\n'));
    const signer = options.issuer ? ['-CA', file('issuer.crt', options.issuer.cert), '-CAkey', file('issuer.key', options.issuer.key)] : [];
    const cert = execFileSync('openssl', [
      'req', '-x509', '-new', '-config', config, '-extensions', 'extensions', '-key', file('key.pem', key.export({ type: 'pkcs8', format: 'pem' }) as string),
      '-days', '1', '-subj', `${options.organization ? `/O=${options.organization}` : ''}/CN=${names[0]}`, ...signer,
    ], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    const type = options.encoding === 'traditional' ? (options.key?.startsWith('rsa') ? 'pkcs1' : 'sec1') : 'pkcs8';
    return { cert, key: key.export({ type, format: 'pem' }) as string };
  } finally {
    rmSync(directory, { recursive: true, force: true });
  }
}

/** A self-signed ECDSA P-256 certificate for the names. */
export const certificate = (...names: string[]): Issued => issue(names);

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
