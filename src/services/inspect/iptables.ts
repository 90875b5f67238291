import { readFileSync } from 'node:fs';
import ipaddr from 'ipaddr.js';
import { splitHostPort } from '../../kernel/addresses.js';
import type { ServicePortSummary, Selection } from './services.js';
import { EvaluationError, type Fate, followNewConnection, type Outcome, type Probe, type Step, translations, type Via } from './evaluate.js';

// The iptables mode read back: iptables-save text (or the planner's restore input, which has the
// same syntax) parsed into rules, a new connection evaluated through the filter and nat chains it
// passes (`statistic` forks as numgen does in nftables), and the service ports summarized from
// kube-proxy's chain layout. Only the options kube-proxy's rules use are understood; any other
// stops the evaluation with an error naming the rule.

export interface IptablesRule {
  table: string;
  chain: string;
  /** 1-based position in its chain, as `iptables -L --line-numbers` counts. */
  index: number;
  text: string;
  options: Map<string, { value: string[]; negated: boolean }>;
  target?: string;
  goto: boolean;
}

export interface IptablesRuleset {
  /** Rules by "table chain", in order; built-in chains also have a policy. */
  chains: Map<string, { policy?: string; rules: IptablesRule[] }>;
}

/** Arguments of an iptables-save line: whitespace-separated, "double quoted" with \" escapes. */
function words(line: string): string[] {
  const result: string[] = [];
  const pattern = /"((?:[^"\\]|\\.)*)"|(\S+)/g;
  for (let match = pattern.exec(line); match; match = pattern.exec(line)) result.push(match[1] !== undefined ? match[1].replace(/\\(.)/g, '$1') : match[2]);
  return result;
}

/** How many values each option takes (those not listed take one). */
const FLAG_OPTIONS = new Set(['--set', '--rcheck', '--update', '--remove', '--reap', '--rsource', '--rdest', '--random-fully', '--random']);
const ALIASES: Record<string, string> = { '--source': '-s', '--destination': '-d', '--protocol': '-p', '--jump': '-j', '--goto': '-g', '--in-interface': '-i', '--out-interface': '-o' };

export function parseIptables(text: string): IptablesRuleset {
  const chains: IptablesRuleset['chains'] = new Map();
  let table = '';
  for (const line of text.split('\n')) {
    if (line.startsWith('*')) table = line.slice(1).trim();
    else if (line.startsWith(':')) {
      const [name, policy] = line.slice(1).split(' ');
      chains.set(`${table} ${name}`, { policy: policy === '-' ? undefined : policy, rules: chains.get(`${table} ${name}`)?.rules ?? [] });
    } else if (line.startsWith('-A ')) {
      const args = words(line);
      const chain = args[1];
      const rule: IptablesRule = { table, chain, index: 0, text: line, options: new Map(), goto: false };
      let negated = false;
      for (let i = 2; i < args.length; i++) {
        const name = ALIASES[args[i]] ?? args[i];
        if (name === '!') {
          negated = true;
          continue;
        }
        if (name === '-m') {
          i++;
          continue;
        }
        if (name === '-j' || name === '-g') {
          rule.target = args[++i];
          rule.goto = name === '-g';
          continue;
        }
        const value = FLAG_OPTIONS.has(name) ? [] : [args[++i]];
        rule.options.set(name, { value, negated });
        negated = false;
      }
      const entry = chains.get(`${table} ${chain}`) ?? { rules: [] };
      rule.index = entry.rules.length + 1;
      entry.rules.push(rule);
      chains.set(`${table} ${chain}`, entry);
    }
  }
  return { chains };
}

interface Branch {
  probability: number;
  saddr: string;
  daddr: string;
  sport: number;
  dport: number;
  mark: number;
  dnat?: { address: string; port: number };
  masquerade: boolean;
  notes: string[];
  steps: Step[];
}

type End = 'return' | Fate;

