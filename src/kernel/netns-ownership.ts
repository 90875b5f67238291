import { statSync } from 'node:fs';
import { type Server, connect, createServer } from 'node:net';

// Who owns a network namespace's proxy state (its tables, its DNS device and table, its socket LB
// pins): the kubenft process holding the abstract unix socket below. Abstract socket names are
// per network namespace and vanish with the last descriptor, so the claim is exact: nothing is
// left behind by a process that was killed, a one-off command in another namespace never sees
// it, and no file has to be shared across the containers and mount namespaces of a node. A
// second agent, or `--once` or `--cleanup`, in a namespace whose owner lives is refused instead of
// rewriting that owner's state under it.

const OWNER_SOCKET = '\0kubenft/owner';
/** How long the owner may take to say who it is (a busy event loop answers late, not never). */
const OWNER_ANSWER_MS = 2000;

export interface Owner {
  /** In the owner's PID namespace (a pod's agent is often pid 1 of its container). */
  pid: number;
  /** What it runs: 'agent' or '--once'. */
  command: string;
  startedAt: string;
  /** The network namespace's inode (`ls -l /proc/self/ns/net`). */
  netns: number;
}

/** The inode of this process's network namespace: what names the namespace's pins. */
export const netnsInode = (): number => statSync('/proc/self/ns/net').ino;

/** Another process owns this network namespace; the command would have fought it. */
export class NetnsOwnedError extends Error {
  constructor(readonly owner: Owner | undefined, what: string) {
    const who = owner
      ? `a kubenft ${owner.command} (pid ${owner.pid} in its PID namespace, started ${owner.startedAt})`
      : `a kubenft process that did not say who it is within ${OWNER_ANSWER_MS} ms`;
    super(`${who} owns this network namespace (net:[${netnsInode()}]): ${what} would change the rules, DNS device and socket LB it keeps; ` +
      'stop it first, or run the command in another network namespace');
  }
}

/** The live owner of this network namespace, or undefined when there is none. */
export function liveOwner(): Promise<Owner | undefined> {
  return new Promise((resolve, reject) => {
    const socket = connect(OWNER_SOCKET);
    let answer = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new NetnsOwnedError(undefined, 'this command'));
    }, OWNER_ANSWER_MS);
    socket.setEncoding('utf8').on('data', (chunk: string) => (answer += chunk));
    socket.on('end', () => {
      clearTimeout(timer);
      try {
        resolve(JSON.parse(answer) as Owner);
      } catch {
        reject(new Error(`the owner of this network namespace answered ${JSON.stringify(answer)}, not who it is`));
      }
    });
    socket.on('error', (error: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      if (error.code === 'ECONNREFUSED') resolve(undefined);
      else reject(error);
    });
  });
}

/** Refuses `what` while a live process owns this network namespace. */
async function requireNoOwner(what: string): Promise<void> {
  const owner = await liveOwner().catch((error: unknown) => {
    if (error instanceof NetnsOwnedError) throw new NetnsOwnedError(undefined, what);
    throw error;
  });
  if (owner) throw new NetnsOwnedError(owner, what);
}

/**
 * Makes this process the owner of its network namespace until it exits, or throws
 * NetnsOwnedError naming the live owner. The socket does not keep the process alive.
 */
export async function claimNetns(command: string): Promise<Server> {
  const me: Owner = { pid: process.pid, command, startedAt: new Date().toISOString(), netns: netnsInode() };
  const server = createServer((socket) => socket.end(JSON.stringify(me)));
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(OWNER_SOCKET, () => resolve());
    });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw error;
    await requireNoOwner(command === 'agent' ? 'another agent' : command);
    // The owner exited between our bind and our question: the name is free now.
    return claimNetns(command);
  }
  server.unref();
  return server;
}
