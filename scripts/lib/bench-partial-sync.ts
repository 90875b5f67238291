// kubenft's incremental sync, as the benchmark drives it. Two implementations share one interface:
// the agent's NftablesProxier, and a minimal stand-in (one transaction flushing and rewriting the
// changed services' chains and swapping their map elements) that served before the proxier existed
// and still shows the floor a partial sync can reach. Choosing one is the table below.
import type { NftablesBackend, SyncTimings } from '../../src/backend/nftables.js';
import { NftablesProxier } from '../../src/agent/nftables-proxier.js';
import type { ProxyConfig } from '../../src/config.js';
import { type ServicePortPlan, assembleRuleset, planServicePort, withUniqueElements } from '../../src/plan/planner.js';
import type { NamedSet, SetElement, TableFamily } from '../../src/plan/ruleset.js';
import type { ClusterState } from '../../src/state/cluster-state.js';
import { servicePortViews } from '../../src/state/service-ports.js';
import type { PartialSyncerName } from './bench-types.js';

export interface PartialSyncReport extends SyncTimings {
  planMs: number;
}

export interface PartialSyncer {
  sync(state: ClusterState, config: ProxyConfig, changed: Set<string> | 'full'): Promise<PartialSyncReport>;
}

export const PARTIAL_SYNCERS: Record<PartialSyncerName, (backend: NftablesBackend) => PartialSyncer> = {
  proxier: (backend) => new NftablesProxier(backend),
  'single-service-transaction': (backend) => new SingleServiceTransaction(backend),
};

const elementKey = (element: SetElement) => element.key.join(' . ');

function planService(state: ClusterState, config: ProxyConfig, key: string): ServicePortPlan[] {
  return servicePortViews(state, key).map((view) => planServicePort(view, config));
}

/** Elements of `from` whose key is not among `without`'s, per shared set. */
function elementsMissing(from: ServicePortPlan, without: ServicePortPlan | undefined): Array<[string, SetElement[]]> {
  return Object.entries(from.elements).map(([setName, elements]) => {
    const kept = new Set((without?.elements[setName as keyof typeof without.elements] ?? []).map(elementKey));
    return [setName, elements.filter((element) => !kept.has(elementKey(element)))];
  });
}

/**
 * The stand-in. Simplification the benchmark can afford: a shared element (an endpoint address in
 * two services' hairpin set) is removed with the first service dropping it; the proxier counts
 * references instead.
 */
class SingleServiceTransaction implements PartialSyncer {
  private readonly plans = new Map<string, ServicePortPlan[]>();
  private readonly sets = new Map<TableFamily, Map<string, NamedSet>>();

  constructor(private readonly backend: NftablesBackend) {}

  async sync(state: ClusterState, config: ProxyConfig, changed: Set<string> | 'full'): Promise<PartialSyncReport> {
    return changed === 'full' ? this.fullSync(state, config) : this.partialSync(state, config, changed);
  }

  private async fullSync(state: ClusterState, config: ProxyConfig): Promise<PartialSyncReport> {
    const started = performance.now();
    this.plans.clear();
    for (const key of [...state.services.keys()].sort()) this.plans.set(key, planService(state, config, key));
    const ruleset = withUniqueElements(assembleRuleset([...this.plans.values()].flat(), config));
    for (const table of ruleset.tables) this.sets.set(table.family, new Map(table.sets.map((set) => [set.name, set])));
    const planMs = performance.now() - started;
    return { ...(await this.backend.replace(ruleset)), planMs };
  }

  private async partialSync(state: ClusterState, config: ProxyConfig, changed: Set<string>): Promise<PartialSyncReport> {
    const started = performance.now();
    const transaction = this.backend.newTransaction();
    const table = config.tableName;
    for (const key of changed) {
      const before = this.plans.get(key) ?? [];
      const after = planService(state, config, key);
      // Assumes the service kept its ports and families, which an endpoint change does.
      for (const [index, plan] of after.entries()) {
        const previous = before[index];
        const sets = this.sets.get(plan.family)!;
        for (const [setName, gone] of previous ? elementsMissing(previous, plan) : []) {
          if (gone.length > 0) transaction.deleteElements(plan.family, table, sets.get(setName)!, gone);
        }
        for (const chain of plan.chains) {
          transaction.addChain(plan.family, table, { name: chain.name, rules: [] });
          transaction.flushChain(plan.family, table, chain.name);
          for (const rule of chain.rules) transaction.addRule(plan.family, table, chain.name, rule);
        }
        for (const [setName, added] of elementsMissing(plan, previous)) {
          if (added.length > 0) transaction.addElements(plan.family, table, sets.get(setName)!, added);
        }
      }
      this.plans.set(key, after);
    }
    const planMs = performance.now() - started;
    return { ...(await this.backend.commit(transaction, performance.now())), planMs };
  }
}
