// The HAProxy dataplane's model against a fresh one: after every change of a sequence (Ingresses
// added, merged, changed and deleted, endpoints moved, a backend gone, TLS hosts, a rotated and a
// missing Secret, the default backend and certificate), the runtime API commands the model sends,
// played on an HAProxy of its last files, give what the configuration written whole from the new
// table gives: each map key routes to the same endpoints and route labels, each SNI name gets the
// same certificate. The commands are also held to HAProxy's rules (no duplicate `add map`, no
// `set map` of a missing key, no server added twice).
import t from 'tap';
import { IngressPlanner, type IngressPlanInput } from '../../src/ingress/routes.js';
import { ClusterState, type KubeObject } from '../../src/cluster/cluster-state.js';
import { type IngressClassInfo, type IngressInfo, type TlsSecretInfo, normalizeIngress, normalizeIngressClass, normalizeTlsSecret } from '../../src/ingress/objects.js';
import { servicePortViews } from '../../src/cluster/service-ports.js';
import { haproxyLayout, MAPS } from '../../src/ingress/haproxy/config.js';
import { HaproxyModel, type RuntimeCommand } from '../../src/ingress/haproxy/model.js';
import { service, slice } from '../lib/manifests.js';
import { OUR_CLASS, certificate, ingress, tlsSecret } from '../lib/ingress-manifests.js';

const layout = haproxyLayout('/h');
const DEFAULT_CERTIFICATE = { cert: 'generated-cert', key: 'generated-key' };

/** HAProxy's state as far as routing and certificates go, built from the files and changed by commands. */
class FakeHaproxy {
  readonly maps = new Map<string, Map<string, string>>();
  readonly servers = new Map<string, Map<string, { address: string; ready: boolean }>>();
  readonly certificates = new Map<string, string>();
  readonly crtList: string[] = [];
  private readonly pending = new Map<string, string>();

  constructor(files: { path: string; content: string }[]) {
    const content = new Map(files.map((file) => [file.path, file.content]));
    for (const name of MAPS) this.maps.set(layout.map(name), new Map(content.get(layout.map(name))!.split('\n').filter(Boolean).map((line) => line.split(' ') as [string, string])));
    let slot = '';
    for (const line of content.get(layout.config)!.split('\n')) {
      const backend = /^backend (\S+)$/.exec(line);
      if (backend) this.servers.set((slot = backend[1]), new Map());
      const server = /^ {2}server (\S+) (\S+)$/.exec(line);
      if (server) this.servers.get(slot)!.set(server[1], { address: server[2], ready: true });
    }
    this.crtList.push(...content.get(layout.crtList)!.split('\n').filter(Boolean));
    for (const line of this.crtList) this.certificates.set(line.split(' ')[0], content.get(line.split(' ')[0])!);
  }

  run({ command, payload }: RuntimeCommand): void {
    const words = command.split(' ');
    const fail = (why: string) => {
      throw new Error(`${command}: ${why}`);
    };
    const server = (path: string) => {
      const [slot, name] = path.split('/');
      return { states: this.servers.get(slot) ?? fail('no such backend'), name };
    };
    if (words[1] === 'map') {
      const map = this.maps.get(words[2]) ?? fail('unknown map');
      if (words[0] === 'add' && map.has(words[3])) fail('a second entry for the key');
      if (words[0] !== 'add' && !map.has(words[3])) fail('no such key');
      if (words[0] === 'del') map.delete(words[3]);
      else map.set(words[3], words[4]);
    } else if (words[1] === 'server') {
      const { states, name } = server(words[2]);
      if (words[0] === 'add') {
        if (states.has(name)) fail('already exists');
        states.set(name, { address: words[3], ready: false });
      } else if (words[0] === 'enable') (states.get(name) ?? fail('no such server')).ready = true;
      else if (words[0] === 'set') (states.get(name) ?? fail('no such server')).ready = words[4] === 'ready';
      else if (words[0] === 'del') states.delete(name);
    } else if (command.startsWith('new ssl cert ')) this.pending.set(words[3], '');
    else if (command.startsWith('set ssl cert ')) this.pending.set(words[3], payload!);
    else if (command.startsWith('commit ssl cert ')) this.certificates.set(words[3], this.pending.get(words[3]) ?? fail('no transaction'));
    else if (command.startsWith('add ssl crt-list ')) this.crtList.push(payload!);
    else if (command.startsWith('del ssl crt-list ')) this.crtList.splice(this.crtList.findIndex((line) => line.startsWith(`${words[4]} `)), 1);
    else if (command.startsWith('del ssl cert ')) this.certificates.delete(words[3]);
    else fail('not a command this model sends');
  }

  /** What a request sees: per map key, the ready endpoints and the route's labels; per SNI name, the certificate. */
  view(model: HaproxyModel) {
    const routing: Record<string, unknown> = {};
    for (const [file, entries] of this.maps) {
      for (const [key, value] of entries) {
        const [slot, route] = value.split('/');
        routing[`${file} ${key}`] = route === undefined ? value : {
          endpoints: [...this.servers.get(slot)!.values()].filter((state) => state.ready).map((state) => state.address).sort(),
          route: model.routes[Number(route)],
        };
      }
    }
    const certificates = Object.fromEntries(this.crtList.map((line) => [line.split(' ').at(-1)!, this.certificates.get(line.split(' ')[0])]));
    return { routing, certificates };
  }
}

