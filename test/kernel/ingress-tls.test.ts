// The ingress proxy's TLS, by the variants real certificates and clients come in: RSA 2048 and
// 4096 with PKCS#1 and PKCS#8 keys, ECDSA P-256 and P-384 with SEC1 and PKCS#8 keys, a chain with
// an intermediate, a wildcard, and the default certificate, all served side by side on one
// listener of one agent; each over TLS 1.2 and 1.3, through openssl s_client (with and without
// SNI, ALPN h2) and curl (HTTP/1.1 and h2), every certificate verified against its issuer; then
// each rotated (two of them to the other key type), the default certificate replaced by an RSA
// one; and an Ingress whose Secret arrives late.
import t, { type Test } from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { projectRoot } from '../../src/kernel/native.js';
import { EXTERNAL, createTopology, type ProcessHandle, type Topology } from '../../scripts/lib/topology.js';
import { eventually } from '../lib/eventually.js';
import { CLI, kubenft, metricValue, scrape } from '../lib/kubenft.js';
import { ManifestFile, service, slice } from '../lib/manifests.js';
import { type IssueOptions, type Issued, OUR_CLASS, ingress, issue, tlsSecret } from '../lib/ingress-manifests.js';
import { IngressDataplaneUnderTest } from '../lib/ingress-dataplane.js';

const NODE = EXTERNAL.nodeIPv4;
const ECHO_PORT = 8080;
const METRICS = 'http://127.0.0.1:10249/metrics';
const GENERATED_DEFAULT = 'O = kubenft, CN = kubenft ingress default certificate';

interface Variant {
  /** The Secret's name, and the first label of its host. */
  name: string;
  issue: IssueOptions;
  /** What a handshake shows of the key: openssl's "Peer signature type" and key size. */
  signature: 'RSA-PSS' | 'ECDSA';
  bits: number;
}

const rsa = (bits: 2048 | 4096, encoding: 'traditional' | 'pkcs8'): Variant => ({
  name: `rsa${bits}-${encoding === 'traditional' ? 'pkcs1' : 'pkcs8'}`, issue: { key: `rsa${bits}`, encoding }, signature: 'RSA-PSS', bits,
});
const ecdsa = (bits: 256 | 384, encoding: 'traditional' | 'pkcs8'): Variant => ({
  name: `ec${bits}-${encoding === 'traditional' ? 'sec1' : 'pkcs8'}`, issue: { key: `ec${bits}`, encoding }, signature: 'ECDSA', bits,
});

const root = issue(['kubenft test root CA'], { ca: true, key: 'ec384' });
const intermediate = issue(['kubenft test intermediate CA'], { ca: true, key: 'rsa2048', issuer: root });

const VARIANTS: Variant[] = [
  rsa(2048, 'traditional'), rsa(2048, 'pkcs8'), rsa(4096, 'traditional'), rsa(4096, 'pkcs8'),
  ecdsa(256, 'traditional'), ecdsa(256, 'pkcs8'), ecdsa(384, 'traditional'), ecdsa(384, 'pkcs8'),
  { name: 'chain', issue: { key: 'rsa2048', issuer: intermediate }, signature: 'RSA-PSS', bits: 2048 },
  { name: 'wildcard', issue: { key: 'ec256' }, signature: 'ECDSA', bits: 256 },
];
/** The names a variant's certificate is for, and the host a client asks for. */
const certificateNames = (variant: Variant) => (variant.name === 'wildcard' ? ['*.wildcard.tls.test'] : [`${variant.name}.tls.test`]);
const hostOf = (variant: Variant) => (variant.name === 'wildcard' ? 'a.wildcard.tls.test' : `${variant.name}.tls.test`);

/** A variant's certificate, as served: a chain's leaf comes with its intermediate. */
function issueFor(variant: Variant, organization: string): Issued {
  const issued = issue(certificateNames(variant), { ...variant.issue, organization });
  return variant.issue.issuer ? { cert: issued.cert + variant.issue.issuer.cert, key: issued.key } : issued;
}

