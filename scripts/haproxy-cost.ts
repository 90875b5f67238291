// What kubenft's HAProxy configuration costs per request, in user-space instructions (load on a
// shared machine changes wall-clock figures, not instruction counts): HAProxy under callgrind, one
// thread, in a throwaway network namespace with a second HAProxy as the backend, wrk with
// keep-alive; the counters are zeroed, wrk runs, the counters are dumped, and the instructions are
// divided by wrk's requests. Each variant is kubenft's configuration (renderConfig, one Ingress)
// with one group of rules removed, so the table says what each group costs. 'gateway' is the
// Gateway API's configuration (--gateway-dataplane=haproxy) for one HTTPRoute of one plain rule
// (PathPrefix / → one backend) on the same host, 'gateway-anyhost' the same route without hostnames
// (any host's rules), 'gateway-wildcard' on *.example.com (the host one label under it),
// 'gateway-deepwildcard' on *.com (two labels under); --gateway measures them beside bare HAProxy
// and the Ingress.
//   node dist/scripts/haproxy-cost.js [--https] [--gateway] [--seconds N] [--connections N] [--threads N] [--cpu] [--sed EXPRESSION] [variant…]
// (--sed: kubenft's configuration edited by sed first, to try a change before making it; variants
// are 'bare', 'kubenft' (the Ingress), or a gateway one (above), each but bare optionally
// followed by ' -GROUP'…; --connections: wrk's, 16 unless told; --threads: HAProxy's nbthread, 1
// unless told; valgrind runs threads one at a time, so a lock's contention does not show, only
// what more connections or threads cost in instructions; --cpu: HAProxy without valgrind, wrk -t2,
// and its CPU time per request, user and system, from /proc: what the instructions leave out, the
// kernel's share and the threads' contention, at the price of depending on the machine's load)
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { parseArgs } from 'node:util';
import { join } from 'node:path';
import { haproxyLayout } from '../src/ingress/haproxy/config.js';
import { HaproxyModel } from '../src/ingress/haproxy/model.js';
import type { HostRoute, PathRoute, RouteTable } from '../src/ingress/routes.js';
import { generateDefaultCertificate } from '../src/ingress/default-certificate.js';
import { bareHaproxyConfig, HOST } from './lib/bench-ingress.js';

const PORTS = { http: 7080, https: 7443, backend: 8081 };
const BACKEND = `127.0.0.1:${PORTS.backend}`;

/** Rule groups, each a test on a line of kubenft's configuration: the variant without the group drops those lines. */
const GROUPS: Record<string, RegExp> = {
  counters: /txn\.start|txn\.counted|track-sc0|sc-set-gpt|set-log-level silent/,
  'duration sum': /sc-set-gpt/,
  'forwarded headers': /set-header x-(forwarded|real-ip)/,
  'encoded slash': /kubenft-encoded-slash/,
  'hop-by-hop': /kubenft-hop-by-hop/,
  'normal path': /kubenft-normal-path/,
  'header size check': /req\.hdrs,length/,
  'server header': /http-after-response set-header server/,
  'request log': /^ {2}log |log-format/,
};

/** The one route: an Ingress path, or an HTTPRoute rule as the Gateway planner emits it (its actions: the one weighted backend). */
function routeOf(gateway: boolean): PathRoute {
  const route: PathRoute = { type: 'Prefix', path: '/', match: '', ingress: 'default/bench', backend: 'default/backend:80' };
  return gateway ? { ...route, actions: { backends: [{ backend: route.backend, weight: 1 }] } } : route;
}

/** Where each variant's route is: on HOST, any host, or a wildcard (by its suffix) HOST is under. */
const PLACES: Record<string, (route: HostRoute) => Pick<RouteTable, 'hosts' | 'wildcards' | 'anyHost'>> = {
  kubenft: (route) => ({ hosts: { [HOST]: route }, wildcards: {} }),
  gateway: (route) => ({ hosts: { [HOST]: route }, wildcards: {} }),
  'gateway-anyhost': (route) => ({ hosts: {}, wildcards: {}, anyHost: route }),
  'gateway-wildcard': (route) => ({ hosts: {}, wildcards: { 'example.com': route } }),
  'gateway-deepwildcard': (route) => ({ hosts: {}, wildcards: { com: route } }),
};

