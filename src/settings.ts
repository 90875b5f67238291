import { HostPortError, ipFamily, joinHostPort, splitHostPort } from './kernel/addresses.js';

// How a setting is defined and checked: the command line's flags and the KubeProxyConfiguration's
// fields (cli/options.ts reads both) and each capability's own flags (its flags.ts) are described
// the same way, so one parser, one help text and one set of error messages serve them all.

/** A setting the operator gave that cannot be served; the CLI names it and exits 2. */
export class OptionsError extends Error {
  override name = 'OptionsError';
}

/** How a flag's text (or a config field's YAML value) is converted before a setting applies it. */
export type SettingKind = 'string' | 'bool' | 'int' | 'float' | 'duration' | 'list' | 'map' | 'opaque';

/** A flag of kubenft's own; `Target` is the object its value lands in. */
export interface FlagSetting<Target> {
  /** Flag name without dashes. */
  flag: string;
  kind: SettingKind;
  /** Repeating the flag adds to its list instead of replacing it. */
  repeatable?: boolean;
  arg?: string;
  help: string;
  defaultText?: string;
  /** Stores the converted value (string, boolean, number with durations in ms, string[]); throws OptionsError. */
  apply(target: Target, value: any, where: string): void;
}

/** What the settings of a capability are: its defaults, its flags and what they demand of each other. */
export interface SettingsDefinition<Settings> {
  defaults(): Settings;
  /** kubenft's own flags (KubeProxyConfiguration has no fields for a capability). */
  flags: readonly FlagSetting<Settings>[];
  /** Once every flag is read: a combination it refuses (throws OptionsError). */
  check?(settings: Settings, context: { proxyMode: 'nftables' | 'iptables' }): void;
}

export const fail = (where: string, shown: unknown, reason: string): never => {
  throw new OptionsError(`${where} ${JSON.stringify(shown)}: ${reason}`);
};

const DURATION_UNIT_NS: Record<string, bigint> = {
  ns: 1n, us: 1_000n, 'µs': 1_000n, 'μs': 1_000n, ms: 1_000_000n, s: 1_000_000_000n, m: 60_000_000_000n, h: 3_600_000_000_000n,
};
const DURATION_PART = /(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)/y;

/** Go's time.ParseDuration, returning milliseconds (fractional below 1ms). */
export function parseDuration(text: string): number | undefined {
  const sign = text.startsWith('-') ? -1 : 1;
  const body = text.replace(/^[-+]/, '');
  if (body === '0') return 0;
  if (body === '') return undefined;
  let nanoseconds = 0n;
  DURATION_PART.lastIndex = 0;
  while (DURATION_PART.lastIndex < body.length) {
    const match = DURATION_PART.exec(body);
    if (!match) return undefined;
    const [whole, fraction = ''] = match[1].split('.');
    const unit = DURATION_UNIT_NS[match[2]];
    nanoseconds += BigInt(whole || '0') * unit;
    if (fraction) nanoseconds += (BigInt(fraction) * unit) / 10n ** BigInt(fraction.length);
  }
  return (sign * Number(nanoseconds)) / 1e6;
}

/** Go's time.Duration.String(): 30s, 1m0s, 24h0m0s, 500ms. */
export function formatDuration(ms: number): string {
  let ns = BigInt(Math.round(Math.abs(ms) * 1e6));
  const sign = ms < 0 ? '-' : '';
  if (ns === 0n) return '0s';
  const withFraction = (value: bigint, unit: bigint) => {
    const fraction = value % unit;
    if (fraction === 0n) return `${value / unit}`;
    return `${value / unit}.${fraction.toString().padStart(unit.toString().length - 1, '0').replace(/0+$/, '')}`;
  };
  if (ns < 1_000n) return `${sign}${ns}ns`;
  if (ns < 1_000_000n) return `${sign}${withFraction(ns, 1_000n)}µs`;
  if (ns < 1_000_000_000n) return `${sign}${withFraction(ns, 1_000_000n)}ms`;
  const hours = ns / DURATION_UNIT_NS.h;
  ns %= DURATION_UNIT_NS.h;
  const minutes = ns / DURATION_UNIT_NS.m;
  ns %= DURATION_UNIT_NS.m;
  return `${sign}${hours > 0n ? `${hours}h` : ''}${hours > 0n || minutes > 0n ? `${minutes}m` : ''}${withFraction(ns, DURATION_UNIT_NS.s)}s`;
}

// ---- the checks settings share -------------------------------------------------------------------

/** kube-proxy's IPPortVar: an address alone gets the default port. */
export function hostAndPort(text: string, defaultPort: number, where: string): { host: string; port: number } {
  try {
    const { host, port } = splitHostPort(text, { portOptional: true });
    return { host, port: port ?? defaultPort };
  } catch (error) {
    if (!(error instanceof HostPortError)) throw error;
    return fail(where, text, error.problem === 'port out of range' ? 'port must be 1-65535' : 'is not IP or IP:port');
  }
}

/** IP[:PORT] or [IPv6][:PORT] as one canonical text, with the default port where none is given. */
export function hostPort(text: string, defaultPort: number, where: string): string {
  const { host, port } = hostAndPort(text, defaultPort, where);
  return joinHostPort(host, port);
}

/** IP addresses, each an IPv4 or IPv6 literal. */
export function ipAddresses(items: string[], where: string): string[] {
  return items.map((item) => (ipFamily(item) === 0 ? fail(where, item, 'is not an IP address') : item));
}

/** NAMESPACE/NAME of an object, or undefined for ''. */
export function namespacedName(text: string, where: string): string | undefined {
  if (text !== '' && !/^[a-z0-9-]+\/[a-z0-9.-]+$/.test(text)) fail(where, text, 'is not NAMESPACE/NAME');
  return text || undefined;
}

export function integerIn(value: number, low: number, high: number, where: string): number {
  if (!Number.isInteger(value) || value < low || value > high) fail(where, value, `must be an integer from ${low} to ${high}`);
  return value;
}

/** A duration (ms) greater than 0. */
export function positive(ms: number, where: string): number {
  if (ms <= 0) fail(where, formatDuration(ms), 'must be greater than 0');
  return ms;
}