// The clients trust every self-signed certificate and the root: a wrong certificate fails verification.
const certificates = new Map<string, Issued>();
const directory = mkdtempSync(join(tmpdir(), 'kubenft-tls-'));
const trusted = join(directory, 'trusted.pem');
function trust(): void {
  writeFileSync(trusted, [root.cert, ...[...certificates.values()].filter((pair) => !pair.cert.includes(intermediate.cert)).map((pair) => pair.cert)].join(''));
}

const late = ingress('late', [{ host: 'late.tls.test', paths: [{ path: '/', pathType: 'Prefix' }] }], { spec: { tls: [{ hosts: ['late.tls.test'], secretName: 'late' }] } });
const lateCertificate = issue(['late.tls.test'], { key: 'rsa2048', organization: 'late' });
const fallback = issue(['fallback.tls.test'], { key: 'rsa2048', organization: 'fallback' });

function manifests(extra: unknown[] = []): unknown[] {
  return [
    OUR_CLASS,
    service('web', '10.0.0.10', [{ name: 'http', port: 80, targetPort: ECHO_PORT }]),
    slice('web', [{ name: 'http', port: ECHO_PORT }], [{ ip: '10.244.1.5' }]),
    ...VARIANTS.map((variant) => ingress(variant.name, [{ host: hostOf(variant), paths: [{ path: '/', pathType: 'Prefix' }] }], {
      spec: { tls: [{ hosts: certificateNames(variant), secretName: variant.name }] },
    })),
    ...VARIANTS.map((variant) => tlsSecret(variant.name, certificates.get(variant.name)!)),
    late,
    ...extra,
  ];
}

let topology: Topology;
let agent: ProcessHandle;
const dataplane = new IngressDataplaneUnderTest();
for (const variant of VARIANTS) certificates.set(variant.name, issueFor(variant, 'v1'));
trust();
const file = new ManifestFile(manifests());

t.before(async () => {
  topology = await createTopology({ pods: [{ name: 'web', ipv4: '10.244.1.5' }], serverReadyTimeoutMs: 60_000 });
  const echo = topology.spawn(topology.pods[0].ns, ['node', join(projectRoot(), 'test/fixtures/http-echo.mjs'), 'web', String(ECHO_PORT)]);
  await echo.waitForOutput(/ready/, 60_000);
  agent = topology.spawn(topology.node, [
    'node', CLI, '--manifests', file.path, '--hostname-override', 'node-1', '--iptables-min-sync-period', '50ms',
    '--healthz-bind-address', '127.0.0.1:10256', '--metrics-bind-address', '127.0.0.1:10249',
    '--ingress', '--ingress-workers', '2', ...dataplane.args, '--ingress-default-certificate', 'default/fallback',
  ]);
  if (!(await eventually(async () => (await handshake('ec256-pkcs8.tls.test', '1.2')).verified, 30_000))) throw new Error(`the proxy does not answer: ${JSON.stringify(agent.output())}`);
});
t.teardown(async () => {
  await agent?.stop();
  await dataplane.remove();
  await topology?.destroy();
  file.remove();
  rmSync(directory, { recursive: true, force: true });
});

interface Handshake {
  subject: string;
  protocol: string;
  alpn: string;
  signature: string;
  bits: number;
  /** Certificates the server sent. */
  chainLength: number;
  /** Verified against the trusted certificates, for the host asked for. */
  verified: boolean;
  output: string;
}

