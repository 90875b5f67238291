import type { ProxyConfig } from '../config.js';
import { NftablesBackend, type SyncTimings, writeTable } from '../backend/nftables.js';
import type { NftTransaction } from '../backend/nft-transaction.js';
import { SHARED_SETS, type ServicePortPlan, type TableContribution, assembleRuleset, contributions, endsEvaluation, planServicePort, skeletonOf } from '../plan/planner.js';
import type { Chain, NamedSet, SetElement, Table, TableFamily } from '../plan/ruleset.js';
import type { ClusterState } from '../state/cluster-state.js';
import { servicePortViews } from '../state/service-ports.js';

// Keeps what is loaded in memory so that a partial sync can rewrite only the changed services:
// their chains (flushed and refilled, or created/deleted), their own sets, and their elements of
// the shared maps (diffed). Shared elements can belong to several services (an endpoint in two
// services' hairpin sets, a ClusterIP with several ports), so each is reference-counted.

export interface TableShape {
  family: TableFamily;
  name: string;
  chains: Map<string, number>;
  sets: Map<string, number | undefined>;
}

export interface ProxierSyncResult extends SyncTimings {
  kind: 'full' | 'partial';
  planMs: number;
  /** Service ports written in this transaction. */
  servicePorts: number;
  messages: number;
  /** Tables the transaction changed (a partial sync's kernel time grows with their size). */
  tables: number;
  /** A partial sync's second transaction, after the change is in force: removal of dead weight. */
  cleanupMs?: number;
}

/**
 * What a partial sync needs to remember of a service port's objects in one table: names, counts
 * and its shared elements — not its rules, which at 100k services would be most of the agent's
 * memory.
 */
interface LoadedContribution {
  table: string;
  chains: { name: string; rules: number }[];
  sets: { name: string; elements: number | undefined }[];
  elements: TableContribution['elements'];
}

interface LoadedPlan {
  family: TableFamily;
  parts: LoadedContribution[];
}

const remembered = (plan: ServicePortPlan): LoadedPlan => ({
  family: plan.family,
  parts: contributions(plan).map((part) => ({
    table: part.table,
    chains: part.chains.map((chain) => ({ name: chain.name, rules: chain.rules.length })),
    sets: part.sets.map((set) => ({ name: set.name, elements: set.dynamicTimeoutSeconds ? undefined : set.elements.length })),
    elements: part.elements,
  })),
});

interface SharedElement {
  element: SetElement;
  owners: number;
}

const elementKey = (element: SetElement) => element.key.join(' . ');
const tableKey = (family: TableFamily, name: string) => `${family} ${name}`;

class LoadedTable {
  /** Shared set name → element key → element and how many service ports hold it. */
  readonly shared = new Map<string, Map<string, SharedElement>>();
  readonly sets: Map<string, NamedSet>;
  constructor(readonly skeleton: Table) {
    this.sets = new Map(skeleton.sets.map((set) => [set.name, set]));
  }
}

/** Each service port's contributions to one table, before and after a change. */
interface TableChange {
  family: TableFamily;
  table: string;
  before: LoadedContribution[];
  after: TableContribution[];
}

export class NftablesProxier {
  private readonly plans = new Map<string, LoadedPlan[]>();
  /** Loaded tables by family and name. */
  private tables = new Map<string, LoadedTable>();
  private loaded = false;
  /** The ruleset generation of our last commit: any other generation means someone else committed. */
  generation: number | undefined;

  constructor(
    private readonly backend = new NftablesBackend(),
  ) {}

  /** A full sync replaces every table; a partial one touches only the given services. */
  async sync(state: ClusterState, config: ProxyConfig, changed: Set<string> | 'full'): Promise<ProxierSyncResult> {
    if (changed === 'full' || !this.loaded) return this.fullSync(state, config);
    return this.partialSync(state, config, changed);
  }

