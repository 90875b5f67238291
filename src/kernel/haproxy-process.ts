import { spawn } from 'node:child_process';
import { accessSync, closeSync, constants, existsSync, openSync, readFileSync, rmSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { RuntimeApiError, runtimeCommand } from './haproxy-runtime.js';

// HAProxy as a process of its own: started in master-worker mode (-W) with its master CLI (-S),
// detached, so that it outlives whoever started it; found again through its pid file; reloaded
// through the master (the listening sockets pass to the new worker, expose-fd listeners); stopped
// by its PID once it is known to be HAProxy.

export interface HaproxyFiles {
  config: string;
  masterSocket: string;
  adminSocket: string;
  pidFile: string;
  log: string;
}

/** Where haproxy is on PATH (Debian puts it in /usr/sbin), or undefined. */
export function findHaproxy(path = process.env.PATH ?? ''): string | undefined {
  for (const dir of path.split(delimiter)) {
    if (dir === '') continue;
    const candidate = join(dir, 'haproxy');
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

const isAlive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
};

/** The master's PID from the pid file, when that process is alive and is HAProxy (a PID reused by another process is not ours to signal). */
export function runningMaster(files: HaproxyFiles): number | undefined {
  if (!existsSync(files.pidFile)) return undefined;
  const pid = Number(readFileSync(files.pidFile, 'utf8').trim());
  if (!Number.isInteger(pid) || pid <= 0 || !isAlive(pid)) return undefined;
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'haproxy' ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** The running worker's PID as its stats socket reports it, or undefined when none answers. */
export async function workerPid(files: HaproxyFiles): Promise<number | undefined> {
  try {
    const pid = /^Pid: (\d+)$/m.exec(await runtimeCommand(files.adminSocket, 'show info'))?.[1];
    return pid === undefined ? undefined : Number(pid);
  } catch {
    return undefined;
  }
}

const START_TIMEOUT_MS = 30_000;

const logTail = (files: HaproxyFiles) => {
  try {
    return readFileSync(files.log, 'utf8').trim().split('\n').slice(-10).join('\n');
  } catch {
    return '';
  }
};

/** Waits for a worker other than `previous` to answer; throws with HAProxy's log when the master ends or none does. */
async function awaitWorker(files: HaproxyFiles, master: number, previous: number | undefined): Promise<number> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (!isAlive(master)) throw new Error(`haproxy exited: ${logTail(files)}`);
    const pid = await workerPid(files);
    if (pid !== undefined && pid !== previous) return pid;
    await sleep(25);
  }
  throw new Error(`haproxy did not answer on ${files.adminSocket} within ${START_TIMEOUT_MS / 1000}s: ${logTail(files)}`);
}

/** Starts HAProxy's master (detached: it outlives this process) and waits for its worker; resolves to the master's PID. */
export async function startHaproxy(binary: string, files: HaproxyFiles): Promise<number> {
  const log = openSync(files.log, 'a');
  try {
    const child = spawn(binary, ['-W', '-S', `${files.masterSocket},mode,600`, '-f', files.config, '-p', files.pidFile], { detached: true, stdio: ['ignore', log, log] });
    child.on('error', () => undefined);
    child.unref();
    if (child.pid === undefined) throw new Error(`could not start ${binary}`);
    await awaitWorker(files, child.pid, undefined);
    return child.pid;
  } finally {
    closeSync(log);
  }
}

/** Has the master load the configuration again (the listeners pass to the new worker); resolves once the new worker answers. */
export async function reloadHaproxy(files: HaproxyFiles, master: number): Promise<void> {
  const previous = await workerPid(files);
  const answer = await runtimeCommand(files.masterSocket, 'reload');
  if (/error|unknown/i.test(answer)) throw new RuntimeApiError(`reload: ${answer.trim()}`);
  await awaitWorker(files, master, previous);
}

/** Stops the HAProxy of these files, if one runs (SIGTERM, then SIGKILL after 5 s); resolves whether there was one. */
export async function stopHaproxy(files: HaproxyFiles): Promise<boolean> {
  const pid = runningMaster(files);
  if (pid === undefined) return false;
  process.kill(pid, 'SIGTERM');
  for (let waited = 0; waited < 5_000 && isAlive(pid); waited += 50) await sleep(50);
  if (isAlive(pid)) process.kill(pid, 'SIGKILL');
  rmSync(files.pidFile, { force: true });
  return true;
}

export { isAlive as processIsAlive };
