import yaml from 'js-yaml';

// The YAML types kubectl reads manifests with: go-yaml v2 (behind sigs.k8s.io/yaml), which is
// YAML 1.1 for plain scalars — `yes`/`on`/`y` are true, `010` is 8, `1_000` is 1000 — but keeps
// timestamps as text, has no base-60 numbers, and reads any tag it does not know as the plain
// text, mapping or sequence under it. js-yaml has no YAML 1.1 schema (its default is 1.2 core),
// and the `yaml` package's 1.1 schema differs from go-yaml (base 60, timestamps, unknown tags) and
// parses manifests ~20x slower, so the scalar rules are written out here, each as go-yaml's
// resolver applies it (checked against kubectl in test/kernel/manifest-corpus.test.ts).

const { Type, FAILSAFE_SCHEMA } = yaml;

const NULLS = new Set(['~', 'null', 'Null', 'NULL', '']);
const TRUE = new Set(['y', 'Y', 'yes', 'Yes', 'YES', 'true', 'True', 'TRUE', 'on', 'On', 'ON']);
const FALSE = new Set(['n', 'N', 'no', 'No', 'NO', 'false', 'False', 'FALSE', 'off', 'Off', 'OFF']);
const NON_FINITE: Record<string, number> = {
  '.nan': NaN, '.NaN': NaN, '.NAN': NaN,
  '.inf': Infinity, '.Inf': Infinity, '.INF': Infinity, '+.inf': Infinity, '+.Inf': Infinity, '+.INF': Infinity,
  '-.inf': -Infinity, '-.Inf': -Infinity, '-.INF': -Infinity,
};

/** Go's strconv.ParseInt/ParseUint with base 0 (the sign, then 0x, 0o, 0b or a leading 0 for octal). */
const GO_INTEGER = /^([-+]?)(0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+|0[0-7]*|[1-9][0-9]*)$/;
const INT64 = [-(2n ** 63n), 2n ** 63n - 1n];
const UINT64_MAX = 2n ** 64n - 1n;
/** go-yaml's yamlStyleFloat, which it tries once a plain scalar is no integer. */
const YAML_STYLE_FLOAT = /^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$/;

function integer(text: string): number | undefined {
  const match = GO_INTEGER.exec(text);
  if (!match) return undefined;
  const [, sign, digits] = match;
  const prefixed = /^0[oO]/.test(digits) ? `0o${digits.slice(2)}` : /^0[0-7]+$/.test(digits) ? `0o${digits.slice(1)}` : digits;
  const value = BigInt(prefixed) * (sign === '-' ? -1n : 1n);
  const fits = (value >= INT64[0] && value <= INT64[1]) || (sign === '' && value <= UINT64_MAX);
  return fits ? Number(value) : undefined;
}

/** Go's strconv.ParseFloat for go-yaml's float forms: a value past float64's range is no float (it stays text). */
function float(text: string): number | undefined {
  if (!YAML_STYLE_FLOAT.test(text)) return undefined;
  const value = Number(text);
  return Number.isFinite(value) ? value : undefined;
}

/**
 * A plain scalar's number, as go-yaml's resolver reads it: after a sign or digit, underscores
 * dropped, an integer (base prefixes, leading-0 octal) or else a float; after a dot, a float.
 * `.inf` and `.nan` have no JSON form: kubectl refuses them, and so does construction here.
 */
function number(text: string): number | undefined {
  const first = text.charCodeAt(0);
  // Most plain scalars of a manifest are names: no number starts with a letter.
  if (!(first >= 0x30 && first <= 0x39) && first !== 0x2b && first !== 0x2d && first !== 0x2e) return undefined;
  if (DECIMAL.test(text)) return Number(text);
  if (text in NON_FINITE) return NON_FINITE[text];
  if (first === 0x2e) return float(text);
  const plain = text.replaceAll('_', '');
  return integer(plain) ?? float(plain);
}
/** Most numbers of a manifest (ports, counts): read without the general forms. */
const DECIMAL = /^[1-9][0-9]{0,14}$/;

const nullType = new Type('tag:yaml.org,2002:null', { kind: 'scalar', resolve: (data: string | null) => data === null || NULLS.has(data), construct: () => null });
const boolType = new Type('tag:yaml.org,2002:bool', { kind: 'scalar', resolve: (data: string) => TRUE.has(data) || FALSE.has(data), construct: (data: string) => TRUE.has(data) });
const numberOf = (data: string) => {
  const value = number(data)!;
  if (!Number.isFinite(value)) throw new Error(`${data} has no JSON form (kubectl refuses it)`);
  return value;
};
/** Implicitly, every number: go-yaml's resolver tries the integer forms, then the float ones. */
const intType = new Type('tag:yaml.org,2002:int', { kind: 'scalar', resolve: (data: string) => number(data) !== undefined, construct: numberOf });
/** Explicit only (`!!float 1`): implicit floats are the int type's. */
const floatType = new Type('tag:yaml.org,2002:float', { kind: 'scalar', resolve: (data: string) => number(data) !== undefined, construct: numberOf });

/**
 * A merge key (`<<`), marked so that merges can be applied afterwards in go-yaml's order (see
 * resolveMerges): js-yaml lets a mapping's own keys win over merged ones wherever they stand,
 * go-yaml writes each key in document order, so a `<<` after a key overrides it. Each mark is
 * unique, so two merges in one mapping stay two.
 */
export const MERGE_MARK = '\u0000<<';
let merges = 0;
const mergeType = new Type('tag:kubenft,merge', { kind: 'scalar', resolve: (data: string) => data === '<<', construct: () => `${MERGE_MARK}${merges++}` });

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
/** `!!binary`: go-yaml hands the decoded bytes on as a string (Go's decoder skips line breaks, nothing else). */
const binaryType = new Type('tag:yaml.org,2002:binary', {
  kind: 'scalar',
  resolve: (data: string | null) => data !== null && BASE64.test(data.replace(/[\r\n]/g, '')),
  construct: (data: string) => Buffer.from(data.replace(/[\r\n]/g, ''), 'base64').toString('utf8'),
});
/** `!!timestamp`: go-yaml keeps a timestamp decoded into an untyped value as its text. */
const timestampType = new Type('tag:yaml.org,2002:timestamp', { kind: 'scalar', construct: (data: string) => data });
/** Any other tag, local (`!svc`) or not: go-yaml reads the node under it untagged, a scalar as plain text. */
const untagged = (kind: 'scalar' | 'sequence' | 'mapping') => new Type('', { kind, multi: true, construct: (data: unknown) => data ?? '' });

export const KUBECTL_SCHEMA = FAILSAFE_SCHEMA.extend({
  implicit: [nullType, boolType, intType, mergeType],
  explicit: [floatType, binaryType, timestampType, untagged('scalar'), untagged('sequence'), untagged('mapping')],
});
