// Whether a ClientHello names a server, on real ClientHellos: openssl s_client (TLS 1.2 and 1.3,
// with and without SNI) and curl (a host name, an IP address: no SNI) connect to a loopback
// listener of this test, which keeps their first bytes. Each is read whole, byte by byte as it may
// arrive, and fragmented over several TLS records, as RFC 8446 §5.1 allows.
import t, { type Test } from 'tap';
import { spawn } from 'node:child_process';
import { type AddressInfo, createServer } from 'node:net';
import { MAX_CLIENT_HELLO_BYTES, clientHelloNamesServer } from '../../src/ingress/client-hello.js';

/** The first bytes a client sends to a listener that never answers (the client gives up, or is killed). */
async function firstBytes(client: (port: number) => string[]): Promise<Buffer> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const received = new Promise<Buffer>((resolve) => server.once('connection', (socket) => {
    const chunks: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      if (clientHelloNamesServer(Buffer.concat(chunks)) !== undefined) {
        socket.destroy();
        resolve(Buffer.concat(chunks));
      }
    });
  }));
  const [command, ...args] = client(port);
  const child = spawn(command, args, { stdio: 'ignore' });
  try {
    return await received;
  } finally {
    child.kill('SIGKILL');
    server.close();
  }
}

const CLIENTS: [string, (port: number) => string[], boolean][] = [
  ['openssl TLS 1.3 with SNI', (port) => ['openssl', 's_client', '-connect', `127.0.0.1:${port}`, '-tls1_3', '-servername', 'a.example.com'], true],
  ['openssl TLS 1.3 without SNI', (port) => ['openssl', 's_client', '-connect', `127.0.0.1:${port}`, '-tls1_3', '-noservername'], false],
  ['openssl TLS 1.2 with SNI and ALPN', (port) => ['openssl', 's_client', '-connect', `127.0.0.1:${port}`, '-tls1_2', '-servername', 'b.example.com', '-alpn', 'h2,http/1.1'], true],
  ['openssl TLS 1.2 without SNI', (port) => ['openssl', 's_client', '-connect', `127.0.0.1:${port}`, '-tls1_2', '-noservername'], false],
  ['curl to a host name', (port) => ['curl', '-sk', '--max-time', '5', '--resolve', `c.example.com:${port}:127.0.0.1`, `https://c.example.com:${port}/`], true],
  ['curl to an IP address', (port) => ['curl', '-sk', '--max-time', '5', `https://127.0.0.1:${port}/`], false],
];

/** The same ClientHello in records of at most `size` handshake bytes each. */
function fragmented(record: Buffer, size: number): Buffer {
  const handshake = record.subarray(5, 5 + record.readUInt16BE(3));
  const records: Buffer[] = [];
  for (let offset = 0; offset < handshake.length; offset += size) {
    const fragment = handshake.subarray(offset, offset + size);
    const header = Buffer.from([22, record[1], record[2], 0, 0]);
    header.writeUInt16BE(fragment.length, 3);
    records.push(header, fragment);
  }
  return Buffer.concat(records);
}

function everyPrefixUndecided(t: Test, bytes: Buffer, name: string): void {
  const decided = [];
  for (let length = 0; length < bytes.length; length++) if (clientHelloNamesServer(bytes.subarray(0, length)) !== undefined) decided.push(length);
  t.same(decided, [], `${name}: undecided until the whole ClientHello is there`);
}

for (const [name, client, named] of CLIENTS) {
  t.test(name, async (t) => {
    const hello = await firstBytes(client);
    t.equal(hello[0], 22, 'a TLS handshake record');
    t.equal(clientHelloNamesServer(hello), named, named ? 'names a server' : 'names none');
    everyPrefixUndecided(t, hello, 'in one record');
    for (const size of [1, 64, 200]) {
      const pieces = fragmented(hello, size);
      t.equal(clientHelloNamesServer(pieces), named, `fragmented in records of ${size} bytes`);
      if (size === 64) everyPrefixUndecided(t, pieces, `in records of ${size} bytes`);
    }
  });
}

t.test('bytes that are not a ClientHello, or a broken one, are decided at once: no server name', async (t) => {
  t.equal(clientHelloNamesServer(Buffer.from('GET / HTTP/1.1\r\nhost: a\r\n\r\n')), false, 'plain HTTP on the TLS port');
  t.equal(clientHelloNamesServer(Buffer.from('G')), false, 'from its first byte');
  t.equal(clientHelloNamesServer(Buffer.from([22, 3, 1, 0, 4, 2, 0, 0, 0])), false, 'another handshake message (ServerHello)');
  const huge = Buffer.from([22, 3, 1, 0, 4, 1, 0, 0, 0]);
  huge.writeUIntBE(MAX_CLIENT_HELLO_BYTES + 1, 6, 3);
  t.equal(clientHelloNamesServer(huge), false, 'a ClientHello longer than any real one');
  const hello = await firstBytes(CLIENTS[0][1]);
  const broken = Buffer.from(hello);
  // The extensions' total length made larger than the message: every length is checked.
  const sessionIdAt = 5 + 4 + 2 + 32; // record and handshake headers, legacy_version, random
  const cipherSuitesAt = sessionIdAt + 1 + broken[sessionIdAt];
  const compressionAt = cipherSuitesAt + 2 + broken.readUInt16BE(cipherSuitesAt);
  const extensionsAt = compressionAt + 1 + broken[compressionAt];
  broken.writeUInt16BE(0xffff, extensionsAt);
  t.equal(clientHelloNamesServer(broken), false, 'an extension running past the message');
});
