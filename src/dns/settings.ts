import type { CapabilitySettings } from '../capability.js';
import type { DnsOptions } from './dataplane.js';
import { DNS_SETTINGS } from './flags.js';
import { DNS_LISTS } from './lists.js';

/** Cluster DNS's part that the CLI reads before the agent's code loads (cli/main.ts's start path): its settings, whether they turn it on, what it lists. index.ts adds the rest. */
export const dnsSettings = {
  name: 'dns',
  settingsKey: 'dns' as const,
  settings: DNS_SETTINGS,
  enabled: (settings: DnsOptions) => settings.addresses.length > 0,
  lists: DNS_LISTS,
} satisfies CapabilitySettings<DnsOptions>;