/** One TLS handshake by openssl s_client from the client namespace; no server name: no SNI. */
async function handshake(serverName: string | undefined, version: '1.2' | '1.3'): Promise<Handshake> {
  const name = serverName === undefined ? ['-noservername'] : ['-servername', serverName, '-verify_hostname', serverName];
  const result = await topology.exec(topology.client, [
    'openssl', 's_client', '-connect', `${NODE}:443`, `-tls1_${version.slice(2)}`, '-alpn', 'h2,http/1.1', '-CAfile', trusted, '-showcerts', ...name,
  ]);
  const output = result.stdout + result.stderr;
  const field = (pattern: RegExp) => pattern.exec(output)?.[1] ?? '';
  return {
    subject: field(/^subject=(.*)$/m), protocol: field(/^New, (TLSv[\d.]+), Cipher is/m), alpn: field(/^ALPN protocol: (\S+)$/m),
    signature: field(/^Peer signature type: (\S+)$/m), bits: Number(field(/^Server public key is (\d+) bit$/m)),
    chainLength: output.split('-----BEGIN CERTIFICATE-----').length - 1, verified: /Verify return code: 0 \(ok\)/.test(output), output,
  };
}

const subjectOf = (variant: Variant, organization: string) => `O = ${organization}, CN = ${certificateNames(variant)[0]}`;
const summary = (shake: Handshake) => ({ subject: shake.subject, protocol: shake.protocol, alpn: shake.alpn, signature: shake.signature, bits: shake.bits, verified: shake.verified });

/** Every variant over both TLS versions, in parallel: each must be served its own certificate, verified, h2 by ALPN. */
async function checkEveryVariant(t: Test, organization: string, kind: (variant: Variant) => Pick<Variant, 'signature' | 'bits'>): Promise<void> {
  const cases = VARIANTS.flatMap((variant) => (['1.2', '1.3'] as const).map((version) => ({ variant, version })));
  const shakes = await Promise.all(cases.map(({ variant, version }) => handshake(hostOf(variant), version)));
  cases.forEach(({ variant, version }, index) => {
    const expected = kind(variant);
    t.same(summary(shakes[index]), {
      subject: subjectOf(variant, organization), protocol: `TLSv${version}`, alpn: 'h2', signature: expected.signature, bits: expected.bits, verified: true,
    }, `${hostOf(variant)} over TLS ${version}`);
  });
}

t.test('every key type and encoding, a chain and a wildcard, side by side: each host its own certificate over TLS 1.2 and 1.3, verified, h2 by ALPN', async (t) => {
  await checkEveryVariant(t, 'v1', (variant) => variant);
  const chain = await handshake(hostOf(VARIANTS.find((variant) => variant.name === 'chain')!), '1.3');
  t.equal(chain.chainLength, 2, 'the chain is served: the leaf and its intermediate (the client trusts only the root)');
});

t.test('the default certificate: unknown SNI and no SNI, over TLS 1.2 and 1.3', async (t) => {
  for (const version of ['1.2', '1.3'] as const) {
    for (const name of ['unknown.tls.test', undefined]) {
      const shake = await handshake(name, version);
      t.same({ subject: shake.subject, protocol: shake.protocol, alpn: shake.alpn }, { subject: GENERATED_DEFAULT, protocol: `TLSv${version}`, alpn: 'h2' }, `${name ?? 'no SNI'} over TLS ${version}`);
    }
  }
});

t.test('curl over TLS 1.2 and 1.3, HTTP/1.1 and h2: every host answers, its certificate verified', async (t) => {
  const urls = VARIANTS.map((variant) => `https://${hostOf(variant)}/`);
  for (const tls of [['--tlsv1.2', '--tls-max', '1.2'], ['--tlsv1.3']]) {
    for (const [http, version] of [['--http1.1', '1.1'], ['--http2', '2']]) {
      const result = await topology.exec(topology.client, [
        'curl', '-sS', '--max-time', '10', '--connect-to', `::${NODE}:`, '--cacert', trusted, tls[0], ...tls.slice(1), http,
        ...urls.flatMap((url) => ['-o', '/dev/null', url]), '-w', '%{http_code} %{http_version} %{ssl_verify_result}\n',
      ]);
      t.same(result.stdout.trim().split('\n'), urls.map(() => `200 ${version} 0`), `${tls[0]} ${http}${result.stderr ? `: ${result.stderr.split('\n')[0]}` : ''}`);
    }
  }
});