const KNOWN_OPTIONS = new Set(['-s', '-d', '-p', '--dport', '--sport', '--comment', '--dst-type', '--src-type', '--ctstate', '--mark', '--mode', '--probability',
  '--set', '--rcheck', '--update', '--seconds', '--reap', '--name', '--mask', '--rsource', '--rdest',
  '--to-destination', '--set-xmark', '--set-mark', '--or-mark', '--xor-mark', '--and-mark', '--reject-with', '--random-fully', '--random']);

/** Which tables' built-in chains a hook runs, in priority order (raw and mangle hold nothing of a proxy's). */
const HOOK_CHAINS: Record<string, [string, string][]> = {
  prerouting: [['nat', 'PREROUTING']],
  input: [['filter', 'INPUT'], ['nat', 'INPUT']],
  forward: [['filter', 'FORWARD']],
  output: [['nat', 'OUTPUT'], ['filter', 'OUTPUT']],
  postrouting: [['nat', 'POSTROUTING']],
};

const parseMark = (text: string) => {
  const [value, mask] = text.split('/');
  return { value: Number(value) >>> 0, mask: mask === undefined ? 0xffffffff : Number(mask) >>> 0 };
};

const inCidr = (address: string, cidr: string) => {
  const parsed = ipaddr.parse(address);
  const [network, bits] = cidr.includes('/') ? ipaddr.parseCIDR(cidr) : [ipaddr.parse(cidr), parsed.kind() === 'ipv4' ? 32 : 128];
  return parsed.kind() === network.kind() && parsed.match(network, bits);
};

/** Sources a `recent` list holds now (/proc/net/xt_recent/NAME; entries are not aged here). */
export function recentSources(name: string): Set<string> {
  try {
    return new Set([...readFileSync(`/proc/net/xt_recent/${name}`, 'utf8').matchAll(/^src=(\S+)/gm)].map((match) => ipaddr.process(match[1]).toString()));
  } catch {
    return new Set();
  }
}

const stateKey = (branch: Branch) => JSON.stringify([branch.saddr, branch.daddr, branch.dport, branch.mark, branch.dnat, branch.masquerade, branch.notes, branch.steps.map((step) => `${step.chain}/${step.handle}`)]);

export class IptablesEvaluator {
  constructor(
    private readonly ruleset: IptablesRuleset,
    private readonly isLocalAddress: (address: string) => boolean,
    private readonly recent: (name: string) => Set<string> = recentSources,
  ) {}

  explain(probe: Probe, via: Via): Outcome[] {
    const start: Branch = { probability: 1, saddr: probe.saddr, daddr: probe.daddr, sport: probe.sport, dport: probe.dport, mark: 0, masquerade: false, notes: [], steps: [] };
    this.protocol = probe.protocol;
    return followNewConnection(start, via, (hook, branches) => this.hook(hook, branches), (branch) => this.isLocalAddress(branch.daddr));
  }

  /** The endpoints a nat chain picks when entered directly (see Evaluator.selections). */
  selections(chain: string, protocol: Probe['protocol'], ipv6: boolean): Selection[] {
    this.protocol = protocol;
    const unspecified = ipv6 ? '::' : '0.0.0.0';
    const start: Branch = { probability: 1, saddr: unspecified, daddr: unspecified, sport: 0, dport: 0, mark: 0, masquerade: false, notes: [], steps: [] };
    return translations(this.chain('nat', chain, [start], 0).map(([branch]) => branch));
  }

  private protocol: Probe['protocol'] = 'tcp';

  private hook(hook: string, branches: Branch[]): [Branch, Fate][] {
    const results: [Branch, Fate][] = [];
    for (const start of branches) {
      let live = [start];
      for (const [table, chain] of HOOK_CHAINS[hook]) {
        const entry = this.ruleset.chains.get(`${table} ${chain}`);
        if (!entry) continue;
        const next: Branch[] = [];
        for (const branch of live) {
          for (const [after, end] of this.chain(table, chain, [branch], 0)) {
            const fate: Fate = end === 'return' ? (entry.policy === 'DROP' ? 'drop' : 'accept') : end;
            if (fate === 'accept') next.push(after);
            else results.push([after, fate]);
          }
        }
        live = next;
      }
      for (const branch of live) results.push([branch, 'accept']);
    }
    return results;
  }

