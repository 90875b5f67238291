// What cluster DNS lists from the API server, known before its code loads (flags.ts and dataplane.ts share it).
import type { ListNeeds } from '../capability.js';

/** CoreDNS names every Service, headless ones and other proxies' too, and answers for every Namespace. */
export const DNS_LISTS: ListNeeds = {
  allServices: true,
  kinds: [{ kind: 'Namespace', apiVersion: 'v1', path: '/api/v1/namespaces' }],
};
