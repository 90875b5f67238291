// Runs the command-line tools the benchmark measures (nft, iptables-restore) with a deadline.
// Children are remembered so that a worker told to stop can end exactly the processes it started.
import { spawn, type ChildProcess } from 'node:child_process';

export interface CommandResult {
  code: number | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  wallMs: number;
}

const running = new Set<ChildProcess>();

/** SIGKILLs every command still running (by the PID we spawned); for signal handlers. */
export function killRunningCommands(): void {
  for (const child of running) child.kill('SIGKILL');
}

export function runCommand(argv: string[], options: { input?: string; timeoutMs: number }): Promise<CommandResult> {
  const [file, ...args] = argv;
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(file!, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    running.add(child);
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.stdin.on('error', () => {}); // a tool failing early closes its stdin; its exit status says why
    child.stdin.end(options.input ?? '');
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, options.timeoutMs);
    child.once('error', (error) => {
      clearTimeout(timer);
      running.delete(child);
      reject(error);
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      running.delete(child);
      resolve({ code, stdout, stderr, timedOut, wallMs: performance.now() - started });
    });
  });
}

/** Like runCommand, but a failure (non-zero exit or timeout) throws with the tool's stderr. */
export async function runChecked(argv: string[], options: { input?: string; timeoutMs: number }): Promise<CommandResult> {
  const result = await runCommand(argv, options);
  if (result.timedOut) throw new Error(`${argv[0]} timed out after ${options.timeoutMs} ms`);
  if (result.code !== 0) throw new Error(`${argv.join(' ')} exited ${result.code}: ${result.stderr.trim().slice(0, 500)}`);
  return result;
}
