import { type FSWatcher, statSync, watch } from 'node:fs';
import { basename, dirname } from 'node:path';
import type { KubeObject } from '../state/cluster-state.js';
import { readManifests } from './manifests.js';
import type { SourceHandler } from './kubernetes.js';

// Manifests as a source like the API server: every (re)read is diffed against the previous one
// and turned into apply/delete calls, so the agent's change tracking and partial syncs work the
// same whichever source feeds it.

const objectKey = (object: KubeObject) => `${object.kind}/${object.metadata?.namespace ?? ''}/${object.metadata?.name ?? ''}`;

export class ManifestSource {
  private known = new Map<string, { object: KubeObject; text: string }>();
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
      this.handler.problem(`reading ${this.path}: ${(error as Error).message}`);
      return;
    }
    for (const problem of manifests.problems) this.handler.problem(`skipped part of ${problem.file}: ${problem.reason}`);
    const next = new Map<string, { object: KubeObject; text: string }>();
    for (const object of manifests.objects) next.set(objectKey(object), { object, text: JSON.stringify(object) });
    for (const [key, entry] of this.known) if (!next.has(key)) this.handler.delete(entry.object);
    for (const [key, entry] of next) if (this.known.get(key)?.text !== entry.text) this.handler.apply(entry.object);
    this.known = next;
  }
}
