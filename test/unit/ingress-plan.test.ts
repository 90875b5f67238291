// The ingress route planner and its lookups, pure: the Ingress docs' path table row by row, hosts
// and wildcards, class selection, v1beta1 conversion, merges and conflicts, and bad objects.
import t from 'tap';
import { type IngressPlan, Router, missingSecretText, planIngress, routingHost } from '../../src/ingress/routes.js';
import { ClusterState, type KubeObject } from '../../src/cluster/cluster-state.js';
import { type IngressClassInfo, type IngressInfo, type TlsSecretInfo, normalizeIngress, normalizeIngressClass, normalizeTlsSecret } from '../../src/ingress/objects.js';
import { ObjectError } from '../../src/cluster/model.js';
import { endpointPortViews, servicePortViews } from '../../src/cluster/service-ports.js';
import { service, slice } from '../lib/manifests.js';
import { OUR_CLASS, PATH_TABLE, certificate, ingress, type IngressPathSpec as Path, tlsSecret } from '../lib/ingress-manifests.js';

/** A state with a few services (web, api, other, each with endpoints) and the given objects. */
function stateWith(objects: KubeObject[]): ClusterState {
  const state = new ClusterState('node-1');
  state.registerKind('Ingress', normalizeIngress);
  state.registerKind('IngressClass', normalizeIngressClass);
  state.registerKind('Secret', normalizeTlsSecret);
  const services = [['web', '10.0.0.10', '10.244.1.1'], ['api', '10.0.0.11', '10.244.1.2'], ['other', '10.0.0.12', '10.244.1.3']];
  for (const [name, clusterIP, pod] of services) {
    state.apply(service(name, clusterIP, [{ name: 'http', port: 80, targetPort: 8080 }]) as KubeObject);
    state.apply(slice(name, [{ name: 'http', port: 8080 }], [{ ip: pod }]) as KubeObject);
  }
  state.apply(service('empty', '10.0.0.13', [{ name: 'http', port: 80 }]) as KubeObject);
  for (const object of [OUR_CLASS, ...objects]) state.apply(object);
  return state;
}

function plan(objects: KubeObject[], ingressClass = 'kubenft'): IngressPlan {
  const state = stateWith(objects);
  return planIngress({
    ingresses: state.objectsOf<IngressInfo>('Ingress'),
    classes: state.objectsOf<IngressClassInfo>('IngressClass').values(),
    secrets: state.objectsOf<TlsSecretInfo | null>('Secret'),
    servicePorts: (key) => endpointPortViews(state, key),
    node: { nodeName: 'node-1' },
    ingressClass,
  });
}

/** Which service a request reaches, or 'none'. */
function route(objects: KubeObject[], host: string, path: string): string {
  const match = new Router(plan(objects).table).match(routingHost(host), path);
  return match.kind === 'none' ? 'none' : match.route.backend.split('/')[1].split(':')[0];
}

t.test('the Ingress docs path table, row by row', async (t) => {
  const services = ['web', 'api', 'other'];
  for (const [name, rules, request, expected] of PATH_TABLE) {
    const objects = [ingress('table', [{ paths: rules.map(([pathType, path], index) => ({ path, pathType, service: services[index] })) }])];
    t.equal(route(objects, 'example.com', request), expected, name);
  }
});

t.test('a rule path is matched in the spelling requests are normalized to: escapes in upper case, unreserved octets decoded', async (t) => {
  const objects = [ingress('spelled', [{ paths: [{ path: '/caf%c3%a9', pathType: 'Prefix', service: 'web' }, { path: '/%7Euser', pathType: 'Exact', service: 'api' }] }])];
  t.equal(route(objects, 'a.com', '/caf%C3%A9/menu'), 'web', 'a lower-case escape in the rule');
  t.equal(route(objects, 'a.com', '/~user'), 'api', 'an encoded unreserved octet in the rule');
});

