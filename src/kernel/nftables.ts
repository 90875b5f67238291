import { type NftFamily, type Table, type TableFamily, tableKey } from './ruleset.js';
import { type CommitResult, type Dump, type KernelError, type NftablesKernel, native } from './native.js';
import { NFPROTO } from './uapi.js';
import { NftTransaction } from './nft-transaction.js';
import { WireWriter } from './wire.js';

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
  /**
   * From the start of the write to the kernel's last answer. Without stages it is serializeMs +
   * encodeMs + kernelMs; a staged load overlaps them.
   */
  wallMs: number;
}

interface TableId {
  family: NftFamily;
  name: string;
}

export class NftablesBackend {
  /**
   * `tableName`: the table that carries the generation mark and that dump reads by default.
   * `ownedTables`: every table name this backend owns in either family, which a full replace and
   * cleanup delete (the owner's planner knows them: services spreads itself over numbered tables).
   */
  constructor(
    readonly tableName = 'kubenft',
    private readonly ownedTables: readonly string[] = [tableName],
    private readonly kernel?: NftablesKernel,
  ) {}

  /** Loaded on first use, so that `render`, which programs nothing, needs no built addon. */
  private get addon(): NftablesKernel {
    return this.kernel ?? native();
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
   * The owned tables (for services: under any service-table setting) that exist now. A full sync
   * deletes only those: a table created and deleted in one transaction stays in the kernel's table
   * list until the commit, and the kernel finds the table of every message by walking that list
   * and comparing names, so adding and deleting all 130 possible names cost a 10k-service load 75 ms.
   */
  private async loadedTables(): Promise<TableId[]> {
    const ours = new Set(this.ownedTables);
    return this.existingTables((_, name) => ours.has(name));
  }

  /** The ip and ip6 tables loaded now that `wanted` picks. */
  private async existingTables(wanted: (family: TableFamily, name: string) => boolean): Promise<TableId[]> {
    const loaded: TableId[] = [];
    for (const { family, name } of await this.addon.tables()) {
      const tableFamily = FAMILIES.find((candidate) => NFPROTO[candidate] === family);
      if (tableFamily !== undefined && wanted(tableFamily, name)) loaded.push({ family: tableFamily, name });
    }
    return loaded;
  }

  /** Each table is created before it is deleted, which keeps the delete valid if it is gone already. */
  private static deleteTables(transaction: NftTransaction, tables: TableId[]): void {
    for (const { family, name } of tables) {
      transaction.addTable(family, name);
      transaction.deleteTable(family, name);
    }
  }

  /**
   * Replaces kubenft's tables with the given ruleset in one transaction: since the whole batch
   * commits atomically, packets never see a moment without rules. With none of them loaded (a
   * node's first sync) it loads in stages instead, all or nothing too: see loadInStages.
   *
   * A table may come more than once: the first time whole, later with more chains, sets and
   * elements (the sets it had already are re-declared, which the kernel accepts), so that a table
   * every service contributes to need not wait for the last service.
   */
  async replace(tables: Iterable<Table>): Promise<SyncTimings> {
    const started = performance.now();
    const loaded = await this.loadedTables();
    if (loaded.length === 0) return this.loadInStages(tables, started);
    const transaction = this.newTransaction();
    NftablesBackend.deleteTables(transaction, loaded);
    for (const table of tables) writeTable(transaction, table);
    return this.commit(transaction, started);
  }

  /**
   * Loads each table dormant (its base chains hooked nowhere) in a transaction of its own, so that
   * the addon encodes and the kernel loads one table while TypeScript serializes the next (10k
   * services: ~0.6 s in one transaction, 0.41 s in stages); then one transaction wakes them all.
   * Packets see nothing until that last, small batch is processed (hooks are registered as it is,
   * table by table, within microseconds), then everything. If the kernel refuses a table (or the
   * planning fails half way), the ones loaded are deleted: nothing stays, as with one transaction.
   */
  private async loadInStages(planned: Iterable<Table>, started: number): Promise<SyncTimings> {
    const stages: { transaction: NftTransaction; committed: Promise<CommitResult> }[] = [];
    const tables: TableId[] = [];
    // One buffer for every stage: a buffer per table made V8 count 0.5 GB of external memory at
    // 100k services, and the full GCs that triggered took 1.5 s.
    const writer = new WireWriter();
    let serializeMs = 0;
    try {
      const written = new Set<string>();
      for (const table of planned) {
        const key = tableKey(table.family, table.name);
        if (!written.has(key)) tables.push(table);
        written.add(key);
        const serializing = performance.now();
        const transaction = new NftTransaction(this.addon.attributes, writer);
        writeTable(transaction, table, { dormant: true });
        const buffer = transaction.finish();
        serializeMs += performance.now() - serializing;
        stages.push({ transaction, committed: this.addon.commit(buffer) });
      }
      const outcomes = await Promise.allSettled(stages.map((stage) => stage.committed));
      const refused = outcomes.findIndex((outcome) => outcome.status === 'rejected');
      if (refused >= 0) throw rejection(stages[refused].transaction, (outcomes[refused] as PromiseRejectedResult).reason);
      const activation = this.newTransaction();
      for (const { family, name } of tables) activation.addTableDormant(family, name, false);
      const activated = await this.commit(activation, performance.now());
      const committed = outcomes.map((outcome) => (outcome as PromiseFulfilledResult<CommitResult>).value).concat(activated);
      const total = (field: 'messages' | 'bytes' | 'encodeMs' | 'kernelMs') => committed.reduce((sum, result) => sum + result[field], 0);
      return {
        generation: activated.generation, serializeMs, wallMs: performance.now() - started,
        messages: total('messages'), bytes: total('bytes'), encodeMs: total('encodeMs'), kernelMs: total('kernelMs'),
      };
    } catch (error) {
      // Whatever failed (planning, a table, the activation), nothing of this load stays.
      await Promise.allSettled(stages.map((stage) => stage.committed));
      const rollback = new NftTransaction(this.addon.attributes);
      NftablesBackend.deleteTables(rollback, tables);
      await this.addon.commit(rollback.finish());
      throw error;
    }
  }

  /**
   * Replaces one table whole in one transaction (declared, deleted, loaded again, so that it need
   * not exist before): packets see either the old rules or the new ones, never none.
   */
  replaceTable(table: Table<NftFamily>): Promise<SyncTimings> {
    const transaction = new NftTransaction(this.addon.attributes);
    NftablesBackend.deleteTables(transaction, [table]);
    writeTable(transaction, table);
    return this.commit(transaction, performance.now());
  }

  /** Deletes one table, if it exists. */
  async deleteTable(family: NftFamily, name: string): Promise<void> {
    const transaction = new NftTransaction(this.addon.attributes);
    NftablesBackend.deleteTables(transaction, [{ family, name }]);
    await this.commit(transaction, performance.now());
  }

  /** Removes everything kubenft loaded in this network namespace; returns the tables, as "family name". */
  async cleanup(): Promise<string[]> {
    return this.deleteExisting(await this.loadedTables());
  }

  /** Deletes those of the given ip and ip6 tables that exist, in one transaction; returns them, as "family name". */
  async deleteTablesIfPresent(tables: readonly { family: TableFamily; name: string }[]): Promise<string[]> {
    const wanted = new Set(tables.map(({ family, name }) => tableKey(family, name)));
    return this.deleteExisting(await this.existingTables((family, name) => wanted.has(tableKey(family, name))));
  }

  private async deleteExisting(tables: TableId[]): Promise<string[]> {
    if (tables.length === 0) return [];
    // Without the generation mark, whose create-if-missing would leave an empty kubenft table behind.
    const transaction = new NftTransaction(this.addon.attributes);
    NftablesBackend.deleteTables(transaction, tables);
    await this.commit(transaction, performance.now());
    return tables.map(({ family, name }) => `${family} ${name}`);
  }

  async commit(transaction: NftTransaction, started: number): Promise<SyncTimings> {
    const buffer = transaction.finish();
    const serializeMs = performance.now() - started;
    try {
      const result = await this.addon.commit(buffer);
      return { ...result, serializeMs, wallMs: performance.now() - started };
    } catch (error) {
      throw rejection(transaction, error);
    }
  }
}

/** A kernel error, named after the object of the message it refused when it names one. */
function rejection(transaction: NftTransaction, error: unknown): unknown {
  const kernel = error as KernelError;
  if (kernel.index === undefined) return error;
  const object = transaction.describe(kernel.index);
  return new TransactionError(`kernel rejected the transaction at ${object}: ${kernel.message}`, kernel.errno, object);
}

export function writeTable(transaction: NftTransaction, table: Table<NftFamily>, { dormant = false } = {}): void {
  const { family, name } = table;
  if (dormant) transaction.addTableDormant(family, name, true);
  else transaction.addTable(family, name);
  for (const set of table.sets) transaction.addSet(family, name, set);
  for (const chain of table.chains) transaction.addChain(family, name, chain);
  // Map elements may jump to chains, so they come after every chain exists.
  for (const set of table.sets) if (set.elements.length > 0) transaction.addElements(family, name, set, set.elements);
  for (const chain of table.chains) {
    for (const rule of chain.rules) transaction.addRule(family, name, chain.name, rule);
  }
}
