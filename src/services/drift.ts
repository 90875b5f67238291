import type { NftablesBackend } from '../kernel/nftables.js';
import type { TableShape } from './nftables-proxier.js';
import { NFT_TABLE_F_DORMANT } from '../kernel/uapi.js';

// Notices when something other than kubenft changes kubenft's tables (`nft flush table`, a deleted
// chain or map element) so the agent can restore them.
//
// Every commit, anyone's, bumps the kernel's ruleset generation; kubenft knows the generation of
// its own last commit. A cheap poll of the generation therefore tells "someone else committed",
// and only then is the table dumped and compared with what should be there. (A multicast
// subscription to nftables events would notify at once, but while subscribed the kernel builds a
// notification for every object of our own commits too: a 200k-element commit measured 4.6 s
// instead of 0.5 s. Polling costs one small netlink round trip per interval.)

export interface DriftSubject {
  /** The generation of kubenft's last commit, or undefined before the first. */
  ownGeneration(): number | undefined;
  /** A sync is being committed: the generation is about to move for a good reason. */
  busy(): boolean;
  expectedShape(): TableShape[];
}

/** What differs between the expected shape and a dump, in words; empty when nothing does. */
export async function findDrift(backend: NftablesBackend, expected: TableShape[]): Promise<string[]> {
  const differences: string[] = [];
  for (const shape of expected) {
    const dump = await backend.dump(shape.family, shape.name);
    if (!dump) {
      differences.push(`table ${shape.family} ${shape.name} is gone`);
      continue;
    }
    if (dump.table.flags & NFT_TABLE_F_DORMANT) differences.push(`table ${shape.family} ${shape.name} is dormant`);
    const rules = new Map<string, number>();
    for (const rule of dump.rules) rules.set(rule.chain, (rules.get(rule.chain) ?? 0) + 1);
    for (const [chain, count] of shape.chains) {
      if (!dump.chains.some((loaded) => loaded.name === chain)) differences.push(`chain ${chain} is missing`);
      else if ((rules.get(chain) ?? 0) !== count) differences.push(`chain ${chain} has ${rules.get(chain) ?? 0} rules, not ${count}`);
    }
    for (const [name, count] of shape.sets) {
      const set = dump.sets.find((loaded) => loaded.name === name);
      if (!set) differences.push(`set ${name} is missing`);
      else if (count !== undefined && set.elements.length !== count) differences.push(`set ${name} has ${set.elements.length} elements, not ${count}`);
    }
  }
  return differences;
}

export class DriftWatch {
  private timer: NodeJS.Timeout | undefined;
  private seen: number | undefined;
  private checking = false;

  constructor(
    private readonly backend: NftablesBackend,
    private readonly subject: DriftSubject,
    private readonly onDrift: (differences: string[]) => void,
    private readonly onError: (error: Error) => void,
    private readonly intervalMs = 250,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.check(), this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  private async check(): Promise<void> {
    if (this.checking || this.subject.busy() || this.subject.ownGeneration() === undefined) return;
    this.checking = true;
    try {
      const generation = await this.backend.generation();
      if (generation === this.subject.ownGeneration() || generation === this.seen) return;
      const differences = await findDrift(this.backend, this.subject.expectedShape());
      // A sync that started meanwhile explains the difference; look again next time.
      if (this.subject.busy()) return;
      this.seen = generation;
      if (differences.length > 0) this.onDrift(differences);
    } catch (error) {
      this.onError(error as Error);
    } finally {
      this.checking = false;
    }
  }
}
