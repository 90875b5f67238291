import { FIELDS } from './fields.js';
import type { Field, NamedSet, NftFamily, Rule, Ruleset, Statement, Table, Value, Verdict } from './ruleset.js';

// Renders a ruleset in the libnftables JSON schema (`nft -j`): objects without a command are "add".

type Json = unknown;

export function verdictJson(verdict: Verdict): Json {
  return verdict.kind === 'jump' || verdict.kind === 'goto'
    ? { [verdict.kind]: { target: verdict.chain } }
    : { [verdict.kind]: null };
}

const fieldsJson = (fields: Field[]): Json =>
  fields.length === 1 ? FIELDS[fields[0]].json : { concat: fields.map((field) => FIELDS[field].json) };

function valueJson(value: Value): Json {
  if (typeof value === 'string' && value.includes('/')) {
    const [addr, len] = value.split('/');
    return { prefix: { addr, len: Number(len) } };
  }
  return value;
}

const markJson = { meta: { key: 'mark' } };
const labelJson = { ct: { key: 'label' } };

export function statementJson(statement: Statement): Json {
  switch (statement.kind) {
    case 'match':
      return { match: { op: statement.op, left: FIELDS[statement.field].json, right: valueJson(statement.value) } };
    case 'markMatch':
      return { match: { op: statement.op, left: { '&': [markJson, statement.mask] }, right: statement.value } };
    case 'numgen':
      return { match: { op: '==', left: { numgen: { mode: 'random', mod: statement.modulus, offset: 0 } }, right: statement.equals } };
    case 'lookup':
      return { match: { op: statement.op, left: fieldsJson(statement.fields), right: `@${statement.set}` } };
    case 'vmap':
      return { vmap: { key: statement.mask ? { '&': [fieldsJson(statement.fields), statement.mask] } : fieldsJson(statement.fields), data: `@${statement.map}` } };
    case 'markSet':
      return { mangle: { key: markJson, value: { '|': [markJson, statement.or] } } };
    case 'markToggle':
      return { mangle: { key: markJson, value: { '^': [markJson, statement.xor] } } };
    case 'ctStateNew':
      return { match: { op: 'in', left: { ct: { key: 'state' } }, right: 'new' } };
    case 'ctLabelSet':
      return { mangle: { key: labelJson, value: statement.label } };
    case 'ctLabelMatch':
      return { match: { op: 'in', left: labelJson, right: statement.label } };
    case 'fibLocal':
      return { match: { op: statement.op, left: { fib: { result: 'type', flags: [statement.address] } }, right: 'local' } };
    case 'setUpdate':
      return { set: { op: 'update', elem: FIELDS[statement.field].json, set: `@${statement.set}` } };
    case 'dnat':
      return { dnat: { addr: statement.address, port: statement.port } };
    case 'dnatMap':
      return { dnat: { family: statement.family, addr: { map: { key: { numgen: { mode: 'random', mod: statement.modulus, offset: 0 } }, data: `@${statement.map}` } } } };
    case 'redirect':
      return { redirect: { port: statement.port } };
    case 'masquerade':
      return { masquerade: { flags: 'fully-random' } };
    case 'reject':
      return { reject: null };
    case 'socket':
      return { match: { op: '==', left: { socket: { key: statement.key } }, right: statement.value ? 1 : 0 } };
    case 'notrack':
      return { notrack: null };
    case 'verdict':
      return verdictJson(statement.verdict);
  }
}

function setJson(table: Table<NftFamily>, set: NamedSet): Json {
  const type = set.keyType.length === 1 ? set.keyType[0] : set.keyType;
  const body: Record<string, Json> = { family: table.family, table: table.name, name: set.name, type };
  if (set.dataType) body.map = Array.isArray(set.dataType) ? (set.dataType.length === 1 ? set.dataType[0] : set.dataType) : set.dataType;
  if (set.dynamicTimeoutSeconds) Object.assign(body, { flags: ['timeout', 'dynamic'], timeout: set.dynamicTimeoutSeconds });
  return { [set.dataType ? 'map' : 'set']: body };
}

function elementsJson(table: Table<NftFamily>, set: NamedSet): Json {
  const key = (values: Value[]) => (values.length === 1 ? values[0] : { concat: values });
  const elem = set.elements.map((element) =>
    element.verdict ? [key(element.key), verdictJson(element.verdict)] : element.data ? [key(element.key), key(element.data)] : key(element.key));
  return { element: { family: table.family, table: table.name, name: set.name, elem } };
}

const ruleJson = (table: Table<NftFamily>, chain: string, rule: Rule): Json => ({
  rule: { family: table.family, table: table.name, chain, expr: rule.statements.map(statementJson) },
});

export function tableJson(table: Table<NftFamily>): Json[] {
  const objects: Json[] = [{ table: { family: table.family, name: table.name } }];
  for (const set of table.sets) objects.push(setJson(table, set));
  for (const chain of table.chains) {
    const base = chain.base ? { type: chain.base.type, hook: chain.base.hook, prio: chain.base.priority, policy: chain.base.policy } : {};
    objects.push({ chain: { family: table.family, table: table.name, name: chain.name, ...base } });
  }
  // Map elements may jump to chains, so they come after every chain exists, as in the netlink batch.
  for (const set of table.sets) if (set.elements.length > 0) objects.push(elementsJson(table, set));
  for (const chain of table.chains) for (const rule of chain.rules) objects.push(ruleJson(table, chain.name, rule));
  return objects;
}

export const rulesetJson = (ruleset: Ruleset) => ({ nftables: ruleset.tables.flatMap(tableJson) });