  private chain(table: string, name: string, branches: Branch[], depth: number): [Branch, End][] {
    if (depth > 16) throw new EvaluationError(`${table} chain ${name}: jumps nest deeper than 16`);
    const entry = this.ruleset.chains.get(`${table} ${name}`);
    if (!entry) throw new EvaluationError(`${table} chain ${name} does not exist`);
    const ended: [Branch, End][] = [];
    let live = branches;
    for (const rule of entry.rules) {
      const next: Branch[] = [];
      for (const branch of live) {
        for (const matched of this.matches(rule, branch)) {
          if (!matched.holds) {
            next.push(matched.branch);
            continue;
          }
          const after = matched.branch;
          after.steps.push({ table, chain: name, handle: rule.index, text: rule.text });
          const end = this.target(rule, after);
          if (end === 'continue') next.push(after);
          else if (end === 'jump') {
            for (const [returned, result] of this.chain(table, rule.target!, [after], depth + 1)) {
              if (result === 'return' && !rule.goto) next.push(returned);
              else ended.push([returned, result]);
            }
          } else ended.push([after, end]);
        }
      }
      const merged = new Map<string, Branch>();
      for (const branch of next) {
        const key = stateKey(branch);
        const known = merged.get(key);
        if (known) known.probability += branch.probability;
        else merged.set(key, branch);
      }
      live = [...merged.values()];
    }
    for (const branch of live) ended.push([branch, 'return']);
    return ended;
  }

  /** The branches a rule's matches split a branch into (statistic forks), each matching or not. */
  private matches(rule: IptablesRule, branch: Branch): { branch: Branch; holds: boolean }[] {
    for (const [name, option] of rule.options) {
      if (!KNOWN_OPTIONS.has(name)) throw new EvaluationError(`rule ${rule.text}: option ${name} is not evaluated`);
      const check = (holds: boolean) => holds !== option.negated;
      const [value] = option.value;
      let holds = true;
      if (name === '-s') holds = check(inCidr(branch.saddr, value));
      else if (name === '-d') holds = check(inCidr(branch.daddr, value));
      else if (name === '-p') holds = check(value === this.protocol);
      else if (name === '--dport' || name === '--sport') {
        const port = name === '--dport' ? branch.dport : branch.sport;
        const [low, high = low] = value.split(':').map(Number);
        holds = check(port >= low && port <= high);
      } else if (name === '--dst-type' || name === '--src-type') {
        if (value !== 'LOCAL') throw new EvaluationError(`rule ${rule.text}: address type ${value} is not evaluated`);
        holds = check(this.isLocalAddress(name === '--dst-type' ? branch.daddr : branch.saddr));
      } else if (name === '--ctstate') holds = check(value.split(',').includes('NEW'));
      else if (name === '--mark') {
        const { value: mark, mask } = parseMark(value);
        holds = check(((branch.mark & mask) >>> 0) === mark);
      } else if (name === '--rcheck' || name === '--update') {
        const list = rule.options.get('--name')?.value[0] ?? 'DEFAULT';
        holds = check(this.recent(list).has(rule.options.has('--rdest') ? branch.daddr : branch.saddr));
      }
      if (!holds) return [{ branch, holds: false }];
    }
    const probability = rule.options.get('--probability');
    if (!probability) return [{ branch, holds: true }];
    const p = Number(probability.value[0]);
    return [
      { branch: { ...branch, probability: branch.probability * p, steps: [...branch.steps], notes: [...branch.notes] }, holds: true },
      { branch: { ...branch, probability: branch.probability * (1 - p), steps: [...branch.steps], notes: [...branch.notes] }, holds: false },
    ];
  }

