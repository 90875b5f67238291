// Whether a TLS connection's first bytes, a ClientHello, name a server (SNI, RFC 6066 §3): all the
// HTTPS listener needs to know to hand the connection to the right TLS server (see
// handOverByServerName in proxy-worker.ts). Synchronous, on the bytes as they arrive: a general
// parser (read-tls-client-hello) cost about 1 ms of CPU per connection here, more than the
// handshake's own signature; this reads only the fields on the way to server_name.

const RECORD_HEADER = 5;
const CONTENT_HANDSHAKE = 22;
const HANDSHAKE_CLIENT_HELLO = 1;
const EXTENSION_SERVER_NAME = 0;
const NAME_TYPE_HOST_NAME = 0;
/** RFC 8446 §4.1.2's ClientHello fits far under this; past it, the connection is taken as one without SNI. */
export const MAX_CLIENT_HELLO_BYTES = 64 * 1024;

/** The handshake bytes of the complete TLS records at the start of data (a ClientHello may be fragmented over several), or false when a record is not a handshake one. */
function handshakeBytes(data: Buffer): Buffer | false {
  if (data.length > 0 && data[0] !== CONTENT_HANDSHAKE) return false;
  const fragments: Buffer[] = [];
  let offset = 0;
  while (offset + RECORD_HEADER <= data.length) {
    if (data[offset] !== CONTENT_HANDSHAKE) return false;
    const end = offset + RECORD_HEADER + data.readUInt16BE(offset + 3);
    if (end > data.length) break;
    fragments.push(data.subarray(offset + RECORD_HEADER, end));
    offset = end;
  }
  return fragments.length === 1 ? fragments[0] : Buffer.concat(fragments);
}

/** Whether a complete ClientHello body has a server_name extension with a host name (false for anything malformed: OpenSSL then decides). */
function namesServer(hello: Buffer): boolean {
  let offset = 2 + 32; // legacy_version, random
  const skip = (lengthBytes: 1 | 2) => {
    if (offset + lengthBytes > hello.length) return false;
    offset += lengthBytes + (lengthBytes === 1 ? hello[offset] : hello.readUInt16BE(offset));
    return offset <= hello.length;
  };
  // legacy_session_id, cipher_suites, legacy_compression_methods
  if (!skip(1) || !skip(2) || !skip(1) || offset + 2 > hello.length) return false;
  const extensionsEnd = offset + 2 + hello.readUInt16BE(offset);
  if (extensionsEnd > hello.length) return false;
  offset += 2;
  while (offset + 4 <= extensionsEnd) {
    const type = hello.readUInt16BE(offset);
    const end = offset + 4 + hello.readUInt16BE(offset + 2);
    if (end > extensionsEnd) return false;
    if (type === EXTENSION_SERVER_NAME) {
      // ServerNameList: a 2-byte length, then (name_type, 2-byte length, name) entries.
      for (let entry = offset + 6; entry + 3 <= end;) {
        const length = hello.readUInt16BE(entry + 1);
        if (hello[entry] === NAME_TYPE_HOST_NAME && length > 0 && entry + 3 + length <= end) return true;
        entry += 3 + length;
      }
      return false;
    }
    offset = end;
  }
  return false;
}

/**
 * Whether the ClientHello at the start of data names a server: true or false once that is known,
 * undefined while more bytes are needed. Bytes that are not a ClientHello, or one too large or
 * malformed, give false.
 */
export function clientHelloNamesServer(data: Buffer): boolean | undefined {
  const handshake = handshakeBytes(data);
  if (handshake === false) return false;
  if (handshake.length >= 1 && handshake[0] !== HANDSHAKE_CLIENT_HELLO) return false;
  const length = handshake.length >= 4 ? handshake.readUIntBE(1, 3) : undefined;
  if (length !== undefined && length > MAX_CLIENT_HELLO_BYTES) return false;
  if (length === undefined || handshake.length < 4 + length) return data.length > MAX_CLIENT_HELLO_BYTES + RECORD_HEADER * 8 ? false : undefined;
  return namesServer(handshake.subarray(4, 4 + length));
}