t.test('hosts: exact before a one-label wildcard before no host; case and port ignored', async (t) => {
  const objects = [
    ingress('hosts', [
      { host: 'foo.bar.com', paths: [{ path: '/', pathType: 'Prefix', service: 'web' }] },
      { host: '*.bar.com', paths: [{ path: '/', pathType: 'Prefix', service: 'api' }] },
      { paths: [{ path: '/', pathType: 'Prefix', service: 'other' }] },
    ]),
  ];
  t.equal(route(objects, 'foo.bar.com', '/'), 'web');
  t.equal(route(objects, 'FOO.Bar.com:80', '/'), 'web', 'case-insensitive, port stripped');
  t.equal(route(objects, 'baz.bar.com', '/'), 'api', 'the wildcard');
  t.equal(route(objects, 'a.baz.bar.com', '/'), 'other', 'a wildcard matches one label only');
  t.equal(route(objects, 'bar.com', '/'), 'other', 'nor the bare domain');
  t.equal(route(objects, '', '/'), 'other', 'no Host header: the host-less rules');
  t.equal(route(objects, 'constructor', '/'), 'other', 'object keys are not hosts');
  t.equal(routingHost('[fd00::1]:443'), '[fd00::1]');
});

t.test('without a host-less rule an unknown host gets the default backend, else nothing', async (t) => {
  const rules = [{ host: 'foo.com', paths: [{ path: '/', pathType: 'Prefix' }] }];
  t.equal(route([ingress('a', rules)], 'other.com', '/'), 'none');
  const withDefault = ingress('a', rules, { spec: { defaultBackend: { service: { name: 'other', port: { name: 'http' } } } } });
  t.equal(route([withDefault], 'other.com', '/'), 'other', 'the default backend, by port name');
  const onlyDefault = { apiVersion: 'networking.k8s.io/v1', kind: 'Ingress', metadata: { name: 'only', namespace: 'default' }, spec: { ingressClassName: 'kubenft', defaultBackend: { service: { name: 'api', port: { number: 80 } } } } };
  t.equal(route([onlyDefault], 'any.host', '/any/path'), 'api', 'an Ingress with only a defaultBackend serves everything');
});

t.test('v1beta1 and extensions/v1beta1 Ingresses are converted to v1', async (t) => {
  for (const apiVersion of ['networking.k8s.io/v1beta1', 'extensions/v1beta1']) {
    const old = {
      apiVersion, kind: 'Ingress', metadata: { name: 'cafe-ingress', namespace: 'default', annotations: { 'kubernetes.io/ingress.class': 'kubenft' } },
      spec: {
        backend: { serviceName: 'other', servicePort: 'http' },
        rules: [{ host: 'cafe.example.com', http: { paths: [{ path: '/tea', backend: { serviceName: 'web', servicePort: 80 } }, { path: '/coffee', backend: { serviceName: 'api', servicePort: '80' } }] } }],
      },
    };
    const info = normalizeIngress(old);
    t.equal(info.rules[0].paths[0].pathType, 'ImplementationSpecific', `${apiVersion}: a missing pathType is ImplementationSpecific`);
    t.same(info.defaultBackend, { service: 'other', port: 'http' }, `${apiVersion}: spec.backend is the defaultBackend`);
    t.equal(route([old], 'cafe.example.com', '/tea/green'), 'web');
    t.equal(route([old], 'cafe.example.com', '/coffee'), 'api');
    t.equal(route([old], 'cafe.example.com', '/milk'), 'other');
  }
});

