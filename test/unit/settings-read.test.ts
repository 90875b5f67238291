// No setting is parsed and then ignored. Every flag kubenft implements (and so its config field,
// which shares the flag's setting) is given a non-default value; the option fields that change are
// then looked up in the TypeScript program: each must be read somewhere in src/ outside
// the files that define settings (cli/options.ts, settings.ts and each capability's flags.ts, which
// only parse, validate and write --write-config-to). A read that only hands
// the value on into another object's property counts only if that property is read in turn
// (`{ contentType: options.kubeApiContentType }` into an option nobody reads is not a use), and a
// sub-object handed whole to a typed parameter (options.dns to DnsOptions) is followed into that
// type, and so is the whole options object handed to a parameter of another type (the agent's
// settings, then the Service proxy's). A new flag fails here until it has a sample below and a
// consumer in src/.
//
// The program read here is the one `tsc -p tsconfig.json` builds, and parsing it (the Kubernetes
// client's declarations are most of its files) is most of what either costs; so this file is also
// the unit suite's type check, and `npm run test:unit` runs no tsc of its own.
import t from 'tap';
import ts from 'typescript';
import { join, relative } from 'node:path';
import { projectRoot } from '../../src/kernel/native.js';
import { parseOptions, settingNames, type AgentOptions } from '../../src/cli/options.js';

