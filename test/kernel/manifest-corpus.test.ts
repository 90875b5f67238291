// The manifests matrix, with kubectl as the judge: files as kubectl writes them (`create
// --dry-run=client -o yaml|json`, the List `get -o yaml|json` prints), as Helm and kustomize render
// them, and the YAML and JSON forms kubectl reads, each one read by kubenft's manifest source into
// the proxy's state and by `kubectl apply --dry-run=client` (test/lib/kubectl-oracle.ts). For every
// file: kubenft loads exactly the Services, EndpointSlices, Endpoints and Nodes kubectl would apply,
// with the same content, and names what it refuses; kubectl refuses what kubenft refuses. Where
// kubectl stops reading a file at a broken document, kubenft reads on (a broken document costs
// only itself): those objects are listed per case, as `readOn`.
import t from 'tap';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ManifestSource } from '../../src/cluster/manifest-watch.js';
import { readManifests } from '../../src/cluster/manifests.js';
import { ClusterState, type KubeObject, PROXY_KINDS } from '../../src/cluster/cluster-state.js';
import { kubectl, kubectlMinorVersion, kubectlName, KubectlOracle, LAST_APPLIED } from '../lib/kubectl-oracle.js';
import { CLI } from '../lib/kubenft.js';
import { execFile } from 'node:child_process';

interface Case {
  name: string;
  /** The file, or a directory of files (name → content, or → a symbolic link's target). */
  content: string | Buffer | Record<string, string | { link: string }>;
  /** What kubenft loads, as `kubectl -o name` names it. */
  loads: string[];
  /** Of those, what kubectl does not apply because it stopped reading the file before them. */
  readOn?: string[];
  /** What kubenft reports, each in one problem. */
  problems?: RegExp[];
  /** kubectl exits non-zero (it refused something). */
  kubectlRefuses?: boolean;
  /** The file holds a `---` line followed by more than blanks, which kubectl reads so only since 1.22 (kubernetes#103457). */
  separatorComments?: boolean;
}

const svc = (name: string, ip: string, extra = '') =>
  `apiVersion: v1\nkind: Service\nmetadata:\n  name: ${name}\n  namespace: default\n${extra}spec:\n  clusterIP: ${ip}\n  ports:\n  - name: http\n    port: 80\n    protocol: TCP\n    targetPort: 8080\n`;
const sliceOf = (name: string, service: string, ip: string) =>
  `apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: ${name}\n  namespace: default\n  labels:\n    kubernetes.io/service-name: ${service}\naddressType: IPv4\nendpoints:\n- addresses:\n  - ${ip}\n  conditions:\n    ready: true\n  nodeName: node-1\nports:\n- name: http\n  port: 8080\n  protocol: TCP\n`;
const node = 'apiVersion: v1\nkind: Node\nmetadata:\n  name: node-1\n  labels:\n    topology.kubernetes.io/zone: zone-a\nstatus:\n  addresses:\n  - type: InternalIP\n    address: 192.168.0.1\n';
const endpoints = 'apiVersion: v1\nkind: Endpoints\nmetadata:\n  name: legacy\n  namespace: default\nsubsets:\n- addresses:\n  - ip: 10.244.1.20\n  ports:\n  - name: http\n    port: 8080\n    protocol: TCP\n';
const deployment = 'apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: default\nspec:\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n      - name: web\n        image: nginx\n';
const asJson = (name: string) => JSON.stringify({ apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: 'default' }, spec: { clusterIP: '10.0.40.99', ports: [{ port: 80, protocol: 'TCP' }] } });
const utf16 = (text: string, order: 'le' | 'be') => {
  const little = Buffer.from(text, 'utf16le');
  return Buffer.concat([Buffer.from(order === 'le' ? [0xff, 0xfe] : [0xfe, 0xff]), order === 'le' ? little : little.swap16()]);
};
/** A cut-down billion laughs: a million nodes from a few lines. */
const aliasBomb = ['a', 'b', 'c', 'd', 'e', 'f']
  .map((level, index, levels) => `    ${level}: &${level} [${Array(10).fill(index === 0 ? 'lol' : `*${levels[index - 1]}`).join(', ')}]`)
  .join('\n');

