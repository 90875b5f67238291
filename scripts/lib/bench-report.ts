// Turns the benchmark's figures into the markdown report, its SVG charts and the target checks.
import { lineChart } from './bench-svg.js';
import { median, quantile } from './bench-stats.js';
import type { BenchResults, ColdImplementation, ColdResult, Dataplane, IncrementalResult, KubenftSplit, LatencyRow, PartialSyncerName } from './bench-types.js';

export const COLD_LABELS: Record<ColdImplementation, string> = {
  kubenft: 'kubenft (netlink addon)',
  'kubenft-iptables-legacy': 'kubenft --proxy-mode=iptables, legacy',
  'kubenft-iptables-nft': 'kubenft --proxy-mode=iptables, nft',
  'iptables-legacy-restore': 'iptables-legacy-restore, one pass',
  'iptables-nft-restore': 'iptables-nft-restore, one pass',
  'upstream-nft': 'upstream kube-proxy nftables layout (nft -f)',
};

const INCREMENTAL_LABELS: Record<PartialSyncerName | Dataplane, string> = {
  proxier: 'kubenft partial sync (NftablesProxier)',
  'proxier-one-service-table': 'kubenft, every service in one table (--service-tables 1)',
  kubenft: 'kubenft',
  'iptables-legacy': 'kubenft --proxy-mode=iptables, legacy (full restore)',
  'iptables-nft': 'kubenft --proxy-mode=iptables, nft (full restore)',
};

export type TargetStatus = 'met' | 'missed' | 'not measured';
export interface TargetCheck {
  target: string;
  status: TargetStatus;
  detail: string;
}

const ms = (value: number) => (value >= 100 ? value.toFixed(0) : value >= 10 ? value.toFixed(1) : value.toFixed(2));
const seconds = (milliseconds: number) => (milliseconds / 1000).toFixed(milliseconds >= 10_000 ? 1 : 2);
const megabytes = (bytes: number) => (bytes / 2 ** 20).toFixed(0);
const count = (value: number) => value.toLocaleString('en-US');

function coldCell(result: ColdResult | undefined, timeoutMs: number): string {
  if (!result) return '–';
  if (result.skipped) return `skipped (${result.skipped})`;
  if (result.error) return `error: ${result.error.slice(0, 80)}`;
  if (result.timedOut) return `> ${seconds(timeoutMs)} (timeout)`;
  return seconds(result.wallMs);
}

export const splitText = (split: KubenftSplit) =>
  `plan ${ms(split.planMs)} ms${split.recordMs > 0 ? ` (+ record ${ms(split.recordMs)})` : ''} / encode ${ms(split.serializeMs + split.encodeMs)} ms (serialize ${ms(split.serializeMs)} + C++ ${ms(split.encodeMs)}) / kernel ${ms(split.kernelMs)} ms`;

function coldResult(results: BenchResults, implementation: ColdImplementation, services: number): ColdResult | undefined {
  return results.cold.find((entry) => entry.implementation === implementation && entry.services === services)?.result;
}

const measured = (result: ColdResult | undefined): result is ColdResult => result !== undefined && !result.skipped && !result.error && !result.timedOut;

function medianSplit(samples: KubenftSplit[]): KubenftSplit {
  const pick = (field: keyof KubenftSplit) => median(samples.map((sample) => sample[field]));
  return { planMs: pick('planMs'), recordMs: pick('recordMs'), serializeMs: pick('serializeMs'), encodeMs: pick('encodeMs'), kernelMs: pick('kernelMs'), messages: pick('messages'), bytes: pick('bytes') };
}

function incrementalSplit(result: IncrementalResult): KubenftSplit | undefined {
  const splits = result.samples.flatMap((sample) => (sample.split ? [sample.split] : []));
  return splits.length > 0 ? medianSplit(splits) : undefined;
}

const medianTotal = (result: IncrementalResult) => median(result.samples.map((sample) => sample.totalMs));