/** A non-default value for every flag, with what it needs beside it to parse. */
const SAMPLES: Record<string, { args: string[]; context?: string[] }> = {
  manifests: { args: ['--manifests', 'm.yaml'] },
  once: { args: ['--once'] },
  json: { args: ['--json'], context: ['render'] },
  from: { args: ['--from', '10.0.0.9'] },
  to: { args: ['--to', '10.0.0.1:80'] },
  proto: { args: ['--proto', 'udp'] },
  via: { args: ['--via', 'output'] },
  'iptables-backend': { args: ['--iptables-backend', 'legacy'] },
  'service-tables': { args: ['--service-tables', '4'] },
  ingress: { args: ['--ingress'] },
  'ingress-class': { args: ['--ingress-class', 'other'] },
  'ingress-http-address': { args: ['--ingress-http-address', '127.0.0.1:8080'] },
  'ingress-https-address': { args: ['--ingress-https-address', '127.0.0.1:8443'] },
  'ingress-default-certificate': { args: ['--ingress-default-certificate', 'ns/cert'] },
  'ingress-service': { args: ['--ingress-service', 'ns/lb'], context: ['--ingress'] },
  'ingress-max-body-size': { args: ['--ingress-max-body-size', '1000'] },
  'ingress-max-header-size': { args: ['--ingress-max-header-size', '2048'] },
  'ingress-client-timeout': { args: ['--ingress-client-timeout', '5s'] },
  'ingress-backend-timeout': { args: ['--ingress-backend-timeout', '5s'] },
  'ingress-connect-timeout': { args: ['--ingress-connect-timeout', '2s'] },
  'ingress-status-address': { args: ['--ingress-status-address', '192.0.2.1'] },
  'ingress-workers': { args: ['--ingress-workers', '2'] },
  'ingress-dataplane': { args: ['--ingress', '--ingress-dataplane', 'haproxy'] },
  'ingress-haproxy-dir': { args: ['--ingress-haproxy-dir', '/run/kubenft-test-haproxy'] },
  gateway: { args: ['--gateway'] },
  'gateway-class': { args: ['--gateway-class', 'other'] },
  'gateway-http-address': { args: ['--gateway-http-address', '10.0.0.1:8080'] },
  'gateway-https-address': { args: ['--gateway-https-address', '10.0.0.1:8443'] },
  'gateway-workers': { args: ['--gateway-workers', '2'] },
  'gateway-dataplane': { args: ['--gateway', '--gateway-dataplane', 'haproxy'] },
  'gateway-haproxy-dir': { args: ['--gateway-haproxy-dir', '/run/kubenft-test-gateway-haproxy'] },
  url: { args: ['--url', 'http://example.com/'], context: ['explain', '--gateway', '--from', '10.0.0.9', '--to', '10.0.0.1:80'] },
  'service-cidr': { args: ['--service-cidr', '10.96.0.0/12'] },
  'cluster-dns': { args: ['--cluster-dns', '169.254.20.10'] },
  'cluster-domain': { args: ['--cluster-domain', 'example.org'] },
  'dns-upstream': { args: ['--dns-upstream', '192.0.2.53'] },
  'dns-ttl': { args: ['--dns-ttl', '30'] },
  'dns-pods': { args: ['--dns-pods', 'disabled'] },
  'dns-health-address': { args: ['--dns-health-address', '127.0.0.1:8081'], context: ['--cluster-dns', '169.254.20.10'] },
  'dns-ready-address': { args: ['--dns-ready-address', '127.0.0.1:8182'], context: ['--cluster-dns', '169.254.20.10'] },
  'socket-lb': { args: ['--socket-lb'] },
  'socket-lb-cgroup': { args: ['--socket-lb-cgroup', '/sys/fs/cgroup/x'] },
  'socket-lb-host-only': { args: ['--socket-lb-host-only'] },
  'socket-lb-pin-dir': { args: ['--socket-lb-pin-dir', '/sys/fs/bpf/other'] },
  config: { args: ['--config', 'kp.yaml'] },
  'write-config-to': { args: ['--write-config-to', 'out.yaml'] },
  cleanup: { args: ['--cleanup'] },
  'init-only': { args: ['--init-only'] },
  'proxy-mode': { args: ['--proxy-mode', 'iptables'] },
  kubeconfig: { args: ['--kubeconfig', 'k.conf'] },
  master: { args: ['--master', 'https://api:6443'] },
  'kube-api-qps': { args: ['--kube-api-qps', '20'] },
  'kube-api-burst': { args: ['--kube-api-burst', '40'] },
  'hostname-override': { args: ['--hostname-override', 'node-9'] },
  'bind-address': { args: ['--bind-address', '192.0.2.7'] },
  'healthz-bind-address': { args: ['--healthz-bind-address', '127.0.0.1:1'] },
  'metrics-bind-address': { args: ['--metrics-bind-address', '127.0.0.1:2'] },
  'feature-gates': { args: ['--feature-gates', 'InOrderInformers=false'] },
  'masquerade-all': { args: ['--masquerade-all'] },
  'iptables-masquerade-bit': { args: ['--iptables-masquerade-bit', '3'] },
  'iptables-sync-period': { args: ['--iptables-sync-period', '1m'] },
  'iptables-min-sync-period': { args: ['--iptables-min-sync-period', '2s'] },
  'detect-local-mode': { args: ['--detect-local-mode', 'NodeCIDR'] },
  'cluster-cidr': { args: ['--cluster-cidr', '10.244.0.0/16'] },
  'nodeport-addresses': { args: ['--nodeport-addresses', 'localhost'] },
  'oom-score-adj': { args: ['--oom-score-adj', '5'] },
  'conntrack-max-per-core': { args: ['--conntrack-max-per-core', '7'] },
  'conntrack-min': { args: ['--conntrack-min', '7'] },
  'conntrack-tcp-timeout-established': { args: ['--conntrack-tcp-timeout-established', '1h'] },
  'conntrack-tcp-timeout-close-wait': { args: ['--conntrack-tcp-timeout-close-wait', '1m'] },
  'conntrack-tcp-be-liberal': { args: ['--conntrack-tcp-be-liberal'] },
  'conntrack-udp-timeout': { args: ['--conntrack-udp-timeout', '1m'] },
  'conntrack-udp-timeout-stream': { args: ['--conntrack-udp-timeout-stream', '1m'] },
  v: { args: ['-v', '4'] },
  'logging-format': { args: ['--logging-format', 'json'] },
};

/**
 * Fields read only where the test does not look, each with why that is their use. Keep this short:
 * an entry here is a setting the test cannot vouch for.
 */
const READ_ELSEWHERE: Record<string, string> = {
  configFile: 'parseOptions itself reads the file it names',
};

const readFile = () => 'apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\n';
const parse = (argv: string[]) => parseOptions(argv, readFile);

/** Paths of the leaves (primitives, arrays, records of gates) that differ between two option sets. */
function changedLeaves(before: unknown, after: unknown, path: string[] = []): string[][] {
  const isObject = (value: unknown) => typeof value === 'object' && value !== null && !Array.isArray(value);
  if (isObject(before) && isObject(after) && path.join('.') !== 'featureGates') {
    const keys = new Set([...Object.keys(before as object), ...Object.keys(after as object)]);
    return [...keys].flatMap((key) => changedLeaves((before as Record<string, unknown>)[key], (after as Record<string, unknown>)[key], [...path, key]));
  }
  return JSON.stringify(before) === JSON.stringify(after) ? [] : [path];
}

