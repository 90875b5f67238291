import type { Ruleset, Table, TableFamily } from '../plan/ruleset.js';
import { type CommitResult, type Dump, type KernelError, type NativeAddon, native } from './native.js';
import { NFPROTO } from './uapi.js';
import { NftTransaction } from './nft-transaction.js';
import { allTableNames } from '../plan/planner.js';

const FAMILIES: TableFamily[] = ['ip', 'ip6'];

/** A kernel rejection, naming the object of the failing message. */
export class TransactionError extends Error {
  constructor(
    message: string,
    readonly errno: number | undefined,
    readonly object: string | undefined,
  ) {
    super(message);
  }
}

export interface SyncTimings extends CommitResult {
  /** Time to turn the ruleset into the wire format, in TypeScript. */
  serializeMs: number;
}

export class NftablesBackend {
  constructor(
    readonly tableName = 'kubenft',
    private readonly injectedAddon?: NativeAddon,
  ) {}

  /** Loaded on first use, so that `render`, which programs nothing, needs no built addon. */
  private get addon(): NativeAddon {
    return this.injectedAddon ?? native();
  }

  newTransaction(): NftTransaction {
    const transaction = new NftTransaction(this.addon.attributes);
    transaction.markGeneration('ip', this.tableName);
    return transaction;
  }

  /** Hands the memory a large sync left behind back to the system: JS heap pages and glibc's. */
  releaseMemory(): void {
    this.addon.compactJsHeap();
    this.addon.trimNativeHeap();
  }

  /** The kernel's current ruleset generation (it changes with every commit, anyone's). */
  generation(): Promise<number> {
    return this.addon.generation();
  }

  /** What is loaded in one of kubenft's tables, or null when it does not exist. */
  dump(family: TableFamily, table = this.tableName): Promise<Dump | null> {
    return this.addon.dump(NFPROTO[family], table);
  }

  /**
   * Deletes the tables kubenft may own (under any service-table setting) that exist now. Only
   * those: a table created and deleted in one transaction stays in the kernel's table list until
   * the commit, and the kernel finds the table of every message by walking that list and comparing
   * names, so adding and deleting all 130 possible names cost a 10k-service load 75 ms. Each is
   * still created before it is deleted, which keeps the delete valid if it vanished meanwhile.
   */
  private async deleteLoaded(transaction: NftTransaction): Promise<void> {
    const ours = new Set(allTableNames({ tableName: this.tableName }));
    for (const { family, name } of await this.addon.tables()) {
      const tableFamily = FAMILIES.find((candidate) => NFPROTO[candidate] === family);
      if (tableFamily === undefined || !ours.has(name)) continue;
      transaction.addTable(tableFamily, name);
      transaction.deleteTable(tableFamily, name);
    }
  }

  /**
   * Replaces kubenft's tables with the given ruleset in one transaction: since the whole batch
   * commits atomically, packets never see a moment without rules.
   */
  async replace(ruleset: Ruleset): Promise<SyncTimings> {
    const started = performance.now();
    const transaction = this.newTransaction();
    await this.deleteLoaded(transaction);
    for (const table of ruleset.tables) writeTable(transaction, table);
    return this.commit(transaction, started);
  }

  /** Removes everything kubenft loaded in this network namespace. */
  async cleanup(): Promise<void> {
    const transaction = this.newTransaction();
    await this.deleteLoaded(transaction);
    await this.commit(transaction, performance.now());
  }

  async commit(transaction: NftTransaction, started: number): Promise<SyncTimings> {
    const buffer = transaction.finish();
    const serializeMs = performance.now() - started;
    try {
      return { ...(await this.addon.commit(buffer)), serializeMs };
    } catch (error) {
      const kernel = error as KernelError;
      if (kernel.index === undefined) throw error;
      const object = transaction.describe(kernel.index);
      throw new TransactionError(`kernel rejected the transaction at ${object}: ${kernel.message}`, kernel.errno, object);
    }
  }
}

export function writeTable(transaction: NftTransaction, table: Table): void {
  const { family, name } = table;
  transaction.addTable(family, name);
  for (const set of table.sets) transaction.addSet(family, name, set);
  for (const chain of table.chains) transaction.addChain(family, name, chain);
  // Map elements may jump to chains, so they come after every chain exists.
  for (const set of table.sets) if (set.elements.length > 0) transaction.addElements(family, name, set, set.elements);
  for (const chain of table.chains) {
    for (const rule of chain.rules) transaction.addRule(family, name, chain.name, rule);
  }
}
