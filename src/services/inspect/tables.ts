import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { NftablesBackend } from '../../kernel/nftables.js';
import { writeTable } from '../../kernel/nftables.js';
import type { Dump, DumpedExpression, NativeAttributes } from '../../kernel/native.js';
import { NftTransaction } from '../../kernel/nft-transaction.js';
import { NFPROTO, NFT_REG32_00, NFT_REG_1, NFT_SET } from '../../kernel/uapi.js';
import { OBJECT_KIND } from '../../kernel/wire.js';
import { allTableNames } from '../nftables-plan.js';
import type { Ruleset, TableFamily } from '../../kernel/ruleset.js';

// One model of nftables tables for two sources: what the kernel has loaded (the addon's dump) and
// what the planner would load (its transaction, decoded back from the addon's wire format). Both
// carry the kernel's own expressions, so one evaluator reads either, and comparing them compares
// exactly what the kernel would be sent with what it holds.

/** One table in the shape of the addon's dump, whichever source it came from. */
export interface TableDump extends Dump {
  family: TableFamily;
}

const FAMILIES: TableFamily[] = ['ip', 'ip6'];

/** kubenft's tables as the kernel holds them now, main tables first. */
export async function kernelTables(backend: NftablesBackend, tableName: string, listTables: () => Promise<{ family: number; name: string }[]>): Promise<TableDump[]> {
  const ours = allTableNames({ tableName });
  const present = await listTables();
  const tables: TableDump[] = [];
  for (const family of FAMILIES) {
    for (const name of ours) {
      if (!present.some((table) => table.family === NFPROTO[family] && table.name === name)) continue;
      const dump = await backend.dump(family, name);
      if (dump) tables.push({ ...dump, family });
    }
  }
  return tables;
}

const run = promisify(execFile);
/** nft's text is a nicety (the dump's text stands in): a listing that does not finish is given up. */
const NFT_LIST_TIMEOUT_MS = 60_000;

/**
 * nft's own text of every rule, by family, table and handle (`nft -a list table`); empty when nft
 * is not installed or refuses, in which case callers fall back to libnftnl's text from the dump.
 */
