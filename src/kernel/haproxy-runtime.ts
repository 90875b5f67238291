import { connect } from 'node:net';

// HAProxy's runtime API (management.txt §9.3): line text over a UNIX socket, one command per
// connection, the answer read until HAProxy closes it. There is no client library for it on npm
// (nor socat on the nodes), and a command is these few lines.

/** A command HAProxy answered with an error (its text), or a socket it did not answer on. */
export class RuntimeApiError extends Error {
  override name = 'RuntimeApiError';
}

const COMMAND_TIMEOUT_MS = 10_000;

/** Sends one command (and a payload, sent as `<<` lines ending in an empty line); resolves to HAProxy's answer. */
export function runtimeCommand(socketPath: string, command: string, payload?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(socketPath);
    let answer = '';
    socket.setEncoding('utf8');
    socket.setTimeout(COMMAND_TIMEOUT_MS, () => socket.destroy(new RuntimeApiError(`${socketPath}: no answer to ${JSON.stringify(command)} within ${COMMAND_TIMEOUT_MS / 1000}s`)));
    socket.on('data', (chunk: string) => (answer += chunk));
    socket.on('error', reject);
    socket.on('close', () => resolve(answer));
    // A payload holds no empty line: that line is what ends it.
    socket.end(payload === undefined ? `${command}\n` : `${command} <<\n${payload.replace(/\n+/g, '\n').replace(/\n$/, '')}\n\n`);
  });
}

/**
 * HAProxy answers a refused command with text rather than a status ("No such backend.", "Server
 * still has connections attached to it, cannot remove it.", "error: ..."): these are the words of
 * 2.6's refusals; its successes ("New server registered.", "Success!", nothing) hold none.
 */
const REFUSED = /\b(?:error|unknown|not found|no such|invalid|can't|cannot|failed|unable|denied|already exists|missing|not allowed)\b/i;
/** Sends a command that changes something; throws with HAProxy's answer when it refused it. */
export async function runtimeChange(socketPath: string, command: string, payload?: string): Promise<string> {
  const answer = await runtimeCommand(socketPath, command, payload);
  if (REFUSED.test(answer.trim())) throw new RuntimeApiError(`${command}: ${answer.trim()}`);
  return answer;
}
