// The in-process half of the DNS benchmark (bench-dns.ts), one process per measurement inside the
// bench topology's node namespace: the agent with its real nftables rules and cluster DNS, fed
// objects as a watch delivers them.
//   bench-dns-worker.js ROOT_NETNS_INODE change SERVICES CHANGES  → { p50Ms, p99Ms, ... }
//   bench-dns-worker.js ROOT_NETNS_INODE memory SERVICES clusterip|headless on|off → { rssBytes }
import dgram from 'node:dgram';
import { statSync } from 'node:fs';
import dnsPacket from 'dns-packet';
import pino from 'pino';
import { Agent } from '../../src/agent/agent.js';
import { NftablesDataplane } from '../../src/services/dataplane.js';
import type { StateChanges } from '../../src/capability.js';
import { DnsDataplane } from '../../src/dns/dataplane.js';
import { parseOptions } from '../../src/cli/options.js';
import type { ClusterState } from '../../src/cluster/cluster-state.js';
import { quantile } from './bench-stats.js';
import { DNS_NAMESPACE, ZONE, clusterObjects, fqdn, serviceObjects } from './bench-dns.js';

const DNS_PORT = 5300;
const MIN_SYNC_PERIOD = '200ms';
/** Longer than the min sync period: each change finds the sync loop idle. */
const CHANGE_SPACING_MS = 300;
const CHANGING = 'changing';
const log = pino({ level: 'silent' });

/** Cluster DNS that says when an update carrying one service's change has been applied by its server. */
class TimedDnsDataplane extends DnsDataplane {
  private waiter: { key: string; resolve: () => void } | undefined;

  appliedChangeOf(key: string): Promise<void> {
    return new Promise((resolve) => { this.waiter = { key, resolve }; });
  }

  override async update(state: ClusterState, changes: StateChanges): Promise<void> {
    await super.update(state, changes);
    const waiter = this.waiter;
    if (waiter && (changes.services === 'full' || changes.services.has(waiter.key))) {
      this.waiter = undefined;
      waiter.resolve();
    }
  }
}

function agentWith(dns: DnsDataplane | undefined): Agent {
  const options = parseOptions(['--hostname-override', 'node-1', '--healthz-bind-address', '', '--metrics-bind-address', '', '--iptables-min-sync-period', MIN_SYNC_PERIOD]);
  return new Agent(options, new NftablesDataplane(), log, dns ? [dns] : []);
}

const dnsOptions = { addresses: ['127.0.0.1'], port: DNS_PORT, zone: ZONE, ttl: 5, pods: 'insecure' as const, upstreams: [], network: false, healthAddress: '', readyAddress: '' };
const changingSlice = (change: number) => serviceObjects(CHANGING, 'None', [`10.246.0.${1 + (change % 2)}`, '10.246.1.1', '10.246.1.2']);

async function addressesOf(name: string): Promise<string[]> {
  const socket = dgram.createSocket('udp4');
  try {
    const response = await new Promise<Buffer>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no answer for ${name}`)), 2000);
      socket.once('message', (message) => { clearTimeout(timer); resolve(message); });
      socket.send(dnsPacket.encode({ id: 1, type: 'query', questions: [{ name, type: 'A' }] }), DNS_PORT, '127.0.0.1');
    });
    return (dnsPacket.decode(response).answers ?? []).map((answer) => String((answer as { data: unknown }).data));
  } finally {
    socket.close();
  }
}

/** From an EndpointSlice change reaching the agent (the source's apply) to the DNS server answering from it. */
async function change(services: number, changes: number) {
  const dns = new TimedDnsDataplane(dnsOptions, log);
  const agent = agentWith(dns);
  const handler = agent.handler();
  for (const object of [...clusterObjects(services), ...changingSlice(0)]) handler.apply(object);
  const key = `${DNS_NAMESPACE}/${CHANGING}`;
  let applied = dns.appliedChangeOf(key);
  agent.start();
  await applied;
  const samplesMs: number[] = [];
  let wrongAnswers = 0;
  for (let index = 1; index <= changes; index++) {
    await new Promise((resolve) => setTimeout(resolve, CHANGE_SPACING_MS));
    applied = dns.appliedChangeOf(key);
    const started = performance.now();
    for (const object of changingSlice(index)) handler.apply(object);
    await applied;
    samplesMs.push(performance.now() - started);
    if (!(await addressesOf(fqdn(CHANGING))).includes(`10.246.0.${1 + (index % 2)}`)) wrongAnswers++;
  }
  await agent.stop();
  return { services, changes, p50Ms: quantile(samplesMs, 0.5), p99Ms: quantile(samplesMs, 0.99), maxMs: Math.max(...samplesMs), wrongAnswers };
}

/** The agent's RSS once synced and idle, with cluster DNS off or on, for ClusterIP or headless services. */
async function memory(services: number, shape: string, dnsOn: string) {
  if (!['clusterip', 'headless'].includes(shape) || !['on', 'off'].includes(dnsOn)) throw new Error(`memory ${shape} ${dnsOn}: clusterip|headless on|off`);
  const dns = dnsOn === 'on' ? new DnsDataplane(dnsOptions, log) : undefined;
  const agent = agentWith(dns);
  const handler = agent.handler();
  for (const object of clusterObjects(services, { headless: shape === 'headless' })) handler.apply(object);
  await agent.sync();
  if (dns && (await addressesOf(fqdn('svc-0'))).length === 0) throw new Error('cluster DNS does not answer');
  // As bench-worker's memory reading: the agent idles after a sync, and freed pages go back meanwhile.
  await new Promise((resolve) => setTimeout(resolve, 1000));
  const rssBytes = process.memoryUsage().rss;
  await agent.stop();
  return { rssBytes };
}

async function main(): Promise<void> {
  const [rootNamespace, mode, ...args] = process.argv.slice(2);
  // It rewrites the namespace's rules: never where the orchestrator runs.
  if (String(statSync('/proc/self/ns/net').ino) === rootNamespace) throw new Error('bench-dns-worker must run inside the bench topology\'s node namespace');
  const result = mode === 'change' ? await change(Number(args[0]), Number(args[1])) : mode === 'memory' ? await memory(Number(args[0]), args[1], args[2]) : undefined;
  if (!result) throw new Error(`unknown mode ${mode}`);
  process.stdout.write(`${JSON.stringify(result)}\n`);
  process.exit(0);
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? error.stack : String(error)}\n`);
  process.exit(1);
});
