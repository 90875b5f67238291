// The manifest reader on its own, in process: where a YAML stream splits into documents (and where
// it must not), what each List item and file costs, and what the watched source keeps when a file
// stops reading cleanly. The kernel tests (input-fidelity, bad-input) run the same paths through
// the CLI; these pin the edges of the splitting that those would only see by chance.
import t from 'tap';
import { chmodSync } from 'node:fs';
import { stringify } from 'yaml';
import type { KubeObject } from '../../src/cluster/cluster-state.js';
import { ManifestSource } from '../../src/cluster/manifest-watch.js';
import { describeProblem, readManifests } from '../../src/cluster/manifests.js';
import { yamlDocuments } from '../../src/cluster/yaml-documents.js';
import { ManifestFile, service } from '../lib/manifests.js';

/** Each document as its value, or as "line N: reason" when refused. */
const read = (text: string) => yamlDocuments(text).map((document) => (document.problem ? `line ${document.problem.line}: ${document.problem.reason}` : document.value));

t.test('where a stream splits into documents: at every line starting with ---, as kubectl splits it', async (t) => {
  t.same(read('a: 1\n---\nb: 2\n'), [{ a: 1 }, { b: 2 }], 'at a --- line');
  t.same(read('--- # Source: chart/templates/a.yaml\na: 1\n---   \n---\t# empty\n# Source: b.yaml\n---\nb: 2\n---\n'), [{ a: 1 }, { b: 2 }],
    'a comment after ---, blanks, and empty or comment-only documents (Helm renders those) are skipped');
  t.same(read('data: |\n  ---\n  ...\n  text\nb: 2\n'), [{ data: '---\n...\ntext\n', b: 2 }], 'markers inside an indented block scalar are content');
  t.same(read('a: "---"\nb: ---x\n'), [{ a: '---', b: '---x' }], '--- not at the start of a line is content');
  t.same(read('\ufeffa: 1\r\n---\r\n\ufeffb: 2\r\n'), [{ a: 1 }, { b: 2 }], 'byte-order marks and CRLF line ends');
  t.same(read('a: x\u2028--- y\nb: 2\n'), [{ a: 'x\u2028--- y', b: 2 }], 'U+2028 is no line break to kubectl: a --- after it is no separator');
  t.same(read('a: 1\n...\n---\nb: 2\n... # end\n'), [{ a: 1 }, { b: 2 }], 'a ... end marker ends its document');
  t.same(read('a: 1\n...\nb: 2\n---\nc: 3\n'), [{ a: 1 }, 'line 3: it follows a `...` end marker with no `---` line between: kubectl ignores it, and so does kubenft', { c: 3 }],
    'what follows a ... marker before the next --- line is ignored, and said so');
  t.same(read('null\n---\n~\n---\na: 1\n'), [{ a: 1 }], 'null documents are skipped');
  t.same(read('l: &labels {app: web}\nm: *labels\np: {<<: *labels, tier: db}\n'), [{ l: { app: 'web' }, m: { app: 'web' }, p: { app: 'web', tier: 'db' } }], 'anchors, aliases and merge keys');
});

t.test('scalars, tags and keys as go-yaml reads them for kubectl', async (t) => {
  t.same(read('a: yes\nb: on\nc: N\nd: 010\ne: 0o10\nf: 0x1F\ng: 1_000\nh: 08\ni: 1e3\nj: 12:30\nk: 2001-12-14\nl: tRue\nm: ~\np: .5\n'),
    [{ a: true, b: true, c: false, d: 8, e: 8, f: 31, g: 1000, h: 8, i: 1000, j: '12:30', k: '2001-12-14', l: 'tRue', m: null, p: 0.5 }],
    'YAML 1.1 booleans and octals, no base 60, timestamps kept as text');
  t.same(read('a: !svc Service\nb: !!binary aGVsbG8=\nc: !custom 5\nd: !!str {x: 1}\ne: !!int "5"\nf: !!timestamp 2001-12-14\n'),
    [{ a: 'Service', b: 'hello', c: '5', d: { x: 1 }, e: 5, f: '2001-12-14' }], 'an unknown tag leaves its node untagged; !!binary is decoded');
  t.same(read('a: 1\na: 2\nyes: x\n0x10: z\n'), [{ a: 2, true: 'x', 16: 'z' }], 'the last of duplicate keys wins; keys are read as scalars too');
  t.same(read('x: {a: 1, <<: {a: 2, b: 2}}\nz: {<<: [{a: 1}, {a: 2, c: 3}], c: 4}\n'), [{ x: { a: 2, b: 2 }, z: { a: 1, c: 4 } }],
    'a merge overrides the keys before it, the first merged mapping wins');
});