const STATIC_CASES: Case[] = [
  {
    name: 'helm template output: a --- line, a # Source comment, empty documents between',
    content: `---\n# Source: web/templates/service.yaml\n${svc('helm-web', '10.0.41.1')}---\n# Source: web/templates/hpa.yaml\n---\n# Source: web/templates/slice.yaml\n${sliceOf('helm-web-1', 'helm-web', '10.244.1.11')}---\n# Source: web/templates/deployment.yaml\n${deployment}\n---\n`,
    loads: ['service/helm-web', 'endpointslice.discovery.k8s.io/helm-web-1'],
  },
  {
    name: '... end markers, with and without a --- after them',
    content: `${svc('ended-a', '10.0.42.1')}...\n---\n${svc('ended-b', '10.0.42.2')}... # end of b\n---\n${sliceOf('ended-b-1', 'ended-b', '10.244.1.12')}...\n`,
    loads: ['service/ended-a', 'service/ended-b', 'endpointslice.discovery.k8s.io/ended-b-1'],
  },
  {
    name: 'a document after a ... marker with no --- line: kubectl ignores it, kubenft too, and says so',
    content: `${svc('before-dots', '10.0.42.3')}...\n${svc('after-dots', '10.0.42.4')}---\n${svc('after-separator', '10.0.42.5')}`,
    loads: ['service/before-dots', 'service/after-separator'],
    problems: [/document 2 \(line 14\): it follows a `\.\.\.` end marker/],
  },
  {
    name: 'a leading --- and separators with a comment after them',
    content: `--- # the first\n${svc('commented-a', '10.0.43.1')}--- # Source: chart/templates/b.yaml\n${svc('commented-b', '10.0.43.2')}---\t\n${svc('commented-c', '10.0.43.3')}`,
    loads: ['service/commented-a', 'service/commented-b', 'service/commented-c'],
    separatorComments: true,
  },
  {
    name: 'CRLF line ends',
    content: `${svc('crlf-a', '10.0.44.1')}---\n${sliceOf('crlf-a-1', 'crlf-a', '10.244.1.13')}`.replaceAll('\n', '\r\n'),
    loads: ['service/crlf-a', 'endpointslice.discovery.k8s.io/crlf-a-1'],
  },
  { name: 'a UTF-8 byte-order mark', content: `\ufeff${svc('bom-a', '10.0.44.2')}`, loads: ['service/bom-a'] },
  { name: 'UTF-16 LE with its byte-order mark (as PowerShell writes files)', content: utf16(svc('utf16le-a', '10.0.44.3'), 'le'), loads: ['service/utf16le-a'] },
  { name: 'UTF-16 BE with its byte-order mark', content: utf16(svc('utf16be-a', '10.0.44.4'), 'be'), loads: ['service/utf16be-a'] },
  {
    name: 'anchors, aliases and merge keys within a List',
    content: 'apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Service\n  metadata: &meta\n    name: anchored\n    namespace: default\n    labels: &labels {app: anchored}\n  spec:\n    clusterIP: 10.0.45.1\n    ports: &ports\n    - {name: http, port: 80, protocol: TCP}\n'
      + '- apiVersion: v1\n  kind: Service\n  metadata:\n    <<: *meta\n    name: anchored-copy\n  spec:\n    clusterIP: 10.0.45.2\n    ports: *ports\n'
      + '- apiVersion: discovery.k8s.io/v1\n  kind: EndpointSlice\n  metadata:\n    name: anchored-1\n    namespace: default\n    labels:\n      <<: *labels\n      kubernetes.io/service-name: anchored\n  addressType: IPv4\n  endpoints:\n  - addresses: [10.244.1.14]\n  ports:\n  - {name: http, port: 8080, protocol: TCP}\n',
    loads: ['service/anchored', 'service/anchored-copy', 'endpointslice.discovery.k8s.io/anchored-1'],
  },
  {
    name: 'flow style, and JSON documents in a YAML stream',
    content: `${svc('block', '10.0.46.1')}---\n{apiVersion: v1, kind: Service, metadata: {name: flow, namespace: default}, spec: {clusterIP: 10.0.46.2, ports: [{port: 80, protocol: TCP}]}}\n---\n${asJson('json-in-yaml')}\n`,
    loads: ['service/block', 'service/flow', 'service/json-in-yaml'],
  },
  {
    name: 'List, a List without apiVersion, and typed lists whose items carry no kind',
    content: `apiVersion: v1\nkind: List\nmetadata:\n  resourceVersion: ""\nitems:\n- ${svc('listed', '10.0.47.1').trimEnd().replaceAll('\n', '\n  ')}\n---\nkind: List\nitems:\n- ${svc('unversioned-list', '10.0.47.2').trimEnd().replaceAll('\n', '\n  ')}\n---\n`
      + 'apiVersion: v1\nkind: ServiceList\nitems:\n- metadata: {name: typed, namespace: default}\n  spec: {clusterIP: 10.0.47.3, ports: [{port: 80, protocol: TCP}]}\n---\n'
      + 'apiVersion: discovery.k8s.io/v1\nkind: EndpointSliceList\nitems:\n- metadata: {name: typed-1, namespace: default, labels: {kubernetes.io/service-name: typed}}\n  addressType: IPv4\n  endpoints: [{addresses: [10.244.1.15]}]\n  ports: [{port: 8080, protocol: TCP}]\n',
    loads: ['service/listed', 'service/unversioned-list', 'service/typed', 'endpointslice.discovery.k8s.io/typed-1'],
  },
  {
    name: 'JSON objects back to back (`kubectl create -o json` output appended to one file)',
    content: `${asJson('json-a')}\n${asJson('json-b')}${asJson('json-c')}\n`,
    loads: ['service/json-a', 'service/json-b', 'service/json-c'],
  },
  {
    name: 'YAML 1.1 scalars, as go-yaml reads them for kubectl',
    content: svc('scalars', '10.0.48.1', '').replace('    port: 80\n', '    port: 0x50\n') + '  publishNotReadyAddresses: yes\n  sessionAffinity: None\n---\n'
      + sliceOf('scalars-1', 'scalars', '10.244.1.16').replace('    ready: true\n', '    ready: on\n    serving: Y\n    terminating: off\n').replace('  port: 8080\n', '  port: 0o17620\n'),
    loads: ['service/scalars', 'endpointslice.discovery.k8s.io/scalars-1'],
  },
  {
    name: 'tags go-yaml reads untagged, !!binary, and duplicate keys (the last wins)',
    content: `${svc('tagged', '10.0.48.2', '  annotations:\n    blob: !!binary aGVsbG8=\n    port: !!str 80\n').replace('kind: Service', 'kind: !custom Service')}  type: ClusterIP\n  clusterIP: 10.0.48.3\n`,
    loads: ['service/tagged'],
  },
  {
    name: 'a label kubectl reads as a number: the object is refused',
    content: `${svc('numbered', '10.0.48.4', '  labels:\n    version: 1.0\n')}---\n${svc('beside-numbered', '10.0.48.5')}`,
    loads: ['service/beside-numbered'],
    problems: [/Service default\/numbered: metadata\.labels\["version"\] is not a string/],
    kubectlRefuses: true,
  },
  {
    name: 'directives: kubectl refuses the file at a %YAML or %TAG line',
    content: `${svc('before-directive', '10.0.49.1')}---\n%YAML 1.1\n---\n${svc('after-directive', '10.0.49.2')}---\n%TAG !k! tag:example.com,2000:\n---\n${svc('after-tag', '10.0.49.3')}`,
    loads: ['service/before-directive', 'service/after-directive', 'service/after-tag'],
    readOn: ['service/after-directive', 'service/after-tag'],
    problems: [/document 2 \(line 14\): a %YAML or %TAG directive/, /document 4 \(line 29\): a %YAML or %TAG directive/],
    kubectlRefuses: true,
  },
  {
    name: 'content after the dashes of a --- line',
    content: `${svc('before-separator', '10.0.49.4')}--- {apiVersion: v1, kind: Service, metadata: {name: on-separator}}\n---\n${svc('after-bad-separator', '10.0.49.5')}`,
    loads: ['service/before-separator', 'service/after-bad-separator'],
    // kubectl refuses the file at the --- line, before it applies the document above it.
    readOn: ['service/before-separator', 'service/after-bad-separator'],
    problems: [/document 2 \(line 13\): only a comment may follow `---` on its line/],
    kubectlRefuses: true,
    separatorComments: true,
  },
  {
    name: 'a syntax error, tab indentation, an alias bomb, a cyclic alias, .inf: each document alone refused',
    content: [svc('first-good', '10.0.50.1'), 'apiVersion: v1\nkind: Service\nmetadata: {name: flow, namespace: default\n', `${svc('tabbed', '10.0.50.2').replace('  name: tabbed', '\tname: tabbed')}`,
      `${svc('bomb', '10.0.50.3', `  labels:\n${aliasBomb}\n`)}`, `${svc('cycle', '10.0.50.4', '  labels: &labels {a: *labels}\n')}`, svc('infinite', '10.0.50.5').replace('targetPort: 8080', 'targetPort: .inf'), svc('last-good', '10.0.50.6')].join('---\n'),
    loads: ['service/first-good', 'service/last-good'],
    readOn: ['service/last-good'],
    problems: [/document 2 \(line 17\): unexpected end of the stream within a flow collection/, /document 3 \(line 21\): tab characters/, /document 4 \(line \d+\): its aliases expand too far/,
      /document 5 \(line \d+\): an anchor holds an alias of itself/, /document 6 \(line \d+\): \.inf has no JSON form/],
    kubectlRefuses: true,
  },
  {
    name: 'a YAML flow mapping at the start of a file is read as JSON, by kubectl too',
    content: '{apiVersion: v1, kind: Service, metadata: {name: flow-first, namespace: default}}\n',
    loads: [],
    problems: [/document 1 \(line 1\): .*JSON.*a file whose text starts with `\{` is read as JSON/],
    kubectlRefuses: true,
  },
  { name: 'an empty file', content: '', loads: [], problems: [/the file holds no objects/], kubectlRefuses: true },
  { name: 'a file of comments and empty documents', content: '# nothing here\n---\n---\n# still nothing\n', loads: [], problems: [/the file holds no objects/], kubectlRefuses: true },
  {
    name: 'a directory as a mounted ConfigMap holds it: symbolic links to the files, hidden files, other files',
    content: {
      '..2026_12_07/mounted.yaml': svc('mounted', '10.0.51.1'),
      '..data': { link: '..2026_12_07' },
      'mounted.yaml': { link: '..data/mounted.yaml' },
      '.hidden.yaml': svc('hidden', '10.0.51.2'),
      'notes.txt': svc('not-a-manifest', '10.0.51.3'),
      'dangling.yaml': { link: 'nowhere.yaml' },
    },
    loads: ['service/hidden', 'service/mounted'],
    problems: [/dangling\.yaml: ENOENT/],
    kubectlRefuses: true,
  },
];