  /**
   * What should be loaded, in the terms a dump can check cheaply: every chain with its number of
   * rules, every set with its number of elements (undefined for sets the packet path fills).
   */
  expectedShape(): TableShape[] {
    const shapes = new Map<string, TableShape>();
    for (const [key, table] of this.tables) {
      const { family, name, chains, sets } = table.skeleton;
      const shape: TableShape = { family, name, chains: new Map(chains.map((chain) => [chain.name, chain.rules.length])), sets: new Map() };
      for (const set of sets) shape.sets.set(set.name, table.shared.get(set.name)?.size ?? set.elements.length);
      shapes.set(key, shape);
    }
    for (const plan of [...this.plans.values()].flat()) {
      for (const part of plan.parts) {
        const shape = shapes.get(tableKey(plan.family, part.table))!;
        for (const chain of part.chains) shape.chains.set(chain.name, chain.rules);
        for (const set of part.sets) shape.sets.set(set.name, set.elements);
      }
    }
    return [...shapes.values()];
  }

  /** After a failure nothing is known about what is loaded; the next sync must be full. */
  invalidate(): void {
    this.loaded = false;
  }

  private async fullSync(state: ClusterState, config: ProxyConfig): Promise<ProxierSyncResult> {
    const started = performance.now();
    this.loaded = false;
    const plans = new Map<string, ServicePortPlan[]>();
    for (const key of [...state.services.keys()].sort()) plans.set(key, servicePortViews(state, key).map((view) => planServicePort(view, config)));
    const allPlans = [...plans.values()].flat();
    const ruleset = assembleRuleset(allPlans, config);
    const tables = new Map(ruleset.tables.map((table) => [tableKey(table.family, table.name), new LoadedTable(skeletonOf(table.family, table.name, config))]));
    for (const plan of allPlans) {
      for (const part of contributions(plan)) {
        const table = tables.get(tableKey(plan.family, part.table))!;
        for (const [setName, elements] of Object.entries(part.elements)) for (const element of elements) this.retain(table, setName, element);
      }
    }
    // The reference counts already know each shared element once: load exactly those.
    for (const table of ruleset.tables) {
      const loaded = tables.get(tableKey(table.family, table.name))!;
      for (const set of table.sets) {
        const shared = loaded.shared.get(set.name);
        if (shared) set.elements = [...shared.values()].map((entry) => entry.element);
      }
    }
    const planMs = performance.now() - started;
    const timings = await this.backend.replace(ruleset);
    this.generation = timings.generation;
    this.plans.clear();
    for (const [key, value] of plans) this.plans.set(key, value.map(remembered));
    this.tables = tables;
    this.loaded = true;
    return { ...timings, kind: 'full', planMs, servicePorts: allPlans.length, tables: ruleset.tables.length };
  }

  /** Counts one more owner of a shared element; true when it is new (so it must be added). */
  private retain(table: LoadedTable, setName: string, element: SetElement): boolean {
    let elements = table.shared.get(setName);
    if (!elements) table.shared.set(setName, (elements = new Map()));
    const key = elementKey(element);
    const existing = elements.get(key);
    if (existing) {
      existing.owners++;
      return false;
    }
    elements.set(key, { element, owners: 1 });
    return true;
  }

  /** Counts one owner less; true when none is left (so it must be deleted). */
  private release(table: LoadedTable, setName: string, element: SetElement): boolean {
    const elements = table.shared.get(setName)!;
    const key = elementKey(element);
    const existing = elements.get(key)!;
    if (--existing.owners > 0) return false;
    elements.delete(key);
    return true;
  }