t.test('class selection: ours by IngressClass, by annotation, by default class; never another controller\'s', async (t) => {
  const theirs = { apiVersion: 'networking.k8s.io/v1', kind: 'IngressClass', metadata: { name: 'nginx' }, spec: { controller: 'k8s.io/ingress-nginx' } };
  const rules = [{ paths: [{ path: '/', pathType: 'Prefix' }] }];
  const served = (objects: KubeObject[], ingressClass?: string) => plan([theirs, ...objects], ingressClass).table.served;
  t.same(served([ingress('mine', rules)]), ['default/mine'], 'ingressClassName of our IngressClass');
  t.same(served([ingress('nginx', rules, { spec: { ingressClassName: 'nginx' } })]), [], 'another controller\'s class');
  t.same(served([ingress('unknown', rules, { spec: { ingressClassName: 'nope' } })]), [], 'an unknown class');
  const annotated = (value: string) => ingress('annotated', rules, { spec: { ingressClassName: undefined }, metadata: { annotations: { 'kubernetes.io/ingress.class': value } } });
  t.same(served([annotated('kubenft')]), ['default/annotated'], 'the legacy annotation equal to --ingress-class');
  t.same(served([annotated('kubenft')], 'other'), [], 'the annotation with another --ingress-class');
  t.same(served([annotated('nginx')]), [], 'another controller\'s annotation');
  const classless = ingress('classless', rules, { spec: { ingressClassName: undefined } });
  t.same(served([classless]), [], 'no class and no default class');
  const defaultClass = { ...OUR_CLASS, metadata: { name: 'kubenft-default', annotations: { 'ingressclass.kubernetes.io/is-default-class': 'true' } } };
  t.same(served([defaultClass, classless]), ['default/classless'], 'no class, our class is the default');
  const theirDefault = { ...theirs, metadata: { name: 'nginx', annotations: { 'ingressclass.kubernetes.io/is-default-class': 'true' } } };
  t.same(served([theirDefault, classless]), [], 'no class, another controller\'s default');
  const twoDefaults = plan([defaultClass, theirDefault, classless]);
  t.same(twoDefaults.table.served, [], 'two default classes: none is the default');
  t.match(twoDefaults.problems[0].reason, /more than one default IngressClass/);
});

t.test('rules for one host merge across Ingresses; a conflict goes to the oldest, then the first name, and is reported', async (t) => {
  const older = ingress('b-older', [{ host: 'shop.com', paths: [{ path: '/cart', pathType: 'Prefix', service: 'web' }] }], { metadata: { creationTimestamp: '2024-01-01T00:00:00Z' } });
  const newer = ingress('a-newer', [{ host: 'shop.com', paths: [{ path: '/cart/', pathType: 'Prefix', service: 'api' }, { path: '/pay', pathType: 'Exact', service: 'api' }] }], { metadata: { creationTimestamp: '2025-01-01T00:00:00Z' } });
  const result = plan([newer, older]);
  const router = new Router(result.table);
  t.equal(router.match('shop.com', '/cart/x').kind === 'route' && (router.match('shop.com', '/cart/x') as { route: { ingress: string } }).route.ingress, 'default/b-older', 'the older Ingress keeps /cart');
  t.equal(route([newer, older], 'shop.com', '/pay'), 'api', 'the newer Ingress\'s other path is merged in');
  t.same(result.problems, [{ object: 'Ingress default/a-newer', reason: 'host "shop.com" path /cart/ (Prefix) is already served by the older Ingress default/b-older' }]);
  const sameAge = plan([ingress('z', [{ paths: [{ path: '/', pathType: 'Prefix', service: 'api' }] }]), ingress('m', [{ paths: [{ path: '/', pathType: 'Prefix', service: 'web' }] }])]);
  t.equal(new Router(sameAge.table).match('', '/').kind === 'route' && (new Router(sameAge.table).match('', '/') as { route: { ingress: string } }).route.ingress, 'default/m', 'equal ages: the first name wins');
});

