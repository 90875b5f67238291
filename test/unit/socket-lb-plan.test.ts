// The socket LB's planner (pure) and its map writer against real, unattached BPF maps.
import t from 'tap';
import { type SocketLbFrontend, frontendKey, planSocketLb } from '../../src/socket-lb/plan.js';
import { type SocketLbHandle, type SocketLbMapName, SocketLbMaps, socketLbAddon } from '../../src/socket-lb/maps.js';
import type { ServicePortView } from '../../src/cluster/service-ports.js';
import { cgroupV2Root } from '../../src/socket-lb/dataplane.js';
import type { EndpointInfo, ServiceInfo } from '../../src/cluster/model.js';

const NODE = { nodeName: 'node-a', zone: 'zone-1' };

function view(endpoints: Partial<EndpointInfo & { port: number }>[], service: Partial<ServiceInfo> = {}, protocol: 'TCP' | 'UDP' | 'SCTP' = 'TCP'): ServicePortView {
  return {
    service: { namespace: 'default', name: 'web', type: 'ClusterIP', headless: false, clusterIPs: ['10.0.0.1'], ports: [], externalIPs: [], loadBalancerIPs: [], loadBalancerSourceRanges: [],
      externalTrafficPolicyLocal: false, internalTrafficPolicyLocal: false, ...service },
    port: { name: '', protocol, port: 80, targetPort: 8080 },
    family: 4,
    clusterIP: '10.0.0.1',
    endpoints: endpoints.map((endpoint) => ({ address: '', ready: true, serving: true, terminating: false, port: 8080, ...endpoint })),
  };
}

const endpointsOf = (views: ServicePortView[]) => [...planSocketLb(views, NODE).values()].map((frontend) => frontend.endpoints.map((endpoint) => endpoint.address));

t.test('the planner picks the endpoints the rules would pick for a client on this node', async (t) => {
  t.same(endpointsOf([view([{ address: '10.1.0.3' }, { address: '10.1.0.1' }, { address: '10.1.0.2', ready: false, serving: false }])]), [['10.1.0.1', '10.1.0.3']], 'ready ones, sorted');
  t.same(endpointsOf([view([{ address: '10.1.0.1', ready: false, serving: true, terminating: true }, { address: '10.1.0.2', ready: false, serving: false, terminating: true }])]),
    [['10.1.0.1']], 'no ready endpoint: the serving and terminating ones');
  t.same(endpointsOf([view([{ address: '10.1.0.1', nodeName: 'node-b' }, { address: '10.1.0.2', nodeName: 'node-a' }], { internalTrafficPolicyLocal: true })]), [['10.1.0.2']], 'internalTrafficPolicy Local');
  t.same(endpointsOf([view([{ address: '10.1.0.1', nodeName: 'node-b' }], { internalTrafficPolicyLocal: true })]), [], 'no local endpoint: left to the rules (which drop)');
  t.same(endpointsOf([view([{ address: '10.1.0.1', hintZones: ['zone-1'] }, { address: '10.1.0.2', hintZones: ['zone-2'] }])]), [['10.1.0.1']], 'topology hints');
  t.same(endpointsOf([view([])]), [], 'no endpoint: left to the rules (which reject)');
  t.same(endpointsOf([view([{ address: '10.1.0.1' }], {}, 'SCTP')]), [], 'SCTP is the rules\'');
  const [frontend] = planSocketLb([view([{ address: '10.1.0.1' }], { affinityTimeoutSeconds: 600 }, 'UDP')], NODE).values();
  t.same(frontend, { address: '10.0.0.1', port: 80, protocol: 'UDP', affinityTimeoutSeconds: 600, endpoints: [{ address: '10.1.0.1', port: 8080 }] });
});

const frontend = (address: string, endpoints: string[], protocol: 'TCP' | 'UDP' = 'TCP'): SocketLbFrontend =>
  ({ address, port: 80, protocol, affinityTimeoutSeconds: 0, endpoints: endpoints.map((endpoint) => ({ address: endpoint, port: 8080 })) });
