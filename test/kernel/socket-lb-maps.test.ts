// The socket LB's map writer on real BPF maps (made by the addon, unpinned: they go with the
// process), which needs root; the planner's own tests are test/unit/socket-lb-plan.test.ts.
import t from 'tap';
import { type SocketLbFrontend, frontendKey } from '../../src/socket-lb/plan.js';
import { type SocketLbHandle, type SocketLbMapName, SocketLbMaps, socketLbAddon } from '../../src/socket-lb/maps.js';

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
