import { isIP } from 'node:net';
import type { DumpedExpression, DumpedSet } from '../../kernel/native.js';
import { encodeAddress, PROTOCOL_NUMBERS } from '../../kernel/fields.js';
import type { TableFamily } from '../../kernel/ruleset.js';
import { HOOKS, NF_CT_LABELS_LENGTH, NF_CT_STATE_NEW, NFT_CT_LABELS, NFT_CT_STATE, NFT_LOOKUP_F_INV, NFT_REG32_00, NFT_VERDICT, NF_VERDICT, RTN_LOCAL } from '../../kernel/uapi.js';
import type { TableDump } from './tables.js';
import { describeAddress, describeElement } from './values.js';

// An evaluator of nf_tables expressions over loaded tables: it runs a new connection's first packet
// through the base chains of every hook on its path, as the kernel's nft_do_chain does (registers,
// verdicts, jump/goto/return, NAT chains skipped once a hook translated), with one difference: a
// `numgen` forks the evaluation into every value it can take, each with its probability, so the
// result is every outcome the packet can have. Branches that reach the same state again are merged,
// which keeps a cascade of n `numgen mod k` rules at n² steps. An expression or key it does not
// know stops the evaluation with an error naming it (and the set or chain): it never guesses.

export type Protocol = 'tcp' | 'udp' | 'sctp';
export type Via = 'prerouting' | 'output';

export interface Probe {
  family: TableFamily;
  protocol: Protocol;
  saddr: string;
  sport: number;
  daddr: string;
  dport: number;
}

export interface Step {
  table: string;
  chain: string;
  /** The rule's handle; absent for a base chain's policy. */
  handle?: number;
  /** libnftnl's text of the rule (explainReport replaces it with nft's) or the iptables-save line. */
  text: string;
  /** The set element a lookup or verdict map matched, as nft would print it. */
  element?: string;
}

export type Fate = 'accept' | 'drop' | 'reject';

export interface Outcome {
  probability: number;
  fate: Fate;
  /** Where an accepted packet goes after the NAT hooks: this node, or forwarded. */
  delivery?: 'local' | 'forwarded';
  /** A redirect is a DNAT to this node: to the receiving interface's address, or loopback from this node. */
  dnat?: { address: string; port: number; redirect?: boolean };
  masquerade: boolean;
  /** Things the connection leaves behind: an affinity set update. */
  notes: string[];
  steps: Step[];
}

export class EvaluationError extends Error {}

/** The translations a chain's branches end with, each address and port once with its summed probability. */
export function translations(branches: PathBranch[]): { address: string; port: number; probability: number }[] {
  const picks = new Map<string, { address: string; port: number; probability: number }>();
  for (const branch of branches) {
    if (!branch.dnat) continue;
    const key = `${branch.dnat.address} ${branch.dnat.port}`;
    const known = picks.get(key);
    if (known) known.probability += branch.probability;
    else picks.set(key, { ...branch.dnat, probability: branch.probability });
  }
  return [...picks.values()];
}

/** What a path through the hooks needs of an evaluator's branch: what an outcome reports. */
type PathBranch = Omit<Outcome, 'fate' | 'delivery'>;
type NetfilterHook = 'prerouting' | 'input' | 'forward' | 'output' | 'postrouting';

/**
 * A new connection's first packet through the hooks, as the kernel routes it: from prerouting to
 * input (a local destination, after any DNAT) or forward and postrouting; from output to
 * postrouting, then input when it stays on this node. Every branch ends as an outcome, most
 * probable first. `hook` evaluates one hook's chains for the branches that reach it.
 */
export function followNewConnection<B extends PathBranch>(
  start: B, via: Via, hook: (name: NetfilterHook, branches: B[]) => [B, Fate][], isLocal: (branch: B) => boolean,
): Outcome[] {
  const outcomes: Outcome[] = [];
  const finish = (branch: B, fate: Fate, delivery?: Outcome['delivery']) =>
    outcomes.push({ probability: branch.probability, fate, delivery, dnat: branch.dnat, masquerade: branch.masquerade, notes: branch.notes, steps: branch.steps });
  for (const [branch, fate] of hook(via === 'prerouting' ? 'prerouting' : 'output', [start])) {
    if (fate !== 'accept') {
      finish(branch, fate);
      continue;
    }
    const local = isLocal(branch);
    const path: NetfilterHook[] = via === 'prerouting' ? (local ? ['input'] : ['forward', 'postrouting']) : local ? ['postrouting', 'input'] : ['postrouting'];
    let live: B[] = [branch];
    for (const name of path) {
      const next: B[] = [];
      for (const [after, hookFate] of hook(name, live)) {
        if (hookFate === 'accept') next.push(after);
        else finish(after, hookFate);
      }
      live = next;
    }
    for (const delivered of live) finish(delivered, 'accept', local ? 'local' : 'forwarded');
  }
  return outcomes.sort((a, b) => b.probability - a.probability);
}