/** Files kubectl itself writes, and what kustomize renders, made in the test. */
async function writtenByKubectl(oracle: KubectlOracle, directory: string): Promise<Case[]> {
  const created = async (...args: string[]) => {
    const result = await kubectl(['create', ...args, '--dry-run=client']);
    if (result.code !== 0) throw new Error(`kubectl create ${args.join(' ')}: ${result.stderr}`);
    return result.stdout;
  };
  const creations = [
    ['service', 'clusterip', 'created-web', '--tcp=80:8080', '--clusterip=10.0.52.1'],
    ['service', 'clusterip', 'created-headless', '--clusterip=None', '--tcp=80:80'],
    ['service', 'nodeport', 'created-np', '--tcp=80:8080', '--node-port=30080'],
    ['service', 'loadbalancer', 'created-lb', '--tcp=443:8443'],
    ['service', 'externalname', 'created-ext', '--external-name=example.com'],
    ['deployment', 'created-web', '--image=nginx', '--port=80'],
    ['configmap', 'created-config', '--from-literal=a=b'],
  ];
  const createdNames = ['service/created-web', 'service/created-headless', 'service/created-np', 'service/created-lb', 'service/created-ext'];
  const yamls = await Promise.all(creations.map((args) => created(...args, '-o', 'yaml')));
  const jsons = await Promise.all(creations.map((args) => created(...args, '-o', 'json')));
  const objects = join(directory, 'objects.yaml');
  writeFileSync(objects, [svc('listed-web', '10.0.53.1'), sliceOf('listed-web-1', 'listed-web', '10.244.1.17'), node, endpoints, deployment].join('---\n'));
  const listedNames = ['service/listed-web', 'endpointslice.discovery.k8s.io/listed-web-1', 'node/node-1', 'endpoints/legacy'];
  const kustomization = join(directory, 'kustomization');
  mkdirSync(kustomization);
  writeFileSync(join(kustomization, 'kustomization.yaml'), 'resources:\n- service.yaml\n- slice.yaml\n- deployment.yaml\nnamespace: shop\ncommonLabels:\n  team: shop\nconfigMapGenerator:\n- name: shop-config\n  literals: [a=b]\n');
  writeFileSync(join(kustomization, 'service.yaml'), svc('shop', '10.0.54.1'));
  writeFileSync(join(kustomization, 'slice.yaml'), sliceOf('shop-1', 'shop', '10.244.1.18'));
  writeFileSync(join(kustomization, 'deployment.yaml'), deployment);
  const kustomized = await kubectl(['kustomize', kustomization]);
  if (kustomized.code !== 0) throw new Error(`kubectl kustomize: ${kustomized.stderr}`);
  return [
    { name: 'kubectl create --dry-run=client -o yaml, one after another', content: yamls.join('---\n'), loads: createdNames },
    { name: 'kubectl create --dry-run=client -o json, appended to one file', content: jsons.join(''), loads: createdNames },
    { name: 'a List as kubectl prints it with -o yaml', content: await oracle.print(objects, 'yaml'), loads: listedNames },
    { name: 'a List as kubectl prints it with -o json', content: await oracle.print(objects, 'json'), loads: listedNames },
    { name: 'kubectl kustomize output', content: kustomized.stdout, loads: ['service/shop', 'endpointslice.discovery.k8s.io/shop-1'] },
  ];
}

