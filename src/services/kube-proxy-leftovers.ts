import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { promisify } from 'node:util';
import type { Logger } from 'pino';
import type { StateDataplane } from '../capability.js';
import { NftablesBackend } from '../kernel/nftables.js';
import type { IptablesBackend } from './iptables-backend.js';
import { IPVS_DEVICE, KUBE_PROXY_IP_SETS, KUBE_PROXY_NFT_TABLES, kubeProxyVirtualServices } from './kube-proxy-leftovers-plan.js';
import { servicesBackend } from './nftables-proxier.js';

// Migration from kube-proxy, and between kubenft's own modes: what another proxy (or the other
// mode) left in this network namespace is removed once kubenft's first sync is in force, so new
// connections never meet a moment without rules, and established ones keep the NAT binding their
// conntrack entries hold. Each removal is logged, one line per object.

const run = promisify(execFile);
/** Present only while the kernel's IPVS is loaded; without it no virtual service can exist. */
const IPVS_PROC = '/proc/net/ip_vs';

export interface Removed {
  removed: string[];
  /** Objects that stay, and why, for a warning each. */
  kept: string[];
}

const missingTool = (error: unknown) => (error as NodeJS.ErrnoException).code === 'ENOENT';

/** kube-ipvs0's addresses, or undefined when there is no such link (whatever its type). */
async function ipvsDeviceAddresses(): Promise<Set<string> | undefined> {
  try {
    const { stdout } = await run('ip', ['-j', 'address', 'show', 'dev', IPVS_DEVICE]);
    const links = JSON.parse(stdout) as { addr_info?: { local: string }[] }[];
    return new Set(links.flatMap((link) => link.addr_info ?? []).map((address) => address.local));
  } catch {
    return undefined;
  }
}

/** IPVS mode's virtual services, its kube-ipvs0 device and its ip sets (after the iptables rules that use them). */
async function removeIpvsLeftovers(into: Removed, log: Logger): Promise<void> {
  const addresses = await ipvsDeviceAddresses();
  if (!existsSync(IPVS_PROC)) {
    log.info(`this kernel has no IPVS loaded (no ${IPVS_PROC}): no IPVS virtual services to remove`);
  } else if (addresses) {
    try {
      const { stdout } = await run('ipvsadm', ['-S', '-n']);
      const services = kubeProxyVirtualServices(stdout, addresses);
      for (const service of services) {
        await run('ipvsadm', ['-D', service.flag, service.service]);
        into.removed.push(`IPVS virtual service ${service.flag} ${service.service}`);
      }
      const others = stdout.split('\n').filter((line) => line.startsWith('-A ')).length - services.length;
      if (others > 0) into.kept.push(`${others} IPVS virtual services on other addresses than ${IPVS_DEVICE}'s (kube-proxy's NodePorts look like that): see ipvsadm -L -n`);
    } catch (error) {
      if (!missingTool(error)) throw error;
      into.kept.push(`the IPVS virtual services on ${IPVS_DEVICE}'s addresses: ipvsadm is not installed`);
    }
  }
  if (addresses) {
    await run('ip', ['link', 'delete', IPVS_DEVICE]);
    into.removed.push(`device ${IPVS_DEVICE}`);
  }
  let sets: string[];
  try {
    sets = (await run('ipset', ['list', '-n'])).stdout.split('\n').filter((name) => KUBE_PROXY_IP_SETS.has(name));
  } catch (error) {
    // No ipset tool, or no ip sets in this kernel: then kube-proxy made none here either.
    log.debug(`no ip sets to look at: ${(error as Error).message}`);
    return;
  }
  for (const set of sets) {
    try {
      await run('ipset', ['destroy', set]);
      into.removed.push(`ip set ${set}`);
    } catch (error) {
      into.kept.push(`ip set ${set}: ${((error as { stderr?: string }).stderr ?? String(error)).trim()}`);
    }
  }
}

/**
 * Removes kube-proxy's objects in every mode: its nftables tables, its iptables chains and jumps
 * (iptables-nft and iptables-legacy, IPv4 and IPv6; those of kubenft's iptables mode in the
 * implementation it programs stay when `iptables` says so), IPVS's virtual services, device and sets.
 */
export async function removeKubeProxyLeftovers(iptables: IptablesBackend, keepOwnIptables: boolean, log: Logger): Promise<Removed> {
  const result: Removed = { removed: [], kept: [] };
  for (const table of await new NftablesBackend().deleteTablesIfPresent(KUBE_PROXY_NFT_TABLES)) result.removed.push(`nftables table ${table}`);
  const report = await iptables.removeLeftovers({ keepOwn: keepOwnIptables });
  result.removed.push(...report.removed);
  result.kept.push(...report.referenced);
  await removeIpvsLeftovers(result, log);
  return result;
}

export function logRemoved({ removed, kept }: Removed, log: Logger): void {
  for (const line of removed) log.info(`removed ${line}`);
  for (const line of kept) log.warn(`left in place: ${line}`);
}

/**
 * After the first good sync, once: kube-proxy's leftovers, and the other mode's rules of kubenft
 * (switching --proxy-mode is restarting with the other value). A dataplane only in that it runs
 * after a sync and is retried, counted in kubenft_state_dataplane_update_failures_total, when it fails.
 */
export class LeftoverRemovalDataplane implements StateDataplane {
  readonly name = 'leftover-removal';
  private done = false;

  /** `iptables` is the iptables mode's own backend: the implementation it detected is the one to keep. */
  constructor(private readonly mode: 'nftables' | 'iptables', private readonly iptables: IptablesBackend, private readonly log: Logger) {}

  attach(): void {}

  async update(): Promise<void> {
    if (this.done) return;
    const iptablesMode = this.mode === 'iptables';
    const result = await removeKubeProxyLeftovers(this.iptables, iptablesMode, this.log);
    if (iptablesMode) result.removed.push(...(await servicesBackend().cleanup()).map((table) => `nftables table ${table} (kubenft's nftables mode)`));
    logRemoved(result, this.log);
    this.done = true;
  }

  async stop(): Promise<void> {}
}
