import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { isIPv6 } from 'node:net';
import { promisify } from 'node:util';
import type { Logger } from 'pino';
import type { Upstream } from './forwarder.js';

// The node side of cluster DNS: an interface holding the addresses the server binds (the link-local
// NodeLocal address and the kube-dns ClusterIP), and the table that keeps DNS queries out of
// conntrack. The notrack rules match only while the server's socket is bound (nftables' `socket`
// expression, looked up per packet): when the server is down, queries to the kube-dns ClusterIP are
// tracked again and DNATed to the DNS Service's endpoints by the proxy's rules, with no agent needed.
//
// The rules go through the nft CLI, as an argument vector with the ruleset on stdin: the addon's
// transaction compiler knows the proxy's statements only, and the socket and notrack expressions
// would add C++ for three rules that change only when the flags do.

export const DNS_INTERFACE = 'kubenft-dns';
export const DNS_TABLE = 'kubenft-dns';
const run = promisify(execFile);

async function ip(args: string[]): Promise<void> {
  await run('ip', args);
}

async function nft(ruleset: string): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const child = execFile('nft', ['-f', '-'], (error, _stdout, stderr) => (error ? reject(new Error(`nft: ${stderr.trim() || error.message}`)) : resolve()));
    child.stdin!.end(ruleset);
  });
}

/**
 * The table: notrack for queries to the served addresses while a server socket is bound to them, and
 * for the server's answers. Queries from the node itself stay tracked: in output, `socket` finds the
 * sender, not the server, so it cannot tell whether the server is up.
 */
export function dnsRuleset(addresses: string[]): string {
  const set = (family: 4 | 6) => addresses.filter((address) => isIPv6(address) === (family === 6));
  const rules = ([4, 6] as const).flatMap((family) => {
    const list = set(family);
    if (list.length === 0) return [];
    const ip = family === 6 ? 'ip6' : 'ip';
    return [
      { chain: 'prerouting', rule: `${ip} daddr { ${list.join(', ')} } meta l4proto { tcp, udp } th dport 53 socket wildcard 0 notrack` },
      { chain: 'output', rule: `${ip} saddr { ${list.join(', ')} } meta l4proto { tcp, udp } th sport 53 notrack` },
    ];
  });
  const chain = (name: string) =>
    `  chain ${name} {\n    type filter hook ${name} priority raw; policy accept;\n${rules.filter((rule) => rule.chain === name).map((rule) => `    ${rule.rule}\n`).join('')}  }\n`;
  // Declaring then deleting the table makes the load replace it atomically, whether it existed or not.
  return `table inet ${DNS_TABLE}\ndelete table inet ${DNS_TABLE}\ntable inet ${DNS_TABLE} {\n${chain('prerouting')}${chain('output')}}\n`;
}

/** Creates the interface (dummy, else an empty bridge on kernels without dummy), its addresses and the table. */
export async function setUpDnsNetwork(addresses: string[], log: Logger): Promise<void> {
  const links = JSON.parse((await run('ip', ['-j', 'link', 'show'])).stdout) as { ifname: string }[];
  if (!links.some((link) => link.ifname === DNS_INTERFACE)) {
    try {
      await ip(['link', 'add', DNS_INTERFACE, 'type', 'dummy']);
    } catch {
      await ip(['link', 'add', DNS_INTERFACE, 'type', 'bridge']);
      log.info(`this kernel has no dummy link type: ${DNS_INTERFACE} is an empty bridge`);
    }
  }
  await ip(['link', 'set', DNS_INTERFACE, 'up']);
  for (const address of addresses) {
    await ip(['addr', 'replace', `${address}/${isIPv6(address) ? 128 : 32}`, 'dev', DNS_INTERFACE, ...(isIPv6(address) ? ['nodad'] : [])]);
  }
  await nft(dnsRuleset(addresses));
}

/** --cleanup: the table and the interface (its addresses go with it). Absent pieces are not errors. */
export async function cleanUpDnsNetwork(): Promise<void> {
  await nft(`table inet ${DNS_TABLE}\ndelete table inet ${DNS_TABLE}\n`);
  await ip(['link', 'del', DNS_INTERFACE]).catch(() => undefined);
}

/** --dns-upstream's default: the nameservers of this network namespace's resolv.conf, minus kubenft's own. */
export function defaultUpstreams(own: string[], resolvConf = '/etc/resolv.conf'): Upstream[] {
  let text = '';
  try {
    text = readFileSync(resolvConf, 'utf8');
  } catch {
    return [];
  }
  return [...text.matchAll(/^\s*nameserver\s+(\S+)/gm)]
    .map((match) => match[1].replace(/%.*$/, ''))
    .filter((address) => !own.includes(address))
    .map((address) => ({ address, port: 53 }));
}