  private target(rule: IptablesRule, branch: Branch): End | 'continue' | 'jump' {
    if (rule.options.has('--set')) branch.notes.push(`set ${branch.saddr} in recent list ${rule.options.get('--name')?.value[0] ?? 'DEFAULT'}`);
    const option = (name: string) => rule.options.get(name)?.value[0];
    switch (rule.target) {
      case undefined:
        return 'continue';
      case 'ACCEPT':
        return 'accept';
      case 'DROP':
        return 'drop';
      case 'REJECT':
        return 'reject';
      case 'RETURN':
        return 'return';
      case 'MARK': {
        const set = option('--set-xmark') ?? option('--set-mark');
        if (set !== undefined) {
          const { value, mask } = parseMark(set);
          branch.mark = (((branch.mark & ~mask) ^ value) >>> 0);
        } else if (option('--or-mark') !== undefined) branch.mark = (branch.mark | parseMark(option('--or-mark')!).value) >>> 0;
        else if (option('--xor-mark') !== undefined) branch.mark = (branch.mark ^ parseMark(option('--xor-mark')!).value) >>> 0;
        else if (option('--and-mark') !== undefined) branch.mark = (branch.mark & parseMark(option('--and-mark')!).value) >>> 0;
        return 'continue';
      }
      case 'DNAT': {
        let to: { host: string; port: number | undefined };
        try {
          to = splitHostPort(option('--to-destination') ?? '', { portOptional: true });
        } catch (error) {
          throw new EvaluationError(`rule ${rule.text}: ${(error as Error).message}`);
        }
        branch.daddr = to.host;
        branch.dport = to.port ?? branch.dport;
        branch.dnat = { address: ipaddr.process(to.host).toString(), port: branch.dport };
        return 'accept';
      }
      case 'MASQUERADE':
        branch.masquerade = true;
        return 'accept';
      case 'LOG':
        return 'continue';
      default:
        if (this.ruleset.chains.has(`${rule.table} ${rule.target}`)) return 'jump';
        throw new EvaluationError(`rule ${rule.text}: target ${rule.target} is not evaluated`);
    }
  }
}

// ---- service ports from kube-proxy's chains ---------------------------------------------------------

const COMMENT_NAME = /^(\S+?)(?::(\S+))? (cluster IP|external IP|loadbalancer IP)$/;
const NO_ENDPOINTS = /^(\S+?)(?::\S+)? has no endpoints$/;

