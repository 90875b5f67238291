import type { Capability } from '../capability.js';
import { DNS_WATCH, DnsDataplane, type DnsOptions } from './dataplane.js';
import { dnsSettings } from './settings.js';
import { cleanUpDnsNetwork } from './network.js';

export type { DnsOptions } from './dataplane.js';

/** Cluster DNS (--cluster-dns): CoreDNS's and NodeLocal DNSCache's answers, served on the node. */
export const dns = {
  ...dnsSettings,
  watch: DNS_WATCH,
  start: (settings: DnsOptions, { log }) => new DnsDataplane(settings, log),
  cleanup: { what: 'the cluster DNS interface and rules', run: () => cleanUpDnsNetwork() },
} satisfies Capability<DnsOptions>;