// ---- the program ---------------------------------------------------------------------------------

const root = projectRoot();
const formatHost: ts.FormatDiagnosticsHost = { getCanonicalFileName: (name) => name, getCurrentDirectory: () => root, getNewLine: () => '\n' };
const config = ts.getParsedCommandLineOfConfigFile(join(root, 'tsconfig.json'), {}, {
  ...ts.sys,
  onUnRecoverableConfigFileDiagnostic: (diagnostic) => {
    throw new Error(ts.formatDiagnostics([diagnostic], formatHost));
  },
})!;
const program = ts.createProgram({ rootNames: config.fileNames, options: config.options, configFileParsingDiagnostics: config.errors });
const checker = program.getTypeChecker();
/** Where settings are defined: a read there (a check of one flag against another) is not a use. */
const isSettingsFile = (path: string) => path === 'src/cli/options.ts' || path === 'src/settings.ts' || /^src\/[^/]+\/flags\.ts$/.test(path);
const isConsumerFile = (file: ts.SourceFile) => {
  const path = relative(root, file.fileName);
  return path.startsWith('src/') && !isSettingsFile(path);
};
const declarationKeys = (symbol: ts.Symbol) => (symbol.declarations ?? []).map((declaration) => `${declaration.getSourceFile().fileName}:${declaration.pos}`);
const inProject = (symbol: ts.Symbol) => (symbol.declarations ?? []).some((declaration) => relative(root, declaration.getSourceFile().fileName).startsWith('src/'));

/** Every read of a property in the consumer files, by the property's declarations. */
const reads = new Map<string, ts.Node[]>();
const record = (symbol: ts.Symbol | undefined, site: ts.Node) => {
  if (!symbol) return;
  for (const key of declarationKeys(symbol)) reads.set(key, [...(reads.get(key) ?? []), site]);
};
const isAssignmentTarget = (node: ts.Node) => {
  const { parent } = node;
  if (ts.isBinaryExpression(parent) && parent.left === node) return parent.operatorToken.kind >= ts.SyntaxKind.FirstAssignment && parent.operatorToken.kind <= ts.SyntaxKind.LastAssignment;
  return ts.isDeleteExpression(parent) || ((ts.isPrefixUnaryExpression(parent) || ts.isPostfixUnaryExpression(parent)) && [ts.SyntaxKind.PlusPlusToken, ts.SyntaxKind.MinusMinusToken].includes(parent.operator));
};
/** The declared types a value of a declared type is handed to whole (as an argument or a property): AgentOptions → AgentSettings → ServicesSettings. */
const handedOn = new Map<ts.Type, Set<ts.Type>>();
const isDeclaredObject = (type: ts.Type) => (type.flags & ts.TypeFlags.Object) !== 0 && type.symbol !== undefined && inProject(type.symbol);
for (const file of program.getSourceFiles().filter(isConsumerFile)) {
  const visit = (node: ts.Node): void => {
    if (ts.isPropertyAccessExpression(node) && !isAssignmentTarget(node)) record(checker.getSymbolAtLocation(node.name), node);
    if (ts.isExpression(node) && !ts.isObjectLiteralExpression(node)) {
      // The type of every expression would cost a second of checking: only those handed on need it.
      const target = handedTo(node);
      const type = target && checker.getTypeAtLocation(node);
      if (type && target !== type && isDeclaredObject(type)) handedOn.set(type, (handedOn.get(type) ?? new Set()).add(target));
    }
    if (ts.isBindingElement(node) && ts.isObjectBindingPattern(node.parent)) {
      const name = node.propertyName ?? node.name;
      if (ts.isIdentifier(name)) record(checker.getTypeAtLocation(node.parent).getProperty(name.text), node);
    }
    ts.forEachChild(node, visit);
  };
  visit(file);
}

function unwrap(node: ts.Node): ts.Node {
  let current = node;
  while (ts.isParenthesizedExpression(current.parent) || ts.isNonNullExpression(current.parent) || ts.isAsExpression(current.parent)) current = current.parent;
  return current;
}

/** Where a value read at `site` goes when it is handed on as it is: the property or parameter type it lands in. */
function handedTo(site: ts.Node): ts.Type | undefined {
  const expression = unwrap(site);
  const { parent } = expression;
  const isHandedOn = (ts.isPropertyAssignment(parent) && parent.initializer === expression) || ((ts.isCallExpression(parent) || ts.isNewExpression(parent)) && parent.arguments?.includes(expression as ts.Expression));
  return isHandedOn && ts.isExpression(expression) ? checker.getContextualType(expression) : undefined;
}

