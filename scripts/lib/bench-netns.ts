// Scratch network namespaces for the control-plane runs, and the workers that measure inside them
// (or inside a topology's node namespace). Whatever happens, including SIGINT, every namespace
// made here is deleted and every worker started here is stopped, by its PID.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { projectRoot } from '../../src/kernel/native.js';

/** Tells a worker the orchestrator's network namespace (inode), which it must not run in. */
export const PARENT_NETNS_ENV = 'KUBENFT_BENCH_PARENT_NETNS';
const STOP_GRACE_MS = 3_000;
const IP_TIMEOUT_MS = 30_000;

const liveNamespaces = new Set<string>();
const liveWorkers = new Set<ChildProcess>();
let namespaceCounter = 0;

const sleepSync = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
const isAlive = (child: ChildProcess) => child.exitCode === null && child.signalCode === null;

function ipSync(...args: string[]): void {
  const result = spawnSync('ip', args, { encoding: 'utf8', timeout: IP_TIMEOUT_MS });
  if (result.status !== 0) throw new Error(`ip ${args.join(' ')}: ${result.stderr?.trim() || result.error?.message}`);
}

/** Synchronous, for exit and signal handlers: workers get SIGTERM (so they end their own children), then SIGKILL. */
function stopEverythingNow(): void {
  for (const worker of liveWorkers) worker.kill('SIGTERM');
  const deadline = Date.now() + STOP_GRACE_MS;
  while ([...liveWorkers].some(isAlive) && Date.now() < deadline) sleepSync(50);
  for (const worker of liveWorkers) if (isAlive(worker)) worker.kill('SIGKILL');
  for (const name of liveNamespaces) spawnSync('ip', ['netns', 'delete', name], { timeout: IP_TIMEOUT_MS });
  liveNamespaces.clear();
}

const SIGNAL_EXIT_CODES = { SIGINT: 130, SIGTERM: 143, SIGHUP: 129 } as const;
let handlersInstalled = false;
function installCleanupHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.on('exit', stopEverythingNow);
  for (const [signal, code] of Object.entries(SIGNAL_EXIT_CODES)) {
    process.on(signal, () => {
      process.stderr.write(`\nbench: ${signal}, cleaning up namespaces and workers\n`);
      stopEverythingNow();
      process.exit(code);
    });
  }
}

/** Runs `fn` with a new, empty network namespace that is deleted afterwards, whatever happens. */
export async function withScratchNamespace<T>(fn: (namespace: string) => Promise<T>): Promise<T> {
  installCleanupHandlers();
  const name = `knft-bench-${process.pid}-${++namespaceCounter}`;
  ipSync('netns', 'add', name);
  liveNamespaces.add(name);
  try {
    ipSync('-n', name, 'link', 'set', 'lo', 'up');
    return await fn(name);
  } finally {
    ipSync('netns', 'delete', name);
    liveNamespaces.delete(name);
  }
}

export class WorkerTimeout extends Error {}

/**
 * Everything a worker does rewrites the namespace's rules, so a worker refuses to run unless the
 * orchestrator said which namespace it runs in (PARENT_NETNS_ENV) and this is another one.
 */
export function assertInScratchNamespace(program: string): void {
  const parent = process.env[PARENT_NETNS_ENV];
  if (parent === undefined || String(statSync('/proc/self/ns/net').ino) === parent) {
    throw new Error(`${program} must be started by scripts/bench.js, inside a scratch network namespace`);
  }
}

function workerProgram(name: string): string {
  const path = join(projectRoot(), 'dist', 'scripts', 'lib', `${name}.js`);
  if (!existsSync(path)) throw new Error(`${path} is missing: run tsc first`);
  return path;
}

export interface WorkerOptions {
  timeoutMs: number;
  /** The worker program, a module of scripts/lib (bench-worker by default). */
  program?: string;
}

/** Runs one worker task (any program's: bench-worker's WorkerTask, the coldstart and DNS workers' own) in `namespace` and returns its JSON result. */
export function runWorker<T>(namespace: string, task: { kind: string; [field: string]: unknown }, options: WorkerOptions): Promise<T> {
  installCleanupHandlers();
  const argv = ['netns', 'exec', namespace, process.execPath, workerProgram(options.program ?? 'bench-worker'), JSON.stringify(task)];
  return new Promise((resolve, reject) => {
    // `ip netns exec` execs in place: the child's PID is the worker's.
    const env = { ...process.env, [PARENT_NETNS_ENV]: String(statSync('/proc/self/ns/net').ino) };
    const child = spawn('ip', argv, { stdio: ['ignore', 'pipe', 'pipe'], env });
    liveWorkers.add(child);
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGTERM');
      setTimeout(() => isAlive(child) && child.kill('SIGKILL'), STOP_GRACE_MS).unref();
    }, options.timeoutMs);
    child.once('error', (error) => {
      clearTimeout(timer);
      liveWorkers.delete(child);
      reject(error);
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      liveWorkers.delete(child);
      if (timedOut) return reject(new WorkerTimeout(`${task.kind} timed out after ${options.timeoutMs} ms`));
      if (code !== 0) return reject(new Error(`${task.kind} failed (exit ${code}): ${stderr.trim().split('\n').slice(0, 6).join(' | ')}`));
      try {
        resolve(JSON.parse(stdout) as T);
      } catch {
        reject(new Error(`${task.kind} printed no JSON: ${stdout.slice(0, 200)}`));
      }
    });
  });
}