t.test('an Ingress whose Secret is missing is served with the default certificate and reported; the Secret, created later, is served', async (t) => {
  const http = await topology.exec(topology.client, ['curl', '-sS', '--max-time', '10', '--connect-to', `::${NODE}:`, '-o', '/dev/null', '-w', '%{http_code} %{redirect_url}', 'http://late.tls.test/x']);
  t.equal(http.stdout, '308 https://late.tls.test/x', 'plain HTTP: its rules are served (the redirect to https, as ingress-nginx keeps it)');
  const https = await topology.exec(topology.client, ['curl', '-sS', '-k', '--max-time', '10', '--connect-to', `::${NODE}:`, 'https://late.tls.test/x']);
  t.match(https.stdout, /"pod":"web"/, 'HTTPS reaches its backend');
  t.equal((await handshake('late.tls.test', '1.3')).subject, GENERATED_DEFAULT, 'with the default certificate');
  t.ok(await eventually(async () => /ingress: Ingress default\/late: TLS Secret default\/late not found: late\.tls\.test served with the default certificate/.test(agent.output().stderr), 5_000), 'a log line names the Ingress and the Secret');
  t.equal(metricValue((await scrape(topology, METRICS)).body, 'kubenft_ingress_missing_secrets'), 1, 'kubenft_ingress_missing_secrets');
  const services = await kubenft(topology, ['services', '--manifests', file.path, '--hostname-override', 'node-1', '--ingress']);
  t.match(services.stdout, /^ingress:\n {2}Ingress default\/late: TLS Secret default\/late not found: late\.tls\.test served with the default certificate/m, `kubenft services shows it: ${services.stderr}`);
  t.match(services.stdout, /^ {2}late\.tls\.test \/ \(Prefix, http: 308 to https\) -> default\/web:\S+ \(Ingress default\/late\): \d+\.\d+\.\d+\.\d+:\d+/m, 'and where a request for its host and path goes');

  certificates.set('late', lateCertificate);
  trust();
  file.write(manifests([tlsSecret('late', lateCertificate)]));
  t.ok(await eventually(async () => (await handshake('late.tls.test', '1.3')).verified, 10_000), 'the Secret created later is served, without a restart');
  t.equal((await handshake('late.tls.test', '1.2')).subject, 'O = late, CN = late.tls.test');
  t.equal(metricValue((await scrape(topology, METRICS)).body, 'kubenft_ingress_missing_secrets'), 0);
  t.match(agent.output().stderr, /ingress: Ingress default\/late: TLS Secret default\/late is there: its certificate is served/);
});

t.test('rotation: every Secret updated (two of them to the other key type) and an RSA default certificate: the new certificates are served', async (t) => {
  const swapped = new Map<string, Variant>([['rsa2048-pkcs1', ecdsa(256, 'traditional')], ['ec256-sec1', rsa(2048, 'traditional')]]);
  const kind = (variant: Variant) => swapped.get(variant.name) ?? variant;
  for (const variant of VARIANTS) certificates.set(variant.name, issueFor({ ...variant, issue: kind(variant).issue }, 'v2'));
  trust();
  file.write(manifests([tlsSecret('late', lateCertificate), tlsSecret('fallback', fallback)]));
  t.ok(await eventually(async () => (await handshake(hostOf(VARIANTS[VARIANTS.length - 1]), '1.3')).subject.startsWith('O = v2') && (await handshake(undefined, '1.3')).subject.startsWith('O = fallback'), 10_000), 'the rotation is in force');
  await checkEveryVariant(t, 'v2', kind);
  for (const version of ['1.2', '1.3'] as const) {
    for (const name of ['unknown.tls.test', undefined]) {
      const shake = await handshake(name, version);
      t.same({ subject: shake.subject, signature: shake.signature }, { subject: 'O = fallback, CN = fallback.tls.test', signature: 'RSA-PSS' }, `the RSA default certificate for ${name ?? 'no SNI'} over TLS ${version}`);
    }
  }
});
