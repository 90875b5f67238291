// --logging-format, kube-proxy's two: text (klog's header, the message, key=value) and json (one
// object a line, ISO time, level name), read back line by line from the real CLI. `render`
// touches nothing, so it runs here; its skipped documents give error lines, -v 4 debug ones.
import t, { type Test } from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { klogLine } from '../../src/cli/logging.js';
import { SOURCE_CLI } from '../lib/source-cli.js';

const directory = mkdtempSync(join(tmpdir(), 'kubenft-logging-'));
t.teardown(() => rmSync(directory, { recursive: true, force: true }));
const manifests = join(directory, 'broken.yaml');
writeFileSync(manifests, 'kind: Service\napiVersion: v1\nmetadata: {name: "no-namespace"}\nspec: {ports: [{port: "eighty"}]}\n');

const stderrLines = (t: Test, args: string[]) => {
  const result = spawnSync(process.execPath, [...SOURCE_CLI, 'render', '--manifests', manifests, ...args], { encoding: 'utf8' });
  t.equal(result.status, 1, 'render exits 1: an object was skipped');
  return result.stderr.trim().split('\n');
};

// I1207 03:34:56.123456   12345 kubenft] message key=value ...
const KLOG = /^([IWEF])(\d{2})(\d{2}) (\d{2}):(\d{2}):(\d{2})\.(\d{6}) +(\d+) kubenft\] (.*)$/;

t.test('text (the default): klog\'s header, the message, then key=value', async (t) => {
  for (const args of [[], ['--logging-format=text']]) {
    const lines = stderrLines(t, args);
    t.ok(lines.length >= 2, 'a line per record');
    for (const line of lines) t.match(line, KLOG, line);
    const skipped = lines.map((line) => KLOG.exec(line)!).find((match) => match[9].startsWith('skipped '));
    t.equal(skipped?.[1], 'E', 'an error is E');
    const [, , month, day] = skipped!;
    const now = new Date();
    t.equal(`${month}${day}`, `${String(now.getMonth() + 1).padStart(2, '0')}${String(now.getDate()).padStart(2, '0')}`, 'MMDD is today\'s (local time, as klog)');
    const listed = lines.find((line) => line.includes('every source has listed'))!;
    t.match(listed, /^I.* every source has listed listedAtMs=[\d.]+ stateMs=[\d.]+ services=0 endpoints=0$/, 'info with numbers bare');
    t.notMatch(lines.join('\n'), /^\{/m, 'no JSON');
    // Milliseconds scaled up would end every line in 000; real microseconds do so one time in a thousand.
    t.notOk(lines.every((line) => KLOG.exec(line)![7].endsWith('000')), 'the header\'s six digits are real microseconds');
  }
});

t.test('json: one object a line, an ISO time and a level name', async (t) => {
  const fromConfig = join(directory, 'kp.yaml');
  writeFileSync(fromConfig, 'apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nlogging:\n  format: json\n  verbosity: 4\n');
  for (const args of [['--logging-format=json', '-v', '4'], ['--config', fromConfig]]) {
    const records = stderrLines(t, args).map((line) => JSON.parse(line) as Record<string, unknown>);
    for (const record of records) {
      t.match(record.level, /^(trace|debug|info|warn|error|fatal)$/, `level ${record.level} by name`);
      t.match(record.time, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/, 'ISO time');
      t.ok(Math.abs(Date.parse(record.time as string) - Date.now()) < 60 * 60_000, 'which is now');
      t.type(record.msg, 'string');
    }
    t.ok(records.some((record) => record.level === 'error' && (record.msg as string).startsWith('skipped ')), 'the skipped object is an error');
    t.ok(records.some((record) => record.msg === 'every source has listed' && record.services === 0), 'fields stay fields');
  }
});

t.test('klogLine: strings quoted, errors as their message, nested values as JSON', async (t) => {
  const time = new Date(2024, 0, 9, 7, 5, 3, 42).getTime() * 1000 + 317;
  const line = klogLine(JSON.stringify({
    level: 40, time, msg: 'drift "seen"', table: 'ip kubenft', count: 3, ok: false, err: { type: 'Error', message: 'no "way"', stack: 'x' }, split: { planMs: 1 },
  }), 77);
  t.equal(line, 'W0109 07:05:03.042317      77 kubenft] drift "seen" table="ip kubenft" count=3 ok=false err="no \\"way\\"" split={"planMs":1}\n');
  t.match(klogLine(JSON.stringify({ level: 20, time, msg: 'detail' })), /^I0109 /, 'debug is I, as klog\'s V-levels');
  t.match(klogLine(JSON.stringify({ level: 50, time, msg: 'x' })), /^E/);
  t.match(klogLine(JSON.stringify({ level: 60, time, msg: 'x' })), /^F/);
});

t.test('an unknown format is refused before anything runs', async (t) => {
  const result = spawnSync(process.execPath, [...SOURCE_CLI, 'render', '--manifests', manifests, '--logging-format=logfmt'], { encoding: 'utf8' });
  t.equal(result.status, 2);
  t.equal(result.stderr, 'kubenft: --logging-format "logfmt": is not a logging format: use text or json\n');
});
