// kube-proxy's BoundedFrequencyRunner: runs the sync function when asked, but never more often
// than a token bucket allows (one token per minInterval, `burst` tokens at most), and at least
// every maxInterval. Requests while a run is in progress or while waiting for a token collapse
// into one pending run, so an event storm costs a bounded number of syncs, never a queue.
// Requests before start() are only remembered: the source asks for a sync with every object of its
// first lists, and a sync then would load a partial cluster (Services listed, their EndpointSlices
// not yet) only to be replaced by the next one.

export interface SyncRunnerOptions {
  minIntervalMs: number;
  maxIntervalMs: number;
  burst?: number;
  now?: () => number;
}

export class SyncRunner {
  private tokens: number;
  private lastRefill: number;
  private running = false;
  private pending = false;
  private timer: NodeJS.Timeout | undefined;
  private periodic: NodeJS.Timeout | undefined;
  private started = false;
  private stopped = false;
  private readonly burst: number;
  private readonly now: () => number;

  constructor(
    private readonly sync: (reason: 'requested' | 'periodic') => Promise<void>,
    private readonly options: SyncRunnerOptions,
  ) {
    this.burst = options.burst ?? 2;
    this.now = options.now ?? (() => performance.now());
    this.tokens = this.burst;
    this.lastRefill = this.now();
  }

  /** Starts the periodic runs and does the first sync at once. */
  start(): void {
    this.started = true;
    this.schedulePeriodic();
    this.run();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    clearTimeout(this.periodic);
  }

  /** Asks for a sync; it happens as soon as the rate limit allows, and not before start(). */
  run(): void {
    if (this.stopped) return;
    this.pending = true;
    if (!this.started || this.running || this.timer) return;
    this.refill();
    if (this.tokens >= 1) {
      this.timer = setTimeout(() => this.fire('requested'), 0);
      return;
    }
    const wait = (1 - this.tokens) * this.options.minIntervalMs;
    this.timer = setTimeout(() => this.fire('requested'), wait);
  }

  private refill(): void {
    const now = this.now();
    const interval = Math.max(this.options.minIntervalMs, 1);
    this.tokens = Math.min(this.burst, this.tokens + (now - this.lastRefill) / interval);
    this.lastRefill = now;
  }

  private schedulePeriodic(): void {
    clearTimeout(this.periodic);
    if (this.stopped) return;
    this.periodic = setTimeout(() => {
      this.pending = true;
      void this.fire('periodic');
    }, this.options.maxIntervalMs);
    this.periodic.unref();
  }

  private async fire(reason: 'requested' | 'periodic'): Promise<void> {
    this.timer = undefined;
    if (this.stopped || this.running || !this.pending) return;
    this.refill();
    this.tokens = Math.max(0, this.tokens - 1);
    this.pending = false;
    this.running = true;
    try {
      await this.sync(reason);
    } finally {
      this.running = false;
      this.schedulePeriodic();
      if (this.pending) this.run();
    }
  }
}
