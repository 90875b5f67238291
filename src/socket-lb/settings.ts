import type { CapabilitySettings } from '../capability.js';
import { SOCKET_LB_SETTINGS, type SocketLbOptions } from './flags.js';

/** The socket LB's part that the CLI reads before the agent's code loads (cli/main.ts's start path): its settings, whether they turn it on, what it lists. index.ts adds the rest. */
export const socketLbSettings = {
  name: 'socket-lb',
  settingsKey: 'socketLb' as const,
  settings: SOCKET_LB_SETTINGS,
  enabled: (settings: SocketLbOptions) => settings.enabled,
} satisfies CapabilitySettings<SocketLbOptions>;
