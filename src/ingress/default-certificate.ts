import { generateKeyPairSync, randomBytes, sign } from 'node:crypto';
import { AsnConvert, OctetString } from '@peculiar/asn1-schema';
import {
  AlgorithmIdentifier, AttributeTypeAndValue, AttributeValue, BasicConstraints, Certificate, ExtendedKeyUsage, Extension, Extensions, KeyUsage, KeyUsageFlags,
  Name, RelativeDistinguishedName, SubjectPublicKeyInfo, TBSCertificate, Validity, Version, id_ce_basicConstraints, id_ce_extKeyUsage, id_ce_keyUsage, id_kp_serverAuth,
} from '@peculiar/asn1-x509';

// The certificate served for unknown or absent SNI when no --ingress-default-certificate is given:
// self-signed, made in-process at start (it was the openssl CLI's, a program the image lacked).
// Node's crypto makes the P-256 key and the ECDSA signature; @peculiar/asn1-x509 (the ASN.1 schema
// of RFC 5280, as PeculiarVentures' x509 and pkijs use it) encodes the certificate, so no DER is
// written by hand. Its higher-level @peculiar/x509 needs a global reflect-metadata polyfill.

const ECDSA_WITH_SHA256 = '1.2.840.10045.4.3.2';
const COMMON_NAME = '2.5.4.3';
const ORGANIZATION = '2.5.4.10';
const VALIDITY_DAYS = 3650;
const DAY_MS = 86_400_000;

const pem = (label: string, der: ArrayBuffer | Buffer) =>
  `-----BEGIN ${label}-----\n${Buffer.from(der as ArrayBuffer).toString('base64').replace(/.{1,64}/g, '$&\n')}-----END ${label}-----\n`;

const extension = (extnID: string, critical: boolean, value: object) => new Extension({ extnID, critical, extnValue: new OctetString(AsnConvert.serialize(value)) });

/** O=kubenft, CN=kubenft ingress default certificate: a server certificate (TLS server auth), not a CA. */
export function generateDefaultCertificate(now = new Date()): { cert: string; key: string } {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const name = new Name([
    new RelativeDistinguishedName([new AttributeTypeAndValue({ type: ORGANIZATION, value: new AttributeValue({ utf8String: 'kubenft' }) })]),
    new RelativeDistinguishedName([new AttributeTypeAndValue({ type: COMMON_NAME, value: new AttributeValue({ utf8String: 'kubenft ingress default certificate' }) })]),
  ]);
  const signatureAlgorithm = new AlgorithmIdentifier({ algorithm: ECDSA_WITH_SHA256 });
  // A positive serial of 126 random bits (RFC 5280 4.1.2.2: at most 20 bytes, unique per issuer).
  // Its first byte is 0x40-0x7f: a DER INTEGER is minimal, so a zero first byte before one below
  // 0x80 is padding OpenSSL refuses ('illegal padding': HAProxy could not load one start in 300).
  const serial = randomBytes(16);
  serial[0] = 0x40 | (serial[0] & 0x3f);
  const tbsCertificate = new TBSCertificate({
    version: Version.v3,
    serialNumber: serial.buffer.slice(serial.byteOffset, serial.byteOffset + serial.length),
    signature: signatureAlgorithm,
    issuer: name,
    subject: name,
    validity: new Validity({ notBefore: now, notAfter: new Date(now.getTime() + VALIDITY_DAYS * DAY_MS) }),
    subjectPublicKeyInfo: AsnConvert.parse(publicKey.export({ type: 'spki', format: 'der' }), SubjectPublicKeyInfo),
    extensions: new Extensions([
      extension(id_ce_basicConstraints, true, new BasicConstraints({ cA: false })),
      extension(id_ce_keyUsage, true, new KeyUsage(KeyUsageFlags.digitalSignature)),
      extension(id_ce_extKeyUsage, false, new ExtendedKeyUsage([id_kp_serverAuth])),
    ]),
  });
  // Node signs ECDSA in the DER form X.509 wants (dsaEncoding 'der', the default).
  const signatureValue = sign('sha256', Buffer.from(AsnConvert.serialize(tbsCertificate)), privateKey);
  const certificate = new Certificate({ tbsCertificate, signatureAlgorithm, signatureValue: signatureValue.buffer.slice(signatureValue.byteOffset, signatureValue.byteOffset + signatureValue.length) });
  return { cert: pem('CERTIFICATE', AsnConvert.serialize(certificate)), key: pem('PRIVATE KEY', privateKey.export({ type: 'pkcs8', format: 'der' })) };
}
