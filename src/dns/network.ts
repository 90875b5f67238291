import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { isIPv6 } from 'node:net';
import { promisify } from 'node:util';
import type { Logger } from 'pino';
import { NftablesBackend } from '../backend/nftables.js';
import { DNS_TABLE, dnsTable } from '../plan/dns-table.js';
import type { Upstream } from './forwarder.js';

// The node side of cluster DNS: an interface holding the addresses the server binds (the link-local
// NodeLocal address and the kube-dns ClusterIP), and the table that keeps DNS queries out of
// conntrack (src/plan/dns-table.ts), loaded over netlink by the addon like the proxy's tables.

export const DNS_INTERFACE = 'kubenft-dns';
const run = promisify(execFile);

async function ip(args: string[]): Promise<void> {
  await run('ip', args);
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
  await new NftablesBackend().replaceTable(dnsTable(addresses));
}

/** --cleanup: the table and the interface (its addresses go with it). Absent pieces are not errors. */
export async function cleanUpDnsNetwork(): Promise<void> {
  await new NftablesBackend().deleteTable('inet', DNS_TABLE);
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