function kubenftFiles(dir: string, https: boolean, variant: string, threads: number): void {
  const layout = haproxyLayout(dir);
  const gateway = variant !== 'kubenft';
  const model = new HaproxyModel(layout, gateway);
  const route = { paths: [routeOf(gateway)], redirectToHttps: false };
  model.load({
    ...PLACES[variant](route),
    backends: { 'default/backend:80': [BACKEND] }, certificates: {}, tlsHosts: {}, tlsWildcards: {}, served: ['default/bench'],
    ...(gateway ? { wildcardsMatchSubdomains: true } : {}),
  }, generateDefaultCertificate());
  const settings = {
    ...(https ? { httpsAddress: { host: '127.0.0.1', port: PORTS.https } } : { httpAddress: { host: '127.0.0.1', port: PORTS.http } }),
    maxBodyBytes: 1 << 20, maxHeaderBytes: 16_384, clientTimeoutMs: 60_000, backendTimeoutMs: 60_000, connectTimeoutMs: 5_000, threads, gatewayRules: gateway,
  };
  for (const { path, content } of model.files(settings)) {
    execFileSync('mkdir', ['-p', join(path, '..')]);
    writeFileSync(path, content);
  }
}

/** The configuration of a variant: 'kubenft' (or 'gateway') whole, 'kubenft -GROUP' without a group, 'bare' the bench's static anchor. */
function writeVariant(dir: string, variant: string, https: boolean, sed: string | undefined, threads: number): string {
  const config = join(dir, 'haproxy.cfg');
  if (variant === 'bare') {
    const pem = join(dir, 'bare.pem');
    const { cert, key } = generateDefaultCertificate();
    writeFileSync(pem, cert + key);
    writeFileSync(config, bareHaproxyConfig({ directory: dir, pem, threads, servers: [BACKEND], ports: https ? [PORTS.http + 1, PORTS.https] : [PORTS.http, PORTS.https + 1] }));
    return config;
  }
  const [base, ...groups] = variant.split(' -');
  if (!Object.hasOwn(PLACES, base)) fail(`no variant ${base} (bare, ${Object.keys(PLACES).join(', ')})`);
  kubenftFiles(dir, https, base, threads);
  const without = groups.map((name) => GROUPS[name] ?? fail(`no group ${name} (${Object.keys(GROUPS).join(', ')})`));
  if (sed) execFileSync('sed', ['-i', '-e', sed, config]);
  const lines = readFileSync(config, 'utf8').split('\n').filter((line) => !without.some((group) => group.test(line)));
  writeFileSync(config, lines.join('\n'));
  return config;
}

