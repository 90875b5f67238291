// The incremental route planner against the whole one: after every change of a sequence (Ingresses
// added, merged, changed and deleted, endpoints moved, Services and Secrets coming and going, a
// class change), the planner's table equals planIngress of the same state, the changes it reports
// turn the previous table into that one, and they name only what the change touched.
import t from 'tap';
import {
  IngressPlanner, type IngressPlanInput, type RouteTable, type RouteTableChanges, Router, planIngress,
} from '../../src/ingress/routes.js';
import { ClusterState, type KubeObject } from '../../src/cluster/cluster-state.js';
import { type IngressClassInfo, type IngressInfo, type TlsSecretInfo, normalizeIngress, normalizeIngressClass, normalizeTlsSecret } from '../../src/ingress/objects.js';
import { servicePortViews } from '../../src/cluster/service-ports.js';
import { service, slice } from '../lib/manifests.js';
import { OUR_CLASS, certificate, ingress, tlsSecret } from '../lib/ingress-manifests.js';

function newState(): ClusterState {
  const state = new ClusterState('node-1');
  state.registerKind('Ingress', normalizeIngress);
  state.registerKind('IngressClass', normalizeIngressClass);
  state.registerKind('Secret', normalizeTlsSecret);
  for (const [index, name] of ['web', 'api'].entries()) {
    state.apply(service(name, `10.0.0.${10 + index}`, [{ name: 'http', port: 80, targetPort: 8080 }]) as KubeObject);
    state.apply(slice(name, [{ name: 'http', port: 8080 }], [{ ip: `10.244.1.${index + 1}` }]) as KubeObject);
  }
  state.apply(OUR_CLASS);
  return state;
}

const inputOf = (state: ClusterState): IngressPlanInput => ({
  ingresses: state.objectsOf<IngressInfo>('Ingress'),
  classes: state.objectsOf<IngressClassInfo>('IngressClass').values(),
  secrets: state.objectsOf<TlsSecretInfo | null>('Secret'),
  servicePorts: (key) => servicePortViews(state, key),
  node: { nodeName: 'node-1' },
  ingressClass: 'kubenft',
});

/** The previous table with the changes applied, as a worker does (on plain objects here). */
function applied(previous: RouteTable, changes: RouteTableChanges): RouteTable {
  const table: RouteTable = structuredClone(previous);
  for (const field of ['hosts', 'wildcards', 'backends', 'certificates', 'tlsHosts', 'tlsWildcards'] as const) {
    const target = table[field] as Record<string, unknown>;
    for (const [key, value] of Object.entries(changes[field])) {
      if (value === null) delete target[key];
      else target[key] = value;
    }
  }
  if (changes.anyHost !== undefined) table.anyHost = changes.anyHost ?? undefined;
  table.defaultBackend = changes.defaultBackend ?? undefined;
  if (!table.anyHost) delete table.anyHost;
  if (!table.defaultBackend) delete table.defaultBackend;
  return table;
}

const withoutServed = ({ served: _served, ...rest }: RouteTable) => rest;
const problemTexts = (problems: { object: string; reason: string }[]) => problems.map((problem) => `${problem.object}: ${problem.reason}`).sort();
const named = (changes: RouteTableChanges) => ({
  hosts: Object.keys(changes.hosts).sort(), wildcards: Object.keys(changes.wildcards).sort(), backends: Object.keys(changes.backends).sort(),
  certificates: Object.keys(changes.certificates).sort(), tlsHosts: Object.keys(changes.tlsHosts).sort(), anyHost: changes.anyHost !== undefined,
});

const pathTo = (host: string | undefined, path: string, serviceName = 'web', pathType = 'Prefix') => ({ host, paths: [{ path, pathType, service: serviceName }] });
const aged = (year: number) => ({ creationTimestamp: `${year}-01-01T00:00:00Z` });

