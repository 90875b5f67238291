import { load, type YAMLException } from 'js-yaml';
import { KUBECTL_SCHEMA, MERGE_MARK } from './yaml-schema.js';

// A YAML stream read as `kubectl apply -f` reads it, document by document, so that a broken
// document costs only itself. kubectl (apimachinery's YAMLReader) ends a document at every line
// that starts with `---`, before any YAML is parsed, and refuses such a line if anything but blanks
// or a comment follows the dashes; go-yaml then reads the first YAML document of each piece. This
// reader splits where kubectl does, so the same follows: a `...` end marker ends its document and
// anything after it up to the next `---` line is ignored (and said so); a %YAML or %TAG directive
// is refused (no `---` can follow it within its piece); empty, comment-only and null documents are
// skipped. kubectl stops reading a file at its first broken document; here that document alone is
// refused and the rest read. Scalars, tags, duplicate keys (the last wins), merge keys and the
// bound on alias expansion follow go-yaml (yaml-schema.ts and below). js-yaml parses each piece:
// a YAML stream parser would not split where kubectl does, and the `yaml` package parses
// manifests ~20x slower (10,000 Services with their slices: 1.3 s against 26 s).

export interface YamlDocument {
  /** 1-based position of the document in the stream, counting those that hold anything. */
  index: number;
  /** 1-based line where the document starts. */
  line: number;
  /** The parsed value, when the document could be read. */
  value?: unknown;
  /** Why the document was refused, when it was. */
  problem?: { line: number; reason: string };
}

/** A line kubectl takes for a document separator: one starting with `---` (at a `\n`, its only line break). */
const SEPARATOR = /(?<![^\n])---([^\n]*)/g;
/** A `...` document end marker, at the start of a line and alone on it but for blanks or a comment. */
const END_MARKER = /(?<![^\n])\.\.\.(?=[ \t\r\n]|$)/;
/** A line holding something other than blanks or a comment. */
const CONTENT = /^[ \t\r\uFEFF]*[^\s#]/m;

/** The 1-based line of each offset asked for, asked for in increasing order. */
export function lineCounter(text: string): (offset: number) => number {
  let line = 1;
  let counted = 0;
  return (offset) => {
    for (let at = text.indexOf('\n', counted); at !== -1 && at < offset; at = text.indexOf('\n', at + 1)) line++;
    counted = Math.max(counted, offset);
    return line;
  };
}

/** go-yaml's bound on alias expansion: how much of a document's decoding may come through aliases. */
function allowedAliasRatio(decodes: number): number {
  const [low, high] = [400_000, 4_000_000];
  if (decodes <= low) return 0.99;
  if (decodes >= high) return 0.1;
  return 0.99 - 0.89 * ((decodes - low) / (high - low));
}

/**
 * js-yaml hands every alias the anchored node itself, so expansion happens in whoever walks the
 * value next: this walk counts it as go-yaml's decoder does (every node and key, and which of them
 * came through an alias) and refuses a document as kubectl does, past go-yaml's ratio, or when an
 * anchor holds an alias of itself.
 */
function aliasProblem(value: unknown): string | undefined {
  let decodes = 0;
  let aliased = 0;
  const seen = new WeakSet<object>();
  const ancestors = new Set<object>();
  const decode = (throughAlias: boolean) => {
    decodes++;
    if (throughAlias) aliased++;
    return aliased > 100 && decodes > 1000 && aliased / decodes > allowedAliasRatio(decodes);
  };
  const excessive = 'its aliases expand too far (kubectl refuses it: "document contains excessive aliasing")';
  const visit = (node: unknown, throughAlias: boolean): string | undefined => {
    if (decode(throughAlias)) return excessive;
    if (typeof node !== 'object' || node === null) return undefined;
    if (ancestors.has(node)) return 'an anchor holds an alias of itself';
    const alias = throughAlias || seen.has(node);
    seen.add(node);
    ancestors.add(node);
    const mapping = !Array.isArray(node);
    for (const child of mapping ? Object.values(node) : node) {
      // A mapping's key is decoded too.
      if (mapping && decode(alias)) return excessive;
      const problem = visit(child, alias);
      if (problem) return problem;
    }
    ancestors.delete(node);
    return undefined;
  };
  return visit(value, false);
}

const isMapping = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);
const setKey = (mapping: Record<string, unknown>, key: string, value: unknown) =>
  Object.defineProperty(mapping, key, { value, enumerable: true, writable: true, configurable: true });

/**
 * Applies the merge keys (`<<`) as go-yaml does: each key of a mapping written in document order,
 * a merge writing the keys of its mappings (the first of a list winning), so a key before a `<<`
 * is overridden by it and one after it overrides. Each mapping is merged once, however often it
 * is aliased. Returns why a merge is refused, if one is.
 */
