import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Logger } from 'pino';
import type { Counter } from 'prom-client';
import { reloadHaproxy, runningMaster, startHaproxy, stopHaproxy } from '../../kernel/haproxy-process.js';
import { runtimeChange, runtimeCommand } from '../../kernel/haproxy-runtime.js';
import { netnsInode } from '../../kernel/netns-ownership.js';
import type { RouteTable } from '../routes.js';
import { ANY_HOST, type HaproxyLayout, type HaproxySettings, haproxyLayout, isSlotName } from './config.js';
import { type DrainingServer, HaproxyModel } from './model.js';
import { REQUEST_TABLE, RequestCounterReader } from './request-counters.js';
import { RequestLogReader } from './request-log.js';
import { generatedDefaultCertificate, type IngressProxy, type ProxyUpdate, type RequestMetrics } from '../proxy.js';
import type { DefaultCertificate } from '../proxy-protocol.js';

// The HAProxy dataplane (--ingress-dataplane=haproxy): HAProxy runs beside the agent, detached
// (it serves the last plan while the agent is away), programmed through its runtime API. The
// agent writes the configuration when it starts HAProxy, adopts one an earlier agent started
// (reloading it with the agent's plan, its listeners passed over), and applies every later plan
// as runtime API commands; only what those cannot do (more backend slots) reloads, counted in
// kubenft_ingress_haproxy_reloads_total. HAProxy gone is started again with the last plan.

export interface HaproxyMetrics {
  reloads: Counter<'reason'>;
  restarts: Counter;
}

/** This network namespace's directory under --ingress-haproxy-dir (one HAProxy per namespace, as one agent). */
export const netnsHaproxyDir = (dir: string) => join(dir, `netns-${netnsInode()}`);

const SUPERVISE_INTERVAL_MS = 1_000;
/** How often a draining server is tried for deletion (HAProxy deletes none with connections). */
const DRAIN_RETRY_MS = 1_000;

export class HaproxyProxy implements IngressProxy {
  private readonly layout: HaproxyLayout;
  private readonly model: HaproxyModel;
  private master: number | undefined;
  private last: ProxyUpdate | undefined;
  /** The generated certificate served while no --ingress-default-certificate Secret is (made by the first plan). */
  private generated: NonNullable<DefaultCertificate> | undefined;
  /** One change to HAProxy at a time: plans, drains and restarts queue. */
  private queue: Promise<void> = Promise.resolve();
  private supervisor: NodeJS.Timeout | undefined;
  private drainTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  /** The client connections HAProxy had at the last reading. */
  private connections = 0;

  private readonly requestLog: RequestLogReader;
  private readonly requestCounters: RequestCounterReader;

  constructor(
    private readonly binary: string, dir: string, private readonly settings: HaproxySettings, private readonly log: Logger,
    private readonly metrics: HaproxyMetrics, private readonly requestMetrics: RequestMetrics,
  ) {
    this.layout = haproxyLayout(dir);
    this.model = new HaproxyModel(this.layout, settings.gatewayRules);
    this.requestLog = new RequestLogReader(this.layout.adminSocket, this.model, requestMetrics);
    this.requestCounters = new RequestCounterReader({
      routes: this.model.routes, isSlot: isSlotName, backendOf: (slot) => this.model.backendOf(slot), hostOf: (ruleHost) => (ruleHost === ANY_HOST ? '' : ruleHost),
    }, requestMetrics);
  }

  apply(update: ProxyUpdate): Promise<void> {
    return this.serially(() => this.applyNow(update));
  }

