// The native addon against the real kernel, inside a throwaway network
// namespace: test/fixtures/native-driver.mjs does the work in the namespace
// and reports what it saw; this file makes the assertions.
import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '../..');
const addon = join(root, 'build', 'Release', 'kubenft_native.node');
const driver = join(root, 'test', 'fixtures', 'native-driver.mjs');

type Failure = { index: number; errno: number; code: string; message: string };
type ErrorInfo = { message: string; errno?: number; code?: string; index?: number; failures?: Failure[] };
type CommitResult = { messages: number; bytes: number; encodeMs: number; kernelMs: number; generation?: number };
type Attempt = { ok?: CommitResult; error?: ErrorInfo };
type Summary = { chains: string[]; rules: { chain: string; expr: unknown[] }[]; elements: number; setType: string[] };
type Report = {
  attributes: Record<string, Record<string, unknown>>;
  genBefore: number;
  genAfter: number;
  genFinal: number;
  first: Attempt;
  afterFirst: Summary;
  captured: { bytes: number; messages: { length: number; type: number }[] }[];
  capturedWhileOff: number;
  second: Attempt;
  afterSecond: Summary;
  truncated: Attempt;
  badAttr: Attempt;
  badWidth: Attempt;
  dumpMissing: null;
  dumpSummary: {
    table: { name: string; flags: number; handle: number };
    chains: { name: string; handle: number; hooknum?: number; prio?: number; policy?: number; type?: string }[];
    set: { name: string; flags: number; keyType: number; keyLen: number; dataType?: number; elements: number;
      first: { key: string; verdict?: number; chain?: string } };
    rules: { chain: string; handle: number; exprs: string[]; text: string }[];
  };
  flush: Attempt;
  empty: Attempt;
  afterFlush: Summary;
  large: Attempt;
  afterLarge: { elements: number };
  ordered: { refused: number; chains: string[] };
};

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root to create network namespaces');
} else if (!existsSync(addon)) {
  t.fail(`native addon not built (${addon}): run npx node-gyp rebuild`);
} else {
  const ns = `knft-nat-${process.pid}-${Math.random().toString(36).slice(2, 6)}`;
  execFileSync('ip', ['netns', 'add', ns]);
  t.teardown(() => {
    spawnSync('ip', ['netns', 'del', ns]);
  });

  const run = spawnSync('ip', ['netns', 'exec', ns, process.execPath, driver], {
    encoding: 'utf8',
    maxBuffer: 64 << 20,
    timeout: 240_000,
    // Keep tap's loaders and coverage hooks out of the plain-JS driver.
    env: { ...process.env, NODE_OPTIONS: '' },
  });
  t.equal(run.status, 0, 'driver exits by itself (no handle left open)', { stderr: run.stderr });
  const report = JSON.parse(run.stdout) as Report;

  t.test('attributes come from the libnftnl headers', async (t) => {
    const A = report.attributes;
    const expected: Record<string, string[]> = {
      table: ['name', 'flags', 'userdata'],
      chain: ['name', 'table', 'hooknum', 'prio', 'policy', 'type', 'flags', 'userdata', 'handle'],
      rule: ['table', 'chain', 'handle', 'position', 'userdata'],
      set: ['table', 'name', 'flags', 'keyType', 'keyLen', 'dataType', 'dataLen', 'id', 'policy', 'descSize',
        'timeout', 'gcInterval', 'userdata', 'handle'],
      elem: ['flags', 'key', 'keyEnd', 'data', 'verdict', 'chain', 'timeout', 'expiration', 'userdata'],
    };
    for (const [kind, names] of Object.entries(expected))
      for (const name of names) t.ok(Number.isInteger(A[kind]?.[name]), `${kind}.${name}`);
    const exprs = A.expr as Record<string, Record<string, number>>;
    t.same(Object.keys(exprs).sort(), ['bitwise', 'cmp', 'counter', 'ct', 'dynset', 'fib', 'immediate', 'lookup',
      'masq', 'meta', 'nat', 'numgen', 'payload', 'range', 'redir', 'reject', 'socket'].sort());
    t.equal(A.table?.name, 0, 'NFTNL_TABLE_NAME');
    t.equal(A.chain?.prio, 4, 'NFTNL_CHAIN_PRIO');
  });

  t.test('one batch builds a table, chains, a 3000-element verdict map and rules', async (t) => {
    const ok = report.first.ok;
    t.ok(ok, 'committed', { error: report.first.error });
    if (!ok) return;
    // begin + table + 2 chains + set + 3 element messages + 2 rules + end
    t.equal(ok.messages, 11, 'elements split over several netlink messages');
    t.ok(ok.bytes > 3000 * 40, 'batch size');
    t.ok(ok.encodeMs >= 0 && ok.kernelMs > 0, 'timings');
    t.equal(report.genAfter, report.genBefore + 1, 'one generation');
    t.equal(ok.generation, report.genAfter, 'generation echoed thanks to NLM_F_ECHO on the first message');
    t.same(report.afterFirst.chains, ['prerouting', 'svc-a']);
    t.equal(report.afterFirst.elements, 3000);
    t.same(report.afterFirst.setType, ['ipv4_addr', 'inet_proto', 'inet_service']);
    t.same(report.afterFirst.rules.map((r) => r.chain), ['prerouting', 'svc-a']);
    t.match(report.afterFirst.rules[0]?.expr, [{ vmap: { data: '@services', key: { concat: [
      { payload: { protocol: 'ip', field: 'daddr' } }, { meta: { key: 'l4proto' } },
      { payload: { protocol: 'th', field: 'dport' } }] } } }]);
  });

  t.test('captureBatches keeps the batches sent while it is on, byte for byte', async (t) => {
    const ok = report.first.ok;
    if (!ok) return t.fail('the first commit failed');
    t.equal(report.captured.length, 1, 'one commit, one batch');
    const [batch] = report.captured;
    t.equal(batch?.bytes, ok.bytes, 'as many bytes as the commit sent');
    t.equal(batch?.messages.length, ok.messages, 'as many netlink messages');
    const NFNL_MSG_BATCH_BEGIN = 0x10;
    const NFNL_MSG_BATCH_END = 0x11;
    t.same([batch?.messages[0]?.type, batch?.messages.at(-1)?.type], [NFNL_MSG_BATCH_BEGIN, NFNL_MSG_BATCH_END], 'a whole batch, begin to end');
    t.equal(report.capturedWhileOff, 0, 'nothing is kept once it is off');
  });

  t.test('a failing message rejects the whole batch with its index', async (t) => {
    const e = report.second.error;
    t.ok(e, 'rejected');
    if (!e) return;
    t.equal(e.errno, 2);
    t.equal(e.code, 'ENOENT');
    t.equal(e.index, 1);
    t.match(e.message, /^kernel rejected message 1: No such file or directory/);
    t.same(e.failures?.map((f) => [f.index, f.code]), [[1, 'ENOENT'], [3, 'ENOENT']], 'every failure reported');
    t.same(report.afterSecond, report.afterFirst, 'ruleset unchanged');
  });

  t.test('malformed transactions are rejected before the kernel', async (t) => {
    t.match(report.truncated.error, { index: 1, message: /truncated/ });
    t.match(report.badAttr.error, { index: 0, message: /unsupported table attribute 31/ });
    t.match(report.badWidth.error, { index: 1, message: /prio must be 4 bytes, got 8/ });
  });

  t.test('dump', async (t) => {
    t.equal(report.dumpMissing, null, 'null for a missing table');
    const d = report.dumpSummary;
    t.match(d.table, { name: 'knft-test', flags: 0 });
    t.ok(d.table.handle > 0);
    t.match(d.chains, [
      { name: 'prerouting', hooknum: 0, prio: -100, policy: 1, type: 'nat' },
      { name: 'svc-a' },
    ]);
    t.notOk('hooknum' in (d.chains[1] ?? {}), 'regular chain has no hook');
    t.match(d.set, { name: 'services', flags: 8, keyType: (7 << 12) | (12 << 6) | 13, keyLen: 12,
      dataType: 0xffffff00, elements: 3000 });
    t.match(d.set.first, { verdict: -4, chain: 'svc-a' });
    t.equal(d.set.first.key.length, 24, '12-byte key');
    t.same(d.rules.map((r) => r.exprs), [['payload', 'meta', 'payload', 'lookup'], ['counter']]);
    t.match(d.rules[0]?.text, /lookup reg 1 set services dreg 0/);
  });

  t.test('a commit flushes a set and a chain, and reports the generation it made', async (t) => {
    const flush = report.flush.ok;
    t.ok(flush, 'flush committed', { error: report.flush.error });
    t.equal(flush?.generation, report.genFinal);
    t.equal(report.afterFlush.elements, 0, 'DELSETELEM without elements flushes the set');
    t.same(report.afterFlush.rules.map((r) => r.chain), ['prerouting'], 'DELRULE with table+chain flushes the chain');
  });

  t.test('commits reach the kernel in the order they were asked for, none awaited', async (t) => {
    t.equal(report.ordered.refused, 0, 'no commit met the state of a later one');
    t.same(report.ordered.chains, ['c299'], 'each commit built on the one before');
  });

  t.test('empty and large transactions', async (t) => {
    t.match(report.empty.ok, { messages: 2, bytes: 40 });
    t.notOk(report.empty.ok && 'generation' in report.empty.ok, 'nothing committed, no generation');
    t.ok(report.large.ok, 'committed', { error: report.large.error });
    t.ok((report.large.ok?.messages ?? 0) > 150, 'many netlink messages');
    t.equal(report.afterLarge.elements, 200000);
  });
}
