// The extension point for dataplanes beside the rules: kinds they register are validated and kept,
// each good sync hands them the changed services and kinds, and one failing update stays its own.
// The rules' dataplane records syncs instead of programming the kernel: what is under test is the
// agent's hand-over, not the kernel.
import t from 'tap';
import pino from 'pino';
import type { Registry } from 'prom-client';
import { Agent } from '../../src/agent/agent.js';
import type { Dataplane, DataplaneSync } from '../../src/services/dataplane.js';
import type { StateChanges, StateDataplane } from '../../src/capability.js';
import { parseOptions } from '../../src/cli/options.js';
import type { ClusterState, KubeObject } from '../../src/cluster/cluster-state.js';
import { ObjectError } from '../../src/cluster/model.js';
import { service } from '../lib/manifests.js';

class RecordingRules implements Dataplane {
  readonly mode = 'nftables';
  async sync(_state: unknown, _config: unknown, changed: Set<string> | 'full'): Promise<DataplaneSync> {
    return { kind: changed === 'full' ? 'full' : 'partial', kernelMs: 0, messages: 0 };
  }
  invalidate(): void {}
  async cleanup(): Promise<void> {}
}

/** Keeps Namespaces by name, refusing one without a name; fails its update when told to. */
class NamespaceDataplane implements StateDataplane {
  readonly name = 'namespaces';
  updates: { services: string[] | 'full'; kinds: string[]; namespaces: string[] }[] = [];
  failNext = false;
  stopped = false;
  attach(state: ClusterState, _registry: Registry): void {
    state.registerKind('Namespace', (object: KubeObject) => {
      if (!object.metadata?.name) throw new ObjectError('Namespace', undefined, undefined, 'no name');
      return { name: object.metadata.name };
    });
  }
  async update(state: ClusterState, changes: StateChanges): Promise<void> {
    if (this.failNext) {
      this.failNext = false;
      throw new Error('serving failed');
    }
    this.updates.push({
      services: changes.services === 'full' ? 'full' : [...changes.services],
      kinds: [...changes.kinds],
      namespaces: [...state.objectsOf<{ name: string }>('Namespace').values()].map((namespace) => namespace.name),
    });
  }
  async stop(): Promise<void> {
    this.stopped = true;
  }
}

const namespace = (name?: string): KubeObject => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name } });

t.test('a dataplane beside the rules gets the synced state, its kinds, and keeps its failures to itself', async (t) => {
  const options = parseOptions(['--hostname-override', 'node-1', '--healthz-bind-address', '', '--metrics-bind-address', '']);
  const beside = new NamespaceDataplane();
  const agent = new Agent(options, new RecordingRules(), pino({ level: 'silent' }), [beside]);
  const handler = agent.handler();
  t.same(agent.state.kinds.includes('Namespace'), true, 'the registered kind is one the sources read');

  handler.apply(namespace('team-a'));
  handler.apply(namespace());
  t.ok(agent.rejected.has('Namespace//'), 'an invalid object of a registered kind is rejected by its normalizer');
  handler.apply(service('web', '10.0.0.10', [{ port: 80 }]));
  await agent.sync();
  t.same(beside.updates.at(-1), { services: 'full', kinds: ['Namespace'], namespaces: ['team-a'] }, 'the first sync is full, with the kinds that changed');

  handler.apply(service('api', '10.0.0.11', [{ port: 80 }]));
  await agent.sync();
  t.same(beside.updates.at(-1), { services: ['default/api'], kinds: [], namespaces: ['team-a'] }, 'a partial sync names the changed services');

  beside.failNext = true;
  handler.delete(namespace('team-a'));
  const report = await agent.sync();
  t.equal(report.kind, 'partial', 'a failing dataplane beside the rules does not fail the rules\' sync');
  const failures = await agent.metrics.registry.getSingleMetricAsString('kubenft_state_dataplane_update_failures_total');
  t.match(failures, /kubenft_state_dataplane_update_failures_total\{dataplane="namespaces"\} 1/, 'the failure is counted by dataplane');

  await agent.sync();
  t.same(beside.updates.at(-1), { services: 'full', kinds: [], namespaces: [] }, 'after a failure the next update is full');

  await agent.stop();
  t.ok(beside.stopped, 'stopping the agent stops the dataplanes beside the rules');
});
