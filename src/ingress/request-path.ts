// The ingress proxy's reading of a request target (RFC 9112 §3.2): which authority and which path
// it routes by, and the target it forwards. Routing by the raw target would let `/tea/../coffee`
// reach the /tea backend, which then serves /coffee: so the path is normalized before it is
// routed, and the backend gets the normalized path, the one that was routed.
//
// The rules follow nginx 1.22's (ngx_http_parse_complex_uri, checked side by side in
// test/kernel/ingress-request-target.test.ts) where it decides routing: percent-escapes decode before
// dot segments are resolved (`%2e%2e` is `..`), slashes merge (merge_slashes on), `..` above the
// root, `%00` and a malformed escape are refused, a fragment ends the path, the query is left
// alone. Where kubenft differs it is deliberate:
// - only unreserved octets (RFC 3986 §2.3) are decoded in the path kept; every other octet is
//   kept (or put) as an upper-case %XX, so `%3F` or `%25` never turn into a delimiter downstream;
// - an encoded slash (%2F) is data, as RFC 3986 has it and as apps that put `/` in a segment need
//   (RabbitMQ's `%2F` vhost); nginx takes it as a separator. A backend may do either, so a path
//   that still holds one once normalized is routed both ways, and refused when the two ways reach
//   different routes: whichever reading the backend takes, it is a path routed to it.
// Hand-written rather than Node's URL: WHATWG URL parsing clamps `..` above the root, keeps
// `//`, reads `\` as `/` and decodes no octet, none of which is what nginx routes by.

/** A path in normal form, and, when it holds an encoded slash, its form with each taken as a separator. */
export interface NormalPath {
  /** Unreserved octets decoded, every other octet but `/` and pchar as %XX, no empty, `.` or `..` segments. */
  path: string;
  /** The path with every %2F a `/`, normalized again: how a backend that decodes encoded slashes (as nginx does) reads it; absent without a %2F. */
  slashed?: string;
}

export interface RequestTarget {
  /** An absolute-form target's authority (host[:port]), which routing uses instead of Host. */
  authority?: string;
  path: NormalPath;
  /** '' or '?' and the query exactly as sent. */
  query: string;
}

/** A path that is already normal: no `%`, only pchar and `/`, no empty, `.` or `..` segment. The common case costs one test. */
const ALREADY_NORMAL = /^(?:\/(?!\.\.?(?:\/|$))[A-Za-z0-9\-._~!$&'()*+,;=:@]+)*\/?$/;
function octetSet(pattern: RegExp): Uint8Array {
  const set = new Uint8Array(256);
  for (let octet = 0; octet < 256; octet++) set[octet] = pattern.test(String.fromCharCode(octet)) ? 1 : 0;
  return set;
}
/** Per octet: kept as it is (unreserved, sub-delims, ':', '@': RFC 3986 pchar without pct-encoded; and '/'), and whether it is unreserved (RFC 3986 §2.3). */
const LITERAL = octetSet(/[A-Za-z0-9\-._~!$&'()*+,;=:@/]/);
const UNRESERVED = octetSet(/[A-Za-z0-9\-._~]/);
const HEX = '0123456789ABCDEF';
const hexValue = (code: number) => (code >= 0x30 && code <= 0x39 ? code - 0x30 : code >= 0x41 && code <= 0x46 ? code - 0x37 : code >= 0x61 && code <= 0x66 ? code - 0x57 : -1);
const escape = (octet: number) => `%${HEX[octet >> 4]}${HEX[octet & 15]}`;

/**
 * The path's octets in one spelling: unreserved octets decoded, other escapes in upper case, an
 * octet outside pchar and '/' escaped (raw bytes come as latin1 characters, one per byte).
 * Undefined for a malformed escape or an encoded NUL.
 */
export function canonicalOctets(path: string): string | undefined {
  let out = '';
  for (let index = 0; index < path.length; index++) {
    const code = path.charCodeAt(index);
    if (code !== 0x25) {
      out += code < 0x100 && LITERAL[code] ? path[index] : escape(code & 0xff);
      continue;
    }
    const high = hexValue(path.charCodeAt(index + 1));
    const low = hexValue(path.charCodeAt(index + 2));
    if (high < 0 || low < 0) return undefined;
    const octet = (high << 4) | low;
    if (octet === 0) return undefined;
    out += UNRESERVED[octet] ? String.fromCharCode(octet) : escape(octet);
    index += 2;
  }
  return out;
}

/** RFC 3986 §5.2.4 dot-segment removal, with empty segments merged; undefined when `..` climbs above the root. */
export function resolveSegments(path: string): string | undefined {
  const kept: string[] = [];
  const segments = path.split('/');
  // segments[0] is the empty string before the leading '/'.
  for (let index = 1; index < segments.length; index++) {
    const segment = segments[index];
    if (segment === '..') {
      if (kept.length === 0) return undefined;
      kept.pop();
    } else if (segment !== '.' && segment !== '') kept.push(segment);
  }
  const last = segments[segments.length - 1];
  const trailingSlash = segments.length > 1 && (last === '' || last === '.' || last === '..');
  return kept.length === 0 ? '/' : `/${kept.join('/')}${trailingSlash ? '/' : ''}`;
}

/** A path ('/…', without query or fragment) in normal form; undefined when nginx would answer 400. */
export function normalizePath(path: string): NormalPath | undefined {
  if (ALREADY_NORMAL.test(path)) return { path };
  const octets = canonicalOctets(path);
  const normal = octets === undefined ? undefined : resolveSegments(octets);
  if (normal === undefined) return undefined;
  if (!normal.includes('%2F')) return { path: normal };
  const slashed = resolveSegments(normal.replaceAll('%2F', '/'));
  return slashed === undefined ? undefined : { path: normal, slashed };
}

/** http or https, the authority, then path, query, fragment. */
const ABSOLUTE_FORM = /^https?:\/\/([^/?#]*)([^?#]*)(\?[^#]*)?/i;

/**
 * A request target read as RFC 9112 §3.2 has it: origin-form ('/path?query') or absolute-form
 * ('http://host/path?query', routed by its authority). Undefined (400) for anything else: the
 * asterisk-form ('*'), the authority-form (CONNECT's), another scheme, userinfo, or a path nginx
 * refuses. A fragment, which no form carries, is dropped as nginx drops it.
 */
export function parseRequestTarget(target: string): RequestTarget | undefined {
  let authority: string | undefined;
  let rawPath: string;
  let query: string;
  if (target.startsWith('/')) {
    const end = target.search(/[?#]/);
    rawPath = end < 0 ? target : target.slice(0, end);
    const fragment = target.indexOf('#');
    query = end < 0 || target[end] === '#' ? '' : target.slice(end, fragment < 0 ? undefined : fragment);
  } else {
    const match = ABSOLUTE_FORM.exec(target);
    // RFC 9110 §4.2.4: userinfo is not sent in http(s) URIs; nginx refuses it.
    if (!match || match[1] === '' || match[1].includes('@')) return undefined;
    authority = match[1];
    rawPath = match[2] || '/';
    query = match[3] ?? '';
  }
  const path = normalizePath(rawPath);
  return path && { authority, path, query };
}
