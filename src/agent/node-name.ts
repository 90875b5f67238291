import { hostname } from 'node:os';

/** The Node this agent serves: --hostname-override or the host's name, trimmed and lower-cased as kube-proxy does. */
export function nodeNameOf(options: { hostnameOverride?: string }): string {
  return (options.hostnameOverride ?? hostname()).trim().toLowerCase();
}
