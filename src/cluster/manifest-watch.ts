import { type FSWatcher, statSync, watch } from 'node:fs';
import { basename, dirname } from 'node:path';
import type { KubeObject } from './cluster-state.js';
import { describeProblem, type Manifests, readManifests } from './manifests.js';
import type { SourceHandler } from './kubernetes.js';

// Manifests as a source like the API server: every (re)read is diffed against the previous one
// and turned into apply/delete calls, so the agent's change tracking and partial syncs work the
// same whichever source feeds it. A file that could not be read whole (a broken edit, or one
// caught half-written) keeps the objects it held at its last good read, as the API server keeps
// the last valid version of an object: only a file that reads cleanly can delete what it held.
// The same holds for the whole path: one that cannot be read at the start is an error (nothing was
// ever read from it), one that goes away later keeps every object in force, is tried again every
// RETRY_MS, and is watched afresh once it is back (a directory removed and made again is a new one
// to the kernel's watch).

const objectKey = (object: KubeObject) => `${object.kind}/${object.metadata?.namespace ?? ''}/${object.metadata?.name ?? ''}`;
const RETRY_MS = 1000;

interface Known {
  object: KubeObject;
  text: string;
  file: string;
}

export class ManifestSource {
  private known = new Map<string, Known>();
  private watcher: FSWatcher | undefined;
  private timer: NodeJS.Timeout | undefined;
  private reading = Promise.resolve();
  private watching = false;
  /** The path could not be read at the last attempt (said once, not at every retry). */
  private unreadable = false;

  constructor(
    private readonly path: string,
    private readonly handler: SourceHandler,
    /** The kinds to read (ClusterState.kinds); other kinds share manifest directories and are left alone. */
    private readonly kinds?: readonly string[],
    private readonly settleMs = 200,
  ) {}

  /** Reads once (throwing ManifestPathError if the path cannot be read at all), reports synced(), then follows changes until stop(). */
  async start(watchForChanges: boolean): Promise<void> {
    const manifests = await readManifests(this.path, this.kinds);
    this.take(manifests);
    this.handler.synced();
    if (!watchForChanges) return;
    this.watching = true;
    this.watch();
  }

  stop(): void {
    this.watching = false;
    this.watcher?.close();
    clearTimeout(this.timer);
  }

  /** Editors replace files by renaming: the directory is watched, not the file's inode. */
  private watch(): void {
    this.watcher?.close();
    let directory: boolean;
    try {
      directory = statSync(this.path).isDirectory();
    } catch {
      this.readLater(RETRY_MS);
      return;
    }
    this.watcher = watch(directory ? this.path : dirname(this.path), (_event, file) => {
      if (!directory && file !== null && file !== basename(this.path)) return;
      // Files are written in several steps: wait for the burst to settle.
      this.readLater(this.settleMs);
    });
    this.watcher.on('error', () => this.readLater(RETRY_MS));
  }

  private readLater(delayMs: number): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.reading = this.reading.then(() => this.read());
    }, delayMs);
  }

  private async read(): Promise<void> {
    if (!this.watching) return;
    let manifests;
    try {
      manifests = await readManifests(this.path, this.kinds);
    } catch (error) {
      if (!this.unreadable) this.skipped(`${(error as Error).message}; the ${this.known.size} objects read from it stay in force until it can be read again`);
      this.unreadable = true;
      this.readLater(RETRY_MS);
      return;
    }
    if (this.unreadable) {
      this.unreadable = false;
      this.handler.problem(`${this.path} can be read again`);
      this.watch();
    }
    this.take(manifests);
  }

  /** Applies what changed since the last read, and deletes what a cleanly read file no longer holds. */
  private take(manifests: Manifests): void {
    const broken = new Set<string>();
    for (const problem of manifests.problems) {
      broken.add(problem.file);
      this.skipped(describeProblem(problem));
    }
    const next = new Map<string, Known>();
    for (const { object, file } of manifests.objects) next.set(objectKey(object), { object, file, text: JSON.stringify(object) });
    for (const [key, entry] of this.known) {
      if (next.has(key)) continue;
      if (broken.has(entry.file)) next.set(key, entry);
      else this.handler.delete(entry.object);
    }
    for (const [key, entry] of next) if (this.known.get(key)?.text !== entry.text) this.handler.apply(entry.object);
    this.known = next;
  }

  private skipped(message: string): void {
    if (this.handler.skipped) this.handler.skipped(message);
    else this.handler.problem(`skipped ${message}`);
  }
}