t.test('an Ingress with an unknown backend is reported and skipped alone; one with a missing or non-TLS Secret is served, with the default certificate, and reported', async (t) => {
  const good = ingress('good', [{ host: 'good.com', paths: [{ path: '/', pathType: 'Prefix' }] }]);
  const unknownService = ingress('no-service', [{ host: 'bad.com', paths: [{ path: '/', pathType: 'Prefix', service: 'missing' }] }]);
  const unknownPort = ingress('no-port', [{ host: 'bad2.com', paths: [{ path: '/', pathType: 'Prefix', port: 81 }] }]);
  const unknownPortName = ingress('no-port-name', [{ host: 'bad3.com', paths: [{ path: '/', pathType: 'Prefix', port: 'grpc' }] }]);
  const noSecret = ingress('no-secret', [{ host: 'tls4.com', paths: [{ path: '/', pathType: 'Prefix' }] }], { spec: { tls: [{ hosts: ['tls4.com'], secretName: 'gone' }] } });
  const opaque = { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'opaque', namespace: 'default' }, type: 'Opaque', data: {} };
  const notTls = ingress('not-tls', [{ host: 'tls5.com', paths: [{ path: '/', pathType: 'Prefix', service: 'api' }] }], { spec: { tls: [{ hosts: ['tls5.com'], secretName: 'opaque' }] } });
  const result = plan([good, unknownService, unknownPort, unknownPortName, noSecret, opaque, notTls]);
  t.same(result.table.served, ['default/good', 'default/no-secret', 'default/not-tls']);
  t.same(result.problems.map((problem) => `${problem.object}: ${problem.reason}`).sort(), [
    'Ingress default/no-port-name: service web has no TCP port "grpc"',
    'Ingress default/no-port: service web has no TCP port 81',
    'Ingress default/no-service: service missing not found (or another proxy\'s, which the ingress does not route to)',
  ]);
  t.same(result.missingSecrets.map(missingSecretText).sort(), [
    'Ingress default/no-secret: TLS Secret default/gone not found: tls4.com served with the default certificate until it is',
    'Ingress default/not-tls: TLS Secret default/opaque not of type kubernetes.io/tls: tls5.com served with the default certificate until it is',
  ]);
  const router = new Router(result.table);
  t.match(router.match('tls4.com', '/'), { kind: 'route', redirectToHttps: true, route: { backend: 'default/web:http' } }, 'its rules are routed, and plain HTTP still goes to https (as ingress-nginx does)');
  t.equal(route([good, unknownService, unknownPort, unknownPortName, noSecret, opaque, notTls], 'tls5.com', '/'), 'api');
  t.equal(router.certificateFor('tls4.com'), 'default/gone', 'the host names its Secret');
  t.notOk(Object.hasOwn(result.table.certificates, 'default/gone'), 'which has no certificate: the default one is served');
  t.equal(route([good, unknownService], 'bad.com', '/'), 'none');
  const empty = ingress('empty', [{ paths: [{ path: '/', pathType: 'Prefix', service: 'empty' }] }]);
  const match = new Router(plan([empty]).table).match('', '/');
  t.same(match.kind === 'route' && match.endpoints, [], 'a Service without ready endpoints is routed, to no endpoint (503)');
});

