import type { Logger } from 'pino';
import type { Capability, CapabilityContext, ServiceSteering, StateDataplane, WatchNeeds } from '../capability.js';
import { dns } from '../dns/index.js';
import { gateway } from '../gateway/index.js';
import { ingress } from '../ingress/index.js';
import { socketLb } from '../socket-lb/index.js';
import { type CapabilitySettingsByKey, settingsOf } from './capability-settings.js';

// The capabilities beside the Service proxy's rules, in the order each sync updates them. Adding
// one: its folder, whose index.ts exports its Capability and whose settings.ts its settings, a line
// here and one in capability-settings.ts, in the same place. Everything else (its settings, what it
// watches, its dataplane, its cleanup) the agent and the CLI take from the lists.
export const CAPABILITIES: readonly Capability<any>[] = [
  dns,
  socketLb,
  ingress,
  gateway,
];

const enabled = (options: CapabilitySettingsByKey) => CAPABILITIES.filter((capability) => capability.enabled(settingsOf(capability, options)));

/** The dataplanes of the capabilities the options turn on. */
export function startCapabilities(options: CapabilitySettingsByKey, context: CapabilityContext): StateDataplane[] {
  return enabled(options).map((capability) => capability.start(settingsOf(capability, options), context));
}

/** What the capabilities the options turn on read, for a state that only plans (`services`). */
export function enabledWatches(options: CapabilitySettingsByKey): WatchNeeds[] {
  return enabled(options).flatMap((capability) => (capability.watch ? [capability.watch] : []));
}

/** The Service traffic the capabilities on take over. */
export function capabilitySteering(options: CapabilitySettingsByKey): ServiceSteering | undefined {
  return enabled(options).map((capability) => capability.steering?.(settingsOf(capability, options))).find((steering) => steering !== undefined);
}

/** --cleanup's steps for every capability, on or off. */
export function capabilityCleanups(options: CapabilitySettingsByKey): { what: string; run: (log: Logger) => unknown }[] {
  return CAPABILITIES.flatMap((capability) => {
    const { cleanup } = capability;
    return cleanup ? [{ what: cleanup.what, run: (log: Logger) => cleanup.run(settingsOf(capability, options), log) }] : [];
  });
}

/** At an agent's start: what the capabilities it has off left running. */
export function removeLeftovers(options: CapabilitySettingsByKey, log: Logger): void {
  for (const capability of CAPABILITIES) {
    const settings = settingsOf(capability, options);
    if (!capability.enabled(settings)) capability.removeLeftovers?.(settings, log);
  }
}
