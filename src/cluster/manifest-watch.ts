import { type FSWatcher, statSync, watch } from 'node:fs';
import { basename, dirname } from 'node:path';
import type { KubeObject } from './cluster-state.js';
import { describeProblem, readManifests } from './manifests.js';
import type { SourceHandler } from './kubernetes.js';

// Manifests as a source like the API server: every (re)read is diffed against the previous one
// and turned into apply/delete calls, so the agent's change tracking and partial syncs work the
// same whichever source feeds it. A file that could not be read whole (a broken edit, or one
// caught half-written) keeps the objects it held at its last good read, as the API server keeps
// the last valid version of an object: only a file that reads cleanly can delete what it held.

const objectKey = (object: KubeObject) => `${object.kind}/${object.metadata?.namespace ?? ''}/${object.metadata?.name ?? ''}`;

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

  constructor(
    private readonly path: string,
    private readonly handler: SourceHandler,
    /** The kinds to read (ClusterState.kinds); other kinds share manifest directories and are left alone. */
    private readonly kinds?: readonly string[],
    private readonly settleMs = 200,
  ) {}

  /** Reads once, reports synced(), then follows changes until stop(). */
  async start(watchForChanges: boolean): Promise<void> {
    await this.read();
    this.handler.synced();
    if (!watchForChanges) return;
    // Editors replace files by renaming: watch the directory, not the file's inode.
    const directory = statSync(this.path).isDirectory();
    const watched = directory ? this.path : dirname(this.path);
    this.watcher = watch(watched, (_event, file) => {
      if (!directory && file !== null && file !== basename(this.path)) return;
      clearTimeout(this.timer);
      // Files are written in several steps: wait for the burst to settle.
      this.timer = setTimeout(() => {
        this.reading = this.reading.then(() => this.read());
      }, this.settleMs);
    });
  }

  stop(): void {
    this.watcher?.close();
    clearTimeout(this.timer);
  }

  private async read(): Promise<void> {
    let manifests;
    try {
      manifests = await readManifests(this.path, this.kinds);
    } catch (error) {
      this.skipped(`${this.path}: ${(error as Error).message}`);
      return;
    }
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
