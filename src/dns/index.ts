import type { Capability } from '../capability.js';
import { DNS_WATCH, DnsDataplane, type DnsOptions } from './dataplane.js';
import { DNS_SETTINGS } from './flags.js';
import { cleanUpDnsNetwork } from './network.js';

export type { DnsOptions } from './dataplane.js';

/** Cluster DNS (--cluster-dns): CoreDNS's and NodeLocal DNSCache's answers, served on the node. */
export const dns = {
  name: 'dns',
  settingsKey: 'dns' as const,
  settings: DNS_SETTINGS,
  enabled: (settings: DnsOptions) => settings.addresses.length > 0,
  watch: DNS_WATCH,
  start: (settings: DnsOptions, { log }) => new DnsDataplane(settings, log),
  cleanup: { what: 'the cluster DNS interface and rules', run: () => cleanUpDnsNetwork() },
} satisfies Capability<DnsOptions>;