t.test('a headless Service is a backend: its ready endpoints, by port number or name, in both families', async (t) => {
  const headless = (name: string, ports: { name?: string; port: number; targetPort?: number | string }[]) => service(name, 'None', ports) as KubeObject;
  // As the EndpointSlice controller labels them: a headless service's slices carry the headless
  // label, which kube-proxy's selector drops; another proxy's slice is never the ingress's.
  const labelled = (object: ReturnType<typeof slice>, label: string) => {
    object.metadata.labels = { ...object.metadata.labels, [label]: '' };
    return object as KubeObject;
  };
  const dbPorts = [{ name: 'http', port: 8080 }, { name: 'admin', port: 9000 }];
  const objects: KubeObject[] = [
    headless('db', [{ name: 'http', port: 80, targetPort: 'web' }, { name: 'admin', port: 9000 }]),
    labelled(slice('db', dbPorts, [{ ip: '10.244.2.1' }, { ip: '10.244.2.2' }, { ip: '10.244.2.3', ready: false }]), 'service.kubernetes.io/headless'),
    labelled(slice('db', dbPorts, [{ ip: 'fd00:244::1' }], { addressType: 'IPv6' }), 'service.kubernetes.io/headless'),
    labelled(slice('db', dbPorts, [{ ip: '10.244.9.9' }], { name: 'db-other-proxy' }), 'service.kubernetes.io/service-proxy-name'),
    headless('idle', [{ name: 'http', port: 80 }]),
    ingress('headless', [
      { host: 'db.example.com', paths: [{ path: '/', pathType: 'Prefix', service: 'db', port: 80 }, { path: '/admin', pathType: 'Prefix', service: 'db', port: 'admin' }] },
      { host: 'idle.example.com', paths: [{ path: '/', pathType: 'Prefix', service: 'idle', port: 'http' }] },
    ]),
  ];
  const state = stateWith(objects);
  t.same(servicePortViews(state, 'default/db'), [], 'the proxy\'s rules still see no headless service');
  const result = plan(objects);
  t.same(result.problems, []);
  t.same(result.table.backends, {
    ...result.table.backends,
    'default/db:http': ['10.244.2.1:8080', '10.244.2.2:8080', '[fd00:244::1]:8080'],
    'default/db:admin': ['10.244.2.1:9000', '10.244.2.2:9000', '[fd00:244::1]:9000'],
    'default/idle:http': [],
  }, 'the slices give the endpoint ports; not-ready endpoints and another proxy\'s slice stay out; without a slice the port resolves to no endpoint');
  const router = new Router(result.table);
  const backendOf = (host: string, path: string) => { const match = router.match(host, path); return match.kind === 'route' ? match.route.backend : 'none'; };
  t.equal(backendOf('db.example.com', '/x'), 'default/db:http', 'by port number');
  t.equal(backendOf('db.example.com', '/admin/x'), 'default/db:admin', 'by port name');
  t.equal(backendOf('idle.example.com', '/'), 'default/idle:http', 'no slice yet: routed to no endpoint (503)');
  const missingPort = plan([...objects, ingress('bad', [{ host: 'bad.example.com', paths: [{ path: '/', pathType: 'Prefix', service: 'db', port: 81 }] }])]);
  t.same(missingPort.problems.map((problem) => problem.reason), ['service db has no TCP port 81'], 'a port the headless Service does not name is reported');
});

t.test('bad objects are rejected with their name and the reason', async (t) => {
  const reject = (object: KubeObject, reason: RegExp, name: string) => {
    try {
      normalizeIngress(object);
      t.fail(`${name}: accepted`);
    } catch (error) {
      t.type(error, ObjectError, name);
      t.match((error as Error).message, reason, name);
    }
  };
  const onePath = (path: Path, host?: string) => ingress('bad', [{ host, paths: [path] }]);
  reject(onePath({ path: '/' }, '*'), /Ingress default\/bad: spec.rules\[0\].host "\*" must be a lower-case DNS-1123 subdomain/, 'a lone *');
  reject(onePath({ path: '/' }, 'a.*.com'), /host "a\.\*\.com"/, 'a * inside');
  reject(onePath({ path: '/' }, '10.0.0.1'), /not an IP address/, 'an IP host');
  reject(onePath({ path: '/' }, 'foo.com:80'), /must not hold a port/, 'a port');
  reject(onePath({ path: '/' }, 'Foo.com'), /lower-case/, 'upper case');
  reject(onePath({ path: 'foo', pathType: 'Prefix' }), /path "foo" must be an absolute path/, 'a relative path');
  reject(onePath({ path: '/a//b', pathType: 'Prefix' }), /must not contain "\/\/"/, 'an empty element');
  reject(onePath({ path: '/a/../b', pathType: 'Exact' }), /must not contain "\/\.\.\/"/, 'a .. element');
  reject(onePath({ path: '/a%2Fb', pathType: 'Exact' }), /must not contain "%2F"/, 'an encoded slash');
  reject(onePath({ path: '/a/%2e%2E/b', pathType: 'Prefix' }), /path "\/a\/%2e%2E\/b" must not contain "\/\.\.\/"/, 'a percent-encoded .. element (requests are routed with it decoded)');
  reject(onePath({ path: '/a/%2e', pathType: 'Exact' }), /must not contain "\/\."/, 'a percent-encoded . at the end');
  reject(onePath({ path: '/a%zz', pathType: 'Exact' }), /holds a malformed percent-escape or %00/, 'a malformed escape');
  reject(onePath({ path: '/a%00', pathType: 'Exact' }), /holds a malformed percent-escape or %00/, 'an encoded NUL');
  reject(onePath({ path: '/a b', pathType: 'Exact' }), /must be an absolute path/, 'a space');
  reject(onePath({ path: '/', pathType: 'Regex' }), /pathType "Regex" is not Exact, Prefix or ImplementationSpecific/, 'an unknown pathType');
  reject(onePath({ path: '/', port: 0 }), /port.number 0 is not a port number/, 'port 0');
  reject({ ...onePath({ path: '/' }), apiVersion: 'networking.k8s.io/v2' }, /apiVersion "networking.k8s.io\/v2"/, 'an unknown version');
  reject({ apiVersion: 'networking.k8s.io/v1', kind: 'Ingress', metadata: { name: 'bad' }, spec: {} }, /needs rules or a defaultBackend/, 'nothing to route');
  reject({ apiVersion: 'networking.k8s.io/v1', kind: 'Ingress', metadata: { name: 'bad' }, spec: { defaultBackend: { resource: { kind: 'Bucket', name: 'b' } } } }, /resource backends are not supported/, 'a resource backend');
  reject({ apiVersion: 'networking.k8s.io/v1', kind: 'Ingress', metadata: { name: 'Bad_Name' }, spec: {} }, /metadata.name/, 'a bad name');
  t.throws(() => normalizeIngressClass({ kind: 'IngressClass', metadata: { name: 'x' }, spec: {} }), /IngressClass x: spec.controller/);
  t.throws(() => normalizeTlsSecret({ kind: 'Secret', metadata: { name: 's' }, type: 'kubernetes.io/tls', data: { 'tls.crt': 'eA==' } }), /Secret default\/s: data\["tls.key"\] is missing/);
  t.throws(() => normalizeTlsSecret({ kind: 'Secret', metadata: { name: 's' }, type: 'kubernetes.io/tls', data: { 'tls.crt': 'eA==', 'tls.key': 'eA==' } }), /Secret default\/s: tls.crt is not a PEM certificate/);
});

