import { CORE_SCHEMA, load, type YAMLException } from 'js-yaml';

// A YAML stream read document by document, so that a broken document costs only itself. The
// stream is split at its document markers here and each document parsed alone by js-yaml (the
// `yaml` package reports per-document errors too, but parses a 20k-object file ~25x slower).
// Parsing refuses what a manifest has no use for and a hostile one could abuse: tags beyond the
// core schema (custom tags, !!binary, !!timestamp), duplicate keys, tab indentation (js-yaml
// refuses both under this schema), alias expansion beyond a bound, `...` markers, and
// documents that hold nothing.

export interface YamlDocument {
  /** 1-based position of the document in the stream. */
  index: number;
  /** 1-based line where the document starts. */
  line: number;
  /** The parsed value, when the document could be read. */
  value?: unknown;
  /** Why the document was refused, when it was. */
  problem?: { line: number; reason: string };
}

/**
 * A marker line: `---` or `...` at the start of a line (after a YAML line break, not any of the
 * ones JavaScript's ^ knows), alone or followed by a space.
 */
const MARKER = /(?<![^\n\r])(---|\.\.\.)(?=[ \t\r\n]|$)/g;
/** A line holding something other than blanks, a comment or a directive. */
const CONTENT = /^[ \t]*[^\s#%]/m;
/** Aliases may grow a document to at most this many nodes, or one per character of its text if more. */
const ALIAS_EXPANSION_FLOOR = 10_000;

function linesIn(text: string, from: number, to: number): number {
  let count = 0;
  for (let at = text.indexOf('\n', from); at !== -1 && at < to; at = text.indexOf('\n', at + 1)) count++;
  return count;
}

interface Chunk {
  start: number;
  end: number;
  line: number;
  /** Opened by a `---` marker (so it is a document even when it holds nothing). */
  explicit: boolean;
  /** The line of the `...` marker that closed it. */
  endMarkerLine?: number;
}

/** Whether a chunk (up to `end`) holds more than blanks, comments, directives and its own `---`. */
const holdsContent = (text: string, chunk: Chunk, end = chunk.end) => CONTENT.test(text.slice(chunk.explicit ? chunk.start + 3 : chunk.start, end));

/**
 * Splits a stream at its document markers. Comments and directives before a `---` belong to the
 * document it opens; markers are only ever at the start of a line (the YAML spec forbids them
 * inside scalars there), so a `---` inside an indented block scalar is content.
 */
function chunksOf(text: string): Chunk[] {
  const chunks: Chunk[] = [];
  let current: Chunk = { start: 0, end: text.length, line: 1, explicit: false };
  let line = 1;
  let scanned = 0;
  for (const match of text.matchAll(MARKER)) {
    const at = match.index!;
    line += linesIn(text, scanned, at);
    scanned = at;
    if (match[1] === '---') {
      if (current.explicit || holdsContent(text, current, at)) {
        chunks.push({ ...current, end: at });
        current = { start: at, end: text.length, line, explicit: true };
      } else {
        // Only comments or directives so far: this `---` opens the document they precede.
        current = { ...current, explicit: true, start: at, line };
      }
    } else {
      const lineEnd = text.indexOf('\n', at);
      const end = lineEnd === -1 ? text.length : lineEnd + 1;
      chunks.push({ ...current, end, endMarkerLine: line });
      current = { start: end, end: text.length, line: line + 1, explicit: false };
    }
  }
  // Trailing comments after the last document are not a document; a file of nothing but comments is.
  if (current.explicit || holdsContent(text, current) || chunks.length === 0) chunks.push(current);
  return chunks;
}

/** Counts the nodes of a value as its aliases expand, giving up past `budget`. */
function expandsBeyond(value: unknown, budget: number): boolean {
  let nodes = 0;
  const stack: unknown[] = [value];
  while (stack.length > 0) {
    const node = stack.pop();
    if (++nodes > budget) return true;
    if (typeof node === 'object' && node !== null) {
      for (const child of Array.isArray(node) ? node : Object.values(node)) stack.push(child);
    }
  }
  return false;
}

function parseChunk(text: string, chunk: Chunk, index: number): YamlDocument {
  const document: YamlDocument = { index, line: chunk.line };
  const refuse = (line: number, reason: string) => ({ ...document, problem: { line, reason } });
  if (chunk.endMarkerLine !== undefined) return refuse(chunk.endMarkerLine, 'a `...` document end marker is not accepted');
  const source = text.slice(chunk.start, chunk.end);
  if (!holdsContent(text, chunk)) {
    return refuse(chunk.line, /^[ \t]*#/m.test(source) ? 'the document holds only comments' : 'the document is empty');
  }
  let value: unknown;
  try {
    value = load(source, { schema: CORE_SCHEMA });
  } catch (error) {
    const { mark, reason, message } = error as YAMLException;
    return refuse(chunk.line + (mark?.line ?? 0), reason ?? message);
  }
  // js-yaml hands every alias the anchored node itself: expansion happens in whoever walks the
  // value next (JSON.stringify, the normalizers), so a few lines of aliases could make billions.
  if (source.includes('&') && expandsBeyond(value, Math.max(ALIAS_EXPANSION_FLOOR, source.length))) {
    return refuse(chunk.line, 'its aliases expand beyond the size of the document');
  }
  return { ...document, value };
}

/** Every document of a YAML stream, each parsed alone or refused with the line and the reason. */
export function yamlDocuments(text: string): YamlDocument[] {
  const stream = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
  return chunksOf(stream).map((chunk, index) => parseChunk(stream, chunk, index + 1));
}
