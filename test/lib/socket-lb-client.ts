// test/fixtures/socket-lb-client.mjs, the client the socket LB tests run in a cgroup: its path and its summary.
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { projectRoot } from '../../src/kernel/native.js';

export const SOCKET_LB_CLIENT = join(projectRoot(), 'test/fixtures/socket-lb-client.mjs');

/** What a tcp or udp run saw: peers (getpeername / reply source), answering pods, error codes; each counted. */
export interface ClientSummary { peers: Record<string, number>; pods: Record<string, number>; errors: Record<string, number> }

/** Ends the client's stdin and reads its one JSON summary; throws if it exits non-zero. */
export async function clientSummary(child: ChildProcess): Promise<ClientSummary> {
  let output = '';
  child.stdout!.on('data', (chunk) => (output += chunk));
  child.stdin!.end();
  const [code] = await new Promise<[number | null]>((resolve) => child.once('close', (exitCode) => resolve([exitCode])));
  if (code !== 0) throw new Error(`client exited ${code}: ${output}`);
  return JSON.parse(output) as ClientSummary;
}