function fail(message: string): never {
  throw new Error(message);
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** HAProxy's user and system CPU time so far, in clock ticks (all its threads). */
function cpuTicks(pid: number): { user: number; system: number } {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ');
  return { user: Number(fields[11]), system: Number(fields[12]) };
}

interface Load { connections: number; threads: number; cpu: boolean }

async function measure(netns: string, variant: string, https: boolean, seconds: number, sed: string | undefined, { connections, threads, cpu }: Load): Promise<{ requests: number; instructions: number; userTicks: number; systemTicks: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'kubenft-cost-'));
  let haproxy: ChildProcess | undefined;
  try {
    const config = writeVariant(dir, variant, https, sed, threads);
    const out = join(dir, 'callgrind.out');
    const valgrind = cpu ? [] : ['valgrind', '--tool=callgrind', `--callgrind-out-file=${out}`];
    haproxy = spawn('ip', ['netns', 'exec', netns, ...valgrind, 'haproxy', '-db', '-f', config], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    haproxy.stderr!.on('data', (chunk: Buffer) => (stderr += chunk));
    const url = https ? `https://127.0.0.1:${PORTS.https}/` : `http://127.0.0.1:${PORTS.http}/`;
    const curl = () => execFileSync('ip', ['netns', 'exec', netns, 'curl', '-sk', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '5', '-H', `Host: ${HOST}`, url]).toString();
    for (let attempt = 0; ; attempt++) {
      try {
        if (curl() === '200') break;
      } catch {
        // not listening yet
      }
      if (attempt > 120) throw new Error(`${variant}: HAProxy under callgrind did not answer: ${stderr}`);
      await sleep(500);
    }
    // Warm: the connections' and the stick table's first requests are not the steady state.
    execFileSync('ip', ['netns', 'exec', netns, 'wrk', '-t1', `-c${connections}`, '-d2s', '-H', `Host: ${HOST}`, url]);
    const pid = haproxy.pid!;
    const control = (flag: string) => {
      if (!cpu) execFileSync('callgrind_control', [flag, String(pid)], { stdio: 'ignore' });
    };
    control('-z');
    const before = cpuTicks(pid);
    const output = execFileSync('ip', ['netns', 'exec', netns, 'wrk', `-t${cpu ? 2 : 1}`, `-c${connections}`, `-d${seconds}s`, '-H', `Host: ${HOST}`, url]).toString();
    const after = cpuTicks(pid);
    control('-d');
    const requests = Number(/(\d+) requests in/.exec(output)?.[1] ?? fail(`wrk: ${output}`));
    if (/Non-2xx/.test(output)) fail(`${variant}: wrk saw failures: ${output}`);
    const ticks = { userTicks: after.user - before.user, systemTicks: after.system - before.system };
    if (cpu) return { requests, instructions: NaN, ...ticks };
    const dumps = readdirSync(dir).filter((name) => name.startsWith('callgrind.out.')).sort();
    const dump = readFileSync(join(dir, dumps.at(-1) ?? fail(`${variant}: no callgrind dump`)), 'utf8');
    const instructions = Number(/^(?:summary|totals): (\d+)/m.exec(dump)?.[1] ?? fail(`${variant}: no totals in the dump`));
    return { requests, instructions, ...ticks };
  } finally {
    haproxy?.kill('SIGTERM');
    if (haproxy && haproxy.exitCode === null) await new Promise((resolve) => haproxy!.once('exit', resolve));
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const { values, positionals: variants } = parseArgs({
    allowPositionals: true, options: { https: { type: 'boolean', default: false }, gateway: { type: 'boolean', default: false }, seconds: { type: 'string', default: '5' }, connections: { type: 'string', default: '16' }, threads: { type: 'string', default: '1' }, cpu: { type: 'boolean', default: false }, sed: { type: 'string' } },
  });
  const https = values.https!;
  const seconds = Number(values.seconds);
  const load: Load = { connections: Number(values.connections), threads: Number(values.threads), cpu: values.cpu! };
  const tick = 1e6 / Number(execFileSync('getconf', ['CLK_TCK']).toString());
  const list = variants.length > 0 ? variants : values.gateway ? ['bare', ...Object.keys(PLACES)] : ['bare', 'kubenft', ...Object.keys(GROUPS).map((group) => `kubenft -${group}`)];
  const netns = `kubenft-cost-${process.pid}`;
  execFileSync('ip', ['netns', 'add', netns]);
  const backendDir = mkdtempSync(join(tmpdir(), 'kubenft-cost-backend-'));
  let backend: ChildProcess | undefined;
  try {
    execFileSync('ip', ['netns', 'exec', netns, 'ip', 'link', 'set', 'lo', 'up']);
    writeFileSync(join(backendDir, 'backend.cfg'), `global\n  nbthread 1\ndefaults\n  mode http\n  timeout client 60s\nfrontend echo\n  bind ${BACKEND}\n  http-request return status 200 content-type text/plain string "ok\\n"\n`);
    backend = spawn('ip', ['netns', 'exec', netns, 'haproxy', '-db', '-f', join(backendDir, 'backend.cfg')], { stdio: 'ignore' });
    const figure = load.cpu ? 'CPU µs per request (user + system)' : 'Ir per request';
    console.log(`| configuration (${https ? 'https' : 'http'}, ${load.connections} connections, ${load.threads} thread${load.threads === 1 ? '' : 's'}) | requests | ${figure} |\n|---|---|---|`);
    for (const variant of list) {
      const { requests, instructions, userTicks, systemTicks } = await measure(netns, variant, https, seconds, values.sed, load);
      const perRequest = (ticks: number) => ((ticks * tick) / requests).toFixed(1);
      console.log(`| ${variant} | ${requests} | ${load.cpu ? `${perRequest(userTicks + systemTicks)} (${perRequest(userTicks)} + ${perRequest(systemTicks)})` : Math.round(instructions / requests)} |`);
    }
  } finally {
    backend?.kill('SIGTERM');
    rmSync(backendDir, { recursive: true, force: true });
    execFileSync('ip', ['netns', 'del', netns]);
  }
}

await main();
