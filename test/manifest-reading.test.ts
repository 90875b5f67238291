// The manifest reader on its own, in process: where a YAML stream splits into documents (and where
// it must not), what each List item and file costs, and what the watched source keeps when a file
// stops reading cleanly. The kernel tests (input-fidelity, bad-input) run the same paths through
// the CLI; these pin the edges of the splitting that those would only see by chance.
import t from 'tap';
import { chmodSync } from 'node:fs';
import { stringify } from 'yaml';
import type { KubeObject } from '../src/cluster/cluster-state.js';
import { ManifestSource } from '../src/cluster/manifest-watch.js';
import { describeProblem, readManifests } from '../src/cluster/manifests.js';
import { yamlDocuments } from '../src/cluster/yaml-documents.js';
import { ManifestFile, service } from './lib/manifests.js';

/** Each document as its value, or as "line N: reason" when refused. */
const read = (text: string) => yamlDocuments(text).map((document) => (document.problem ? `line ${document.problem.line}: ${document.problem.reason}` : document.value));

t.test('where a stream splits into documents', async (t) => {
  t.same(read('a: 1\n---\nb: 2\n'), [{ a: 1 }, { b: 2 }], 'at a --- line');
  t.same(read('# licence\n%YAML 1.2\n---\na: 1\n---\nb: 2\n# trailing comment\n'), [{ a: 1 }, { b: 2 }], 'comments and directives before a --- open its document; trailing comments are no document');
  t.same(read('data: |\n  ---\n  ...\n  text\nb: 2\n'), [{ data: '---\n...\ntext\n', b: 2 }], 'markers inside an indented block scalar are content');
  t.same(read('a: "---"\nb: ---x\n---x: 3\n'), [{ a: '---', b: '---x', '---x': 3 }], '--- not alone at the start of a line is content');
  t.same(read('--- {a: 1}\n--- |\n  text\n'), [{ a: 1 }, 'text\n'], 'a document may start on its marker line');
  t.same(read('\ufeffa: 1\r\n---\r\nb: 2\r\n'), [{ a: 1 }, { b: 2 }], 'a byte-order mark and CRLF line ends');
  t.same(read('a: x\u2028--- y\nb: 2\n'), [{ a: 'x\u2028--- y', b: 2 }], 'U+2028 is no YAML line break: a --- after it is no marker');
  t.same(read('l: &labels {app: web}\nm: *labels\n'), [{ l: { app: 'web' }, m: { app: 'web' } }], 'an alias within bounds expands');
});

t.test('what is refused, with its line', async (t) => {
  t.same(read(''), ['line 1: the document is empty'], 'an empty file');
  t.same(read('# nothing\n'), ['line 1: the document holds only comments'], 'a file of comments');
  t.same(read('a: 1\n---\n'), [{ a: 1 }, 'line 2: the document is empty'], 'a trailing --- opens an empty document');
  t.same(read('a: 1\n...\n---\nb: 2\n'), ['line 2: a `...` document end marker is not accepted', { b: 2 }], 'a ... marker');
  t.same(read('a: &x [*x]\n'), ['line 1: its aliases expand beyond the size of the document'], 'a cyclic alias');
  t.same(read('a: 1\n---\nb: {c: 1\n---\nd: 2\n'), [{ a: 1 }, 'line 4: unexpected end of the stream within a flow collection', { d: 2 }], 'an error line counts from the start of the stream');
  t.same(read('a: 2001-12-14\nb: !!timestamp 2001-12-14\n'), ['line 2: unknown tag !<tag:yaml.org,2002:timestamp>'], 'YAML 1.1 types stay strings; their tags are refused');
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
    /^manifests\.yaml document 2 \(line 13\), item 2: a number is not a Kubernetes object$/,
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
  t.same(calls.splice(0), ['problem skipped manifests.yaml document 1 (line 1): the document is empty'], 'a file caught empty deletes nothing');
  files.write([service('a', '10.0.0.9', [{ port: 80 }])]);
  await source.start(false);
  t.same(calls.splice(0), ['delete b'], 'a clean read deletes what the file no longer holds');
  source.stop();
});
