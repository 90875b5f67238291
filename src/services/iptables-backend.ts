import { execFile } from 'node:child_process';
import type { ProxyConfig } from './config.js';
import {
  describeRestoreLine,
  type IptablesFamily,
  type IptablesPlan,
  iptablesRestoreInput,
  isOwnChainIn,
  isServiceChain,
  JUMP_RULES,
  jumpRuleArgs,
  planIptables,
  savedJumpRule,
} from './iptables-plan.js';
import { KEEP_NOTHING, type KeptChains, kubeProxyLeftovers } from './kube-proxy-leftovers-plan.js';
import type { ServicePortView } from '../cluster/service-ports.js';

// Loads the iptables plan with iptables-restore --noflush, as kube-proxy's iptables mode does:
// only our KUBE- chains are declared (and so flushed) and rewritten, the built-in chains keep
// everyone else's rules, and our jump rules are added to them only when missing.

export type IptablesBackendName = 'legacy' | 'nft';

export interface IptablesBackendOptions {
  /** Which iptables implementation to program; 'auto' (the default) picks the one in use. */
  backend?: IptablesBackendName | 'auto';
  /** Run every iptables command inside this named network namespace (`ip netns exec`). */
  netns?: string;
}

export interface IptablesSyncResult {
  restoreMs: number;
  backend: IptablesBackendName;
}

const FAMILIES: IptablesFamily[] = [4, 6];
const BACKENDS: IptablesBackendName[] = ['legacy', 'nft'];
/** Seconds to wait for the xtables lock, which every iptables process in every namespace shares. */
const LOCK_WAIT = ['-w', '5'];
/**
 * An iptables tool that has not finished by then is killed: a restore of 30k services takes
 * seconds, one stuck (a wedged lock holder, a hung kernel module load) must not stop every later sync.
 */
const IPTABLES_TIMEOUT_MS = 120_000;
/** Chains kubelet creates to say which iptables it uses (kubernetes-sigs/iptables-wrappers). */
const KUBELET_HINT_CHAIN = /^:(KUBE-IPTABLES-HINT|KUBE-KUBELET-CANARY) /m;

/** iptables-restore rejected the input; names the failing line and the service port it belongs to. */
export class IptablesRestoreError extends Error {
  constructor(
    message: string,
    readonly line: number | undefined,
    readonly rule: string | undefined,
    readonly servicePort: string | undefined,
  ) {
    super(message);
  }
}

class CommandError extends Error {
  constructor(
    readonly command: string,
    readonly exitCode: number | string | undefined,
    readonly stderr: string,
  ) {
    super(`${command} failed (${exitCode}): ${stderr.trim()}`);
  }
}

/** This mode's chains, and its jump rules as iptables-save prints them back. */
const OWN_CHAINS: KeptChains = { chain: isOwnChainIn, jumps: new Set(JUMP_RULES.map(savedJumpRule)) };

export interface LeftoversReport {
  removed: string[];
  referenced: string[];
}

const tool = (backend: IptablesBackendName, family: IptablesFamily, suffix: '' | '-save' | '-restore') =>
  `${family === 4 ? 'iptables' : 'ip6tables'}-${backend}${suffix}`;

/** iptables-save output split by table: the chains it has and its rule lines. */
type SavedTables = Map<string, { chains: string[]; rules: string[] }>;

export function parseSave(text: string): SavedTables {
  const tables: SavedTables = new Map();
  let current: { chains: string[]; rules: string[] } | undefined;
  for (const line of text.split('\n')) {
    if (line.startsWith('*')) tables.set(line.slice(1), (current = { chains: [], rules: [] }));
    else if (line.startsWith(':')) current?.chains.push(line.slice(1).split(' ')[0]);
    else if (line.startsWith('-A ')) current?.rules.push(line);
  }
  return tables;
}

export class IptablesBackend {
  private detected: IptablesBackendName | undefined;