/** Where the evaluation needs facts beyond the tables: this node's addresses. */
export interface Environment {
  isLocalAddress(address: string): boolean;
}

interface Branch {
  probability: number;
  saddr: Buffer;
  daddr: Buffer;
  sport: number;
  dport: number;
  mark: number;
  labels: Buffer;
  registers: Buffer;
  dnat?: Outcome['dnat'];
  masquerade: boolean;
  notes: string[];
  steps: Step[];
}

type ChainEnd = { kind: 'return' } | { kind: Fate };

const NFT_REG_COUNT_BYTES = 64;
const NFT_PAYLOAD_BASE = { network: 1, transport: 2 };
const NFT_META = { protocol: 2, mark: 3, nfproto: 15, l4proto: 16 };
const NFT_CMP_OPS = ['==', '!=', '<', '<=', '>', '>='] as const;
const NFT_NAT_DNAT = 1;
const NFT_DYNSET_OPS = ['add', 'update', 'delete'];
const NFTA_FIB_F = { saddr: 1, daddr: 2 };
const NFT_FIB_RESULT_ADDRTYPE = 3;
const RTN_UNICAST = 1;
const MAX_DEPTH = 16;

const registerOffset = (register: number) => (register >= NFT_REG32_00 ? (register - NFT_REG32_00) * 4 : (register - 1) * 16);
const num = (expression: DumpedExpression, name: string) => {
  const value = expression.attrs[name];
  return typeof value === 'number' ? value : undefined;
};

function clone(branch: Branch, probability = branch.probability): Branch {
  return { ...branch, probability, registers: Buffer.from(branch.registers), labels: Buffer.from(branch.labels), notes: [...branch.notes], steps: [...branch.steps] };
}

const stateKey = (branch: Branch) =>
  JSON.stringify([branch.saddr.toString('hex'), branch.daddr.toString('hex'), branch.sport, branch.dport, branch.mark, branch.labels.toString('hex'),
    branch.dnat, branch.masquerade, branch.notes, branch.steps.map((step) => `${step.table}/${step.chain}/${step.handle}/${step.element ?? ''}`)]);

/** Branches in the same state become one, their probabilities added. */
function merge(branches: Branch[]): Branch[] {
  const byKey = new Map<string, Branch>();
  for (const branch of branches) {
    const key = stateKey(branch);
    const known = byKey.get(key);
    if (known) known.probability += branch.probability;
    else byKey.set(key, branch);
  }
  return [...byKey.values()];
}

export class Evaluator {
  private readonly tables: TableDump[];

  constructor(tables: TableDump[], private readonly family: TableFamily, private readonly environment: Environment) {
    this.tables = tables.filter((table) => table.family === family);
  }

  /** Every outcome of a new connection's first packet entering at `via`. */
  explain(probe: Probe, via: Via): Outcome[] {
    if (isIP(probe.saddr) !== isIP(probe.daddr)) throw new EvaluationError(`--from ${probe.saddr} and --to ${probe.daddr} are of different address families`);
    const start: Branch = {
      probability: 1, saddr: encodeAddress(probe.saddr), daddr: encodeAddress(probe.daddr), sport: probe.sport, dport: probe.dport,
      mark: 0, labels: Buffer.alloc(NF_CT_LABELS_LENGTH), registers: Buffer.alloc(NFT_REG_COUNT_BYTES), masquerade: false, notes: [], steps: [],
    };
    this.protocol = PROTOCOL_NUMBERS[probe.protocol];
    return followNewConnection(start, via, (hook, branches) => this.hook(hook, branches), (branch) => this.environment.isLocalAddress(describeAddress(branch.daddr)));
  }

  /**
   * The endpoints a chain picks when entered directly, for the services listing: the addresses
   * play no part in a selection chain except for affinity, whose sets the unspecified source is in
   * for no one.
   */
  selections(table: TableDump, chain: string, protocol: Protocol): { address: string; port: number; probability: number }[] {
    this.protocol = PROTOCOL_NUMBERS[protocol];
    const unspecified = this.family === 'ip' ? '0.0.0.0' : '::';
    const start: Branch = {
      probability: 1, saddr: encodeAddress(unspecified), daddr: encodeAddress(unspecified), sport: 0, dport: 0,
      mark: 0, labels: Buffer.alloc(NF_CT_LABELS_LENGTH), registers: Buffer.alloc(NFT_REG_COUNT_BYTES), masquerade: false, notes: [], steps: [],
    };
    return translations(this.chain(table, chain, [start], 0).map(([branch]) => branch));
  }

