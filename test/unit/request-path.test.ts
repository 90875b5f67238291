// The ingress proxy's request-target normalization, pure: each rule on its own, then properties
// over generated paths. What nginx does with the same targets is checked side by side in
// test/kernel/ingress-request-target.test.ts.
import t from 'tap';
import fc from 'fast-check';
import { canonicalOctets, normalizePath, parseRequestTarget, resolveSegments } from '../../src/ingress/request-path.js';

t.test('octets: unreserved decoded, other escapes upper case, octets outside pchar escaped, bad escapes and NUL refused', async (t) => {
  t.equal(canonicalOctets('/%7Euser/%41%2d%5f%2E'), '/~user/A-_.');
  t.equal(canonicalOctets('/a%2fb%3f%23%25%3b'), '/a%2Fb%3F%23%25%3B', 'reserved octets and % stay escaped, in upper case');
  t.equal(canonicalOctets('/caf\u00c3\u00a9 \\"<>{}|^`'), '/caf%C3%A9%20%5C%22%3C%3E%7B%7D%7C%5E%60', 'raw octets (latin1 characters) escaped');
  t.equal(canonicalOctets("/!$&'()*+,;=:@"), "/!$&'()*+,;=:@", 'sub-delims, : and @ kept');
  t.equal(canonicalOctets('/%C0%AE%ff'), '/%C0%AE%FF', 'overlong and invalid UTF-8 is octets, never a dot');
  t.equal(canonicalOctets('/%252e'), '/%252e', 'decoded once, never twice');
  for (const bad of ['/%', '/%4', '/%zz', '/%g0', '/a%00b']) t.equal(canonicalOctets(bad), undefined, bad);
});

t.test('segments: dot segments removed (RFC 3986 §5.2.4), slashes merged, .. above the root refused', async (t) => {
  const cases: [string, string | undefined][] = [
    ['/', '/'], ['//', '/'], ['/tea', '/tea'], ['/tea/', '/tea/'], ['/tea//x', '/tea/x'], ['//coffee', '/coffee'],
    ['/tea/../coffee', '/coffee'], ['/tea/./x', '/tea/x'], ['/tea/.', '/tea/'], ['/tea/..', '/'], ['/tea/x/..', '/tea/'],
    ['/tea/.../x', '/tea/.../x'], ['/tea/..x/.x', '/tea/..x/.x'], ['/a/b/../../c/', '/c/'],
    ['/..', undefined], ['/tea/../..', undefined], ['/../tea', undefined],
  ];
  for (const [path, expected] of cases) t.equal(resolveSegments(path), expected, path);
});

t.test('paths: percent-decoding before dot segments, encoded slashes as data and as separators', async (t) => {
  t.same(normalizePath('/tea'), { path: '/tea' });
  t.same(normalizePath('/tea/%2e%2e/coffee'), { path: '/coffee' });
  t.same(normalizePath('/tea/%2E%2e/coffee'), { path: '/coffee' });
  t.same(normalizePath('/tea/.%2e'), { path: '/' });
  t.same(normalizePath('/tea/..%2fcoffee'), { path: '/tea/..%2Fcoffee', slashed: '/coffee' });
  t.same(normalizePath('/api/queues/%2F/q'), { path: '/api/queues/%2F/q', slashed: '/api/queues/q' });
  t.same(normalizePath('/tea/%C0%AE%C0%AE/coffee'), { path: '/tea/%C0%AE%C0%AE/coffee' });
  t.same(normalizePath('/tea%2Fx/..'), { path: '/' }, 'an encoded slash removed with its segment is no longer read either way');
  t.equal(normalizePath('/%2e%2e/x'), undefined, '.. above the root, encoded');
  t.equal(normalizePath('/a/..%2f..%2f..%2fx'), undefined, 'above the root only when the slashes separate');
  t.equal(normalizePath('/a%00'), undefined);
});

t.test('targets: origin-form and absolute-form; asterisk-form, authority-form, other schemes and userinfo refused', async (t) => {
  t.same(parseRequestTarget('/tea?x=/../coffee'), { authority: undefined, path: { path: '/tea' }, query: '?x=/../coffee' }, 'the query untouched');
  t.same(parseRequestTarget('/tea/../coffee?a#b'), { authority: undefined, path: { path: '/coffee' }, query: '?a' }, 'the fragment dropped');
  t.same(parseRequestTarget('/tea/x#/../../coffee'), { authority: undefined, path: { path: '/tea/x' }, query: '' }, 'a fragment ends the path');
  t.same(parseRequestTarget('/tea#?x'), { authority: undefined, path: { path: '/tea' }, query: '' }, 'a ? inside the fragment is no query');
  t.same(parseRequestTarget('/?'), { authority: undefined, path: { path: '/' }, query: '?' });
  t.same(parseRequestTarget('http://cafe.example.com/tea/%2e%2e/coffee?q'), { authority: 'cafe.example.com', path: { path: '/coffee' }, query: '?q' });
  t.same(parseRequestTarget('HTTPS://Cafe.Example.com:8443'), { authority: 'Cafe.Example.com:8443', path: { path: '/' }, query: '' }, 'no path: /');
  t.same(parseRequestTarget('http://[fd00::1]:80?x#y'), { authority: '[fd00::1]:80', path: { path: '/' }, query: '?x' });
  for (const bad of ['*', 'cafe.example.com:443', 'tea', 'ftp://cafe.example.com/tea', 'http://user@cafe.example.com/tea', 'http:///tea', 'http:/cafe.example.com/tea', '', '/../x', 'http://a/%zz']) {
    t.equal(parseRequestTarget(bad), undefined, JSON.stringify(bad));
  }
});

const segment = fc.oneof(
  fc.constantFrom('', '.', '..', '%2e', '%2E%2e', '.%2E', 'tea', 'coffee', '%2F', '..%2f', '%2f..', '%00', '%', '%C0%AE', ';', '%41', 'a%2fb'),
  fc.stringMatching(/^[A-Za-z0-9%.~_-]{0,6}$/),
);
const rawPath = fc.array(segment, { maxLength: 8 }).map((segments) => `/${segments.join('/')}`);

t.test('properties: a normal path is its own normal form, and holds no empty, . or .. segment, nor an escape of an unreserved octet', async (t) => {
  fc.assert(fc.property(rawPath, (raw) => {
    const normal = normalizePath(raw);
    if (normal === undefined) return true;
    for (const path of [normal.path, normal.slashed].filter((each) => each !== undefined)) {
      const again = normalizePath(path);
      if (again?.path !== path) return false;
      if (/\/\/|\/\.\.?(\/|$)|%(?![0-9A-F]{2})|%(?:[46][1-9A-F]|[57][0-9A]|3[0-9]|2[DE]|5F|7E)/.test(path)) return false;
    }
    return (normal.slashed !== undefined) === normal.path.includes('%2F');
  }), { numRuns: 5000 });
  t.pass('held for 5000 generated paths');
});

t.test('properties: refused exactly when an escape is malformed or NUL, or .. climbs above the root', async (t) => {
  fc.assert(fc.property(rawPath, (raw) => {
    const octets = canonicalOctets(raw);
    const normal = octets === undefined ? undefined : resolveSegments(octets);
    const refused = normal === undefined || (normal.includes('%2F') && resolveSegments(normal.replaceAll('%2F', '/')) === undefined);
    return (normalizePath(raw) === undefined) === refused;
  }), { numRuns: 5000 });
  t.pass('held for 5000 generated paths');
});
