// The ingress's default certificate, made in-process (no openssl program at run time): openssl
// reads it as a v3 ECDSA P-256 server certificate, self-signed, and a TLS 1.3 handshake with
// openssl s_client against a server holding it completes.
import t from 'tap';
import { execFile, execFileSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer } from 'node:tls';
import { generateDefaultCertificate } from '../../src/ingress/default-certificate.js';

t.test('a serial whose random bytes start with zeros is still minimal DER', async (t) => {
  // One random start in 256 draws a zero byte first: the certificate must still parse.
  for (const first of [0x00, 0x80]) {
    const { generateDefaultCertificate: generate } = await t.mockImport<typeof import('../../src/ingress/default-certificate.js')>('../../src/ingress/default-certificate.js', {
      'node:crypto': { ...crypto, randomBytes: (size: number) => Buffer.alloc(size, 0).fill(0x11, 1, 2).fill(first, 0, 1) },
    });
    const parsed = new X509Certificate(generate().cert);
    t.match(parsed.serialNumber, /^[4-7][0-9A-F]{31}$/, `first random byte ${first}: serial ${parsed.serialNumber}`);
  }
});

t.test('a self-signed P-256 server certificate that openssl and TLS clients accept', async (t) => {
  const now = new Date('2026-01-01T00:00:00Z');
  const { cert, key } = generateDefaultCertificate(now);
  const directory = mkdtempSync(join(tmpdir(), 'kubenft-cert-'));
  t.teardown(() => rmSync(directory, { recursive: true, force: true }));
  const certFile = join(directory, 'cert.pem');
  writeFileSync(certFile, cert);
  const text = execFileSync('openssl', ['x509', '-in', certFile, '-noout', '-text'], { encoding: 'utf8' });
  t.match(text, /Version: 3 \(0x2\)/);
  t.match(text, /Signature Algorithm: ecdsa-with-SHA256/);
  t.match(text, /Subject: O = kubenft, CN = kubenft ingress default certificate/);
  t.match(text, /Issuer: O = kubenft, CN = kubenft ingress default certificate/);
  t.match(text, /NIST CURVE: P-256/);
  t.match(text, /Basic Constraints: critical\s+CA:FALSE/);
  t.match(text, /Extended Key Usage: \s*TLS Web Server Authentication/);
  t.match(text, /Not Before: Jan  1 00:00:00 2026 GMT\s+Not After : Dec 30 00:00:00 2035 GMT/, 'ten years from now');
  t.equal(execFileSync('openssl', ['verify', '-partial_chain', '-CAfile', certFile, certFile], { encoding: 'utf8' }).trim(), `${certFile}: OK`, 'its signature verifies');
  const parsed = new X509Certificate(cert);
  t.ok(parsed.checkPrivateKey(createPrivateKey(key)), 'the key is the certificate\'s');
  t.not(generateDefaultCertificate(now).cert, cert, 'each start makes its own key and serial');

  const server = createServer({ cert, key, minVersion: 'TLSv1.3' }, (socket) => socket.end());
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => server.close());
  const { port } = server.address() as { port: number };
  const handshake = await new Promise<string>((resolve) => {
    const client = execFile('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-tls1_3', '-servername', 'unknown.example'], { encoding: 'utf8', timeout: 10_000 }, (_error, stdout) => resolve(stdout));
    client.stdin?.end();
  });
  t.match(handshake, /New, TLSv1\.3, Cipher is/, 'a TLS 1.3 handshake');
  t.match(handshake, /subject=O = kubenft, CN = kubenft ingress default certificate/);
});