t.test('after each change the incremental table equals the whole plan, and its changes name only what moved', async (t) => {
  const state = newState();
  const planner = new IngressPlanner();
  let router = new Router();
  let previous: RouteTable | undefined;
  let released: string[] = [];
  const step = (name: string, change: () => void): RouteTableChanges | undefined => {
    change();
    const { services } = state.takeChanges();
    const update = planner.plan(inputOf(state), previous ? services : 'full');
    const whole = planIngress(inputOf(state));
    t.same(update.table, whole.table, `${name}: the table equals the whole plan`);
    t.same(problemTexts(update.problems), problemTexts(whole.problems), `${name}: the same problems`);
    if (previous && update.changes) {
      t.same(withoutServed(applied(previous, update.changes)), withoutServed(whole.table), `${name}: the changes turn the previous table into this one`);
      released = router.apply(update.changes);
    } else {
      // Planned whole: a worker starts over from the table, as here.
      router = new Router(update.table);
      released = [];
    }
    previous = structuredClone(update.table);
    return update.changes;
  };
  const served = (host: string, path: string) => {
    const match = router.match(host, path);
    return match.kind === 'none' ? 'none' : `${match.route.ingress} ${match.route.backend} ${match.endpoints.join(',')}`;
  };

  step('start', () => {
    state.apply(ingress('shop', [pathTo('shop.com', '/cart'), pathTo('*.shop.com', '/')], { metadata: aged(2024) }));
    state.apply(ingress('blog', [pathTo('blog.com', '/', 'api')], { metadata: aged(2024) }));
  });
  t.equal(served('shop.com', '/cart/x'), 'default/shop default/web:http 10.244.1.1:8080');

  let changes = step('a new Ingress for a new host', () => state.apply(ingress('news', [pathTo('news.com', '/')], { metadata: aged(2025) })));
  t.same(named(changes!), { hosts: ['news.com'], wildcards: [], backends: [], certificates: [], tlsHosts: [], anyHost: false }, 'only its host');
  t.equal(served('news.com', '/'), 'default/news default/web:http 10.244.1.1:8080');

  changes = step('a newer Ingress merging into a host, one path in conflict', () => state.apply(ingress('shop-extra', [{ host: 'shop.com', paths: [{ path: '/cart/', pathType: 'Prefix', service: 'api' }, { path: '/pay', pathType: 'Exact', service: 'api' }] }], { metadata: aged(2026) })));
  t.same(named(changes!).hosts, ['shop.com']);
  t.equal(served('shop.com', '/pay'), 'default/shop-extra default/api:http 10.244.1.2:8080');
  t.equal(served('shop.com', '/cart'), 'default/shop default/web:http 10.244.1.1:8080', 'the older keeps /cart');

  changes = step('a path renamed, same backends', () => state.apply(ingress('shop-extra', [{ host: 'shop.com', paths: [{ path: '/cart/', pathType: 'Prefix', service: 'api' }, { path: '/checkout', pathType: 'Exact', service: 'api' }] }], { metadata: aged(2026) })));
  t.same(named(changes!).hosts, ['shop.com']);
  t.equal(served('shop.com', '/checkout'), 'default/shop-extra default/api:http 10.244.1.2:8080');

  step('the older Ingress deleted: the newer gets the path', () => state.delete(ingress('shop', [])));
  t.equal(served('shop.com', '/cart'), 'default/shop-extra default/api:http 10.244.1.2:8080');
  t.equal(served('x.shop.com', '/'), 'none', 'the wildcard went with it');

  changes = step('endpoints move', () => state.apply(slice('api', [{ name: 'http', port: 8080 }], [{ ip: '10.244.1.2' }, { ip: '10.244.1.3' }]) as KubeObject));
  t.same(named(changes!), { hosts: [], wildcards: [], backends: ['default/api:http'], certificates: [], tlsHosts: [], anyHost: false }, 'only the backend: no host is replanned');
  t.equal(served('blog.com', '/'), 'default/blog default/api:http 10.244.1.2:8080,10.244.1.3:8080');

  step('an endpoint leaves', () => state.apply(slice('api', [{ name: 'http', port: 8080 }], [{ ip: '10.244.1.3' }]) as KubeObject));
  t.same(released, ['10.244.1.2:8080'], 'the endpoint no backend lists is released (its pool closes)');

  step('a Service deleted: its Ingresses are skipped', () => state.delete(service('api', '10.0.0.11', []) as KubeObject));
  t.equal(served('blog.com', '/'), 'none');
  step('and back', () => state.apply(service('api', '10.0.0.11', [{ name: 'http', port: 80, targetPort: 8080 }]) as KubeObject));
  t.equal(served('blog.com', '/'), 'default/blog default/api:http 10.244.1.3:8080');

  const one = certificate('tls.com');
  const two = certificate('tls.com');
  step('TLS with a missing Secret: served, with the default certificate', () => state.apply(ingress('tls', [pathTo('tls.com', '/')], { spec: { tls: [{ hosts: ['tls.com'], secretName: 'cert' }] }, metadata: aged(2025) })));
  t.equal(served('tls.com', '/'), 'default/tls default/web:http 10.244.1.1:8080');
  t.same(planner.plan(inputOf(state), new Set()).missingSecrets, [{ ingress: 'default/tls', secret: 'default/cert', reason: 'not found', hosts: ['tls.com'] }]);
  changes = step('the Secret arrives', () => state.apply(tlsSecret('cert', one)));
  t.same(named(changes!), { hosts: [], wildcards: [], backends: [], certificates: ['default/cert'], tlsHosts: [], anyHost: false }, 'only the certificate: the host named it already');
  t.equal(router.certificateFor('tls.com'), 'default/cert');
  t.same(planner.plan(inputOf(state), new Set()).missingSecrets, [], 'no longer missing');
  t.match(router.match('tls.com', '/'), { redirectToHttps: true });
  changes = step('the Secret rotates', () => state.apply(tlsSecret('cert', two)));
  t.same(named(changes!), { hosts: [], wildcards: [], backends: [], certificates: ['default/cert'], tlsHosts: [], anyHost: false }, 'only the certificate');
  t.equal(changes!.certificates['default/cert']!.cert, two.cert);
  changes = step('the Secret deleted: the certificate goes, the routes stay', () => state.delete(tlsSecret('cert', two)));
  t.same(named(changes!), { hosts: [], wildcards: [], backends: [], certificates: ['default/cert'], tlsHosts: [], anyHost: false });
  t.equal(served('tls.com', '/'), 'default/tls default/web:http 10.244.1.1:8080');
  step('and back', () => state.apply(tlsSecret('cert', two)));
  step('a second TLS host on the same Secret, host-less rules, a default backend', () => {
    state.apply(ingress('tls-too', [pathTo('also.com', '/'), pathTo(undefined, '/any', 'api')], {
      spec: { tls: [{ hosts: ['also.com', 'tls.com'], secretName: 'cert' }], defaultBackend: { service: { name: 'web', port: { number: 80 } } } }, metadata: aged(2026),
    }));
    state.apply(ingress('fallback', [pathTo('fallback.com', '/')], { spec: { defaultBackend: { service: { name: 'api', port: { name: 'http' } } } }, metadata: aged(2023) }));
  });
  t.equal(served('unknown.com', '/any/x'), 'default/tls-too default/api:http 10.244.1.3:8080');
  t.equal(served('unknown.com', '/other'), 'default/fallback default/api:http 10.244.1.3:8080', 'the oldest default backend');
  step('the first TLS Ingress deleted: its certificate stays for the other host', () => state.delete(ingress('tls', [])));
  t.equal(router.certificateFor('also.com'), 'default/cert');
  t.equal(router.certificateFor('tls.com'), 'default/cert', 'the newer Ingress owns tls.com now');
  step('the older default backend deleted', () => state.delete(ingress('fallback', [])));
  t.equal(served('unknown.com', '/other'), 'default/tls-too default/web:http 10.244.1.1:8080');
  step('an Ingress moved to another class', () => state.apply(ingress('news', [pathTo('news.com', '/')], { spec: { ingressClassName: 'nginx' }, metadata: aged(2025) })));
  t.equal(served('news.com', '/'), 'default/tls-too default/web:http 10.244.1.1:8080', 'no longer served: the default backend answers');
  changes = step('the IngressClass deleted: everything is replanned whole', () => state.delete(OUR_CLASS));
  t.equal(changes, undefined);
  step('and back', () => state.apply(OUR_CLASS));
  t.equal(served('also.com', '/'), 'default/tls-too default/web:http 10.244.1.1:8080');
});
