// The agent's first sync waits for every source's first list. Before, the runner synced as soon as
// the first listed object asked for it: with the EndpointSlice list still on its way, it loaded every
// Service without endpoints (rejecting their traffic), then synced again. The dataplane records what
// each sync saw instead of programming the kernel: what is under test is the loop, not the kernel.
import t from 'tap';
import pino from 'pino';
import { Agent } from '../../src/agent/agent.js';
import type { Dataplane, DataplaneSync } from '../../src/services/dataplane.js';
import { SyncRunner } from '../../src/agent/sync-runner.js';
import { KubernetesSource } from '../../src/cluster/kubernetes.js';
import { parseOptions } from '../../src/cli/options.js';
import { FakeApiServer } from '../lib/fake-apiserver.js';
import { node, service, slice } from '../lib/manifests.js';

class RecordingDataplane implements Dataplane {
  readonly mode = 'nftables';
  readonly syncs: { kind: 'full' | 'partial'; services: number; endpoints: number }[] = [];
  async sync(state: Parameters<Dataplane['sync']>[0], _config: unknown, changed: Set<string> | 'full'): Promise<DataplaneSync> {
    const kind = changed === 'full' ? 'full' : 'partial';
    this.syncs.push({ kind, services: state.services.size, endpoints: state.endpointCount });
    return { kind, kernelMs: 0, messages: 0 };
  }
  invalidate(): void {}
  async cleanup(): Promise<void> {}
}

const settle = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

t.test('the runner remembers requests made before start() and syncs once started', async (t) => {
  const reasons: string[] = [];
  const runner = new SyncRunner(async (reason) => void reasons.push(reason), { minIntervalMs: 0, maxIntervalMs: 60_000 });
  t.teardown(() => runner.stop());
  runner.run();
  runner.run();
  await settle(50);
  t.same(reasons, [], 'no sync before start()');
  runner.start();
  await settle(50);
  t.same(reasons, ['requested'], 'the requests collapse into the first sync');
});

t.test('with the EndpointSlice list late, the first sync already has every endpoint', async (t) => {
  const api = await FakeApiServer.create();
  t.teardown(() => api.close());
  api.upsert(node('node-1', ['192.168.0.11']));
  for (let index = 1; index <= 3; index++) {
    api.upsert(service(`web-${index}`, `10.0.0.${index}`, [{ name: 'http', port: 80 }]));
    api.upsert(slice(`web-${index}`, [{ name: 'http', port: 8080 }], [{ ip: `10.244.0.${index}` }, { ip: `10.244.1.${index}` }, { ip: `10.244.2.${index}` }]));
  }
  api.listDelayMs.EndpointSlice = 300;

  const options = parseOptions(['--hostname-override', 'node-1', '--iptables-min-sync-period', '0s', '--healthz-bind-address', '', '--metrics-bind-address', '']);
  const dataplane = new RecordingDataplane();
  const agent = new Agent(options, dataplane, pino({ level: 'silent' }));
  const source = new KubernetesSource({ kubeconfig: api.kubeconfigPath(), nodeName: 'node-1' }, agent.handler());
  t.teardown(async () => {
    await source.stop();
    await agent.stop();
  });
  // What `kubenft` does (cli/commands.ts run()): start the source, wait for its first lists, start the loop.
  await source.start();
  await agent.whenSynced();
  agent.start();
  await settle(200);

  t.same(dataplane.syncs, [{ kind: 'full', services: 3, endpoints: 9 }], 'one first sync, with the Services and all their endpoints');
});
