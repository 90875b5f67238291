// Runs the real kubenft CLI (compiled, in dist/) inside a test topology's node namespace.
import { join } from 'node:path';
import { projectRoot } from '../../src/kernel/native.js';
import type { ExecResult, Topology } from '../../scripts/lib/topology.js';

export const CLI = join(projectRoot(), 'dist/src/cli/main.js');

export function kubenft(topology: Topology, args: string[]): Promise<ExecResult> {
  return topology.exec(topology.node, ['node', CLI, ...args], { timeoutMs: 120_000 });
}

/** Programs the node once and fails the test's promise if kubenft did not exit 0. */
export async function syncOnce(topology: Topology, manifests: string, ...args: string[]): Promise<ExecResult> {
  const result = await kubenft(topology, ['--manifests', manifests, '--once', ...args]);
  if (result.code !== 0) throw new Error(`kubenft exited ${result.code}: ${result.stderr}`);
  return result;
}

/** Every table of the node namespace (kubenft's main and service tables are all it has). */
export async function listRulesetJson(topology: Topology): Promise<unknown> {
  const result = await topology.exec(topology.node, ['nft', '-j', 'list', 'ruleset']);
  if (result.code !== 0) throw new Error(`nft list failed: ${result.stderr}`);
  return JSON.parse(result.stdout);
}

/** Pearson's chi-square statistic of observed counts against a uniform distribution. */
export function chiSquareUniform(counts: number[]): number {
  const total = counts.reduce((sum, count) => sum + count, 0);
  const expected = total / counts.length;
  return counts.reduce((sum, count) => sum + (count - expected) ** 2 / expected, 0);
}

/** Critical values of chi-square at p = 0.001: a fair selector fails one run in a thousand. */
export const CHI_SQUARE_CRITICAL_P001: Record<number, number> = { 1: 10.83, 2: 13.82, 3: 16.27, 4: 18.47, 9: 27.88, 69: 111.06, 499: 617.4 };

export type { ExecResult };

/** GETs a URL from inside the node namespace, where the agent's servers listen. */
export async function scrape(topology: Topology, url: string): Promise<{ status: number; body: string }> {
  const script = `const r = await fetch(${JSON.stringify(url)}); console.log(JSON.stringify({ status: r.status, body: await r.text() }));`;
  const result = await topology.exec(topology.node, ['node', '--input-type=module', '-e', script]);
  return JSON.parse(result.stdout);
}

/** The value of an unlabelled metric in a Prometheus text exposition. */
export const metricValue = (body: string, name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(body)?.[1] ?? NaN);
