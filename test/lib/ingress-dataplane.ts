// The ingress behaviour tests run against both dataplanes: each test/kernel/ingress-*.test.ts runs with
// the built-in proxy, and again with HAProxy through its twin test/kernel/ingress-*.haproxy.test.ts,
// which sets KUBENFT_TEST_INGRESS_DATAPLANE before importing it. HAProxy outlives the agent by
// design, so a test ends it itself, by the PID in the directory the test made for it.
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export type IngressDataplaneName = 'builtin' | 'haproxy';

export const INGRESS_DATAPLANE: IngressDataplaneName = process.env.KUBENFT_TEST_INGRESS_DATAPLANE === 'haproxy' ? 'haproxy' : 'builtin';
export const ON_HAPROXY = INGRESS_DATAPLANE === 'haproxy';

/** The dataplane under test as the agent's flags, with HAProxy's files in a directory of the test's (the demo's, the bench's). */
export class IngressDataplaneUnderTest {
  readonly dir = mkdtempSync(join(tmpdir(), 'kubenft-haproxy-'));

  constructor(readonly name: IngressDataplaneName = INGRESS_DATAPLANE) {}

  get args(): string[] {
    return ['--ingress-dataplane', this.name, '--ingress-haproxy-dir', this.dir];
  }

  /** The same dataplane for the Gateway API's listeners (HAProxy's directories beside the ingress's). */
  get gatewayArgs(): string[] {
    return ['--gateway-dataplane', this.name, '--gateway-haproxy-dir', this.dir];
  }

  /** HAProxy masters started under this directory (one per network namespace), by PID. */
  masters(): number[] {
    const pids: number[] = [];
    for (const entry of readdirSync(this.dir)) {
      try {
        pids.push(Number(readFileSync(join(this.dir, entry, 'haproxy.pid'), 'utf8').trim()));
      } catch {
        // no HAProxy there
      }
    }
    return pids.filter((pid) => Number.isInteger(pid) && pid > 0);
  }

  /** Ends the HAProxy masters started here (their workers end with them) and removes the directory. */
  async remove(): Promise<void> {
    for (const pid of this.masters()) {
      try {
        if (readFileSync(`/proc/${pid}/comm`, 'utf8').trim() !== 'haproxy') continue;
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}