  constructor(private readonly options: IptablesBackendOptions = {}) {}

  /**
   * Replaces our chains with the plan of each family. Every input is first checked with
   * `--test`, because iptables-restore commits table by table: a line failing in the nat table
   * would otherwise leave the filter table already replaced.
   */
  async replace(views: ServicePortView[], config: ProxyConfig): Promise<IptablesSyncResult> {
    const backend = await this.backend();
    const started = performance.now();
    const syncs = await Promise.all(
      FAMILIES.map(async (family) => {
        const plan = planIptables(views, config, family);
        const saved = parseSave(await this.run(tool(backend, family, '-save'), []));
        const existing = saved.get('nat')?.chains ?? [];
        const wanted = new Set(plan.chains.nat);
        const stale = existing.filter((chain) => isServiceChain(chain) && !wanted.has(chain));
        return { family, plan, saved, input: iptablesRestoreInput(plan, stale) };
      }),
    );
    for (const sync of syncs) await this.restore(backend, sync.family, sync.input, sync.plan, ['--test']);
    for (const sync of syncs) await this.restore(backend, sync.family, sync.input, sync.plan, []);
    const restoreMs = performance.now() - started;
    for (const sync of syncs) await this.ensureJumpRules(backend, sync.family, sync.saved);
    return { restoreMs, backend };
  }

  /** iptables-save of one family, from the implementation in use: what is loaded, for reading back. */
  async save(family: IptablesFamily): Promise<string> {
    return this.run(tool(await this.backend(), family, '-save'), []);
  }

  /**
   * Removes kube-proxy's chains and jump rules (which are also this mode's) from both iptables
   * implementations and both families, except, with `keepOwn`, what this mode loaded in the
   * implementation it programs. Returns what went, one line per chain or rule, and the kube-proxy
   * chains kept because someone else's rule still jumps to them.
   */
  async removeLeftovers({ keepOwn = false } = {}): Promise<LeftoversReport> {
    const active = keepOwn ? await this.backend() : undefined;
    const report: LeftoversReport = { removed: [], referenced: [] };
    for (const backend of BACKENDS) {
      for (const family of FAMILIES) {
        let saved: string;
        try {
          saved = await this.run(tool(backend, family, '-save'), []);
        } catch (error) {
          // An implementation that is not installed has nothing to remove.
          if ((error as CommandError).exitCode === 'ENOENT') continue;
          throw error;
        }
        const where = `iptables-${backend} IPv${family}`;
        const removal = kubeProxyLeftovers(parseSave(saved), backend === active ? OWN_CHAINS : KEEP_NOTHING);
        if (!removal.input) continue;
        await this.run(tool(backend, family, '-restore'), [...LOCK_WAIT, '--noflush'], removal.input);
        report.removed.push(...removal.removed.map((line) => `${where} ${line}`));
        for (const [table, count] of removal.serviceChains) report.removed.push(`${where} ${table}: ${count} service and endpoint chains (KUBE-SVC-*, KUBE-SEP-*, ...)`);
        report.referenced.push(...removal.referenced.map((line) => `${where} ${line}`));
      }
    }
    return report;
  }

  /** --cleanup: every chain and jump of this mode's (and kube-proxy's), in both implementations. */
  async cleanup(): Promise<void> {
    await this.removeLeftovers();
  }

  /** The configured implementation, or the one detected on first use. */
  private async backend(): Promise<IptablesBackendName> {
    const chosen = this.options.backend ?? 'auto';
    if (chosen !== 'auto') return chosen;
    this.detected ??= await this.detectBackend();
    return this.detected;
  }

