import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { NftablesBackend } from '../../kernel/nftables.js';
import { writeTable } from '../../kernel/nftables.js';
import type { Dump, NativeAttributes } from '../../kernel/native.js';
import { MemoryNftables } from '../../kernel/memory-nftables.js';
import { NftTransaction } from '../../kernel/nft-transaction.js';
import { NFPROTO, NFT_REG32_00, NFT_REG_1, NFT_SET } from '../../kernel/uapi.js';
import { allTableNames } from '../nftables-plan.js';
import type { Ruleset, TableFamily } from '../../kernel/ruleset.js';

// One model of nftables tables for two sources: what the kernel has loaded (the addon's dump) and
// what the planner would load (its transaction, applied to nftables in memory). Both
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

/**
 * The tables `ruleset` would load, as the kernel would hold them: encoded into the addon's
 * transaction format by the same code a sync uses, then applied to nftables in memory.
 */
export function plannedTables(ruleset: Ruleset, attributes: NativeAttributes): TableDump[] {
  const transaction = new NftTransaction(attributes);
  for (const table of ruleset.tables) writeTable(transaction, table);
  const kernel = new MemoryNftables(attributes);
  kernel.apply(transaction.finish());
  return kernel.listTables().map(({ family, name }) => ({ ...kernel.list(family, name)!, family: FAMILIES.find((candidate) => NFPROTO[candidate] === family)! }));
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