function write(directory: string, name: string, content: Case['content']): string {
  const path = join(directory, name);
  if (typeof content === 'string' || Buffer.isBuffer(content)) {
    writeFileSync(path, content);
    return path;
  }
  for (const [file, entry] of Object.entries(content)) {
    mkdirSync(join(path, file, '..'), { recursive: true });
    if (typeof entry === 'string') writeFileSync(join(path, file), entry);
    else symlinkSync(entry.link, join(path, file));
  }
  return path;
}

const isOurs = (name: string) => PROXY_KINDS.some((kind) => name.startsWith(`${kind.toLowerCase()}/`) || name.startsWith(`${kind.toLowerCase()}.`));

/** What the proxy's state takes from the path through the manifest source, and every problem reported. */
async function kubenftReads(path: string): Promise<{ loads: string[]; problems: string[] }> {
  const state = new ClusterState('node-1');
  const loads: string[] = [];
  const problems: string[] = [];
  const source = new ManifestSource(path, {
    apply: (object) => {
      try {
        state.apply(object);
        loads.push(kubectlName(object));
      } catch (error) {
        problems.push((error as Error).message);
      }
    },
    delete: () => {},
    synced: () => {},
    problem: (message) => problems.push(message),
  }, state.kinds);
  await source.start(false);
  return { loads: loads.sort(), problems };
}

