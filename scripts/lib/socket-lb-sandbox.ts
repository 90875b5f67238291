// Where the socket LB's tests and benchmark run it safely: child cgroups of the cgroup v2 root
// that they create and remove (never the root, which holds every process of the machine), and a
// bpf filesystem mounted in a private mount namespace they own, for the pins.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readlinkSync, rmSync, rmdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cgroupV2Root } from '../../src/socket-lb/dataplane.js';

const HOLDER_READY_MS = 5000;

export interface SocketLbSandbox {
  /** The cgroups, by the names given: children of the cgroup v2 root. */
  readonly cgroups: Record<string, string>;
  /** The pin directory, on the sandbox's bpf filesystem. */
  readonly pinDir: string;
  /** The bpf filesystem's mount point (visible inside the sandbox's mount namespace only). */
  readonly pinRoot: string;
  /** Prefix for a command that must see the pins: enters the sandbox's mount namespace. */
  inMountNamespace(argv: string[]): string[];
  /** Runs a command in the sandbox's mount namespace, to completion. */
  run(argv: string[], timeoutMs?: number): { status: number | null; stdout: string; stderr: string };
  /** Starts argv in the cgroup (before it execs, so its sockets are born there) and the network namespace. */
  spawnInCgroup(cgroup: string, netns: string, argv: string[]): ChildProcess;
  destroy(): void;
}

/** Why the sandbox cannot be built here (no cgroup v2), or undefined. */
export function sandboxUnavailable(): string | undefined {
  try {
    cgroupV2Root();
    return undefined;
  } catch (error) {
    return (error as Error).message;
  }
}

/**
 * Removes the cgroups an earlier run with this label left behind when it was killed before its
 * destroy ran (tap's timeout): those whose PID no longer lives. One still holding processes stays.
 */
function removeLeftoverCgroups(root: string, label: string): void {
  const prefix = `kubenft-${label}-`;
  for (const name of readdirSync(root)) {
    const pid = name.startsWith(prefix) ? Number(name.slice(prefix.length).split('-')[0]) : Number.NaN;
    if (!Number.isInteger(pid) || pid <= 0 || existsSync(`/proc/${pid}`)) continue;
    try {
      rmdirSync(join(root, name));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EBUSY') throw error;
    }
  }
}

export async function createSocketLbSandbox(label: string, cgroupNames: string[]): Promise<SocketLbSandbox> {
  const root = cgroupV2Root();
  removeLeftoverCgroups(root, label);
  const cgroups = Object.fromEntries(cgroupNames.map((name) => [name, join(root, `kubenft-${label}-${process.pid}-${name}`)]));
  const pinRoot = mkdtempSync(join(tmpdir(), 'kubenft-bpffs-'));
  const holder = spawn('unshare', ['--mount', '--propagation', 'private', 'sleep', 'infinity'], { stdio: 'ignore' });
  const inMountNamespace = (argv: string[]) => ['nsenter', '-t', String(holder.pid), '-m', ...argv];
  const sandbox: SocketLbSandbox = {
    cgroups,
    pinRoot,
    pinDir: join(pinRoot, 'kubenft'),
    inMountNamespace,
    run: (argv, timeoutMs = 60_000) => {
      const [command, ...args] = inMountNamespace(argv);
      return spawnSync(command, args, { encoding: 'utf8', timeout: timeoutMs });
    },
    spawnInCgroup: (cgroup, netns, argv) => spawn('sh', ['-c', 'echo $$ > "$1" && shift && exec "$@"', 'sh', join(cgroup, 'cgroup.procs'), 'ip', 'netns', 'exec', netns, ...argv],
      { stdio: ['pipe', 'pipe', 'inherit'] }),
    destroy() {
      process.off('SIGTERM', destroyOnTerminate);
      holder.kill('SIGKILL');
      for (const cgroup of Object.values(cgroups)) if (existsSync(cgroup)) rmdirSync(cgroup);
      rmSync(pinRoot, { recursive: true, force: true });
    },
  };
  // A SIGTERM (tap's timeout) skips the caller's teardown: remove the cgroups and the holder, then die of it.
  function destroyOnTerminate() {
    sandbox.destroy();
    process.kill(process.pid, 'SIGTERM');
  }
  process.once('SIGTERM', destroyOnTerminate);
  try {
    for (const cgroup of Object.values(cgroups)) mkdirSync(cgroup);
    const deadline = Date.now() + HOLDER_READY_MS;
    // unshare has entered its namespace once its mount namespace differs from ours.
    const mountNamespaceOf = (pid: string) => { try { return readlinkSync(`/proc/${pid}/ns/mnt`); } catch { return undefined; } };
    while (mountNamespaceOf(String(holder.pid)) === mountNamespaceOf('self') && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    const mounted = sandbox.run(['mount', '-t', 'bpf', 'bpf', pinRoot]);
    if (mounted.status !== 0) throw new Error(`mounting the sandbox's bpf filesystem failed: ${mounted.stderr}`);
  } catch (error) {
    sandbox.destroy();
    throw error;
  }
  return sandbox;
}
