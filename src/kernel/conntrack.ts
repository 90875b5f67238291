import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

// Deletes stale UDP conntrack entries, as kube-proxy does after a sync: without this, a UDP client
// keeps sending to an endpoint that is gone (or into the reject of a service that had none) for
// as long as its flow stays alive. The conntrack tool speaks ctnetlink; it is run with an argument
// vector, never through a shell, and every address reaching it was validated as an IP.

const run = promisify(execFile);
/** A deletion is one ctnetlink dump and delete; one that hangs is killed rather than holding up the syncs after it. */
const CONNTRACK_TIMEOUT_MS = 30_000;

export interface ConntrackFilter {
  family: 4 | 6;
  /** Original destination address (a service IP). */
  serviceIP?: string;
  /** Original destination port (a NodePort). */
  nodePort?: number;
  /** Only flows translated to this endpoint address. */
  endpointIP?: string;
}

export function conntrackArgs(filter: ConntrackFilter): string[] {
  const args = ['-D', '-f', filter.family === 6 ? 'ipv6' : 'ipv4', '-p', 'udp'];
  if (filter.serviceIP) args.push('--orig-dst', filter.serviceIP);
  if (filter.nodePort !== undefined) args.push('--orig-port-dst', String(filter.nodePort));
  if (filter.endpointIP) args.push('--dst-nat', filter.endpointIP);
  return args;
}

/** Deletes the matching flows; resolves with how many were deleted. */
export async function deleteFlows(filter: ConntrackFilter): Promise<number> {
  try {
    const { stderr } = await run('conntrack', conntrackArgs(filter), { timeout: CONNTRACK_TIMEOUT_MS, killSignal: 'SIGKILL' });
    return Number(/(\d+) flow entries/.exec(stderr)?.[1] ?? 0);
  } catch (error) {
    // conntrack exits 1 when nothing matched; that is success for us.
    const stderr = (error as { stderr?: string }).stderr ?? '';
    if (/0 flow entries/.test(stderr)) return 0;
    const killed = (error as { killed?: boolean }).killed ? `killed after ${CONNTRACK_TIMEOUT_MS / 1000}s without finishing` : '';
    throw new Error(`conntrack ${conntrackArgs(filter).join(' ')}: ${killed || stderr.trim() || (error as Error).message}`);
  }
}
