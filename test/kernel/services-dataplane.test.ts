// The services' dataplane suite (test/lib/services-dataplane-suite.ts) on the real kernel, in a
// throwaway network namespace: this file runs itself there (ip netns exec) and reads its TAP
// output as a subtest. test/unit/services-dataplane.test.ts runs the same suite in memory.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { native } from '../../src/kernel/native.js';
import { NftTransaction } from '../../src/kernel/nft-transaction.js';
import { NFPROTO } from '../../src/kernel/uapi.js';
import type { NftFamily } from '../../src/kernel/ruleset.js';
import { servicesDataplaneSuite } from '../lib/services-dataplane-suite.js';

const NAMESPACE_VARIABLE = 'KUBENFT_SUITE_NETNS';
const namespace = process.env[NAMESPACE_VARIABLE];
const FAMILIES = new Map<number, NftFamily>(Object.entries(NFPROTO).map(([name, number]) => [number, name as NftFamily]));

if (namespace !== undefined) {
  // Inside: the suite deletes every table before each test, so it must be the namespace made for it.
  if (statSync('/proc/self/ns/net').ino !== statSync(`/run/netns/${namespace}`).ino) throw new Error(`not in network namespace ${namespace}`);
  const kernel = native();
  servicesDataplaneSuite(t, {
    fresh: async () => {
      const transaction = new NftTransaction(kernel.attributes);
      for (const { family, name } of await kernel.tables()) transaction.deleteTable(FAMILIES.get(family)!, name);
      if (transaction.messageCount > 0) await kernel.commit(transaction.finish());
      return kernel;
    },
  });
} else if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root: it creates a network namespace');
} else {
  const created = `knft-suite-${process.pid}`;
  execFileSync('ip', ['netns', 'add', created]);
  t.teardown(() => execFileSync('ip', ['netns', 'delete', created]));
  t.spawn('ip', ['netns', 'exec', created, process.execPath, ...process.execArgv, fileURLToPath(import.meta.url)], { env: { ...process.env, [NAMESPACE_VARIABLE]: created } }, 'the suite on the kernel of a namespace of its own');
}