  private async partialSync(state: ClusterState, config: ProxyConfig, changed: Set<string>): Promise<ProxierSyncResult> {
    const started = performance.now();
    const transaction = this.backend.newTransaction();
    const cleanup = this.backend.newTransaction();
    const emptySize = transaction.messageCount;
    const next = new Map<string, ServicePortPlan[]>();
    const changes = new Map<string, TableChange>();
    const changeOf = (family: TableFamily, table: string): TableChange => {
      const key = tableKey(family, table);
      let change = changes.get(key);
      if (!change) changes.set(key, (change = { family, table, before: [], after: [] }));
      return change;
    };
    let servicePorts = 0;
    for (const key of changed) {
      const plans = servicePortViews(state, key).map((view) => planServicePort(view, config));
      next.set(key, plans);
      servicePorts += plans.length;
      for (const plan of this.plans.get(key) ?? []) for (const part of plan.parts) changeOf(plan.family, part.table).before.push(part);
      for (const plan of plans) for (const part of contributions(plan)) changeOf(plan.family, part.table).after.push(part);
    }
    for (const change of changes.values()) {
      if (!this.tables.has(tableKey(change.family, change.table)) && change.table === config.tableName) {
        // A first service of a new family: its main table does not exist yet, so this must be a full sync.
        return this.fullSync(state, config);
      }
    }
    for (const change of changes.values()) this.writeChange(transaction, cleanup, change, config);
    const planMs = performance.now() - started;
    if (transaction.messageCount === emptySize) {
      return { kind: 'partial', planMs, servicePorts, messages: 0, bytes: 0, encodeMs: 0, kernelMs: 0, serializeMs: 0, tables: 0, cleanupMs: 0 };
    }
    try {
      const timings = await this.backend.commit(transaction, performance.now());
      this.generation = timings.generation;
      for (const [key, plans] of next) {
        if (plans.length > 0) this.plans.set(key, plans.map(remembered));
        else this.plans.delete(key);
      }
      const cleanupStarted = performance.now();
      if (cleanup.messageCount > emptySize) this.generation = (await this.backend.commit(cleanup, cleanupStarted)).generation;
      const tables = [...changes.values()].filter((change) => change.before.length + change.after.length > 0).length;
      return { ...timings, kind: 'partial', planMs, servicePorts, tables, cleanupMs: performance.now() - cleanupStarted };
    } catch (error) {
      this.invalidate();
      throw error;
    }
  }

