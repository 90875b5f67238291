import { joinHostPort } from './addresses.js';
import type { Chain, NamedSet, NftFamily, Rule, Ruleset, SetElement, Statement, Table, Value, Verdict } from './ruleset.js';

// Renders a ruleset in nft syntax, as `nft list table` prints it, so `nft -f` loads the same ruleset.

const hex = (n: number) => `0x${n.toString(16).padStart(8, '0')}`;

export function verdictText(verdict: Verdict): string {
  return verdict.kind === 'jump' || verdict.kind === 'goto' ? `${verdict.kind} ${verdict.chain}` : verdict.kind;
}

const valueText = (value: Value) => String(value);

export function statementText(statement: Statement): string {
  switch (statement.kind) {
    case 'match':
      return `${statement.field} ${statement.op === '!=' ? '!= ' : ''}${valueText(statement.value)}`;
    case 'markMatch':
      return `meta mark & ${hex(statement.mask)} ${statement.op} ${hex(statement.value)}`;
    case 'numgen':
      return `numgen random mod ${statement.modulus} ${statement.equals}`;
    case 'lookup':
      return `${statement.fields.join(' . ')} ${statement.op === '!=' ? '!= ' : ''}@${statement.set}`;
    case 'vmap':
      return `${statement.fields.join(' . ')}${statement.mask ? ` & ${statement.mask}` : ''} vmap @${statement.map}`;
    case 'markSet':
      return `meta mark set meta mark | ${hex(statement.or)}`;
    case 'markToggle':
      return `meta mark set meta mark ^ ${hex(statement.xor)}`;
    case 'ctStateNew':
      return 'ct state new';
    case 'ctLabelSet':
      return `ct label set ${statement.label}`;
    case 'ctLabelMatch':
      return `ct label ${statement.label}`;
    case 'fibLocal':
      return `fib ${statement.address} type ${statement.op === '!=' ? '!= ' : ''}local`;
    case 'setUpdate':
      return `update @${statement.set} { ${statement.field} }`;
    case 'dnat':
      return `dnat to ${joinHostPort(statement.address, statement.port)}`;
    case 'dnatMap':
      return `dnat ${statement.family} to numgen random mod ${statement.modulus} map @${statement.map}`;
    case 'redirect':
      return `redirect to :${statement.port}`;
    case 'masquerade':
      return 'masquerade fully-random';
    case 'reject':
      return 'reject';
    case 'socket':
      return `socket ${statement.key} ${statement.value ? 1 : 0}`;
    case 'notrack':
      return 'notrack';
    case 'verdict':
      return verdictText(statement.verdict);
  }
}

export const ruleText = (rule: Rule) => rule.statements.map(statementText).join(' ');

function elementText(element: SetElement): string {
  const key = element.key.map(valueText).join(' . ');
  if (element.verdict) return `${key} : ${verdictText(element.verdict)}`;
  return element.data ? `${key} : ${element.data.map(valueText).join(' . ')}` : key;
}

function setText(set: NamedSet): string[] {
  const lines = [`\t${set.dataType ? 'map' : 'set'} ${set.name} {`];
  const dataType = Array.isArray(set.dataType) ? set.dataType.join(' . ') : set.dataType;
  lines.push(set.typeofText ? `\t\ttypeof ${set.typeofText}` : `\t\ttype ${set.keyType.join(' . ')}${dataType ? ` : ${dataType}` : ''}`);
  if (set.dynamicTimeoutSeconds) lines.push('\t\tflags dynamic,timeout', `\t\ttimeout ${set.dynamicTimeoutSeconds}s`);
  if (set.elements.length > 0) {
    lines.push(`\t\telements = { ${set.elements.map(elementText).join(',\n\t\t\t     ')} }`);
  }
  lines.push('\t}');
  return lines;
}

function chainText(chain: Chain): string[] {
  const lines = [`\tchain ${chain.name} {`];
  if (chain.base) {
    const { type, hook, priority, policy } = chain.base;
    lines.push(`\t\ttype ${type} hook ${hook} priority ${priority}; policy ${policy};`);
  }
  for (const rule of chain.rules) lines.push(`\t\t${ruleText(rule)}`);
  lines.push('\t}');
  return lines;
}

export function tableText(table: Table<NftFamily>): string {
  const body = [...table.sets.map(setText), ...table.chains.map(chainText)];
  const sections = body.map((lines) => lines.join('\n'));
  return `table ${table.family} ${table.name} {\n${sections.join('\n\n')}\n}\n`;
}

export const rulesetText = (ruleset: Ruleset) => ruleset.tables.map(tableText).join('\n');
