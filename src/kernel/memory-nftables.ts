import { constants } from 'node:os';
import type { CommitResult, Dump, DumpedExpression, DumpedSet, KernelError, KernelFailure, NativeAttributes, NftablesKernel } from './native.js';
import { NFT_MSG, NLM_F } from './uapi.js';
import { type AttributeNames, type WireAttributes, type WireMessage, attributeNames, readTransaction } from './wire.js';

// nftables in memory: the addon's transactions applied with the kernel's semantics, for what needs
// the kernel's answer without a kernel (the planner's tables as they would be loaded, the services
// tests without root). Its contract is held to the real kernel by the suite that runs against both
// (test/lib/services-dataplane-suite.ts):
// - a batch is all or nothing: one refused message and nothing of the batch stays (every message
//   is still tried, as the kernel does, so that every failure is reported);
// - creating what exists is fine unless asked exclusively or it differs (an element with another
//   verdict, a set of another type): EEXIST; deleting or flushing what does not exist, or adding
//   into it, is ENOENT; deleting a chain something jumps to, or a set a rule looks up, is EBUSY;
// - deleting a table deletes everything in it; deleting a chain deletes its rules.
// What it does not model: packets (dynamic sets stay as loaded), hooks of other tables, expiry.

interface MemoryChain {
  name: string;
  handle: number;
  base?: { hooknum: number; prio: number; policy: number; type: string };
}

interface MemoryRule {
  chain: string;
  handle: number;
  expressions: DumpedExpression[];
}

type MemoryElement = DumpedSet['elements'][number];

interface MemorySet extends Omit<DumpedSet, 'elements'> {
  elements: Map<string, MemoryElement>;
}

interface MemoryTable {
  family: number;
  name: string;
  flags: number;
  handle: number;
  /** The table's handle generator: chains, sets and rules are numbered per table, as the kernel does. */
  nextHandle: number;
  chains: Map<string, MemoryChain>;
  sets: Map<string, MemorySet>;
  /** Every rule of the table, each chain's in its order. */
  rules: MemoryRule[];
}

/** A refusal, as the kernel answers a message: its errno. */
class Refusal extends Error {
  constructor(readonly errno: number) {
    super();
  }
}

const ERRNO_TEXT: Record<number, string> = {
  [constants.errno.EEXIST]: 'File exists',
  [constants.errno.ENOENT]: 'No such file or directory',
  [constants.errno.EBUSY]: 'Device or resource busy',
  [constants.errno.EINVAL]: 'Invalid argument',
};
const ERRNO_NAME = new Map(Object.entries(constants.errno).map(([name, errno]) => [errno, name]));

const { EEXIST, ENOENT, EBUSY, EINVAL } = constants.errno;

const tableKey = (family: number, name: string) => `${family} ${name}`;
const hex = (value: Buffer | undefined) => value?.toString('hex');

const copyTable = (table: MemoryTable): MemoryTable => ({
  ...table,
  chains: new Map(table.chains),
  sets: new Map([...table.sets].map(([name, set]) => [name, { ...set, elements: new Map(set.elements) }])),
  rules: [...table.rules],
});

/** The chain a verdict (of a rule's immediate, or of a map element) jumps or goes to. */
const jumpTargets = (table: MemoryTable): string[] => [
  ...table.rules.flatMap((rule) => rule.expressions.filter((expression) => expression.name === 'immediate' && typeof expression.attrs.chain === 'string').map((expression) => expression.attrs.chain as string)),
  ...[...table.sets.values()].flatMap((set) => [...set.elements.values()].flatMap((element) => (element.chain === undefined ? [] : [element.chain]))),
];

/** The sets the table's rules look up or update. */
const boundSets = (table: MemoryTable): string[] =>
  table.rules.flatMap((rule) => rule.expressions.flatMap((expression) => {
    const set = expression.attrs.set ?? expression.attrs.setName;
    return typeof set === 'string' ? [set] : [];
  }));

export class MemoryNftables implements NftablesKernel {
  private tablesByKey = new Map<string, MemoryTable>();
  private currentGeneration = 1;
  private nextTableHandle = 1;
  private readonly names: AttributeNames;

  constructor(readonly attributes: NativeAttributes) {
    this.names = attributeNames(attributes);
  }

