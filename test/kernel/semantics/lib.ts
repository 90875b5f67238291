// Shared harness for the Service-semantics suite: one topology per test file, kubenft loaded in
// either mode with the same flags, probes from the three kinds of client (outside the node, the
// node itself, a pod), and the `kubenft render` examples each behaviour keeps in examples/.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createTopology, EXTERNAL, type PodSpec, type Topology, type TopologySpec } from '../../../scripts/lib/topology.js';
import type { AttemptResult, ProbeReport } from '../../../scripts/lib/probe.js';
import type { Test } from 'tap';
import { projectRoot } from '../../../src/kernel/native.js';
import { kubenft, syncOnce } from '../../lib/kubenft.js';
import { ManifestFile, node } from '../../lib/manifests.js';

export const MODES = ['nftables', 'iptables'] as const;
export type Mode = (typeof MODES)[number];

export const NODE_NAME = 'node-1';
export const OTHER_NODE = 'node-2';
export const ZONE = 'zone-a';
export const CLUSTER_CIDRS = ['10.244.0.0/16', 'fd00:244::/48'];
export const SERVICE_CIDRS = ['10.0.0.0/16', 'fd00:10:96::/108'];
export { EXTERNAL };

/** The flags every case runs with; a case adds its own after them. */
export const BASE_FLAGS = [
  '--hostname-override', NODE_NAME,
  '--cluster-cidr', CLUSTER_CIDRS.join(','),
  '--service-cidr', SERVICE_CIDRS.join(','),
];

/** This node as the manifests describe it: its addresses (NodePort `primary`), zone label and podCIDRs. */
export const thisNode = (options: { zone?: string; podCIDRs?: string[] } = {}) =>
  node(NODE_NAME, [EXTERNAL.nodeIPv4, EXTERNAL.nodeIPv6], { zone: ZONE, podCIDRs: ['10.244.1.0/24', 'fd00:244:0:1::/64'], ...options });

/** The gateway address the node holds towards a pod: what a masqueraded connection shows the pod as its source. */
export const gatewayOf = (podAddress: string) =>
  podAddress.includes(':') ? `${podAddress.split(':').slice(0, 4).join(':')}::1` : `${podAddress.split('.').slice(0, 3).join('.')}.1`;

export type Answer = Extract<AttemptResult, { ok: true }>;
export const answers = (report: ProbeReport): Answer[] => report.results.filter((result): result is Answer => result.ok);
export const errors = (report: ProbeReport): string[] => report.results.flatMap((result) => (result.ok ? [] : [result.error]));
/** Which pods answered, sorted and without repeats. */
export const podsOf = (report: ProbeReport) => [...new Set(answers(report).map((answer) => answer.pod))].sort();
/** The source addresses the endpoints saw, sorted and without repeats. */
export const sourcesOf = (report: ProbeReport) => [...new Set(answers(report).map((answer) => answer.remote))].sort();

export interface ProbeTarget {
  address: string;
  port: number;
  protocol?: 'tcp' | 'udp';
  count?: number;
  timeoutMs?: number;
  sourcePort?: number;
}

/** Where a probe starts: outside the node, on the node, or in a pod (by pod name). */
export type From = 'client' | 'node' | string;

/** One field of every answer, sorted and without repeats (e.g. the local ports the endpoints answered on). */
export const valuesOf = <K extends keyof Answer>(report: ProbeReport, key: K): Answer[K][] => [...new Set(answers(report).map((answer) => answer[key]))].sort();

const EXAMPLES = join(dirname(fileURLToPath(import.meta.url)), 'examples');

/** A probe made while a behaviour ran, kept to compare with what `kubenft explain` says. */
interface Probed {
  from: From;
  target: ProbeTarget;
  report: ProbeReport;
}

export class Semantics {
  readonly manifests = new ManifestFile();
  private loaded: Mode | undefined;
  /** While a behaviour runs: its probes, for checkExplain. */
  private probed: Probed[] | undefined;

  private constructor(readonly topology: Topology) {}

  /**
   * A topology for one test file, destroyed (with everything in it) when the file's tests end.
   * The processes it starts (kubenft, probes, servers) run without tap's per-process
   * instrumentation (NODE_OPTIONS): it made every kubenft run six times slower, and they run the
   * compiled dist/ anyway.
   */
  static async create(t: Test, spec: TopologySpec): Promise<Semantics> {
    delete process.env.NODE_OPTIONS;
    const topology = await createTopology(spec);
    const semantics = new Semantics(topology);
    t.teardown(async () => {
      semantics.manifests.remove();
      await topology.destroy();
    });
    // A reject is an ICMP error, which the kernel rate-limits per destination (a burst of 6, then
    // one a second): a case refusing a dozen probes would see the later ones as timeouts.
    await semantics.exec('node', ['sysctl', '-q', '-w', 'net.ipv4.icmp_ratelimit=0', 'net.ipv6.icmp.ratelimit=0']);
    return semantics;
  }