t.test('what is refused, with its line', async (t) => {
  t.same(read(''), [], 'an empty stream holds no document');
  t.match(read('# licence\n%YAML 1.2\n---\na: 1\n'), [/^line 2: a %YAML or %TAG directive: kubectl refuses it/, { a: 1 }], 'a directive (kubectl refuses the file there)');
  t.same(read('a: 1\n---x: 3\n--- {b: 1}\nc: 2\n'), [{ a: 1 }, 'line 2: only a comment may follow `---` on its line, not "x: 3" (kubectl refuses the file there)',
    'line 3: only a comment may follow `---` on its line, not "{b: 1}" (kubectl refuses the file there)'], 'content after the dashes of a --- line');
  t.same(read('a: &x [*x]\n'), ['line 1: an anchor holds an alias of itself'], 'a cyclic alias');
  t.same(read('a: 1\n---\nb: {c: 1\n---\nd: 2\n'), [{ a: 1 }, 'line 4: unexpected end of the stream within a flow collection', { d: 2 }], 'an error line counts from the start of the stream');
  t.same(read('a: .inf\n'), ['line 1: .inf has no JSON form (kubectl refuses it)'], 'infinity');
  t.match(read('a: !!binary "@@"\n'), [/^line 1: cannot resolve a node with !<tag:yaml.org,2002:binary> explicit tag/], 'invalid base64');
  t.same(read('a: {<<: 5}\n'), ['line 1: a merge key (<<) needs a mapping or a list of mappings'], 'a merge of a scalar');
  t.same(read('a:\n\tb: 1\n'), ['line 2: tab characters must not be used in indentation'], 'tab indentation');
});

t.test('readManifests: each document, List item and file alone', async (t) => {
  const files = new ManifestFile();
  t.teardown(() => files.remove());
  const good = service('good', '10.0.0.1', [{ port: 80 }]);
  files.writeText([
    stringify(good),
    stringify({ apiVersion: 'v1', kind: 'ServiceList', items: [{ metadata: { name: 'typed', namespace: 'default' }, spec: { clusterIP: '10.0.0.2', ports: [{ port: 80 }] } }, 7] }),
    stringify({ apiVersion: 'v1', kind: 'List', items: 'none' }),
    stringify({ apiVersion: 'apps/v1', kind: 'DeploymentList', items: 'not ours to judge' }),
    stringify({ metadata: { name: 'kindless' } }),
    'just text\n',
  ].join('---\n'));
  files.writeBeside('broken.json', '{\n  "kind": "Service",\n  oops\n}\n');
  files.writeBeside('list.json', JSON.stringify({ kind: 'List', items: [{ kind: 'EndpointSlice', metadata: { name: 'x' } }] }));
  const unreadable = files.writeBeside('unreadable.yaml', stringify(good));
  chmodSync(unreadable, 0);
  const manifests = await readManifests(files.path.replace(/\/[^/]+$/, ''));
  t.same(manifests.objects.map(({ object, file }) => `${object.kind}/${object.metadata?.name} ${file.replace(/.*\//, '')}`), [
    'EndpointSlice/x list.json', 'Service/good manifests.yaml', 'Service/typed manifests.yaml',
  ].concat(process.getuid?.() === 0 ? ['Service/good unreadable.yaml'] : []), 'the readable objects, typed List items given their kind');
  const problems = manifests.problems.map((problem) => describeProblem(problem).replace(/.*\//, ''));
  t.match(problems, [
    /^broken\.json document 1 \(line 3\): .*JSON/,
    /^manifests\.yaml document 2 \(line 14\), item 2: a number is not a Kubernetes object$/,
    /^manifests\.yaml document 3 \(line \d+\): items is not a list$/,
    /^manifests\.yaml document 5 \(line \d+\): the object has no kind$/,
    /^manifests\.yaml document 6 \(line \d+\): a string is not a Kubernetes object$/,
  ], 'each problem names its file, document, line and item');
});

t.test('the watched source keeps the objects of a file that stops reading cleanly', async (t) => {
  const files = new ManifestFile([service('a', '10.0.0.1', [{ port: 80 }]), service('b', '10.0.0.2', [{ port: 80 }])]);
  t.teardown(() => files.remove());
  const calls: string[] = [];
  const name = (object: KubeObject) => object.metadata?.name;
  const source = new ManifestSource(files.path, {
    apply: (object) => calls.push(`apply ${name(object)}`),
    delete: (object) => calls.push(`delete ${name(object)}`),
    synced: () => {},
    problem: (message) => calls.push(`problem ${message.replace(/\/\S+\//, '')}`),
  });
  await source.start(false);
  t.same(calls.splice(0), ['apply a', 'apply b'], 'the first read applies both');
  files.writeText(`${stringify(service('a', '10.0.0.9', [{ port: 80 }]))}---\nb: {broken\n`);
  await source.start(false);
  t.same(calls.splice(0), ['problem skipped manifests.yaml document 2 (line 15): unexpected end of the stream within a flow collection', 'apply a'],
    'a broken document: the changed object is applied, the missing one kept');
  files.writeText('');
  await source.start(false);
  t.same(calls.splice(0), ['problem skipped manifests.yaml: the file holds no objects'], 'a file caught empty deletes nothing');
  files.write([service('a', '10.0.0.9', [{ port: 80 }])]);
  await source.start(false);
  t.same(calls.splice(0), ['delete b'], 'a clean read deletes what the file no longer holds');
  source.stop();
});
