import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { ClusterState, ListNeeds, WatchedKind, WatchNeeds } from './cluster/cluster-state.js';
import type { SettingsDefinition } from './settings.js';

// The one interface of kubenft's capabilities beside the Service proxy's rules (socket LB, cluster
// DNS, ingress; docs/architecture.md). A capability is a folder whose index.ts exports one
// Capability, and whose settings.ts exports the part of it the CLI reads before the agent's code is
// loaded (its CapabilitySettings: flags, defaults, whether it is on, what it lists);
// agent/capability-settings.ts and agent/capabilities.ts list them, and the agent and the CLI only
// loop over those lists: adding a capability is a new folder and one line in each. A capability
// imports kernel/, cluster/ and this file, never the agent, the CLI or another capability's internals.

export type { ListNeeds, WatchedKind, WatchNeeds };
export { OptionsError } from './settings.js';

export interface StateChanges {
  /** Service keys (namespace/name) whose Service or EndpointSlices changed, or 'full'. */
  services: Set<string> | 'full';
  /** Kinds other than Service, EndpointSlice and Node that changed (Namespace, Ingress, …). */
  kinds: Set<string>;
}

/**
 * A running capability. It is fed the watched state after every good sync of the proxy's rules,
 * plans its own view from it (purely) and hands that view to whatever serves it, off the agent's
 * event loop.
 */
export interface StateDataplane {
  /** Names it in logs and in kubenft_state_dataplane_update_failures_total{dataplane}. */
  readonly name: string;
  /** What it reads beyond Services, EndpointSlices and this Node; the agent registers it before the source starts. */
  readonly watch?: WatchNeeds;
  /** Before the source starts: registers its metrics. */
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

/** What a capability may know of the agent it runs in. */
export interface CapabilityContext {
  readonly log: Logger;
  /** The Service proxy's mode (the socket LB works beside the nftables rules only). */
  readonly proxyMode: 'nftables' | 'iptables';
  /** The API server the agent reads, for a capability that writes back (the Ingress status); undefined with --manifests. */
  readonly api?: { kubeconfig?: string; master?: string };
}

/**
 * Traffic a capability takes instead of a Service's endpoints: new TCP connections to the Service's
 * load-balancer and external IPs on the listeners' ports (the ingress proxy's, with --ingress-service).
 */
export interface ServiceSteering {
  /** namespace/name of the Service. */
  service: string;
  /** The listeners (an address of their own, or the wildcard 0.0.0.0 or ::). */
  listeners: { address: string; port: number }[];
}

/**
 * What the CLI reads of a capability before the agent's code is loaded (its settings.ts): its settings,
 * whether they turn it on, and what it lists, so that every setting is validated and the first lists
 * are asked for while the rest loads.
 */
export interface CapabilitySettings<Settings = unknown> {
  readonly name: string;
  /** Where its settings are in the agent's options (options[settingsKey]), which its flags fill. */
  readonly settingsKey: string;
  /** Its defaults and its flags, which the CLI adds to kube-proxy's. */
  readonly settings: SettingsDefinition<Settings>;
  /** Whether these settings turn it on. */
  enabled(settings: Settings): boolean;
  /** What it lists beyond Services, EndpointSlices and this Node: its watch without the validation. */
  readonly lists?: ListNeeds;
}

/** One capability: its settings, what it watches, its dataplane and its cleanup. */
export interface Capability<Settings = unknown> extends CapabilitySettings<Settings> {
  /** What it reads beyond Services, EndpointSlices and this Node (also when it only plans, as `services` does): its lists, validated. */
  readonly watch?: WatchNeeds;
  /** Its dataplane; throws OptionsError for settings it cannot serve in this context. */
  start(settings: Settings, context: CapabilityContext): StateDataplane;
  /** --cleanup: removes what it (on or off) left in this node's kernel; `what` names it in the log. */
  readonly cleanup?: { what: string; run(settings: Settings, log: Logger): unknown };
  /** At the start of an agent that has it off: removes what an earlier agent with it on left running (pinned programs). */
  removeLeftovers?(settings: Settings, log: Logger): void;
  /** The Service traffic it takes over, which the Service proxy's rules steer to it. */
  steering?(settings: Settings): ServiceSteering | undefined;
  /** What `kubenft services` shows of it, in its own shape: services/inspect composes the report. */
  readonly view?: object;
}