export async function nftRuleText(tables: TableDump[]): Promise<Map<string, string>> {
  const texts = new Map<string, string>();
  for (const table of tables) {
    let stdout: string;
    try {
      ({ stdout } = await run('nft', ['-a', 'list', 'table', table.family, table.table.name], { maxBuffer: 256 * 1024 * 1024, timeout: NFT_LIST_TIMEOUT_MS, killSignal: 'SIGKILL' }));
    } catch {
      continue;
    }
    let chain = '';
    for (const line of stdout.split('\n')) {
      const chainLine = /^\tchain (\S+) \{/.exec(line);
      if (chainLine) chain = chainLine[1].replace(/^"(.*)"$/, '$1');
      const rule = /^\t\t(.*) # handle (\d+)$/.exec(line);
      if (rule && chain) texts.set(ruleTextKey(table.family, table.table.name, Number(rule[2])), rule[1]);
    }
  }
  return texts;
}

export const ruleTextKey = (family: TableFamily, table: string, handle: number) => `${family} ${table} ${handle}`;

// ---- the planner's tables, through the addon's wire format ----------------------------------------

/** Attributes that hold names (NUL-terminated) or raw data, by kind; every other attribute is a number. */
const STRING_ATTRIBUTES = {
  object: new Set(['name', 'table', 'chain', 'type']), elem: new Set(['chain']), expr: new Set(['chain', 'set', 'setName']),
};
const DATA_ATTRIBUTES = {
  object: new Set(['userdata']), elem: new Set(['key', 'keyEnd', 'data', 'userdata']), expr: new Set(['data', 'mask', 'xor', 'fromData', 'toData']),
};
type AttributeKind = keyof typeof STRING_ATTRIBUTES;

class WireReader {
  private offset = 0;
  constructor(private readonly buffer: Buffer) {}
  u8 = () => this.buffer[this.offset++];
  u16 = () => {
    const value = this.buffer.readUInt16LE(this.offset);
    this.offset += 2;
    return value;
  };
  u32 = () => {
    const value = this.buffer.readUInt32LE(this.offset);
    this.offset += 4;
    return value;
  };
  bytes(length: number): Buffer {
    const value = this.buffer.subarray(this.offset, this.offset + length);
    this.offset += length;
    return value;
  }

  /** A counted attribute list, named through `names` (id → name). */
  attributes(names: Map<number, string>, kind: AttributeKind = 'object'): Record<string, number | string | Buffer> {
    const attrs: Record<string, number | string | Buffer> = {};
    for (let count = this.u32(); count > 0; count--) {
      const id = this.u16();
      const value = this.bytes(this.u16());
      const name = names.get(id) ?? `attr${id}`;
      if (STRING_ATTRIBUTES[kind].has(name)) attrs[name] = value.subarray(0, value.length - 1).toString('latin1');
      else if (DATA_ATTRIBUTES[kind].has(name)) attrs[name] = Buffer.from(value);
      else if (value.length === 1) attrs[name] = value[0];
      else if (value.length === 8) attrs[name] = Number(value.readBigUInt64LE());
      else attrs[name] = value.readUInt32LE();
    }
    return attrs;
  }
}

const inverse = (ids: Record<string, number>) => new Map(Object.entries(ids).map(([name, id]) => [id, name]));

/**
 * The tables `ruleset` would load, as the kernel would hold them: encoded into the addon's
 * transaction format by the same code a sync uses, then read back message by message.
 */
export function plannedTables(ruleset: Ruleset, attributes: NativeAttributes): TableDump[] {
  const transaction = new NftTransaction(attributes);
  for (const table of ruleset.tables) writeTable(transaction, table);
  const reader = new WireReader(transaction.finish());
  const names = {
    table: inverse(attributes.table), chain: inverse(attributes.chain), rule: inverse(attributes.rule),
    set: inverse(attributes.set), elem: inverse(attributes.elem),
  };
  const exprNames = new Map(Object.entries(attributes.expr).map(([name, ids]) => [name, inverse(ids)]));
  const tables = new Map<string, TableDump>();
  const tableOf = (family: TableFamily, name: string) => tables.get(`${family} ${name}`)!;
  for (let messages = reader.u32(); messages > 0; messages--) {
    const kind = reader.u8();
    const familyNumber = reader.u8();
    const family = FAMILIES.find((candidate) => NFPROTO[candidate] === familyNumber)!;
    reader.u16(); // message type: a planned ruleset is only additions
    reader.u16(); // flags
    reader.u16(); // padding
    if (kind === OBJECT_KIND.table) {
      const attrs = reader.attributes(names.table);
      const key = `${family} ${attrs.name}`;
      if (!tables.has(key)) tables.set(key, { family, table: { name: attrs.name as string, flags: 0, handle: 0 }, chains: [], sets: [], rules: [] });
    } else if (kind === OBJECT_KIND.chain) {
      const attrs = reader.attributes(names.chain);
      const chain: TableDump['chains'][number] = { name: attrs.name as string, handle: 0 };
      if (attrs.hooknum !== undefined) Object.assign(chain, { hooknum: attrs.hooknum, prio: (attrs.prio as number) | 0, policy: attrs.policy, type: attrs.type });
      tableOf(family, attrs.table as string).chains.push(chain);
    } else if (kind === OBJECT_KIND.set) {
      const attrs = reader.attributes(names.set);
      tableOf(family, attrs.table as string).sets.push({
        name: attrs.name as string, handle: 0, flags: attrs.flags as number, keyType: attrs.keyType as number, keyLen: attrs.keyLen as number,
        dataType: attrs.dataType as number | undefined, dataLen: attrs.dataLen as number | undefined, timeout: attrs.timeout as number | undefined, elements: [],
      });
    } else if (kind === OBJECT_KIND.setelems) {
      const attrs = reader.attributes(names.set);
      const set = tableOf(family, attrs.table as string).sets.find((candidate) => candidate.name === attrs.name)!;
      for (let count = reader.u32(); count > 0; count--) {
        const element = reader.attributes(names.elem, 'elem');
        set.elements.push({
          key: element.key as Buffer, data: element.data as Buffer | undefined,
          verdict: element.verdict === undefined ? undefined : (element.verdict as number) | 0, chain: element.chain as string | undefined,
        });
      }
    } else if (kind === OBJECT_KIND.rule) {
      const attrs = reader.attributes(names.rule);
      const expressions: DumpedExpression[] = [];
      for (let count = reader.u32(); count > 0; count--) {
        const name = reader.bytes(reader.u8()).toString('latin1');
        expressions.push({ name, attrs: reader.attributes(exprNames.get(name) ?? new Map(), 'expr') });
      }
      tableOf(family, attrs.table as string).rules.push({ chain: attrs.chain as string, handle: 0, exprs: expressions.map((e) => e.name), expressions, text: '' });
    }
  }
  return [...tables.values()];
}

// ---- comparing two sets of tables ------------------------------------------------------------------

/**
 * A 32-bit register at the start of a 128-bit one, as the kernel reports it (nft_dump_register):
 * NFT_REG32_00 + 4k is NFT_REG_1 + k.
 */
const canonicalRegister = (name: string, value: number) =>
  /reg/i.test(name) && value >= NFT_REG32_00 && (value - NFT_REG32_00) % 4 === 0 ? NFT_REG_1 + (value - NFT_REG32_00) / 4 : value;

/**
 * A rule as its expressions, without the defaults the kernel reports and the planner leaves unset:
 * zero-valued numbers, and a range's maximum register when it is its minimum's (nft_nat_init).
 */
const ruleSignature = (rule: TableDump['rules'][number]) =>
  JSON.stringify(rule.expressions.map((expression) => [expression.name, Object.entries(expression.attrs)
    .filter(([name, value]) => value !== 0 && !(name.endsWith('Max') && expression.attrs[name.replace(/Max$/, 'Min')] === value))
    .map(([name, value]) => [name, Buffer.isBuffer(value) ? value.toString('hex') : typeof value === 'number' ? canonicalRegister(name, value) : value])
    .sort(([a], [b]) => String(a).localeCompare(String(b)))]));

/**
 * What differs between the loaded and the planned tables, in words: tables, chains, rules (by
 * their expressions) and set elements. Elements of dynamic sets (affinity) come from traffic and
 * are not compared.
 */
export function tableDifferences(loaded: TableDump[], planned: TableDump[], describe: (set: Dump['sets'][number], element: Dump['sets'][number]['elements'][number]) => string): string[] {
  const differences: string[] = [];
  const name = (table: TableDump) => `table ${table.family} ${table.table.name}`;
  for (const want of planned) {
    const have = loaded.find((table) => table.family === want.family && table.table.name === want.table.name);
    if (!have) {
      differences.push(`${name(want)}: planned, not loaded`);
      continue;
    }
    if (have.table.flags & 1) differences.push(`${name(want)}: dormant`);
    for (const chain of want.chains) {
      if (!have.chains.some((candidate) => candidate.name === chain.name)) {
        differences.push(`${name(want)}: chain ${chain.name} planned, not loaded`);
        continue;
      }
      const rules = (table: TableDump) => table.rules.filter((rule) => rule.chain === chain.name).map(ruleSignature);
      const [haveRules, wantRules] = [rules(have), rules(want)];
      if (haveRules.join('\n') !== wantRules.join('\n')) differences.push(`${name(want)}: chain ${chain.name} has ${haveRules.length} rules, ${haveRules.filter((rule) => !wantRules.includes(rule)).length} of them not planned; ${wantRules.length} planned`);
    }
    for (const chain of have.chains) if (!want.chains.some((candidate) => candidate.name === chain.name)) differences.push(`${name(want)}: chain ${chain.name} loaded, not planned`);
    for (const set of want.sets) {
      const loadedSet = have.sets.find((candidate) => candidate.name === set.name);
      if (!loadedSet) {
        differences.push(`${name(want)}: set ${set.name} planned, not loaded`);
        continue;
      }
      if (set.flags & NFT_SET.TIMEOUT) continue;
      const haveElements = new Set(loadedSet.elements.map((element) => describe(loadedSet, element)));
      const wantElements = new Set(set.elements.map((element) => describe(set, element)));
      for (const element of wantElements) if (!haveElements.has(element)) differences.push(`${name(want)}: set ${set.name} lacks ${element}`);
      for (const element of haveElements) if (!wantElements.has(element)) differences.push(`${name(want)}: set ${set.name} holds ${element}, not planned`);
    }
    for (const set of have.sets) if (!want.sets.some((candidate) => candidate.name === set.name)) differences.push(`${name(want)}: set ${set.name} loaded, not planned`);
  }
  for (const table of loaded) {
    if (!planned.some((want) => want.family === table.family && want.table.name === table.table.name)) differences.push(`${name(table)}: loaded, not planned`);
  }
  return differences;
}