  private protocol = 0;

  /** Runs the base chains of one hook in priority order; NAT chains stop once one translated. */
  private hook(hook: keyof typeof HOOKS, branches: Branch[]): [Branch, Fate][] {
    const chains = this.tables
      .filter((table) => !(table.table.flags & 1))
      .flatMap((table) => table.chains.filter((chain) => chain.hooknum === HOOKS[hook]).map((chain) => ({ table, chain })))
      .sort((a, b) => (a.chain.prio ?? 0) - (b.chain.prio ?? 0));
    const results: [Branch, Fate][] = [];
    for (const start of branches) {
      let live: { branch: Branch; translated: boolean }[] = [{ branch: start, translated: false }];
      for (const { table, chain } of chains) {
        const next: typeof live = [];
        for (const { branch, translated } of live) {
          if (chain.type === 'nat' && translated) {
            next.push({ branch, translated });
            continue;
          }
          const before = this.translation(branch);
          for (const [after, end] of this.chain(table, chain.name, [branch], 0)) {
            const fate: Fate = end.kind === 'return' ? (chain.policy === NF_VERDICT.drop ? 'drop' : 'accept') : end.kind;
            if (end.kind === 'return' && chain.policy === NF_VERDICT.drop) after.steps.push({ table: table.table.name, chain: chain.name, text: 'policy drop' });
            if (fate === 'accept') next.push({ branch: after, translated: translated || this.translation(after) !== before });
            else results.push([after, fate]);
          }
        }
        live = next;
      }
      for (const { branch } of live) results.push([branch, 'accept']);
    }
    return results;
  }

  private translation(branch: Branch): string {
    return JSON.stringify([branch.dnat, branch.masquerade]);
  }

  private chain(table: TableDump, name: string, branches: Branch[], depth: number): [Branch, ChainEnd][] {
    if (depth > MAX_DEPTH) throw new EvaluationError(`chain ${name} in table ${table.family} ${table.table.name}: jumps nest deeper than ${MAX_DEPTH}`);
    if (!table.chains.some((chain) => chain.name === name)) throw new EvaluationError(`chain ${name} is not in table ${table.family} ${table.table.name}`);
    const ended: [Branch, ChainEnd][] = [];
    let live = branches;
    for (const rule of table.rules) {
      if (rule.chain !== name || live.length === 0) continue;
      const next: Branch[] = [];
      for (const branch of live) {
        for (const [after, verdict, element] of this.rule(table, rule.expressions, branch)) {
          if (verdict.code === NFT_VERDICT.break) {
            next.push(after);
            continue;
          }
          after.steps.push({ table: table.table.name, chain: name, handle: rule.handle, text: rule.text.trim(), element });
          if (verdict.code === NFT_VERDICT.continue) next.push(after);
          else if (verdict.code === NFT_VERDICT.return) ended.push([after, { kind: 'return' }]);
          else if (verdict.code === NFT_VERDICT.jump || verdict.code === NFT_VERDICT.goto) {
            for (const [returned, end] of this.chain(table, verdict.chain!, [after], depth + 1)) {
              if (end.kind === 'return' && verdict.code === NFT_VERDICT.jump) next.push(returned);
              else ended.push([returned, end]);
            }
          } else ended.push([after, { kind: verdict.reject ? 'reject' : verdict.code === NF_VERDICT.accept ? 'accept' : 'drop' }]);
        }
      }
      live = merge(next);
    }
    for (const branch of live) ended.push([branch, { kind: 'return' }]);
    return ended;
  }

  /** One rule on one branch: every branch it forks into, each with its verdict code. */
  private rule(table: TableDump, expressions: DumpedExpression[], start: Branch): [Branch, { code: number; chain?: string; reject?: boolean }, string | undefined][] {
    const results: [Branch, { code: number; chain?: string; reject?: boolean }, string | undefined][] = [];
    const run = (branch: Branch, index: number, element: string | undefined): void => {
      for (let i = index; i < expressions.length; i++) {
        const expression = expressions[i];
        if (expression.name === 'numgen') {
          const modulus = num(expression, 'modulus')!;
          const offset = num(expression, 'offset') ?? 0;
          const register = registerOffset(num(expression, 'dreg')!);
          for (let value = 0; value < modulus; value++) {
            const fork = clone(branch, branch.probability / modulus);
            fork.registers.writeUInt32LE(value + offset, register);
            run(fork, i + 1, element);
          }
          return;
        }
        const effect = this.expression(table, expression, branch);
        if (effect.element) element = effect.element;
        if (effect.verdict) {
          results.push([branch, effect.verdict, element]);
          return;
        }
      }
      results.push([branch, { code: NFT_VERDICT.continue }, element]);
    };
    run(clone(start), 0, undefined);
    return results;
  }

