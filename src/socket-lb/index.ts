import { type Capability, OptionsError } from '../capability.js';
import { SocketLbDataplane, cleanupSocketLb, netnsPinDir, removeLeftoverSocketLb } from './dataplane.js';
import type { SocketLbOptions } from './flags.js';
import { socketLbSettings } from './settings.js';
import { endpointsText, loadedSocketLb, plannedSocketLb, socketLbDifferences } from './inspect.js';
import { frontendKey } from './plan.js';

export type { SocketLbFrontend } from './plan.js';
export type { SocketLbOptions } from './flags.js';

/** The eBPF socket LB: a local connect() or sendmsg() to a ClusterIP goes straight to an endpoint. */
export const socketLb = {
  ...socketLbSettings,
  start(settings: SocketLbOptions, { log, proxyMode }) {
    if (proxyMode !== 'nftables') throw new OptionsError('--socket-lb works in the nftables mode (--proxy-mode=nftables)');
    return new SocketLbDataplane(settings, log);
  },
  cleanup: { what: 'the socket LB pins', run: (settings: SocketLbOptions) => cleanupSocketLb(settings.pinDir) },
  removeLeftovers: (settings: SocketLbOptions, log) => removeLeftoverSocketLb(settings.pinDir, log),
  /** Its part of `kubenft services`: the pinned maps read back (from this network namespace's pin directory), and what the plan would write. */
  view: { pinDir: netnsPinDir, loaded: loadedSocketLb, planned: plannedSocketLb, differences: socketLbDifferences, endpointsText, frontendKey },
} satisfies Capability<SocketLbOptions>;
