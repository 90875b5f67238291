import { readFile, readdir, stat } from 'node:fs/promises';
import { extname, join } from 'node:path';
import { type KubeObject, PROXY_KINDS } from './cluster-state.js';
import { yamlDocuments } from './yaml-documents.js';

// Reads Kubernetes objects from a YAML/JSON file (multi-document, or a `kind: List` as
// `kubectl get -o yaml` prints it) or from every such file in a directory. Each document, and each
// item of a List, stands alone: one that cannot be read is reported (file, document, line, reason)
// and skipped, and every other one still loads.

const MANIFEST_EXTENSIONS = new Set(['.yaml', '.yml', '.json']);

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

export async function manifestFiles(path: string): Promise<string[]> {
  if (!(await stat(path)).isDirectory()) return [path];
  const entries = await readdir(path, { withFileTypes: true });
  return entries
    .filter((entry) => entry.isFile() && MANIFEST_EXTENSIONS.has(extname(entry.name)) && !entry.name.startsWith('.'))
    .map((entry) => join(path, entry.name))
    .sort();
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
 * own when it is a typed list such as ServiceList: the list's kind without "List").
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
    const item = typedItemKind && isObject(raw) && !('kind' in raw) ? { kind: typedItemKind, ...raw } : raw;
    const reason = notAnObject(item);
    if (reason !== undefined) {
      report(reason, index + 1);
      return [];
    }
    return objectsOf(item as KubeObject, wanted, (nested) => report(nested, index + 1));
  });
}

/** JSON files take the fast path: one document, parsed by JSON.parse. */
function jsonDocument(text: string): ReturnType<typeof yamlDocuments>[number] {
  try {
    return { index: 1, line: 1, value: JSON.parse(text) };
  } catch (error) {
    const message = (error as Error).message;
    const position = /at position (\d+)/.exec(message)?.[1];
    const line = position === undefined ? 1 : text.slice(0, Number(position)).split('\n').length;
    return { index: 1, line: 1, problem: { line, reason: message } };
  }
}

/** The objects of `kinds` (the proxy's, plus those other dataplanes registered) in the file or directory. */
export async function readManifests(path: string, kinds: readonly string[] = PROXY_KINDS): Promise<Manifests> {
  const wanted = new Set(kinds);
  const result: Manifests = { objects: [], problems: [], files: await manifestFiles(path) };
  for (const file of result.files) {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (error) {
      result.problems.push({ file, reason: (error as Error).message });
      continue;
    }
    const documents = extname(file) === '.json' ? [jsonDocument(text)] : yamlDocuments(text);
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