const plan = (...frontends: SocketLbFrontend[]) => new Map<string, SocketLbFrontend | undefined>(frontends.map((entry) => [frontendKey(entry), entry]));

/** A handle that records the calls it passes on. */
function recording(handle: SocketLbHandle) {
  const calls: string[] = [];
  const recorded: SocketLbHandle = {
    attach: (path) => handle.attach(path),
    update: (map: SocketLbMapName, keys, values) => { calls.push(`update ${map}`); handle.update(map, keys, values); },
    remove: (map: SocketLbMapName, keys) => { calls.push(`remove ${map}`); handle.remove(map, keys); },
    dump: (map) => handle.dump(map),
    destroyUdpSockets: (path, endpoints) => handle.destroyUdpSockets(path, endpoints),
    close: () => handle.close(),
  };
  return { recorded, calls };
}

t.test('the map writer: new slots, then the frontend, then the old slots; a new writer adopts what is there', async (t) => {
  const addon = socketLbAddon();
  const handle = new addon.SocketLb({});
  t.teardown(() => handle.close());
  const { recorded, calls } = recording(handle);
  const maps = new SocketLbMaps(recorded);
  const slotCount = () => handle.dump('slots').keys.length / 8;

  t.same(maps.apply(plan(frontend('10.0.0.1', ['10.1.0.1', '10.1.0.2']), frontend('fd00::1', ['fd00:1::1'], 'UDP'))), { changed: 2, removedUdpEndpoints: [] });
  t.equal(handle.dump('services').keys.length / 20, 2);
  t.equal(slotCount(), 3);
  calls.length = 0;
  const report = maps.apply(plan(frontend('10.0.0.1', ['10.1.0.2', '10.1.0.3']), frontend('fd00::1', ['fd00:1::2'], 'UDP')));
  t.same(report.removedUdpEndpoints, [{ address: 'fd00:1::1', port: 8080 }], 'a UDP endpoint that left is reported for its sockets');
  t.same(calls, ['update slots', 'update services', 'remove slots'], 'make before break');
  t.equal(slotCount(), 3, 'the old slots are gone');
  t.same(maps.apply(plan(frontend('10.0.0.1', ['10.1.0.2', '10.1.0.3']))), { changed: 0, removedUdpEndpoints: [] }, 'an unchanged frontend is not rewritten');

  // A stray slot (as a crash between two steps would leave) is removed on adoption.
  handle.update('slots', Buffer.from([9, 0, 0, 0, 0, 0, 0, 0]), Buffer.alloc(20));
  calls.length = 0;
  const adopted = new SocketLbMaps(recorded);
  t.equal(adopted.size, 2);
  t.equal(slotCount(), 3);
  t.same(adopted.apply(plan(frontend('10.0.0.1', ['10.1.0.2', '10.1.0.3']), frontend('fd00::1', ['fd00:1::2'], 'UDP')), true), { changed: 0, removedUdpEndpoints: [] }, 'what a previous writer left is kept');
  t.same(adopted.apply(plan(), true).changed, 2, 'a full sync removes what the plan no longer has');
  t.equal(handle.dump('services').keys.length, 0);
  t.equal(slotCount(), 0);
  t.throws(() => handle.update('services', Buffer.alloc(19), Buffer.alloc(16)), /not whole entries of 20/);
});

t.test('the default cgroup is the cgroup v2 mount point from mountinfo', async (t) => {
  const hybrid = '30 1 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755\n40 30 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n';
  t.equal(cgroupV2Root(hybrid), '/sys/fs/cgroup/unified');
  t.equal(cgroupV2Root('40 30 0:37 / /run/cgroup\\040v2 rw - cgroup2 cgroup2 rw\n'), '/run/cgroup v2', 'octal escapes are decoded');
  t.throws(() => cgroupV2Root('30 1 0:26 / /sys/fs/cgroup ro - tmpfs tmpfs ro\n'), /no cgroup v2 filesystem is mounted/);
});