  pod(name: string) {
    const pod = this.topology.pods.find((candidate) => candidate.name === name);
    if (!pod) throw new Error(`no pod ${name}`);
    return pod;
  }

  namespaceOf(from: From): string {
    if (from === 'client') return this.topology.client;
    if (from === 'node') return this.topology.node;
    return this.pod(from).ns;
  }

  /** Programs the node with `objects` in `mode` (removing the other mode's rules first) and forgets old flows. */
  async load(mode: Mode, objects: unknown[], flags: string[] = []): Promise<void> {
    if (this.loaded !== mode) await this.cleanup();
    this.manifests.write(objects);
    await syncOnce(this.topology, this.manifests.path, '--proxy-mode', mode, ...BASE_FLAGS, ...flags);
    this.loaded = mode;
    await this.flushConntrack();
  }

  /** Starts keeping the probes made from now on (returned), or stops. */
  recordProbes(on: boolean): Probed[] {
    this.probed = on ? [] : undefined;
    return this.probed ?? [];
  }

  async cleanup(): Promise<void> {
    const result = await kubenft(this.topology, ['--cleanup']);
    if (result.code !== 0) throw new Error(`kubenft --cleanup exited ${result.code}: ${result.stderr}`);
    this.loaded = undefined;
  }

  /** Earlier cases' NAT decisions live in conntrack; each case starts without them. */
  async flushConntrack(): Promise<void> {
    await this.exec('node', ['conntrack', '-F']);
  }

  async exec(from: From, argv: string[]): Promise<string> {
    const result = await this.topology.exec(this.namespaceOf(from), argv);
    if (result.code !== 0) throw new Error(`${argv.join(' ')} exited ${result.code}: ${result.stderr}`);
    return result.stdout;
  }

  async probe(from: From, target: ProbeTarget): Promise<ProbeReport> {
    const report = await this.topology.probe(this.namespaceOf(from), {
      address: target.address,
      port: target.port,
      protocol: target.protocol ?? 'tcp',
      count: target.count ?? 4,
      timeoutMs: target.timeoutMs ?? 1500,
      sourcePort: target.sourcePort,
    });
    this.probed?.push({ from, target, report });
    return report;
  }

  /** The address a probe from `from` leaves with ('' for the node: its route decides). */
  private sourceOf(from: From, ipv6: boolean): string {
    if (from === 'node') return '';
    if (from === 'client') return ipv6 ? EXTERNAL.clientIPv6 : EXTERNAL.clientIPv4;
    const pod = this.pod(from);
    return (ipv6 ? pod.ipv6 : pod.ipv4) ?? '';
  }

  /**
   * `kubenft explain` against what the probes of a behaviour did: every outcome a probe saw
   * (an endpoint's answer, a refusal, silence) must be one explain gives, and every outcome explain
   * gives often enough to be seen (6 expected hits or more) must have been seen.
   */
  async checkExplain(t: Test, mode: Mode, probed: Probed[]): Promise<void> {
    if (probed.length === 0) return;
    const requests = probed.map(({ from, target }) => {
      const ipv6 = target.address.includes(':');
      return { from: this.sourceOf(from, ipv6), to: ipv6 ? `[${target.address}]:${target.port}` : `${target.address}:${target.port}`, protocol: target.protocol ?? 'tcp', via: from === 'node' ? 'output' : 'prerouting' };
    });
    const program = join(projectRoot(), 'test/fixtures/explain-probes.mjs');
    const result = await this.topology.exec(this.topology.node, [process.execPath, program], { input: JSON.stringify({ mode, requests }) });
    t.equal(result.code, 0, `explain ran: ${result.stderr}`);
    if (result.code !== 0) return;
    const reports = JSON.parse(result.stdout) as { outcomes: { probability: number; fate: string; delivery?: string; dnat?: { address: string } }[] }[];
    // Delivered to this node untranslated, a connection is answered or refused by the node's own stack.
    const sameOutcome = (explained: string, seen: string) => explained === seen || (explained === 'to this node' && (seen === 'untranslated' || seen === 'reject'));
    probed.forEach(({ from, target, report }, index) => {
      const seen = new Set(report.results.map((attempt) => (attempt.ok ? (attempt.local === target.address ? 'untranslated' : attempt.local) : attempt.error === 'ECONNREFUSED' ? 'reject' : attempt.error === 'ETIMEDOUT' ? 'drop' : attempt.error)));
      const explained = new Map<string, number>();
      for (const outcome of reports[index].outcomes) {
        const key = outcome.fate !== 'accept' ? outcome.fate : outcome.dnat?.address ?? (outcome.delivery === 'local' ? 'to this node' : 'untranslated');
        explained.set(key, (explained.get(key) ?? 0) + outcome.probability);
      }
      const count = target.count ?? 4;
      const what = `explain ${from} -> ${target.address}:${target.port}/${target.protocol ?? 'tcp'}`;
      t.same([...seen].filter((outcome) => ![...explained.keys()].some((key) => sameOutcome(key, outcome))), [], `${what}: every outcome the packets had is explained (${[...explained].map(([k, p]) => `${k} ${p}`).join(', ')})`);
      t.same([...explained].filter(([outcome, probability]) => count * probability >= 6 && ![...seen].some((key) => sameOutcome(outcome, key))).map(([outcome]) => outcome), [], `${what}: every likely outcome was seen (${[...seen].join(', ')})`);
    });
  }