  /** Applies a transaction (the addon's wire format) at once, all or nothing; throws the addon's KernelError on a refusal. */
  apply(transaction: Buffer): CommitResult {
    const messages = readTransaction(transaction, this.names);
    const working = new Map([...this.tablesByKey].map(([key, table]) => [key, copyTable(table)]));
    const failures: KernelFailure[] = [];
    messages.forEach((message, index) => {
      try {
        this.applyMessage(working, message);
      } catch (error) {
        if (!(error instanceof Refusal)) throw error;
        failures.push({ index, errno: error.errno, code: ERRNO_NAME.get(error.errno) ?? `E${error.errno}`, message: ERRNO_TEXT[error.errno] });
      }
    });
    if (failures.length > 0) {
      const [first] = failures;
      const more = failures.length > 1 ? `; ${failures.length - 1} more message(s) failed` : '';
      throw Object.assign(new Error(`kernel rejected message ${first.index}: ${first.message}${more}`), { errno: first.errno, code: first.code, index: first.index, failures }) as KernelError;
    }
    this.tablesByKey = working;
    if (messages.length > 0) this.currentGeneration++;
    const echoed = messages.some((message) => message.flags & NLM_F.ECHO);
    return { messages: messages.length + 2, bytes: transaction.length, encodeMs: 0, kernelMs: 0, ...(echoed ? { generation: this.currentGeneration } : {}) };
  }

  /** A table as the addon's dump gives it, or null when it does not exist. */
  list(family: number, name: string): Dump | null {
    const table = this.tablesByKey.get(tableKey(family, name));
    if (!table) return null;
    const chains = [...table.chains.values()];
    return {
      table: { name: table.name, flags: table.flags, handle: table.handle },
      chains: chains.map((chain) => ({ name: chain.name, handle: chain.handle, ...chain.base })),
      sets: [...table.sets.values()].map((set) => ({ ...set, elements: [...set.elements.values()] })),
      rules: chains.flatMap((chain) => table.rules.filter((rule) => rule.chain === chain.name))
        .map((rule) => ({ chain: rule.chain, handle: rule.handle, exprs: rule.expressions.map((expression) => expression.name), expressions: rule.expressions, text: '' })),
    };
  }

  /** Every table, in the order they were created. */
  listTables(): { family: number; name: string }[] {
    return [...this.tablesByKey.values()].map(({ family, name }) => ({ family, name }));
  }

  async commit(transaction: Buffer): Promise<CommitResult> {
    return this.apply(transaction);
  }

  async dump(family: number, table: string): Promise<Dump | null> {
    return this.list(family, table);
  }

  async tables(): Promise<{ family: number; name: string }[]> {
    return this.listTables();
  }

  async generation(): Promise<number> {
    return this.currentGeneration;
  }

  /** No native heap to trim, no garbage of a native commit to collect. */
  trimNativeHeap(): boolean {
    return false;
  }

  compactJsHeap(): void {}

  private applyMessage(tables: Map<string, MemoryTable>, message: WireMessage): void {
    const { attrs } = message;
    const exclusive = (message.flags & NLM_F.EXCL) !== 0;
    if (message.type === NFT_MSG.NEWTABLE) {
      const key = tableKey(message.family, attrs.name as string);
      const existing = tables.get(key);
      if (existing && exclusive) throw new Refusal(EEXIST);
      if (existing) {
        if (attrs.flags !== undefined) existing.flags = attrs.flags as number;
        return;
      }
      tables.set(key, {
        family: message.family, name: attrs.name as string, flags: (attrs.flags as number | undefined) ?? 0, handle: this.nextTableHandle++,
        nextHandle: 1, chains: new Map(), sets: new Map(), rules: [],
      });
      return;
    }
    if (message.type === NFT_MSG.DELTABLE) {
      if (!tables.delete(tableKey(message.family, attrs.name as string))) throw new Refusal(ENOENT);
      return;
    }
    const table = tables.get(tableKey(message.family, attrs.table as string));
    if (!table) throw new Refusal(ENOENT);
    switch (message.type) {
      case NFT_MSG.NEWCHAIN: return this.newChain(table, attrs, exclusive);
      case NFT_MSG.DELCHAIN: return this.deleteChain(table, attrs.name as string);
      case NFT_MSG.NEWRULE: return this.newRule(table, attrs.chain as string, message);
      case NFT_MSG.DELRULE: return this.flushChain(table, attrs.chain as string);
      case NFT_MSG.NEWSET: return this.newSet(table, attrs, exclusive);
      case NFT_MSG.DELSET: return this.deleteSet(table, attrs.name as string);
      case NFT_MSG.NEWSETELEM: return this.newElements(table, this.setOf(table, attrs.name as string), message.elements, exclusive);
      case NFT_MSG.DELSETELEM: return this.deleteElements(this.setOf(table, attrs.name as string), message.elements);
      default: throw new Refusal(EINVAL);
    }
  }

  private chainOf(table: MemoryTable, name: string): MemoryChain {
    const chain = table.chains.get(name);
    if (!chain) throw new Refusal(ENOENT);
    return chain;
  }