  private registerBytes(branch: Branch, register: number, length: number): Buffer {
    const offset = registerOffset(register);
    return branch.registers.subarray(offset, offset + length);
  }

  private store(branch: Branch, register: number, value: Buffer): void {
    const offset = registerOffset(register);
    // The kernel zero-pads a value to whole 32-bit registers.
    branch.registers.fill(0, offset, offset + Math.ceil(value.length / 4) * 4);
    value.copy(branch.registers, offset);
  }

  private header(branch: Branch, base: number): Buffer {
    if (base === NFT_PAYLOAD_BASE.transport) {
      const transport = Buffer.alloc(8);
      transport.writeUInt16BE(branch.sport, 0);
      transport.writeUInt16BE(branch.dport, 2);
      return transport;
    }
    if (base !== NFT_PAYLOAD_BASE.network) throw new EvaluationError(`payload base ${base} is not evaluated`);
    if (this.family === 'ip') {
      const header = Buffer.alloc(20);
      header[0] = 0x45;
      header[9] = this.protocol;
      branch.saddr.copy(header, 12);
      branch.daddr.copy(header, 16);
      return header;
    }
    const header = Buffer.alloc(40);
    header[0] = 0x60;
    header[6] = this.protocol;
    branch.saddr.copy(header, 8);
    branch.daddr.copy(header, 24);
    return header;
  }

  private set(table: TableDump, name: string): DumpedSet {
    const set = table.sets.find((candidate) => candidate.name === name);
    if (!set) throw new EvaluationError(`set ${name} is not in table ${table.family} ${table.table.name}`);
    return set;
  }

