import ipaddr from 'ipaddr.js';

// Addresses as kubenft reads and writes them, with one set of rules for every flag, config field,
// command argument and dump: an address is an IPv4 literal (four decimal parts, no leading zeros)
// or an IPv6 literal; with a port, an IPv6 address goes in brackets ([fd00::1]:53) and brackets
// hold nothing else, as Go's net.JoinHostPort writes it. Names are never accepted: what is bound
// or matched is exactly what was written, never a resolver's answer.

/** 4 or 6 for an IPv4 or IPv6 literal, 0 for anything else (node:net's isIP, on ipaddr.js). */
export function ipFamily(text: string): 0 | 4 | 6 {
  if (ipaddr.IPv4.isValidFourPartDecimal(text)) return 4;
  return ipaddr.IPv6.isValid(text) ? 6 : 0;
}

/** `address` and `port` as one text: `10.0.0.1:80`, `[fd00::1]:80`. */
export const joinHostPort = (address: string, port: number | string) => (address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`);

/** What was wrong with a host:port text; each caller words it for its own flag or argument. */
export type HostPortProblem = 'not an address' | 'needs a port' | 'port out of range';

export class HostPortError extends Error {
  constructor(
    readonly problem: HostPortProblem,
    readonly text: string,
  ) {
    super(`${JSON.stringify(text)}: ${problem}`);
  }
}

export interface HostPortRules {
  /** A bare address (`10.0.0.1`, `fd00::1`, `[fd00::1]`) is accepted, with an undefined port. */
  portOptional?: boolean;
  /** `:PORT`, an empty host (every address), is accepted. */
  emptyHost?: boolean;
  /** Port 0 (let the kernel choose) is accepted. */
  zeroPort?: boolean;
}

/**
 * `IPv4:PORT` or `[IPv6]:PORT`, and with `portOptional` also `IPv4`, `IPv6` or `[IPv6]` alone.
 * A port is decimal, 1-65535 (0 too with `zeroPort`). Throws HostPortError.
 */
export function splitHostPort(text: string, rules?: HostPortRules & { portOptional?: false }): { host: string; port: number };
export function splitHostPort(text: string, rules: HostPortRules): { host: string; port: number | undefined };
export function splitHostPort(text: string, { portOptional = false, emptyHost = false, zeroPort = false }: HostPortRules = {}): { host: string; port: number | undefined } {
  let host: string;
  let portText: string | undefined;
  const bracketed = /^\[([^\]]*)\](?::(.*))?$/.exec(text);
  if (bracketed) {
    [, host, portText] = bracketed;
    if (ipFamily(host) !== 6) throw new HostPortError('not an address', text);
  } else if (ipFamily(text) !== 0) {
    host = text;
  } else {
    const colon = text.lastIndexOf(':');
    if (colon < 0) throw new HostPortError('not an address', text);
    host = text.slice(0, colon);
    portText = text.slice(colon + 1);
    // An IPv6 address with a port needs its brackets: fd00::1:80 is an address, not a port.
    if (host === '' ? !emptyHost : ipFamily(host) !== 4) throw new HostPortError('not an address', text);
  }
  if (portText === undefined) {
    if (!portOptional) throw new HostPortError('needs a port', text);
    return { host, port: undefined };
  }
  if (!/^\d+$/.test(portText)) throw new HostPortError('not an address', text);
  const port = Number(portText);
  if (port > 65535 || (port === 0 && !zeroPort)) throw new HostPortError('port out of range', text);
  return { host, port };
}

/**
 * A CIDR (`10.0.0.0/8`, `fd00::/64`) as its network: host bits are cleared, as Go's net.ParseCIDR's
 * network is (`10.1.2.3/8` is `10.0.0.0/8`), its address a literal as ipFamily reads it. Throws an
 * Error for anything else.
 */
export function networkCIDR(text: string): string {
  const slash = text.indexOf('/');
  // ipaddr.js alone would take 10.0.0/8 (an IPv4 address of three parts).
  if (slash < 0 || ipFamily(text.slice(0, slash)) === 0 || !/^\d{1,3}$/.test(text.slice(slash + 1))) throw new Error(`${JSON.stringify(text)} is not a CIDR`);
  const [address, length] = ipaddr.parseCIDR(text);
  const bytes = address.toByteArray();
  for (let bit = length; bit < bytes.length * 8; bit++) bytes[bit >> 3] &= ~(0x80 >> (bit & 7));
  return `${ipaddr.fromByteArray(bytes).toString()}/${length}`;
}

/** 4 or 6: the family of an address or of a CIDR's address (0 when it is none). */
export const cidrFamily = (cidr: string) => ipFamily(cidr.split('/')[0]);
