// kubenft's incremental sync as the benchmark drives it: the agent's NftablesProxier with the
// services spread over the configured service tables, and with every service in one table (the
// layout before service tables), so that the report shows what the split buys.
import type { ProxyConfig } from '../../src/services/config.js';
import type { PartialSyncerName } from './bench-types.js';

export const PARTIAL_SYNC_CONFIGS: Record<PartialSyncerName, (config: ProxyConfig) => ProxyConfig> = {
  proxier: (config) => config,
  'proxier-one-service-table': (config) => ({ ...config, serviceTables: 1 }),
};