export function checkTargets(results: BenchResults): TargetCheck[] {
  const checks: TargetCheck[] = [];
  const kubenft10k = coldResult(results, 'kubenft', 10_000);
  const legacy10k = coldResult(results, 'iptables-legacy-restore', 10_000);
  if (measured(kubenft10k) && measured(legacy10k)) {
    const ratio = kubenft10k.wallMs / legacy10k.wallMs;
    const met = kubenft10k.wallMs <= 500 && ratio <= 0.35;
    checks.push({
      target: 'cold sync 10k × 3 ≤ 0.5 s and ≤ 0.35× iptables-legacy-restore',
      status: met ? 'met' : 'missed',
      detail: `${seconds(kubenft10k.wallMs)} s, ${ratio.toFixed(2)}× iptables-legacy-restore (${seconds(legacy10k.wallMs)} s)${met ? '' : `; ${splitText(kubenft10k.split!)}`}`,
    });
  } else checks.push({ target: 'cold sync 10k × 3 ≤ 0.5 s and ≤ 0.35× iptables-legacy-restore', status: 'not measured', detail: '' });

  const kubenft100k = coldResult(results, 'kubenft', 100_000);
  if (measured(kubenft100k) && measured(kubenft10k)) {
    const ratio = kubenft100k.wallMs / kubenft10k.wallMs;
    const met = kubenft100k.wallMs <= 5000 && ratio <= 12;
    checks.push({
      target: 'cold sync 100k × 3 ≤ 5 s, 100k/10k ≤ 12',
      status: met ? 'met' : 'missed',
      detail: `${seconds(kubenft100k.wallMs)} s, ratio ${ratio.toFixed(1)}${met ? '' : `; ${splitText(kubenft100k.split!)}`}`,
    });
  } else checks.push({ target: 'cold sync 100k × 3 ≤ 5 s, 100k/10k ≤ 12', status: 'not measured', detail: results.quick ? '--quick stops at 10k' : '' });

  const partial10k = results.incremental.find((entry) => entry.implementation === 'proxier' && entry.services === 10_000)?.result;
  if (partial10k && !partial10k.error && partial10k.samples.length > 0) {
    const total = medianTotal(partial10k);
    const split = incrementalSplit(partial10k);
    checks.push({
      target: 'one endpoint change at 10k ≤ 5 ms to kernel commit',
      status: total <= 5 ? 'met' : 'missed',
      detail: `median ${ms(total)} ms (NftablesProxier)${total <= 5 || !split ? '' : `; ${splitText(split)}`}`,
    });
  } else checks.push({ target: 'one endpoint change at 10k ≤ 5 ms to kernel commit', status: 'not measured', detail: partial10k?.error ?? '' });

  const kubenftLatency = results.latency.filter((row) => row.dataplane === 'kubenft').sort((a, b) => b.services - a.services)[0];
  if (kubenftLatency) {
    const difference = kubenftLatency.last.p50Us / kubenftLatency.first.p50Us - 1;
    const atTarget = kubenftLatency.services >= 30_000;
    const met = Math.abs(difference) <= 0.05;
    checks.push({
      target: 'connect p50 to service #30,000 within 5% of service #1',
      status: !atTarget ? 'not measured' : met ? 'met' : 'missed',
      detail: `#${count(kubenftLatency.services)}: ${kubenftLatency.last.p50Us} µs vs #1: ${kubenftLatency.first.p50Us} µs (${(difference * 100).toFixed(1)}%)${atTarget ? '' : `; largest N measured is ${count(kubenftLatency.services)}`}`,
    });
  } else checks.push({ target: 'connect p50 to service #30,000 within 5% of service #1', status: 'not measured', detail: '' });

  const memory100k = results.memory.find((entry) => entry.services === 100_000)?.result;
  checks.push(
    memory100k
      ? { target: 'agent RSS at 100k services ≤ 300 MB', status: memory100k.rssBytes <= 300 * 2 ** 20 ? 'met' : 'missed', detail: `${megabytes(memory100k.rssBytes)} MB (peak ${megabytes(memory100k.maxRssBytes)} MB)` }
      : { target: 'agent RSS at 100k services ≤ 300 MB', status: 'not measured', detail: results.quick ? '--quick stops at 10k' : '' },
  );
  return checks;
}

function table(header: string[], rows: string[][]): string {
  return [`| ${header.join(' | ')} |`, `|${header.map(() => '---').join('|')}|`, ...rows.map((row) => `| ${row.join(' | ')} |`)].join('\n');
}

const unique = <T>(values: T[]) => [...new Set(values)];

export interface Report {
  markdown: string;
  /** SVG files by name, written next to the markdown. */
  charts: Map<string, string>;
}