/** Every service port in an iptables ruleset (one family), as services() summarizes nftables. */
export function summarizeIptables(ruleset: IptablesRuleset, ipv6: boolean, evaluator: IptablesEvaluator): ServicePortSummary[] {
  const family = ipv6 ? 'ip6' : 'ip';
  const byChain = new Map<string, ServicePortSummary>();
  const summaries = new Map<string, ServicePortSummary>();
  const address = (cidr: string) => cidr.split('/')[0];
  const entry = (service: string | undefined, protocol: string, port: number, key: string) => {
    let summary = summaries.get(key);
    if (!summary) summaries.set(key, (summary = { family, service, protocol, port, externalAddresses: [], sourceRanges: [], cluster: [], local: [], noEndpoints: [] }));
    return summary;
  };
  const rules = (table: string, chain: string) => ruleset.chains.get(`${table} ${chain}`)?.rules ?? [];
  const suffix = (chain: string) => chain.replace(/^KUBE-(SVC|SVL|EXT|FW)-/, '');
  for (const rule of rules('nat', 'KUBE-SERVICES')) {
    const comment = COMMENT_NAME.exec(rule.options.get('--comment')?.value[0] ?? '');
    if (!comment || !rule.target) continue;
    const protocol = rule.options.get('-p')!.value[0];
    const port = Number(rule.options.get('--dport')!.value[0]);
    const summary = entry(comment[1], protocol, port, `${comment[1]} ${protocol}/${port}`);
    byChain.set(suffix(rule.target), summary);
    const target = address(rule.options.get('-d')!.value[0]);
    if (comment[3] === 'cluster IP') {
      summary.clusterIP = target;
      summary.internalTrafficPolicy = rule.target.startsWith('KUBE-SVL-') ? 'Local' : 'Cluster';
    } else summary.externalAddresses.push(target);
  }
  for (const rule of rules('nat', 'KUBE-NODEPORTS')) {
    const summary = rule.target ? byChain.get(suffix(rule.target)) : undefined;
    if (summary) summary.nodePort = Number(rule.options.get('--dport')!.value[0]);
  }
  for (const [key, { rules: chainRules }] of ruleset.chains) {
    const [table, chain] = key.split(' ');
    const summary = table === 'nat' ? byChain.get(suffix(chain)) : undefined;
    if (!summary) continue;
    if (chain.startsWith('KUBE-SVC-')) summary.cluster = evaluator.selections(chain, summary.protocol as Probe['protocol'], ipv6);
    if (chain.startsWith('KUBE-SVL-')) summary.local = evaluator.selections(chain, summary.protocol as Probe['protocol'], ipv6);
    if (chain.startsWith('KUBE-EXT-')) summary.externalTrafficPolicy = chainRules.some((rule) => rule.target?.startsWith('KUBE-SVL-') || rule.target === 'DROP') ? 'Local' : 'Cluster';
    if (chain.startsWith('KUBE-FW-')) summary.sourceRanges = chainRules.flatMap((rule) => (rule.target && rule.options.has('-s') ? [rule.options.get('-s')!.value[0]] : [])).map((cidr) => (cidr.includes('/') ? cidr : `${cidr}/${ipv6 ? 128 : 32}`));
    const seconds = chainRules.find((rule) => rule.options.has('--rcheck'))?.options.get('--seconds')?.value[0];
    if (seconds !== undefined && chain.startsWith('KUBE-SVC-')) {
      const lists = new Set(chainRules.flatMap((rule) => (rule.options.has('--rcheck') ? [rule.options.get('--name')!.value[0]] : [])));
      summary.affinity = { timeoutSeconds: Number(seconds), clients: [...lists].reduce((sum, list) => sum + recentSources(list).size, 0) };
    }
  }
  for (const [chain, keyOf] of [['KUBE-SERVICES', (rule: IptablesRule) => `${address(rule.options.get('-d')!.value[0])}:${rule.options.get('--dport')!.value[0]}`],
    ['KUBE-EXTERNAL-SERVICES', (rule: IptablesRule) => `nodePort ${rule.options.get('--dport')!.value[0]}`]] as const) {
    for (const rule of rules('filter', chain)) {
      const comment = NO_ENDPOINTS.exec(rule.options.get('--comment')?.value[0] ?? '');
      if (!comment || !rule.options.has('--dport')) continue;
      const protocol = rule.options.get('-p')!.value[0];
      const key = keyOf(rule);
      // A NodePort without endpoints has no KUBE-NODEPORTS rule: it belongs to the service's one port of that protocol.
      const candidates = [...summaries.values()].filter((summary) => summary.service === comment[1] && summary.protocol === protocol);
      const known = candidates.find((summary) => `${summary.clusterIP}:${summary.port}` === key || summary.externalAddresses.some((a) => `${a}:${summary.port}` === key)
        || summary.nodePort === Number(rule.options.get('--dport')!.value[0])) ?? (key.startsWith('nodePort') && candidates.length === 1 ? candidates[0] : undefined);
      const summary = known ?? entry(comment[1], protocol, Number(rule.options.get('--dport')!.value[0]), `${comment[1]} ${protocol}/${key}`);
      if (!known && !key.startsWith('nodePort')) summary.clusterIP = key.split(':')[0];
      summary.noEndpoints.push({ key, verdict: rule.target === 'REJECT' ? 'reject' : 'drop' });
    }
  }
  return [...summaries.values()];
}
