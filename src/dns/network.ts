import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { isIPv6 } from 'node:net';
import { promisify } from 'node:util';
import type { Logger } from 'pino';
import { native } from '../kernel/native.js';
import { NftablesBackend } from '../kernel/nftables.js';
import { DNS_TABLE, dnsTable } from './table.js';
import type { Upstream } from './forwarder.js';

// The node side of cluster DNS: an interface holding the addresses the server binds (the link-local
// NodeLocal address and the kube-dns ClusterIP), and the table that keeps DNS queries out of
// conntrack (table.ts), loaded over netlink by the addon like the proxy's tables.

export const DNS_INTERFACE = 'kubenft-dns';
const run = promisify(execFile);

/** ip(8) answers at once; one stuck (a wedged netlink, a hung kernel module load) must not stall the agent. */
const IP_TIMEOUT_MS = 10_000;

async function ip(args: string[]): Promise<void> {
  await run('ip', args, { timeout: IP_TIMEOUT_MS, killSignal: 'SIGKILL' });
}

/**
 * Creates the interface, its addresses and the table, whose rule for the node's own queries waits
 * for serveHostClients. The interface is a TUN device this process holds, so the addresses vanish
 * when it exits (see dnsTable's hostClients); without /dev/net/tun, a dummy link (an empty bridge
 * on kernels without the dummy type) that outlives the process. Returns whether it is the TUN device.
 */
export async function setUpDnsNetwork(addresses: string[], log: Logger): Promise<boolean> {
  // First a table without that rule: a previous run's would send the node's queries to the
  // addresses as soon as they are local again, before the server is bound, and have them refused.
  await withdrawHostClients(addresses);
  // A link of that name is a previous run's (a TUN device does not outlive its process).
  await ip(['link', 'del', DNS_INTERFACE]).catch(() => undefined);
  let tun = true;
  try {
    // The descriptor is never closed: the device lives exactly as long as this process.
    native().openTun(DNS_INTERFACE);
  } catch (error) {
    tun = false;
    log.warn(`${(error as Error).message}: the served addresses go on a link that outlives kubenft, and queries from the node itself are left to the proxy's DNAT`);
    await persistentLink(log);
  }
  await ip(['link', 'set', DNS_INTERFACE, 'up']);
  for (const address of addresses) {
    await ip(['addr', 'replace', `${address}/${isIPv6(address) ? 128 : 32}`, 'dev', DNS_INTERFACE, ...(isIPv6(address) ? ['nodad'] : [])]);
  }
  return tun;
}

/** Once the server is bound: the node's own queries go to it (the table replaced whole). */
export async function serveHostClients(addresses: string[]): Promise<void> {
  await new NftablesBackend().replaceTable(dnsTable(addresses, { hostClients: true }));
}

/** While the server is down: the node's own queries go back to the DNS Service's endpoints. */
export async function withdrawHostClients(addresses: string[]): Promise<void> {
  await new NftablesBackend().replaceTable(dnsTable(addresses, { hostClients: false }));
}

async function persistentLink(log: Logger): Promise<void> {
  try {
    await ip(['link', 'add', DNS_INTERFACE, 'type', 'dummy']);
  } catch {
    await ip(['link', 'add', DNS_INTERFACE, 'type', 'bridge']);
    log.info(`this kernel has no dummy link type: ${DNS_INTERFACE} is an empty bridge`);
  }
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
