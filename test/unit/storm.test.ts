// An event storm: 10,000 Service/EndpointSlice changes in one burst are coalesced into a bounded
// number of syncs, and memory stays bounded. The dataplane records syncs instead of programming
// the kernel: what is under test is the agent's loop, not the kernel.
import t from 'tap';
import pino from 'pino';
import { Agent, FULL_SYNC_PERIOD_MS } from '../../src/agent/agent.js';
import type { Dataplane, DataplaneSync } from '../../src/services/dataplane.js';
import { parseOptions } from '../../src/cli/options.js';
import { service, slice } from '../lib/manifests.js';

class CountingDataplane implements Dataplane {
  readonly mode = 'nftables';
  syncs: { kind: 'full' | 'partial'; services: number }[] = [];
  inFlight = 0;
  mostInFlight = 0;
  async sync(state: Parameters<Dataplane['sync']>[0], _config: unknown, changed: Set<string> | 'full'): Promise<DataplaneSync> {
    this.syncs.push({ kind: changed === 'full' ? 'full' : 'partial', services: changed === 'full' ? state.services.size : changed.size });
    this.mostInFlight = Math.max(this.mostInFlight, ++this.inFlight);
    await new Promise((resolve) => setTimeout(resolve, 50));
    this.inFlight--;
    return { kind: changed === 'full' ? 'full' : 'partial', kernelMs: 0, messages: 0 };
  }
  invalidate(): void {}
  async cleanup(): Promise<void> {}
}

t.test('10,000 changes in a burst make a bounded number of syncs and bounded memory', async (t) => {
  const options = parseOptions(['--hostname-override', 'node-1', '--iptables-min-sync-period', '500ms', '--healthz-bind-address', '', '--metrics-bind-address', '']);
  const dataplane = new CountingDataplane();
  const agent = new Agent(options, dataplane, pino({ level: 'silent' }));
  t.teardown(() => agent.stop());
  const handler = agent.handler();
  handler.synced();
  agent.start();

  const heapBefore = process.memoryUsage().heapUsed;
  let peakHeap = heapBefore;
  const sampler = setInterval(() => (peakHeap = Math.max(peakHeap, process.memoryUsage().heapUsed)), 10);
  const burstStarted = performance.now();
  for (let index = 0; index < 5_000; index++) {
    const name = `storm-${index}`;
    handler.apply(service(name, `10.1.${Math.floor(index / 250)}.${(index % 250) + 1}`, [{ port: 80 }]));
    handler.apply(slice(name, [{ port: 80 }], [{ ip: `10.245.${Math.floor(index / 250)}.${(index % 250) + 1}` }]));
    if (index % 500 === 0) await new Promise((resolve) => setImmediate(resolve));
  }
  const burstMs = performance.now() - burstStarted;
  // Let the loop drain: no new sync for well over the minimum sync period.
  let seen = -1;
  while (seen !== dataplane.syncs.length) {
    seen = dataplane.syncs.length;
    await new Promise((resolve) => setTimeout(resolve, 1500));
  }
  clearInterval(sampler);

  // The rate limit (a burst of two, then one per 500 ms) bounds the syncs during the burst, and one
  // follows it; a loaded machine stretches the burst, not the bound per period.
  const bound = 2 + Math.ceil(burstMs / 500) + 1;
  t.ok(dataplane.syncs.length <= bound, `${dataplane.syncs.length} syncs for 10,000 changes over ${burstMs.toFixed(0)} ms (at most ${bound})`);
  t.equal(dataplane.mostInFlight, 1, 'syncs never overlapped');
  t.equal(agent.state.services.size, 5_000, 'every service is in the state');
  t.equal(agent.state.takeChanges().services.size, 0, 'no change was left unsynced');
  t.equal(dataplane.syncs.reduce((sum, sync) => sum + sync.services, 0) >= 5_000, true, 'every changed service reached a sync');
  const growthMB = (peakHeap - heapBefore) / 2 ** 20;
  t.ok(growthMB < 200, `peak heap grew by ${growthMB.toFixed(0)} MB (bounded: changes are coalesced, not queued)`);
});

t.test('a sync asked for while the runner\'s is in flight waits for it (--once does this)', async (t) => {
  const options = parseOptions(['--hostname-override', 'node-1', '--healthz-bind-address', '', '--metrics-bind-address', '']);
  const dataplane = new CountingDataplane();
  const agent = new Agent(options, dataplane, pino({ level: 'silent' }));
  t.teardown(() => agent.stop());
  const handler = agent.handler();
  handler.apply(service('web', '10.1.0.1', [{ port: 80 }]));
  agent.start();
  await new Promise((resolve) => setTimeout(resolve, 10)); // the runner's sync is now in flight
  t.equal(dataplane.inFlight, 1);
  const first = agent.sync(true);
  const direct = agent.sync(true);
  t.equal(dataplane.mostInFlight, 1, 'the direct syncs did not start beside it');
  await Promise.all([first, direct]);
  t.equal(dataplane.mostInFlight, 1, 'nor beside each other');
  t.equal(dataplane.syncs.length, 3);
});

t.test('periodic syncs are partial; one is full again once an hour has passed since the last full sync', async (t) => {
  const options = parseOptions([
    '--hostname-override', 'node-1', '--iptables-sync-period', '100ms', '--iptables-min-sync-period', '0s',
    '--healthz-bind-address', '', '--metrics-bind-address', '',
  ]);
  const dataplane = new CountingDataplane();
  const agent = new Agent(options, dataplane, pino({ level: 'silent' }));
  t.teardown(() => agent.stop());
  agent.handler().synced();
  agent.start();
  const periodic = async (count: number) => {
    const target = dataplane.syncs.length + count;
    while (dataplane.syncs.length < target) await new Promise((resolve) => setTimeout(resolve, 20));
    return dataplane.syncs.slice(-count).map((sync) => sync.kind);
  };
  t.same(await periodic(4), ['full', 'partial', 'partial', 'partial'], 'the first sync is full, the periodic ones after it partial');
  (agent as unknown as { lastFullSyncAt: number }).lastFullSyncAt -= FULL_SYNC_PERIOD_MS;
  // A sync may be in flight, decided before the clock moved: of the next three, exactly one is full.
  t.equal((await periodic(3)).filter((kind) => kind === 'full').length, 1, 'an hour after the last full sync a periodic sync is full');
});