  private serially(step: () => Promise<void>): Promise<void> {
    const run = this.queue.then(step);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async applyNow(update: ProxyUpdate): Promise<void> {
    this.generated ??= await generatedDefaultCertificate();
    this.last = update;
    const defaultCertificate = this.defaultCertificateOf(update);
    if (this.master === undefined) {
      this.model.load(update.table, defaultCertificate);
      await this.begin();
      return;
    }
    // A table planned whole (a full sync, a Gateway changed) is diffed against the model: applied as
    // what differs, it reloads only for what the runtime API cannot do, as any change does.
    const commands = this.model.changes(update.table, update.changes ?? this.model.wholeChanges(update.table), defaultCertificate);
    if (!commands) {
      await this.reload(update.table, this.model.reloadReason);
      return;
    }
    try {
      for (const { command, payload } of commands) await runtimeChange(this.layout.adminSocket, command, payload);
    } catch (error) {
      // The model went ahead of HAProxy: the configuration written whole brings them together.
      this.log.error(`ingress: HAProxy refused a change (${(error as Error).message}): reloading with the whole plan`);
      await this.reload(update.table, 'runtime API refusal');
    }
    this.scheduleDrain();
  }

  /** Plans are applied only after the first made the generated certificate. */
  private defaultCertificateOf(update: ProxyUpdate): NonNullable<DefaultCertificate> {
    return update.defaultCertificate ?? this.generated!;
  }

  /** Starts HAProxy, or adopts the one an earlier agent left (reloaded with this plan). */
  private async begin(): Promise<void> {
    this.writeFiles();
    const running = runningMaster(this.layout);
    if (running !== undefined) {
      this.master = running;
      await reloadHaproxy(this.layout, running);
      this.metrics.reloads.inc({ reason: 'adopted' });
      this.log.info({ pid: running, dir: this.layout.dir }, 'ingress: HAProxy adopted from an earlier agent and reloaded with this plan');
    } else {
      this.master = await startHaproxy(this.binary, this.layout);
      this.log.info({ pid: this.master, dir: this.layout.dir, http: this.settings.httpAddress, https: this.settings.httpsAddress }, 'ingress: HAProxy started');
    }
    this.requestLog.follow();
    this.requestCounters.reset();
    this.supervisor ??= setInterval(() => this.supervise(), SUPERVISE_INTERVAL_MS).unref();
  }

  private async reload(table: RouteTable, reason: string): Promise<void> {
    this.model.load(table, this.defaultCertificateOf(this.last!));
    this.writeFiles();
    // The counts of the worker that leaves since the last reading are lost with it.
    await this.readCounters();
    await reloadHaproxy(this.layout, this.master!);
    this.requestLog.follow();
    this.requestCounters.reset();
    this.metrics.reloads.inc({ reason });
    this.log.info({ reason }, 'ingress: HAProxy reloaded');
  }

  private writeFiles(): void {
    mkdirSync(join(this.layout.dir, 'certs'), { recursive: true, mode: 0o700 });
    for (const { path, content } of this.model.files(this.settings)) {
      mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
      writeFileSync(path, content, { mode: 0o600 });
    }
  }

  /** HAProxy gone (killed, crashed): started again with the last plan. */
  private supervise(): void {
    if (this.stopped || this.master === undefined) return;
    if (runningMaster(this.layout) === this.master) {
      void this.serially(() => this.readCounters());
      return;
    }
    void this.serially(async () => {
      if (this.stopped || runningMaster(this.layout) === this.master) return;
      this.log.error({ pid: this.master }, 'ingress: HAProxy exited; starting it again with the last plan');
      this.metrics.restarts.inc();
      this.master = undefined;
      this.model.load(this.last!.table, this.defaultCertificateOf(this.last!));
      await this.begin();
    }).catch((error: Error) => this.log.error(`ingress: HAProxy could not be started again: ${error.message}`));
  }

  /** HAProxy's counters into the request metrics (request-counters.ts). */
  private async readCounters(): Promise<void> {
    try {
      const [info, table, stats] = await Promise.all(['show info', `show table ${REQUEST_TABLE}`, 'show stat'].map((command) => runtimeCommand(this.layout.adminSocket, command)));
      const connections = /^CurrConns: (\d+)$/m.exec(info)?.[1];
      if (connections !== undefined) this.countConnections(Number(connections));
      this.requestCounters.readTable(table);
      this.requestCounters.readStats(stats);
    } catch {
      // HAProxy not answering now: read next time (the supervisor restarts it if it is gone).
    }
  }

  /** The gauge may be shared (the Gateway's two listeners): each proxy adds what changed of its own count. */
  private countConnections(connections: number): void {
    this.requestMetrics.connections.inc(connections - this.connections);
    this.connections = connections;
  }

  /** Servers taken out of rotation are deleted once HAProxy lets them go (no connection left). */
  private scheduleDrain(): void {
    if (this.drainTimer || this.model.draining().length === 0) return;
    this.drainTimer = setTimeout(() => {
      this.drainTimer = undefined;
      void this.serially(() => this.deleteDrained()).finally(() => this.scheduleDrain());
    }, DRAIN_RETRY_MS).unref();
  }

  private async deleteDrained(): Promise<void> {
    if (this.stopped) return;
    for (const server of this.model.draining()) {
      if (await this.deleteServer(server)) this.model.forget(server);
    }
  }

  private async deleteServer({ slot, name }: DrainingServer): Promise<boolean> {
    try {
      await runtimeChange(this.layout.adminSocket, `del server ${slot}/${name}`);
      return true;
    } catch {
      return false;
    }
  }

  /** The agent stops: HAProxy serves on with the last plan; the next agent adopts it. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.requestLog.stop();
    this.countConnections(0);
    clearInterval(this.supervisor);
    clearTimeout(this.drainTimer);
    await this.queue;
  }
}

/** --cleanup: stops this namespace's HAProxy (each of them: one per suffix of its directory's name) and removes its files. */
export async function cleanupHaproxy(dir: string, log: Logger, suffixes: readonly string[] = ['']): Promise<void> {
  for (const suffix of suffixes) {
    const layout = haproxyLayout(netnsHaproxyDir(dir) + suffix);
    if (await stopHaproxy(layout)) log.info({ dir: layout.dir }, 'HAProxy stopped');
    rmSync(layout.dir, { recursive: true, force: true });
  }
}