/** An object as the API would hold it, for comparing kubectl's with kubenft's: nulls dropped, keys sorted, the namespace defaulted. */
function comparable(object: KubeObject): unknown {
  const clean = (value: unknown): unknown => {
    if (Array.isArray(value)) return value.map(clean);
    if (typeof value !== 'object' || value === null) return value;
    return Object.fromEntries(Object.entries(value).filter(([, child]) => child !== null).sort(([a], [b]) => (a < b ? -1 : 1)).map(([key, child]) => [key, clean(child)]));
  };
  // kubectl rewrites its own annotation when it applies an object that already carries one.
  const { [LAST_APPLIED]: _, ...annotations } = (object.metadata?.annotations ?? {}) as Record<string, unknown>;
  const { annotations: __, ...metadata } = object.metadata ?? {};
  const namespaced = object.kind !== 'Node';
  return clean({ ...object, metadata: { ...(namespaced ? { namespace: 'default' } : {}), ...metadata, ...(Object.keys(annotations).length > 0 ? { annotations } : {}) } });
}

const directory = mkdtempSync(join(tmpdir(), 'kubenft-corpus-'));
let oracle: KubectlOracle;
let minor: number;
t.before(async () => {
  oracle = await KubectlOracle.start();
  minor = await kubectlMinorVersion();
});
t.teardown(async () => {
  await oracle?.close();
  rmSync(directory, { recursive: true, force: true });
});

