import { readFile, readdir, stat } from 'node:fs/promises';
import { extname, join } from 'node:path';
import { type KubeObject, PROXY_KINDS } from './cluster-state.js';
import { lineCounter, type YamlDocument, yamlDocuments } from './yaml-documents.js';

// Reads Kubernetes objects from a YAML or JSON file (multi-document, or a `kind: List` as
// `kubectl get -o yaml` prints it) or from every such file in a directory, as `kubectl apply -f`
// reads them. Each document, and each item of a List, stands alone: one that cannot be read is
// reported (file, document, line, reason) and skipped, and every other one still loads.

const MANIFEST_EXTENSIONS = new Set(['.yaml', '.yml', '.json']);

/** The manifests path cannot be read at all (it does not exist, or is no file or directory one can read). */
export class ManifestPathError extends Error {}

export interface ManifestProblem {
  file: string;
  /** 1-based; absent when the whole file could not be read. */
  document?: number;
  /** 1-based index of the List item, for a problem in one item. */
  item?: number;
  line?: number;
  reason: string;
}

export interface ManifestObject {
  object: KubeObject;
  file: string;
}

export interface Manifests {
  objects: ManifestObject[];
  problems: ManifestProblem[];
  files: string[];
}

/** "FILE document 3 (line 12), item 2: reason", as much of it as is known. */
export function describeProblem(problem: ManifestProblem): string {
  const document = problem.document === undefined ? '' : ` document ${problem.document}`;
  const line = problem.line === undefined ? '' : ` (line ${problem.line})`;
  const item = problem.item === undefined ? '' : `, item ${problem.item}`;
  return `${problem.file}${document}${line}${item}: ${problem.reason}`;
}

/**
 * The files of a manifests path: itself, or a directory's files with a manifest extension, as
 * kubectl picks them: hidden ones too, and symbolic links (as a mounted ConfigMap holds its files)
 * unless they lead to a directory; subdirectories are not read. A link leading nowhere is a file
 * that cannot be read.
 */
export async function manifestFiles(path: string): Promise<string[]> {
  let directory: boolean;
  try {
    directory = (await stat(path)).isDirectory();
  } catch (error) {
    const { code, message } = error as NodeJS.ErrnoException;
    throw new ManifestPathError(code === 'ENOENT' ? `${path}: no such file or directory` : message);
  }
  if (!directory) return [path];
  const entries = await readdir(path, { withFileTypes: true });
  const files = await Promise.all(entries
    .filter((entry) => MANIFEST_EXTENSIONS.has(extname(entry.name)) && (entry.isFile() || entry.isSymbolicLink()))
    .map(async (entry) => {
      const file = join(path, entry.name);
      return entry.isFile() || !(await stat(file).then((target) => target.isDirectory(), () => false)) ? [file] : [];
    }));
  return files.flat().sort();
}

const isObject = (value: unknown): value is KubeObject => typeof value === 'object' && value !== null && !Array.isArray(value);

/** Why a document's value is no Kubernetes object, or undefined when it is one. */
function notAnObject(value: unknown): string | undefined {
  if (Array.isArray(value)) return 'a top-level sequence is not a Kubernetes object';
  if (!isObject(value)) return `a ${value === null ? 'null' : typeof value} is not a Kubernetes object`;
  if (typeof value.kind !== 'string' || value.kind === '') return 'the object has no kind';
  return undefined;
}

/**
 * The objects of one document: itself, or each item of a List (whose items carry no kind of their
 * own when it is a typed list such as ServiceList). kubectl refuses a whole List for one item that
 * is no object; here that item alone is refused, as a broken document costs only itself.
 */
function objectsOf(value: KubeObject, wanted: Set<string>, report: (reason: string, item?: number) => void): KubeObject[] {
  const kind = value.kind as string;
  const typedItemKind = kind.endsWith('List') ? kind.slice(0, -'List'.length) : '';
  // Lists of other kinds (DeploymentList) are not ours to judge, item by item or at all.
  if (kind !== 'List' && !wanted.has(typedItemKind)) return [value];
  if (!Array.isArray(value.items)) {
    report('items is not a list');
    return [];
  }
  return value.items.flatMap((raw: unknown, index: number) => {
    // kubectl gives such an item the list's kind less "List", and its apiVersion.
    const item = typedItemKind && isObject(raw) && !('kind' in raw) ? { apiVersion: value.apiVersion, kind: typedItemKind, ...raw } : raw;
    const reason = notAnObject(item);
    if (reason !== undefined) {
      report(reason, index + 1);
      return [];
    }
    return objectsOf(item as KubeObject, wanted, (nested) => report(nested, index + 1));
  });
}