  private expression(table: TableDump, expression: DumpedExpression, branch: Branch): { verdict?: { code: number; chain?: string; reject?: boolean }; element?: string } {
    const attr = (name: string) => num(expression, name)!;
    const BREAK = { verdict: { code: NFT_VERDICT.break } };
    switch (expression.name) {
      case 'payload': {
        if (num(expression, 'sreg') !== undefined) throw new EvaluationError('payload writes are not evaluated');
        const header = this.header(branch, attr('base'));
        this.store(branch, attr('dreg'), header.subarray(attr('offset'), attr('offset') + attr('len')));
        return {};
      }
      case 'meta': {
        const key = attr('key');
        if (num(expression, 'sreg') !== undefined) {
          if (key !== NFT_META.mark) throw new EvaluationError(`meta key ${key} is not set by the evaluator`);
          branch.mark = this.registerBytes(branch, attr('sreg'), 4).readUInt32LE();
          return {};
        }
        const value = Buffer.alloc(4);
        if (key === NFT_META.mark) value.writeUInt32LE(branch.mark);
        else if (key === NFT_META.l4proto) value[0] = this.protocol;
        else if (key === NFT_META.nfproto) value[0] = this.family === 'ip' ? 2 : 10;
        else if (key === NFT_META.protocol) value.writeUInt16BE(this.family === 'ip' ? 0x0800 : 0x86dd);
        else throw new EvaluationError(`meta key ${key} is not evaluated`);
        this.store(branch, attr('dreg'), key === NFT_META.mark ? value : value.subarray(0, key === NFT_META.protocol ? 2 : 1));
        return {};
      }
      case 'cmp': {
        const data = expression.attrs.data as Buffer;
        const order = Buffer.compare(this.registerBytes(branch, attr('sreg'), data.length), data);
        const op = NFT_CMP_OPS[attr('op')];
        const holds = op === '==' ? order === 0 : op === '!=' ? order !== 0 : op === '<' ? order < 0 : op === '<=' ? order <= 0 : op === '>' ? order > 0 : order >= 0;
        return holds ? {} : BREAK;
      }
      case 'bitwise': {
        const mask = expression.attrs.mask as Buffer | undefined;
        const xor = expression.attrs.xor as Buffer | undefined;
        if (!mask || !xor) throw new EvaluationError('bitwise shifts are not evaluated');
        const source = this.registerBytes(branch, attr('sreg'), attr('len'));
        const result = Buffer.alloc(attr('len'));
        for (let i = 0; i < result.length; i++) result[i] = (source[i] & mask[i]) ^ xor[i];
        this.store(branch, attr('dreg'), result);
        return {};
      }
      case 'immediate': {
        const dreg = attr('dreg');
        if (dreg === 0) return { verdict: { code: attr('verdict') | 0, chain: expression.attrs.chain as string | undefined } };
        this.store(branch, dreg, expression.attrs.data as Buffer);
        return {};
      }
      case 'lookup': {
        const set = this.set(table, expression.attrs.set as string);
        const key = this.registerBytes(branch, attr('sreg'), set.keyLen);
        const element = set.elements.find((candidate) => candidate.key.equals(key));
        const inverted = ((num(expression, 'flags') ?? 0) & NFT_LOOKUP_F_INV) !== 0;
        const dreg = num(expression, 'dreg');
        const found = element ? describeElement(set, element) : undefined;
        if (dreg === undefined) return (element !== undefined) !== inverted ? { element: found } : BREAK;
        if (!element) return BREAK;
        if (dreg === 0) return { verdict: { code: element.verdict! | 0, chain: element.chain }, element: found };
        this.store(branch, dreg, element.data!);
        return { element: found };
      }
      case 'ct': {
        const key = attr('key');
        if (num(expression, 'sreg') !== undefined) {
          if (key !== NFT_CT_LABELS) throw new EvaluationError(`ct key ${key} is not set by the evaluator`);
          const bits = this.registerBytes(branch, attr('sreg'), NF_CT_LABELS_LENGTH);
          for (let i = 0; i < NF_CT_LABELS_LENGTH; i++) branch.labels[i] |= bits[i];
          return {};
        }
        if (key === NFT_CT_LABELS) this.store(branch, attr('dreg'), branch.labels);
        else if (key === NFT_CT_STATE) {
          const state = Buffer.alloc(4);
          state.writeUInt32LE(NF_CT_STATE_NEW);
          this.store(branch, attr('dreg'), state);
        } else throw new EvaluationError(`ct key ${key} is not evaluated`);
        return {};
      }
      case 'fib': {
        const flags = attr('flags');
        if (attr('result') !== NFT_FIB_RESULT_ADDRTYPE) throw new EvaluationError(`fib result ${attr('result')} is not evaluated`);
        const address = flags & NFTA_FIB_F.saddr ? branch.saddr : branch.daddr;
        const type = Buffer.alloc(4);
        type.writeUInt32LE(this.environment.isLocalAddress(describeAddress(address)) ? RTN_LOCAL : RTN_UNICAST);
        this.store(branch, attr('dreg'), type);
        return {};
      }
      case 'dynset': {
        const set = this.set(table, expression.attrs.setName as string);
        const key = this.registerBytes(branch, attr('sregKey'), set.keyLen);
        branch.notes.push(`${NFT_DYNSET_OPS[attr('op')] ?? 'op'} ${describeElement(set, { key: Buffer.from(key) })} in @${set.name}`);
        return {};
      }
      case 'nat': {
        if (attr('type') !== NFT_NAT_DNAT) throw new EvaluationError('snat is not evaluated');
        const addressLength = this.family === 'ip' ? 4 : 16;
        const address = Buffer.from(this.registerBytes(branch, attr('regAddrMin'), addressLength));
        const portRegister = num(expression, 'regProtoMin');
        const port = portRegister === undefined ? branch.dport : this.registerBytes(branch, portRegister, 2).readUInt16BE();
        branch.daddr = address;
        branch.dport = port;
        branch.dnat = { address: describeAddress(address), port };
        return { verdict: { code: NF_VERDICT.accept } };
      }
      case 'redir': {
        // To the receiving interface's address, or loopback from this node: this node either way.
        const loopback = this.family === 'ip' ? '127.0.0.1' : '::1';
        const port = this.registerBytes(branch, attr('regProtoMin'), 2).readUInt16BE();
        branch.daddr = encodeAddress(loopback);
        branch.dport = port;
        branch.dnat = { address: loopback, port, redirect: true };
        return { verdict: { code: NF_VERDICT.accept } };
      }
      case 'masq':
        branch.masquerade = true;
        return { verdict: { code: NF_VERDICT.accept } };
      case 'reject':
        return { verdict: { code: NF_VERDICT.drop, reject: true } };
      case 'counter':
      case 'log':
        return {};
      default:
        throw new EvaluationError(`expression ${expression.name} is not evaluated`);
    }
  }
}
