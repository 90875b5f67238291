import type { CapabilitySettings } from '../capability.js';
import { INGRESS_SETTINGS, type IngressSettings } from './flags.js';
import { INGRESS_LISTS } from './lists.js';

/** The ingress controller's part that the CLI reads before the agent's code loads (cli/main.ts's start path): its settings, whether they turn it on, what it lists. index.ts adds the rest. */
export const ingressSettings = {
  name: 'ingress',
  settingsKey: 'ingress' as const,
  settings: INGRESS_SETTINGS,
  enabled: (settings: IngressSettings) => settings.enabled,
  lists: INGRESS_LISTS,
} satisfies CapabilitySettings<IngressSettings>;