/**
 * A file's text as kubectl decodes it: UTF-8, or UTF-16 when a byte-order mark says so (as
 * PowerShell writes files), without the mark.
 */
function decode(bytes: Buffer): string {
  if (bytes[0] === 0xff && bytes[1] === 0xfe) return new TextDecoder('utf-16le').decode(bytes.subarray(2));
  if (bytes[0] === 0xfe && bytes[1] === 0xff) return new TextDecoder('utf-16be').decode(bytes.subarray(2));
  const text = bytes.toString('utf8');
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
}

/** kubectl reads a file as a JSON stream when its text starts with `{` (within the first 4 KiB), as YAML otherwise. */
const isJsonStream = (text: string) => text.slice(0, 4096).trimStart().startsWith('{');

/**
 * A JSON stream as kubectl's decoder reads one: values back to back, null ones skipped. JSON.parse
 * reads each (a file holding one object, as `kubectl get -o json` writes it, in one call); a syntax
 * error ends the stream, as it ends kubectl's reading of the file.
 */
function jsonDocuments(text: string): YamlDocument[] {
  const documents: YamlDocument[] = [];
  const lineOf = lineCounter(text);
  for (let at = text.search(/\S/), index = 1; at !== -1 && at < text.length; index++) {
    const line = lineOf(at);
    try {
      const value = JSON.parse(at === 0 ? text : text.slice(at));
      if (value !== null) documents.push({ index, line, value });
      break;
    } catch (error) {
      const { message } = error as Error;
      const position = Number(/at position (\d+)/.exec(message)?.[1] ?? 0);
      if (!/non-whitespace character after JSON/.test(message)) {
        const reason = `${message} (a file whose text starts with \`{\` is read as JSON, as kubectl reads it)`;
        documents.push({ index, line, problem: { line: lineOf(at + position), reason } });
        break;
      }
      const value = JSON.parse(text.slice(at, at + position));
      if (value !== null) documents.push({ index, line, value });
      const next = text.slice(at + position).search(/\S/);
      at = next === -1 ? -1 : at + position + next;
    }
  }
  return documents;
}

/** The objects of `kinds` (the proxy's, plus those other dataplanes registered) in the file or directory. */
export async function readManifests(path: string, kinds: readonly string[] = PROXY_KINDS): Promise<Manifests> {
  const wanted = new Set(kinds);
  const result: Manifests = { objects: [], problems: [], files: await manifestFiles(path) };
  for (const file of result.files) {
    let text: string;
    try {
      text = decode(await readFile(file));
    } catch (error) {
      result.problems.push({ file, reason: (error as Error).message });
      continue;
    }
    const documents = isJsonStream(text) ? jsonDocuments(text) : yamlDocuments(text);
    // kubectl refuses a file that holds nothing ("no objects passed to apply"); a watched file read
    // empty is most likely caught mid-write, and being a problem keeps the objects it held.
    if (documents.length === 0) result.problems.push({ file, reason: 'the file holds no objects' });
    for (const { index, line, value, problem } of documents) {
      const report = (reason: string, item?: number) => result.problems.push({ file, document: index, line, item, reason });
      if (problem !== undefined) {
        result.problems.push({ file, document: index, line: problem.line, reason: problem.reason });
        continue;
      }
      const reason = notAnObject(value);
      if (reason !== undefined) {
        report(reason);
        continue;
      }
      for (const object of objectsOf(value as KubeObject, wanted, report)) {
        // Other kinds (Deployments and the like) share manifest directories; they are not ours to judge.
        if (wanted.has(object.kind as string)) result.objects.push({ object, file });
      }
    }
  }
  return result;
}
