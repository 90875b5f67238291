import type { CapabilitySettings } from '../capability.js';
import type { GatewaySettings } from './dataplane.js';
import { GATEWAY_SETTINGS } from './flags.js';
import { GATEWAY_LISTS } from './lists.js';

/** The Gateway API's part that the CLI reads before the agent's code loads (cli/main.ts's start path): its settings, whether they turn it on, what it lists. index.ts adds the rest. */
export const gatewaySettings = {
  name: 'gateway',
  settingsKey: 'gateway' as const,
  settings: GATEWAY_SETTINGS,
  enabled: (settings: GatewaySettings) => settings.enabled,
  lists: GATEWAY_LISTS,
} satisfies CapabilitySettings<GatewaySettings>;