t.test('every file of the corpus: kubenft loads what kubectl applies, refuses what it refuses', async (t) => {
  const cases = [...STATIC_CASES, ...(await writtenByKubectl(oracle, directory))];
  for (const [index, corpusCase] of cases.entries()) {
    await t.test(corpusCase.name, async (t) => {
      const path = write(directory, `case-${index}${typeof corpusCase.content === 'object' && !Buffer.isBuffer(corpusCase.content) ? '' : '.yaml'}`, corpusCase.content);
      const ours = await kubenftReads(path);
      t.same(ours.loads, [...corpusCase.loads].sort(), 'kubenft loads these objects');
      const expected = corpusCase.problems ?? [];
      t.equal(ours.problems.length, expected.length, `kubenft reports ${expected.length} problems: ${ours.problems.join(' | ')}`);
      for (const problem of expected) t.ok(ours.problems.some((message) => problem.test(message)), `kubenft reports ${problem}`);

      if (corpusCase.separatorComments && minor < 22) {
        t.comment(`kubectl 1.${minor} predates kubernetes#103457 (a --- line with more than blanks after it): its verdict is not the reference here`);
        return;
      }
      const verdict = await oracle.judge(path);
      const readOn = new Set(corpusCase.readOn ?? []);
      t.same(verdict.names.filter(isOurs).sort(), corpusCase.loads.filter((name) => !readOn.has(name)).sort(), `kubectl applies the same objects ${verdict.errors}`);
      t.equal(verdict.code !== 0, corpusCase.kubectlRefuses ?? false, `kubectl ${corpusCase.kubectlRefuses ? 'refuses' : 'accepts'} the file ${verdict.errors}`);
      if (verdict.objects) {
        const read = await readManifests(path);
        t.same(read.objects.map(({ object }) => comparable(object)), verdict.objects.filter((object) => isOurs(kubectlName(object))).map(comparable), 'with the same content');
      }
    });
  }
});

t.test('render reads the corpus directory through the CLI: every loaded Service is planned, none kubectl refused', async (t) => {
  const rendered = await new Promise<{ code: number; stdout: string }>((resolve) => {
    execFile('node', [CLI, 'render', '--manifests', directory, '--hostname-override', 'node-1'], { maxBuffer: 64 << 20 }, (error, stdout) => resolve({ code: error ? Number(error.code) : 0, stdout }));
  });
  t.equal(rendered.code, 1, 'exit 1: the corpus holds refused documents');
  for (const [address, what] of [['10.0.42.5', 'a Service after an ignored document'], ['10.0.45.2', 'an anchored copy'], ['10.0.48.1', 'YAML 1.1 scalars'], ['10.0.50.6', 'a Service after broken documents']]) {
    t.match(rendered.stdout, address, `${what} (${address}) is planned`);
  }
  for (const [address, what] of [['10.0.42.4', 'the document after a ... marker'], ['10.0.48.4', 'the Service with a numeric label'], ['10.0.50.2', 'the tab-indented Service']]) {
    t.notMatch(rendered.stdout, address, `${what} (${address}) is not`);
  }
});
