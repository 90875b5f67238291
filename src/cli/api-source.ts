import type { KubernetesSourceOptions } from '../cluster/api-lists.js';
import type { ListNeeds } from '../cluster/cluster-state.js';
import type { AgentOptions } from './options.js';

/** What the API source reads with these options, for `nodeName` and what the state's readers list. */
export function apiSourceOptions(options: AgentOptions, nodeName: string, watches: readonly ListNeeds[]): KubernetesSourceOptions {
  return { kubeconfig: options.kubeconfig, master: options.master, nodeName, qps: options.kubeApiQps, burst: options.kubeApiBurst, watches };
}