t.test('TLS: certificates by host and wildcard, redirects unless opted out, the oldest Ingress owns a TLS host', async (t) => {
  const one = certificate('one');
  const two = certificate('two');
  const mismatched = { ...tlsSecret('mismatched', one), data: { 'tls.crt': Buffer.from(one.cert).toString('base64'), 'tls.key': Buffer.from(two.key).toString('base64') } };
  t.throws(() => normalizeTlsSecret(mismatched), /tls.key does not belong to tls.crt/);
  const objects = [
    tlsSecret('one', one), tlsSecret('two', two),
    ingress('tls', [{ host: 'a.com', paths: [{ path: '/', pathType: 'Prefix' }] }, { host: '*.b.com', paths: [{ path: '/', pathType: 'Prefix' }] }], {
      spec: { tls: [{ hosts: ['a.com'], secretName: 'one' }, { hosts: ['*.b.com'], secretName: 'two' }] }, metadata: { creationTimestamp: '2024-01-01T00:00:00Z' },
    }),
    ingress('no-redirect', [{ host: 'c.com', paths: [{ path: '/', pathType: 'Prefix' }] }], {
      spec: { tls: [{ hosts: ['c.com', 'a.com'], secretName: 'two' }] }, metadata: { annotations: { 'kubenft.io/ssl-redirect': 'false' }, creationTimestamp: '2025-01-01T00:00:00Z' },
    }),
  ];
  const result = plan(objects);
  const router = new Router(result.table);
  t.equal(router.certificateFor('a.com'), 'default/one');
  t.equal(router.certificateFor('X.B.com'), 'default/two', 'a wildcard, case-insensitive');
  t.equal(router.certificateFor('y.x.b.com'), undefined, 'one label only');
  t.equal(router.certificateFor('unknown.com'), undefined, 'unknown: the default certificate');
  t.match(router.match('a.com', '/'), { redirectToHttps: true });
  t.match(router.match('c.com', '/'), { redirectToHttps: false }, 'opted out');
  t.same(result.problems, [{ object: 'Ingress default/no-redirect', reason: 'TLS host a.com is already served by the older Ingress default/tls' }]);
  t.equal(result.table.certificates['default/one'].cert, one.cert);
});
