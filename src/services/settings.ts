import { DEFAULT_PROXY_CONFIG, MAX_SERVICE_TABLES } from './config.js';

// The Service proxy's part that the CLI reads before the agent's code loads (cli/main.ts's start
// path): what its flags (kube-proxy's, in cli/options.ts) check against. index.ts holds the rest.

/** --service-tables: its default and its upper bound. */
export const SERVICE_TABLES = { default: DEFAULT_PROXY_CONFIG.serviceTables, max: MAX_SERVICE_TABLES } as const;
