import type { CapabilitySettings, ListNeeds } from '../capability.js';
import { dnsSettings } from '../dns/settings.js';
import { gatewaySettings } from '../gateway/settings.js';
import { ingressSettings } from '../ingress/settings.js';
import { socketLbSettings } from '../socket-lb/settings.js';

// The capabilities' settings, what the CLI reads before the agent's code is loaded: each one's flags,
// defaults and checks, whether it is on and what it lists. agent/capabilities.ts lists the
// capabilities themselves, in the same order. This file loads none of their code, so that the
// options are validated and the first lists asked for while the rest of the agent loads.
const LISTED = [
  dnsSettings,
  socketLbSettings,
  ingressSettings,
  gatewaySettings,
] as const satisfies readonly CapabilitySettings<any>[];

/** The list, as the CLI loops over it: each one's settings are its own business. */
export const CAPABILITY_SETTINGS: readonly CapabilitySettings<any>[] = LISTED;

type Listed = (typeof LISTED)[number];

/** Each capability's settings under its settingsKey, as its flags fill them (options.dns, options.ingress, …). */
export type CapabilitySettingsByKey = { [C in Listed as C['settingsKey']]: ReturnType<C['settings']['defaults']> };

/** A capability's settings in the options, where its flags put them. */
export const settingsOf = (capability: CapabilitySettings<unknown>, options: CapabilitySettingsByKey): unknown => {
  const settings = (options as unknown as Record<string, unknown>)[capability.settingsKey];
  if (settings === undefined) throw new Error(`the options hold no settings for ${capability.name} (${capability.settingsKey})`);
  return settings;
};

/** What the capabilities the options turn on list, for the first lists. */
export function enabledLists(options: CapabilitySettingsByKey): ListNeeds[] {
  return CAPABILITY_SETTINGS.flatMap((capability) => (capability.enabled(settingsOf(capability, options)) && capability.lists ? [capability.lists] : []));
}