export function buildReport(results: BenchResults, stem: string, timeoutMs: number): Report {
  const charts = new Map<string, string>();
  const sections: string[] = [];
  const { machine } = results;
  sections.push(
    `# kubenft benchmark, ${machine.date}${results.quick ? ' (--quick)' : ''}`,
    `Generated by \`npm run bench${results.quick ? ' -- --quick' : ''}\` in ${results.elapsedSeconds.toFixed(0)} s. Every figure comes from this one run; all rules were loaded in throwaway network namespaces.`,
    '## Machine',
    table(['cores', 'CPU', 'memory', 'kernel', 'node', 'nft', 'iptables'], [[String(machine.cores), machine.cpuModel, `${machine.memoryGiB.toFixed(0)} GiB`, machine.kernel, machine.node, machine.nft, `${machine.iptablesLegacy}; ${machine.iptablesNft}`]]),
  );

  const checks = checkTargets(results);
  const mark: Record<TargetStatus, string> = { met: '✅ met', missed: '❌ missed', 'not measured': '– not measured' };
  sections.push('## Targets', table(['target', 'result', 'figures'], checks.map((check) => [check.target, mark[check.status], check.detail])));

  // 1. Cold sync
  const coldSizes = unique(results.cold.map((entry) => entry.services)).sort((a, b) => a - b);
  const coldImplementations = unique(results.cold.map((entry) => entry.implementation));
  if (coldSizes.length > 0) {
    const chartName = `${stem}-cold-sync.svg`;
    const svg = lineChart({
      title: 'Cold full sync, N ClusterIP services × 3 endpoints',
      xLabel: 'services (N)', yLabel: 'wall seconds', xLog: true, yLog: true,
      series: coldImplementations.map((implementation) => ({
        name: COLD_LABELS[implementation].replace(' layout (nft -f)', ' (nft -f)'),
        points: coldSizes.map((services) => {
          const result = coldResult(results, implementation, services);
          return { x: services, y: measured(result) ? result.wallMs / 1000 : undefined };
        }),
      })),
    });
    if (svg) charts.set(chartName, svg);
    const kubenftRows = coldSizes.flatMap((services) => {
      const result = coldResult(results, 'kubenft', services);
      if (!measured(result) || !result.split) return [];
      const { planMs, recordMs, serializeMs, encodeMs, kernelMs, messages, bytes } = result.split;
      return [[count(services), ms(result.ingestMs), ms(planMs), ms(recordMs), ms(serializeMs), ms(encodeMs), ms(kernelMs), ms(result.wallMs), count(messages), `${(bytes / 2 ** 20).toFixed(1)} MiB`]];
    });
    const splitRows = coldImplementations.filter((implementation) => implementation !== 'kubenft').flatMap((implementation) =>
      coldSizes.flatMap((services) => {
        const result = coldResult(results, implementation, services);
        return measured(result) ? [[COLD_LABELS[implementation], count(services), ms(result.planMs), ms(result.loadMs)]] : [];
      }),
    );
    sections.push(
      '## 1. Control plane: cold full sync',
      `N ClusterIP services × 3 endpoints into an empty namespace. Wall seconds of the sync (turning the services into rules and loading them; building the in-memory cluster state from the objects is not included). Each run has a ${seconds(timeoutMs)} s timeout; a run that quadratic growth from the previous N predicts beyond twice that is not started.`,
      table(['N', ...coldImplementations.map((implementation) => COLD_LABELS[implementation])], coldSizes.map((services) => [count(services), ...coldImplementations.map((implementation) => coldCell(coldResult(results, implementation, services), timeoutMs))])),
      ...(charts.has(chartName) ? [`![cold sync time vs N](${chartName})`] : []),
      '### kubenft sync split (ms)',
      'The agent\'s full sync (NftablesProxier). plan = ClusterState → views → tables; record = what later partial syncs need to know (reference counts); serialize = tables → wire format (TypeScript); encode = wire → libnftnl messages (C++); kernel = the batch round trips. ingest (not part of the sync) = the objects applied to ClusterState. Into an empty namespace the tables are loaded one per transaction, dormant, and switched on together at the end: the addon encodes and the kernel loads one table on a second thread while TypeScript plans and serializes the next, so wall is less than the sum.',
      table(['N', 'ingest', 'plan', 'record', 'serialize', 'encode', 'kernel', 'wall', 'messages', 'batch'], kubenftRows),
      '### Other implementations: generate / load split (ms)',
      'plan = the iptables plan and restore input, or the upstream nft text; load = the tool run(s). kubenft --proxy-mode=iptables also runs iptables-save and `iptables-restore --test` before the real restore, hence about twice the one-pass figure.',
      table(['implementation', 'N', 'plan', 'load'], splitRows),
    );
  }

  // 2. Incremental
  if (results.incremental.length > 0) {
    const rows = results.incremental.map(({ implementation, services, result }) => {
      if (result.error || result.skipped) {
        const why = result.skipped ? `skipped: ${result.skipped}` : `error: ${result.error!.slice(0, 80)}`;
        return [INCREMENTAL_LABELS[implementation], count(services), why, '', '', '', '', '', ''];
      }
      const totals = result.samples.map((sample) => sample.totalMs);
      const cleanups = result.samples.flatMap((sample) => (sample.cleanupMs === undefined ? [] : [sample.cleanupMs]));
      const split = incrementalSplit(result);
      return [
        INCREMENTAL_LABELS[implementation], count(services), String(totals.length), ms(median(totals)), ms(quantile(totals, 0.9)),
        split ? ms(split.planMs) : '–', split ? ms(split.serializeMs + split.encodeMs) : '–', split ? ms(split.kernelMs) : '–',
        cleanups.length > 0 ? ms(median(cleanups)) : '–',
      ];
    });
    sections.push(
      '## 2. Control plane: one endpoint change',
      'The middle service\'s first endpoint is replaced. Time from the changed EndpointSlice reaching the agent\'s ClusterState to the kernel\'s commit. kubenft writes only the changed service; iptables mode restores everything. kubenft commits the change without deleting anything (the new cascade goes in front of the old one), because any deletion makes the kernel\'s commit sleep ~15 ms; a second transaction then removes the unreachable rules (cleanup, after the change is in force).',
      table(['implementation', 'N', 'changes', 'median ms', 'p90 ms', 'plan ms', 'encode ms', 'kernel ms', 'cleanup ms (after)'], rows),
    );
  }

  // 3. Latency
  if (results.latency.length > 0) {
    const latencySizes = unique(results.latency.map((row) => row.services)).sort((a, b) => a - b);
    const dataplanes = unique(results.latency.map((row) => row.dataplane));
    const chartName = `${stem}-latency.svg`;
    const find = (dataplane: Dataplane, services: number): LatencyRow | undefined => results.latency.find((row) => row.dataplane === dataplane && row.services === services);
    const svg = lineChart({
      title: 'TCP connect p50 through the node, client namespace → pod',
      xLabel: 'services loaded (N)', yLabel: 'connect p50 (µs)', xLog: true,
      series: dataplanes.flatMap((dataplane) => [
        { name: `${dataplane} → #1`, points: latencySizes.map((services) => ({ x: services, y: find(dataplane, services)?.first.p50Us })) },
        { name: `${dataplane} → #N`, points: latencySizes.map((services) => ({ x: services, y: find(dataplane, services)?.last.p50Us })) },
      ]),
    });
    if (svg) charts.set(chartName, svg);
    const percentiles = (figures: LatencyRow['first']) => `${figures.p50Us} / ${figures.p90Us} / ${figures.p99Us}${figures.failures > 0 ? ` (${figures.failures} failed)` : ''}`;
    sections.push(
      '## 3. Data plane: first-packet cost',
      `TCP connect latency (SYN → SYN-ACK as the client sees it, µs) from the client namespace through the node namespace holding the rules to 3 pods; every connection is new, so it goes through the NAT rules. p50 / p90 / p99 of ${count(results.latency[0].first.samples + results.latency[0].first.failures)} connections to each service, made by one probe process that connects to #1 and #N in turn, so that both see the same process and the same moments.`,
      table(['dataplane', 'N', 'service #1', 'service #N', 'p50 #N vs #1'], results.latency.map((row) => [
        row.dataplane, count(row.services), percentiles(row.first), percentiles(row.last), `${((row.last.p50Us / row.first.p50Us - 1) * 100).toFixed(1)}%`,
      ])),
      ...(charts.has(chartName) ? [`![connect latency vs N](${chartName})`] : []),
    );
  }

  // 4. Distribution
  if (results.distribution.length > 0) {
    sections.push(
      '## 4. Data plane: distribution over endpoints (kubenft)',
      'Connections per endpoint, counted by the endpoint address the pod saw; chi-square against a uniform split (p well above 0.01: consistent with uniform).',
      table(['endpoints', 'connections', 'failed', 'min per endpoint', 'max per endpoint', 'expected', 'chi-square', 'df', 'p'], results.distribution.map((row) => [
        String(row.endpoints), count(row.connections), String(row.failures), String(row.min), String(row.max), ((row.connections - row.failures) / row.endpoints).toFixed(1),
        row.chiSquare.toFixed(1), String(row.degreesOfFreedom), row.pValue.toFixed(3),
      ])),
    );
  }

  // 5. Memory
  if (results.memory.length > 0) {
    sections.push(
      '## 5. Agent memory',
      'A worker that ingests N services and does the agent\'s full sync (NftablesDataplane: plan, encode, commit, then the heap compaction the agent does after a large sync), idles one --min-sync-period, then reads its memory with the cluster state and the dataplane still alive.',
      table(['N', 'RSS MB', 'heap used MB', 'peak RSS MB'], results.memory.map(({ services, result }) => [count(services), megabytes(result.rssBytes), megabytes(result.heapUsedBytes), megabytes(result.maxRssBytes)])),
    );
  }

  if (results.failures.length > 0) {
    sections.push('## Failures', table(['phase', 'error'], results.failures.map((failure) => [failure.phase, failure.error.replace(/\|/g, '\\|').slice(0, 300)])));
  }
  return { markdown: `${sections.join('\n\n')}\n`, charts };
}