function newState(): ClusterState {
  const state = new ClusterState('node-1');
  state.registerKind('Ingress', normalizeIngress);
  state.registerKind('IngressClass', normalizeIngressClass);
  state.registerKind('Secret', normalizeTlsSecret);
  state.apply(OUR_CLASS);
  return state;
}
const inputOf = (state: ClusterState): IngressPlanInput => ({
  ingresses: state.objectsOf<IngressInfo>('Ingress'), classes: state.objectsOf<IngressClassInfo>('IngressClass').values(),
  secrets: state.objectsOf<TlsSecretInfo | null>('Secret'), servicePorts: (key) => servicePortViews(state, key), node: { nodeName: 'node-1' }, ingressClass: 'kubenft',
});
const echo = (name: string, index: number, pods: number[]) => [
  service(name, `10.0.0.${10 + index}`, [{ name: 'http', port: 80, targetPort: 8080 }]),
  slice(name, [{ name: 'http', port: 8080 }], pods.map((pod) => ({ ip: `10.244.${index + 1}.${pod}` }))),
] as KubeObject[];

const tea = certificate('tea.example.com');
const rotated = certificate('rotated.example.com', 'tea.example.com');
const wild = certificate('*.coffee.example.com');

const steps: [string, (state: ClusterState) => void][] = [
  ['two Services and an Ingress', (state) => {
    for (const object of [...echo('web', 0, [1, 2]), ...echo('api', 1, [1])]) state.apply(object);
    state.apply(ingress('site', [{ host: 'site.example.com', paths: [{ path: '/', pathType: 'Prefix' }, { path: '/api', pathType: 'Prefix', service: 'api' }, { path: '/exact', pathType: 'Exact', service: 'api' }] }]));
  }],
  ['a wildcard, a rule without host, the default backend', (state) => {
    state.apply(ingress('more', [{ host: '*.bar.com', paths: [{ path: '/', pathType: 'Prefix', service: 'api' }] }, { paths: [{ path: '/any', pathType: 'Prefix' }] }], { spec: { defaultBackend: { service: { name: 'api', port: { number: 80 } } } } }));
  }],
  ['endpoints move', (state) => state.apply(echo('web', 0, [2, 3])[1])],
  ['TLS hosts with their Secrets, one missing', (state) => {
    state.apply(tlsSecret('tea', tea));
    state.apply(tlsSecret('coffee', wild));
    state.apply(ingress('tls', [{ host: 'tea.example.com', paths: [{ path: '/', pathType: 'Prefix' }] }, { host: 'x.coffee.example.com', paths: [{ path: '/', pathType: 'Prefix', service: 'api' }] }, { host: 'late.example.com', paths: [{ path: '/', pathType: 'Prefix' }] }], {
      spec: { tls: [{ hosts: ['tea.example.com'], secretName: 'tea' }, { hosts: ['*.coffee.example.com'], secretName: 'coffee' }, { hosts: ['late.example.com'], secretName: 'late' }] },
    }));
  }],
  ['a Secret rotated, the missing one arrives', (state) => {
    state.apply(tlsSecret('tea', rotated));
    state.apply(tlsSecret('late', wild));
  }],
  ['an Ingress changed: a path moves to another Service, another goes', (state) => {
    state.apply(ingress('site', [{ host: 'site.example.com', paths: [{ path: '/', pathType: 'Prefix', service: 'api' }, { path: '/new', pathType: 'Exact' }] }]));
  }],
  ['a third Service comes and the default backend moves to it', (state) => {
    for (const object of echo('other', 2, [1])) state.apply(object);
    state.apply(ingress('more', [{ host: '*.bar.com', paths: [{ path: '/', pathType: 'Prefix', service: 'api' }] }], { spec: { defaultBackend: { service: { name: 'other', port: { number: 80 } } } } }));
  }],
  ['Ingresses and a Secret deleted: backends, hosts and certificates go', (state) => {
    state.delete(ingress('tls', []));
    state.delete(tlsSecret('coffee', wild));
    state.delete(ingress('more', []));
  }],
];

const SETTINGS = { maxBodyBytes: 1, maxHeaderBytes: 1024, clientTimeoutMs: 1, backendTimeoutMs: 1, connectTimeoutMs: 1, threads: 1 };

// Planned whole ('full'), as a full sync plans: the model diffs the new table against what it holds.
for (const planning of ['each sync\'s changes', 'a table planned whole each time'] as const) {
  t.test(`after every change, the runtime commands played on HAProxy give what the whole configuration gives (${planning})`, async (t) => {
    const state = newState();
    const planner = new IngressPlanner();
    const model = new HaproxyModel(layout);
    let haproxy: FakeHaproxy | undefined;
    for (const [name, change] of steps) {
      change(state);
      const { table, changes } = planner.plan(inputOf(state), planning === 'each sync\'s changes' ? new Set(state.services.keys()) : 'full');
      if (!haproxy) {
        model.load(table, DEFAULT_CERTIFICATE);
        haproxy = new FakeHaproxy(model.files(SETTINGS));
      } else {
        const commands = model.changes(table, changes ?? model.wholeChanges(table), DEFAULT_CERTIFICATE);
        if (!commands) throw new Error(`${name}: the runtime API could not carry it (${model.reloadReason})`);
        for (const command of commands) haproxy.run(command);
        for (const draining of model.draining()) {
          haproxy.run({ command: `del server ${draining.slot}/${draining.name}` });
          model.forget(draining);
        }
      }
      const fresh = new HaproxyModel(layout);
      fresh.load(structuredClone(table), DEFAULT_CERTIFICATE);
      const whole = new FakeHaproxy(fresh.files(SETTINGS));
      t.same(haproxy.view(model), whole.view(fresh), name);
      const again = planner.plan(inputOf(state), 'full').table;
      t.same(model.changes(again, model.wholeChanges(again), DEFAULT_CERTIFICATE), [], `${name}: then a full sync with nothing changed is no command`);
    }
  });
}
