import { existsSync } from 'node:fs';
import { mapPins, readMaps, socketLbAddon } from './maps.js';
import { type SocketLbEndpoint, type SocketLbFrontend, planSocketLb } from './plan.js';
import type { ServicePortView } from '../cluster/service-ports.js';
import type { NodeContext } from '../cluster/topology.js';
import { joinHostPort } from '../kernel/addresses.js';

// The socket LB's maps as the kernel holds them (what `cilium bpf lb list` shows for Cilium): each
// frontend, ClusterIP:port/protocol, and the endpoints its connect()/sendmsg() rewrites pick from,
// read from the pinned maps. Opening them loads the programs without attaching anything and
// creates no pin: a live agent's programs and maps are left as they are.

export interface SocketLbListing {
  pinDir: string;
  /** By frontendKey. */
  frontends: Map<string, SocketLbFrontend>;
}

export class SocketLbReadError extends Error {}

/** The maps pinned under `pinDir`, or undefined when no socket LB is pinned there. */
export function loadedSocketLb(pinDir: string): SocketLbListing | undefined {
  const pins = mapPins(pinDir);
  const present = pins.filter((pin) => existsSync(pin));
  if (present.length === 0) return undefined;
  // A partial set would make the addon create the missing maps: a one-off command must not pin anything.
  if (present.length < pins.length) throw new SocketLbReadError(`socket LB: ${pinDir} holds only some of its maps (${present.join(', ')}): not reading them`);
  const handle = new (socketLbAddon().SocketLb)({ pinDir });
  try {
    const frontends = new Map<string, SocketLbFrontend>();
    for (const [key, { affinityTimeoutSeconds, endpoints }] of readMaps(handle).installed) {
      const [protocol, address, port] = key.split(' ');
      frontends.set(key, { protocol: protocol as SocketLbFrontend['protocol'], address, port: Number(port), affinityTimeoutSeconds, endpoints });
    }
    return { pinDir, frontends };
  } finally {
    handle.close();
  }
}

export const endpointsText = (endpoints: SocketLbEndpoint[]) =>
  endpoints.map(({ address, port }) => joinHostPort(address, port)).join(', ') || 'none';

const frontendText = (frontend: SocketLbFrontend | undefined) =>
  frontend ? `${endpointsText(frontend.endpoints)}${frontend.affinityTimeoutSeconds ? `, affinity ${frontend.affinityTimeoutSeconds}s` : ''}` : 'none';

/** What differs between a loaded frontend and the planned one, in words (loaded first). */
export function socketLbDifferences(loaded: SocketLbFrontend | undefined, planned: SocketLbFrontend | undefined): string[] {
  const [have, want] = [frontendText(loaded), frontendText(planned)];
  return have === want ? [] : [`socket LB endpoints: loaded ${have}, planned ${want}`];
}

/** The frontends the plan would write (for the comparison): the socket LB's own planner. */
export const plannedSocketLb = (views: ServicePortView[], node: NodeContext) => planSocketLb(views, node);