  /**
   * One table's part of a partial sync, ordered so every reference stays valid: elements that
   * point at chains go first, chains are flushed before they (or the sets their rules use) are
   * deleted, and new chains exist before rules and elements refer to them. A service table that
   * gets its first service is created here.
   *
   * Any deletion makes the kernel's commit wait about 15 ms (measured: the process sleeps, it
   * does not compute), whatever the table size. So what only leaves dead weight behind — rules a
   * new cascade in front of them makes unreachable, hairpin pairs of endpoints that are gone —
   * goes to `cleanup`, a second transaction committed after the change is in force.
   */
  private writeChange(transaction: NftTransaction, cleanup: NftTransaction, { family, table: tableName, before, after }: TableChange, config: ProxyConfig): void {
    let table = this.tables.get(tableKey(family, tableName));
    if (!table) {
      table = new LoadedTable(skeletonOf(family, tableName, config));
      this.tables.set(tableKey(family, tableName), table);
      writeTable(transaction, table.skeleton);
    }
    const removed = new Map<string, SetElement[]>();
    const added = new Map<string, SetElement[]>();
    // Retain the new elements before releasing the old ones, so an element the change keeps never
    // drops to zero owners and is neither deleted nor re-added.
    for (const part of after) {
      for (const [setName, elements] of Object.entries(part.elements)) {
        for (const element of elements) if (this.retain(table, setName, element)) push(added, setName, element);
      }
    }
    for (const part of before) {
      for (const [setName, elements] of Object.entries(part.elements)) {
        for (const element of elements) if (this.release(table, setName, element)) push(removed, setName, element);
      }
    }
    for (const [setName, element] of changedVerdicts(before, after)) {
      // Same key, new verdict (e.g. a traffic policy moved the entry to another chain): replace it.
      table.shared.get(setName)!.get(elementKey(element))!.element = element;
      push(removed, setName, element);
      push(added, setName, element);
    }
    for (const [setName, elements] of removed) {
      // A hairpin pair of a removed endpoint matches no packet that needs it: remove it afterwards.
      const when = setName === SHARED_SETS.hairpin ? cleanup : transaction;
      if (elements.length > 0) when.deleteElements(family, tableName, table.sets.get(setName)!, elements);
    }

    const oldChains = new Set(before.flatMap((part) => part.chains).map((chain) => chain.name));
    const newChains = new Map<string, Chain>(after.flatMap((part) => part.chains).map((chain) => [chain.name, chain]));
    const oldSets = new Set(before.flatMap((part) => part.sets).map((set) => set.name));
    const newSets = after.flatMap((part) => part.sets);
    // Old rules left in place must keep every chain and set they refer to.
    const keepsReferences = [...oldChains].every((name) => newChains.has(name)) && [...oldSets].every((name) => newSets.some((set) => set.name === name));
    const shadowed = keepsReferences
      ? [...newChains.values()].filter((chain) => oldChains.has(chain.name) && chain.rules.length > 0 && endsEvaluation(chain.rules.at(-1)!))
      : [];
    for (const name of oldChains) if (!shadowed.some((chain) => chain.name === name)) transaction.flushChain(family, tableName, name);
    for (const name of oldChains) if (!newChains.has(name)) transaction.deleteChain(family, tableName, name);
    for (const name of oldSets) if (!newSets.some((set) => set.name === name)) transaction.deleteSet(family, tableName, name);
    for (const set of newSets) if (!oldSets.has(set.name)) transaction.addSet(family, tableName, set);
    for (const set of newSets) {
      // Dynamic sets that stay keep what the packet path put in them (ClientIP affinity survives an
      // endpoint change elsewhere); planned elements are rewritten.
      if (oldSets.has(set.name) && !set.dynamicTimeoutSeconds) transaction.flushSet(family, tableName, set);
      if (set.elements.length > 0) transaction.addElements(family, tableName, set, set.elements);
    }
    for (const chain of newChains.values()) if (!oldChains.has(chain.name)) transaction.addChain(family, tableName, chain);
    for (const chain of newChains.values()) {
      if (shadowed.includes(chain)) {
        // In front of the old rules, which it makes unreachable; the cleanup then rewrites the chain.
        for (const rule of [...chain.rules].reverse()) transaction.prependRule(family, tableName, chain.name, rule);
        cleanup.flushChain(family, tableName, chain.name);
        for (const rule of chain.rules) cleanup.addRule(family, tableName, chain.name, rule);
      } else {
        for (const rule of chain.rules) transaction.addRule(family, tableName, chain.name, rule);
      }
    }
    for (const [setName, elements] of added) transaction.addElements(family, tableName, table.sets.get(setName)!, elements);
  }
}

const verdictText = (element: SetElement) => JSON.stringify(element.verdict ?? null);

/** Map elements whose key a service keeps but whose verdict it changes. */
function changedVerdicts(before: LoadedContribution[], after: TableContribution[]): [string, SetElement][] {
  const previous = new Map<string, SetElement>();
  for (const part of before) {
    for (const [setName, elements] of Object.entries(part.elements)) for (const element of elements) previous.set(`${setName} ${elementKey(element)}`, element);
  }
  return after.flatMap((part) => Object.entries(part.elements).flatMap(([setName, elements]) => elements.flatMap((element): [string, SetElement][] => {
    const old = previous.get(`${setName} ${elementKey(element)}`);
    return old && verdictText(old) !== verdictText(element) ? [[setName, element]] : [];
  })));
}

function push<K, V>(map: Map<K, V[]>, key: K, value: V): void {
  const list = map.get(key);
  if (list) list.push(value);
  else map.set(key, [value]);
}
