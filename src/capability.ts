import type { Registry } from 'prom-client';
import type { ClusterState } from './cluster/cluster-state.js';

// A dataplane beside the proxy's rules (cluster DNS, ingress, socket LB). It is fed the same watched
// state after every good sync, plans its own view from it (src/plan, pure) and hands that view to
// whatever serves it, off the agent's event loop. The agent only calls these hooks: a capability adds
// a planner and a dataplane, not code in the agent.

export interface StateChanges {
  /** Service keys (namespace/name) whose Service or EndpointSlices changed, or 'full'. */
  services: Set<string> | 'full';
  /** Kinds other than Service, EndpointSlice and Node that changed (Namespace, Ingress, …). */
  kinds: Set<string>;
}

export interface StateDataplane {
  /** Names it in logs and in kubenft_state_dataplane_update_failures_total{dataplane}. */
  readonly name: string;
  /** Before the source starts: registers the kinds it reads (state.registerKind) and its metrics. */
  attach(state: ClusterState, registry: Registry): void;
  /**
   * After every good sync of the proxy's rules. A failure is logged and counted and touches nothing
   * else: the proxy's rules and the other dataplanes keep their state, and the next update is 'full'.
   */
  update(state: ClusterState, changes: StateChanges): Promise<void>;
  /** Why it is not ready to serve (for /readyz), or undefined when it is; absent: always ready once updated. */
  notReady?(): string | undefined;
  /** SIGTERM: stop serving, leaving whatever must outlive the agent (rules, pinned links) in place. */
  stop(): Promise<void>;
}