  /**
   * As kube-proxy's iptables wrapper: the implementation kubelet marked with its hint chain, else
   * the one holding more rules (someone on this node already uses it), nft on a tie.
   */
  private async detectBackend(): Promise<IptablesBackendName> {
    const [legacy, nft] = await Promise.all(
      BACKENDS.map(async (backend) => {
        const saves = await Promise.all(FAMILIES.map((family) => this.run(tool(backend, family, '-save'), []).catch(() => '')));
        const text = saves.join('\n');
        return { hinted: KUBELET_HINT_CHAIN.test(text), rules: text.split('\n').filter((line) => line.startsWith('-')).length };
      }),
    );
    if (legacy.hinted !== nft.hinted) return legacy.hinted ? 'legacy' : 'nft';
    return legacy.rules > nft.rules ? 'legacy' : 'nft';
  }

  private async restore(backend: IptablesBackendName, family: IptablesFamily, input: string, plan: IptablesPlan, extra: string[]) {
    const command = tool(backend, family, '-restore');
    try {
      await this.run(command, [...LOCK_WAIT, '--noflush', ...extra], input);
    } catch (error) {
      if (!(error instanceof CommandError)) throw error;
      throw restoreError(command, error.stderr, plan, input);
    }
  }

  /** Upstream's EnsureRule: a cheap text check against the save taken before, then `-C`, then `-I`. */
  private async ensureJumpRules(backend: IptablesBackendName, family: IptablesFamily, saved: SavedTables) {
    const command = tool(backend, family, '');
    for (const jump of JUMP_RULES) {
      if (saved.get(jump.table)?.rules.includes(savedJumpRule(jump))) continue;
      const rule = [jump.from, ...jumpRuleArgs(jump)];
      try {
        await this.run(command, [...LOCK_WAIT, '-t', jump.table, '-C', ...rule]);
      } catch (error) {
        // Exit status 1 means "no such rule"; anything else is a real failure.
        if ((error as CommandError).exitCode !== 1) throw error;
        await this.run(command, [...LOCK_WAIT, '-t', jump.table, '-I', ...rule]);
      }
    }
  }

  /** Runs an iptables tool with an argv (never a shell), in the configured namespace if any. */
  private run(command: string, args: string[], input?: string): Promise<string> {
    const { netns } = this.options;
    const [file, argv] = netns ? ['ip', ['netns', 'exec', netns, command, ...args]] : [command, args];
    return new Promise((resolve, reject) => {
      const child = execFile(file, argv, { maxBuffer: 1 << 30, timeout: IPTABLES_TIMEOUT_MS, killSignal: 'SIGKILL' }, (error, stdout, stderr) => {
        if (!error) return resolve(stdout);
        const missing = (error as NodeJS.ErrnoException).code === 'ENOENT';
        if (error.killed) return reject(new CommandError(command, undefined, `killed after ${IPTABLES_TIMEOUT_MS / 1000}s without finishing${stderr ? `: ${stderr}` : ''}`));
        reject(new CommandError(command, missing ? 'ENOENT' : (error.code ?? undefined), stderr));
      });
      child.stdin?.on('error', () => {}); // a tool failing early closes its stdin; the exit status reports why
      child.stdin?.end(input ?? '');
    });
  }
}

/** Maps iptables-restore's "line N" back to the rule text and its service port. */
function restoreError(command: string, stderr: string, plan: IptablesPlan, input: string): IptablesRestoreError {
  const reason = stderr.split('\n').find((line) => line.trim() && !/^(Error occurred at line|Try `)/.test(line))?.trim() ?? 'failed';
  const lineNumber = /\bline:? (\d+)/.exec(stderr)?.[1];
  if (lineNumber === undefined) return new IptablesRestoreError(`${command}: ${reason}`, undefined, undefined, undefined);
  const line = describeRestoreLine(plan, input, Number(lineNumber));
  const where = line.servicePort ? ` (service port ${line.servicePort}, ${line.table} table)` : line.table ? ` (${line.table} table)` : '';
  return new IptablesRestoreError(`${command} rejected line ${line.number}${where}: ${line.text}: ${reason}`, line.number, line.text, line.servicePort);
}