function mergeProblem(value: unknown, merged = new WeakSet<object>()): string | undefined {
  if (typeof value !== 'object' || value === null || merged.has(value)) return undefined;
  merged.add(value);
  const entries = Object.entries(value);
  for (const [, child] of entries) {
    const problem = mergeProblem(child, merged);
    if (problem) return problem;
  }
  if (!isMapping(value) || !entries.some(([key]) => key.startsWith(MERGE_MARK))) return undefined;
  const result: Record<string, unknown> = {};
  for (const [key, child] of entries) {
    if (!key.startsWith(MERGE_MARK)) {
      setKey(result, key, child);
      continue;
    }
    const sources = Array.isArray(child) ? [...child].reverse() : [child];
    if (!sources.every(isMapping)) return 'a merge key (<<) needs a mapping or a list of mappings';
    for (const source of sources) for (const [mergedKey, mergedValue] of Object.entries(source)) setKey(result, mergedKey, mergedValue);
  }
  for (const key of Object.keys(value)) delete value[key];
  for (const [key, child] of Object.entries(result)) setKey(value, key, child);
  return undefined;
}

interface Piece {
  text: string;
  /** Line of the piece's first character. */
  line: number;
  /** What followed the dashes of the `---` line that opened it, when that is more than a comment. */
  separatorRest?: string;
}

/** The stream cut where kubectl cuts it: at every line starting with `---`. */
function piecesOf(stream: string): Piece[] {
  const pieces: Piece[] = [];
  const lineOf = lineCounter(stream);
  let start = 0;
  let opener: Piece = { text: '', line: 1 };
  const close = (end: number) => pieces.push({ ...opener, text: stream.slice(start, end) });
  for (const match of stream.matchAll(SEPARATOR)) {
    close(match.index!);
    const rest = match[1].trim();
    const lineEnd = match.index! + match[0].length + 1;
    opener = rest === '' || rest.startsWith('#') ? { text: '', line: lineOf(match.index!) + 1 } : { text: '', line: lineOf(match.index!), separatorRest: rest };
    start = Math.min(lineEnd, stream.length);
  }
  close(stream.length);
  return pieces;
}

type Reading = Omit<YamlDocument, 'index'>;

function parse(text: string, line: number): Reading {
  const refuse = (at: number, reason: string): Reading => ({ line, problem: { line: at, reason } });
  const firstContent = CONTENT.exec(text);
  if (/^[ \t]*%/.test(text.slice(firstContent!.index))) {
    return refuse(line + lineCounter(text)(firstContent!.index) - 1, 'a %YAML or %TAG directive: kubectl refuses it (it ends a document at every `---` line, so the directive never reaches the document it is meant for)');
  }
  let value: unknown;
  try {
    value = load(text, { schema: KUBECTL_SCHEMA, json: true });
  } catch (error) {
    const { mark, reason, message } = error as YAMLException;
    return refuse(line + (mark?.line ?? 0), reason ?? message);
  }
  const problem = (text.includes('<<') ? mergeProblem(value) : undefined) ?? (text.includes('&') ? aliasProblem(value) : undefined);
  return problem ? refuse(line, problem) : { line, value };
}

/** The documents of one piece: the one it holds, and any that a `...` marker made kubectl ignore. */
function readPiece(piece: Piece): Reading[] {
  if (piece.separatorRest !== undefined) {
    return [{ line: piece.line, problem: { line: piece.line, reason: `only a comment may follow \`---\` on its line, not "${piece.separatorRest}" (kubectl refuses the file there)` } }];
  }
  const end = END_MARKER.exec(piece.text);
  const head = end ? piece.text.slice(0, end.index) : piece.text;
  const readings = CONTENT.test(head) ? [parse(head, piece.line)] : [];
  const tail = end ? piece.text.slice(end.index + 3) : '';
  const ignored = CONTENT.exec(tail);
  if (ignored) {
    const line = piece.line + lineCounter(piece.text)(end!.index + 3 + ignored.index) - 1;
    readings.push({ line, problem: { line, reason: 'it follows a `...` end marker with no `---` line between: kubectl ignores it, and so does kubenft' } });
  }
  return readings;
}

/**
 * Every document of a YAML stream that holds anything but null, each parsed alone or refused with
 * the line and the reason.
 */
export function yamlDocuments(stream: string): YamlDocument[] {
  return piecesOf(stream)
    .flatMap(readPiece)
    .map((reading, index) => ({ ...reading, index: index + 1 }))
    .filter((document) => document.problem !== undefined || document.value !== null);
}