  private setOf(table: MemoryTable, name: string): MemorySet {
    const set = table.sets.get(name);
    if (!set) throw new Refusal(ENOENT);
    return set;
  }

  private newChain(table: MemoryTable, attrs: WireAttributes, exclusive: boolean): void {
    const name = attrs.name as string;
    if (table.chains.has(name)) {
      if (exclusive) throw new Refusal(EEXIST);
      return;
    }
    const chain: MemoryChain = { name, handle: table.nextHandle++ };
    // The priority is a signed 32-bit number on the wire.
    if (attrs.hooknum !== undefined) chain.base = { hooknum: attrs.hooknum as number, prio: (attrs.prio as number) | 0, policy: attrs.policy as number, type: attrs.type as string };
    table.chains.set(name, chain);
  }

  /** The kernel deletes the chain's own rules with it; a jump to it from elsewhere keeps it. */
  private deleteChain(table: MemoryTable, name: string): void {
    this.chainOf(table, name);
    const remaining = table.rules.filter((rule) => rule.chain !== name);
    if (jumpTargets({ ...table, rules: remaining }).includes(name)) throw new Refusal(EBUSY);
    table.rules = remaining;
    table.chains.delete(name);
  }

  private newRule(table: MemoryTable, chain: string, message: WireMessage): void {
    this.chainOf(table, chain);
    for (const { attrs } of message.expressions) {
      if (typeof attrs.chain === 'string') this.chainOf(table, attrs.chain);
      const set = attrs.set ?? attrs.setName;
      if (typeof set === 'string') this.setOf(table, set);
    }
    const rule: MemoryRule = { chain, handle: table.nextHandle++, expressions: message.expressions };
    if (message.flags & NLM_F.APPEND) {
      table.rules.push(rule);
    } else {
      const first = table.rules.findIndex((candidate) => candidate.chain === chain);
      table.rules.splice(first < 0 ? table.rules.length : first, 0, rule);
    }
  }

  /** A DELRULE naming only a chain (all kubenft sends) removes every rule of that chain. */
  private flushChain(table: MemoryTable, chain: string): void {
    this.chainOf(table, chain);
    table.rules = table.rules.filter((rule) => rule.chain !== chain);
  }

  private newSet(table: MemoryTable, attrs: WireAttributes, exclusive: boolean): void {
    const name = attrs.name as string;
    const declared = {
      name, handle: 0, flags: (attrs.flags as number | undefined) ?? 0, keyType: attrs.keyType as number, keyLen: attrs.keyLen as number,
      dataType: attrs.dataType as number | undefined, dataLen: attrs.dataLen as number | undefined, timeout: attrs.timeout as number | undefined,
    };
    const existing = table.sets.get(name);
    if (existing) {
      const same = existing.flags === declared.flags && existing.keyType === declared.keyType && existing.keyLen === declared.keyLen
        && existing.dataType === declared.dataType && existing.dataLen === declared.dataLen;
      if (exclusive || !same) throw new Refusal(EEXIST);
      return;
    }
    table.sets.set(name, { ...declared, handle: table.nextHandle++, elements: new Map() });
  }

  private deleteSet(table: MemoryTable, name: string): void {
    this.setOf(table, name);
    if (boundSets(table).includes(name)) throw new Refusal(EBUSY);
    table.sets.delete(name);
  }

  private newElements(table: MemoryTable, set: MemorySet, elements: WireAttributes[], exclusive: boolean): void {
    for (const attrs of elements) {
      const key = attrs.key as Buffer;
      if (key.length !== set.keyLen) throw new Refusal(EINVAL);
      const element: MemoryElement = {
        key, data: attrs.data as Buffer | undefined,
        // A verdict is a signed 32-bit number on the wire (jump and goto are negative).
        verdict: attrs.verdict === undefined ? undefined : (attrs.verdict as number) | 0, chain: attrs.chain as string | undefined,
      };
      if (element.chain !== undefined) this.chainOf(table, element.chain);
      const existing = set.elements.get(hex(key)!);
      if (existing) {
        const same = hex(existing.data) === hex(element.data) && existing.verdict === element.verdict && existing.chain === element.chain;
        if (exclusive || !same) throw new Refusal(EEXIST);
        continue;
      }
      set.elements.set(hex(key)!, element);
    }
  }

  /** Without elements, a flush of the set. */
  private deleteElements(set: MemorySet, elements: WireAttributes[]): void {
    if (elements.length === 0) {
      set.elements.clear();
      return;
    }
    for (const attrs of elements) {
      if (!set.elements.delete(hex(attrs.key as Buffer)!)) throw new Refusal(ENOENT);
    }
  }
}