  /**
   * A hostnames server on the node itself, named "node", answering TCP on every node address: what
   * answers when a rule that should refuse or drop traffic to a node address is missing. (TCP only:
   * its UDP side binds each local address, which the node's many interfaces make fail.)
   */
  async startNodeListener(ports: number[]): Promise<void> {
    const program = join(projectRoot(), 'dist/scripts/lib/hostnames-server.js');
    const server = this.topology.spawn(this.topology.node, [process.execPath, program, '--name', 'node', ...ports.flatMap((port) => ['--port', String(port)]), '--exit-on-stdin-eof']);
    await server.waitForOutput(/^ready$/m, 10_000);
  }

  /** What the node has loaded in `mode`: the nftables tables, or iptables-save of both families. */
  async loadedRules(mode: Mode): Promise<string> {
    if (mode === 'nftables') return this.exec('node', ['nft', 'list', 'ruleset']);
    return (await this.exec('node', ['iptables-save'])) + (await this.exec('node', ['ip6tables-save']));
  }

  /**
   * The nftables render of a case against its example file: rendered in the node namespace (so
   * --nodeport-addresses CIDRs resolve against the node's interfaces), compared with
   * examples/<name>.nft; KUBENFT_UPDATE_EXAMPLES=1 rewrites the file instead.
   */
  async checkExample(t: Test, name: string, objects: unknown[], flags: string[] = []): Promise<void> {
    const manifests = new ManifestFile(objects);
    try {
      const args = [...BASE_FLAGS, ...flags];
      const result = await kubenft(this.topology, ['render', '--manifests', manifests.path, ...args]);
      t.equal(result.code, 0, result.stderr);
      const text = `# kubenft render --manifests ${name}.yaml ${args.join(' ')}\n${result.stdout}`;
      const path = join(EXAMPLES, `${name}.nft`);
      if (process.env.KUBENFT_UPDATE_EXAMPLES === '1' || !existsSync(path)) {
        if (process.env.KUBENFT_UPDATE_EXAMPLES !== '1') t.fail(`${path} was missing; written now`);
        writeFileSync(path, text);
      }
      t.equal(text, readFileSync(path, 'utf8'), `render output matches examples/${name}.nft`);
    } finally {
      manifests.remove();
    }
  }
}

export interface Behaviour {
  /** The example file's name, and the prefix of the subtests' names. */
  name: string;
  objects: unknown[];
  flags?: string[];
  /** Modes that cannot show this behaviour, with the reason (kube-proxy's iptables mode lacks it). */
  skip?: Partial<Record<Mode, string>>;
}

/**
 * One behaviour, one test body, every mode: a render check against the example, then a subtest
 * per mode that loads the case and runs `body`.
 */
export async function behaviour(t: Test, semantics: Semantics, spec: Behaviour, body: (t: Test, mode: Mode) => Promise<void>): Promise<void> {
  await t.test(`${spec.name}: render matches the example`, (t) => semantics.checkExample(t, spec.name, spec.objects, spec.flags));
  for (const mode of MODES) {
    const reason = spec.skip?.[mode];
    if (reason) {
      await t.test(`${spec.name} (${mode}) skipped: ${reason}`, { skip: reason }, async () => {});
      continue;
    }
    await t.test(`${spec.name} (${mode})`, async (t) => {
      await semantics.load(mode, spec.objects, spec.flags);
      const probed = semantics.recordProbes(true);
      await body(t, mode);
      semantics.recordProbes(false);
      await semantics.checkExplain(t, mode, probed);
    });
  }
}

export type { PodSpec, Topology };