/** Whether a read of the property with these declarations leads anywhere. */
function consumed(symbol: ts.Symbol, seen = new Set<string>()): boolean {
  const keys = declarationKeys(symbol).filter((key) => !seen.has(key));
  if (keys.length === 0) return false;
  for (const key of keys) seen.add(key);
  const sites = keys.flatMap((key) => reads.get(key) ?? []);
  return sites.some((site) => {
    if (ts.isBindingElement(site)) return true;
    const expression = unwrap(site);
    const { parent } = expression;
    if (!(ts.isPropertyAssignment(parent) && parent.initializer === expression)) return true;
    // Handed on into another object's property: a use only if that property is used.
    const target = checker.getContextualType(parent.parent as ts.ObjectLiteralExpression)?.getProperty(parent.name.getText());
    return !target || !inProject(target) || consumed(target, seen);
  });
}

/** The option field at `path`, followed into the types it and its ancestors are handed to whole. */
function leafConsumed(type: ts.Type, path: string[], seen = new Set<ts.Type>()): boolean {
  if (seen.has(type)) return false;
  seen.add(type);
  if ([...handedOn.get(type) ?? []].some((target) => leafConsumed(target, path, seen))) return true;
  const symbol = checker.getNonNullableType(type).getProperty(path[0]);
  if (!symbol) return false;
  if (path.length === 1) return consumed(symbol);
  const fieldType = checker.getTypeOfSymbol(symbol);
  if (leafConsumed(fieldType, path.slice(1))) return true;
  // The sub-object handed on to a parameter or property of another declared type: look there.
  const sites = declarationKeys(symbol).flatMap((key) => reads.get(key) ?? []);
  return sites.some((site) => {
    const target = handedTo(site);
    return target !== undefined && target !== fieldType && leafConsumed(target, path.slice(1));
  });
}

const optionsFile = program.getSourceFile(join(root, 'src/cli/options.ts'))!;
let agentOptions: ts.Type | undefined;
ts.forEachChild(optionsFile, (node) => {
  if (ts.isInterfaceDeclaration(node) && node.name.text === 'AgentOptions') agentOptions = checker.getTypeAtLocation(node.name);
});

t.test('the program type-checks: tsc -p tsconfig.json would report nothing', async (t) => {
  t.equal(ts.formatDiagnostics(ts.getPreEmitDiagnostics(program), formatHost), '', 'no diagnostic');
});

t.test('every flag has a sample value here, and the sample changes an option', async (t) => {
  for (const { flag } of settingNames()) {
    if (!flag) continue;
    const sample = SAMPLES[flag];
    if (!t.ok(sample, `--${flag} has a sample in test/unit/settings-read.test.ts`)) continue;
    const leaves = changedLeaves(parse(sample.context ?? []), parse([...(sample.context ?? []), ...sample.args]));
    t.not(leaves.length, 0, `--${flag} ${sample.args.slice(1).join(' ')} changes an option`);
  }
  t.ok(settingNames().every((setting) => setting.flag), 'every config field shares its setting with a flag, whose sample covers it');
  t.same(Object.keys(SAMPLES).filter((flag) => !settingNames().some((setting) => setting.flag === flag)), [], 'no sample for a flag that is gone');
});

t.test('every option a flag sets is read outside options.ts', async (t) => {
  t.ok(agentOptions, 'AgentOptions is found');
  const fields = new Map<string, string>();
  for (const { flag } of settingNames()) {
    const sample = flag && SAMPLES[flag];
    if (!sample) continue;
    for (const path of changedLeaves(parse(sample.context ?? []), parse([...(sample.context ?? []), ...sample.args]))) fields.set(path.join('.'), flag);
  }
  t.ok(fields.size > 60, `${fields.size} option fields are set by flags`);
  for (const [path, flag] of fields) {
    if (READ_ELSEWHERE[path]) continue;
    t.ok(leafConsumed(agentOptions!, path.split('.')), `${path} (--${flag}) is read by a consumer`);
  }
});

t.test('the exceptions are real: what they name is read nowhere in src/ but options.ts', async (t) => {
  for (const path of Object.keys(READ_ELSEWHERE)) t.notOk(leafConsumed(agentOptions!, path.split('.')), `${path} is indeed read only elsewhere: keep its entry honest`);
});
