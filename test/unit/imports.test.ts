// The shape of src/ (docs/architecture.md), held by reading every import: imports flow one way,
// cli → agent → capabilities → the capability contract (capability.ts) → how settings are defined
// (settings.ts) → cluster → kernel; a
// capability is entered only through its index.ts, by the agent, the CLI or another capability, or
// through its settings.ts (its settings, read before the agent's code loads: cli/main.ts's start path);
// nothing imports in a cycle, in src/ or in scripts/. Type-only imports count: a cycle of types is
// still a tangle.
import t from 'tap';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import ts from 'typescript';

const ROOT = resolve(dirname(new URL(import.meta.url).pathname), '../..');

/** The capability folders: each one of the product's capabilities, entered through its index.ts (or its settings.ts, for its settings). */
const CAPABILITIES = ['services', 'socket-lb', 'dns', 'ingress', 'gateway'];
/** A capability's entries: all of it, and the settings that the start path reads before the rest loads. */
const ENTRIES = ['index.ts', 'settings.ts'];
/** Who may import whom: a module imports its own area or a lower one, never a higher one. */
const LAYERS: Record<string, number> = {
  kernel: 0, cluster: 1, 'settings.ts': 2, 'capability.ts': 3,
  ...Object.fromEntries(CAPABILITIES.map((name) => [name, 4])),
  agent: 5, cli: 6,
};

type Graph = Map<string, string[]>;

function sources(directory: string): string[] {
  return readdirSync(directory).flatMap((entry) => {
    const path = join(directory, entry);
    return statSync(path).isDirectory() ? sources(path) : path.endsWith('.ts') ? [path] : [];
  });
}

/** Each module's relative imports (static, dynamic, type-only and re-exports), as repository paths. */
function importGraph(directories: string[]): Graph {
  const graph: Graph = new Map();
  for (const file of directories.flatMap((directory) => sources(join(ROOT, directory)))) {
    const { importedFiles } = ts.preProcessFile(readFileSync(file, 'utf8'), true, true);
    const targets = importedFiles.map((imported) => imported.fileName).filter((name) => name.startsWith('.')).map((name) => {
      const target = resolve(dirname(file), name).replace(/\.js$/, '.ts');
      if (!existsSync(target)) throw new Error(`${relative(ROOT, file)} imports ${name}, which does not exist`);
      return relative(ROOT, target);
    });
    graph.set(relative(ROOT, file), [...new Set(targets)]);
  }
  return graph;
}

/**
 * Module-level state, which src/ keeps only in instances of named classes (a module's state has an
 * owner that says what it holds): a top-level `let` or `var`, or a top-level constant made of an
 * empty mutable container (`new Map()`, `new Set()`, `[]`, or an object holding only such, one per key).
 * A container declared Readonly cannot change; one filled where it is made is a table, not state.
 */
export function moduleState(file: string, text: string): string[] {
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true);
  const found: string[] = [];
  const emptyContainers = (node: ts.Node): boolean => {
    if (ts.isNewExpression(node) && ts.isIdentifier(node.expression) && ['Map', 'Set', 'WeakMap', 'WeakSet'].includes(node.expression.text)) return (node.arguments?.length ?? 0) === 0;
    if (ts.isArrayLiteralExpression(node)) return node.elements.length === 0;
    // An object of nothing but empty containers is a cache per key; defaults with an empty list among their values are not.
    if (ts.isObjectLiteralExpression(node)) return node.properties.length > 0 && node.properties.every((property) => ts.isPropertyAssignment(property) && emptyContainers(property.initializer));
    if (ts.isAsExpression(node) || ts.isSatisfiesExpression(node) || ts.isParenthesizedExpression(node)) return emptyContainers(node.expression);
    return false;
  };
  for (const statement of source.statements) {
    if (!ts.isVariableStatement(statement)) continue;
    const isConst = (statement.declarationList.flags & ts.NodeFlags.Const) !== 0;
    for (const declaration of statement.declarationList.declarations) {
      const name = declaration.name.getText(source);
      const line = source.getLineAndCharacterOfPosition(declaration.getStart(source)).line + 1;
      if (!isConst) found.push(`${file}:${line} ${name}: a top-level let`);
      else if (declaration.initializer && emptyContainers(declaration.initializer) && !/^readonly|^Readonly/.test(declaration.type?.getText(source) ?? '')) {
        found.push(`${file}:${line} ${name}: a top-level mutable container`);
      }
    }
  }
  return found;
}

/**
 * The module-level state src/ keeps, each with why no instance owns it. Keep this short.
 */
const MODULE_STATE_ALLOWED: Record<string, string> = {
  'src/kernel/native.ts loaded': 'the addon is loaded (dlopen) once per process, on first use: every caller shares the one the process has',
  'src/cluster/yaml-schema.ts merges': 'js-yaml calls a tag\'s construct() with the text alone, no per-document context: the count only makes each merge mark unique in the process',
};

/** Every import cycle, as its modules (Tarjan's strongly connected components). */
export function cycles(graph: Graph): string[][] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  const visit = (node: string) => {
    index.set(node, index.size);
    low.set(node, index.get(node)!);
    stack.push(node);
    onStack.add(node);
    for (const next of graph.get(node) ?? []) {
      if (!index.has(next)) {
        visit(next);
        low.set(node, Math.min(low.get(node)!, low.get(next)!));
      } else if (onStack.has(next)) low.set(node, Math.min(low.get(node)!, index.get(next)!));
    }
    if (low.get(node) !== index.get(node)) return;
    const component: string[] = [];
    let member: string;
    do {
      member = stack.pop()!;
      onStack.delete(member);
      component.push(member);
    } while (member !== node);
    if (component.length > 1 || graph.get(node)?.includes(node)) found.push(component.sort());
  };
  for (const node of graph.keys()) if (!index.has(node)) visit(node);
  return found;
}

/** src/kernel/x.ts → kernel; src/capability.ts → capability.ts. */
const areaOf = (module: string) => module.split('/')[1];

/** What breaks the shape in src/'s imports, in words. */
export function layoutViolations(graph: Graph): string[] {
  const problems: string[] = [];
  for (const [module, targets] of graph) {
    const area = areaOf(module);
    if (!(area in LAYERS)) {
      problems.push(`${module} is in no area of the layout (${Object.keys(LAYERS).join(', ')})`);
      continue;
    }
    for (const target of targets) {
      const targetArea = areaOf(target);
      if (targetArea === area || !(targetArea in LAYERS)) continue;
      if (CAPABILITIES.includes(targetArea) && !ENTRIES.some((entry) => target === `src/${targetArea}/${entry}`)) {
        problems.push(`${module} imports ${target}: outside ${targetArea}/, only its index.ts (or settings.ts) is imported`);
      } else if (CAPABILITIES.includes(targetArea) && CAPABILITIES.includes(area)) {
        // One capability may use another through its index.ts (the services view lists the socket LB's maps).
      } else if (LAYERS[targetArea] >= LAYERS[area]) {
        problems.push(`${module} imports ${target}: ${area} may not import ${targetArea} (imports flow cli → agent → capabilities → capability.ts → settings.ts → cluster → kernel)`);
      }
    }
  }
  return problems;
}

t.test('no import cycle in src/ or scripts/', async (t) => {
  const graph = importGraph(['src', 'scripts']);
  t.ok(graph.size > 50, 'the modules were found');
  t.same(cycles(graph), []);
});

t.test('src/ imports flow one way, and capabilities meet only through their index.ts', async (t) => {
  const graph = importGraph(['src']);
  for (const capability of CAPABILITIES) t.ok(graph.has(`src/${capability}/index.ts`), `${capability}/ has its index.ts`);
  t.same(layoutViolations(graph), []);
});

t.test('src/ keeps no module-level state but in instances of named classes', async (t) => {
  const found = sources(join(ROOT, 'src')).flatMap((file) => moduleState(relative(ROOT, file), readFileSync(file, 'utf8')));
  const allowed = (entry: string) => Object.keys(MODULE_STATE_ALLOWED).some((key) => entry.startsWith(`${key.split(' ')[0]}:`) && entry.includes(` ${key.split(' ')[1]}:`));
  t.same(found.filter((entry) => !allowed(entry)), []);
  for (const key of Object.keys(MODULE_STATE_ALLOWED)) t.ok(found.some((entry) => entry.startsWith(`${key.split(' ')[0]}:`) && entry.includes(` ${key.split(' ')[1]}:`)), `${key} is still there: keep the allow-list honest`);
});

t.test('the module-state check catches each form and lets tables and owned state be', async (t) => {
  const check = (text: string) => moduleState('src/x.ts', text);
  t.match(check('let count = 0;'), [/count: a top-level let/]);
  t.match(check('var seen;'), [/seen: a top-level let/]);
  t.match(check('const pools = new Map<string, number>();'), [/pools: a top-level mutable container/]);
  t.match(check('const queue: string[] = [];'), [/queue: a top-level mutable container/]);
  t.match(check('const caches = { ip: new Map(), ip6: new Map() };'), [/caches: a top-level mutable container/]);
  t.same(check('const IDEMPOTENT = new Set([\'GET\', \'HEAD\']);'), [], 'a table filled where it is made');
  t.same(check('const NONE: ReadonlySet<string> = new Set();'), [], 'a Readonly container');
  t.same(check('const DEFAULTS = { name: \'x\', cidrs: [] };'), [], 'defaults with an empty list among them');
  t.same(check('class Owner { private readonly pools = new Map(); }\nconst OWNER = new Owner();'), [], 'state in a named class');
  t.same(check('function f() { let local = 0; const seen = new Set(); return [local, seen]; }'), [], 'a function\'s locals');
});

t.test('the checks themselves catch a cycle and each kind of violation', async (t) => {
  t.same(cycles(new Map([['a', ['b']], ['b', ['c']], ['c', ['a']], ['d', ['a']]])), [['a', 'b', 'c']]);
  t.same(cycles(new Map([['a', ['a']]])), [['a']]);
  t.same(cycles(new Map([['a', ['b']], ['b', []]])), []);
  const violations = (from: string, to: string) => layoutViolations(new Map([[from, [to]]]));
  t.match(violations('src/kernel/nftables.ts', 'src/services/index.ts'), [/kernel may not import services/]);
  t.match(violations('src/cluster/state.ts', 'src/dns/index.ts'), [/cluster may not import dns/]);
  t.match(violations('src/kernel/nftables.ts', 'src/cluster/model.ts'), [/kernel may not import cluster/]);
  t.match(violations('src/dns/server.ts', 'src/ingress/routes.ts'), [/only its index.ts/]);
  t.match(violations('src/agent/agent.ts', 'src/ingress/dataplane.ts'), [/only its index.ts/]);
  t.match(violations('src/dns/server.ts', 'src/agent/metrics.ts'), [/dns may not import agent/]);
  t.match(violations('src/agent/agent.ts', 'src/cli/options.ts'), [/agent may not import cli/]);
  t.match(violations('src/config.ts', 'src/kernel/native.ts'), [/in no area/]);
  t.same(violations('src/cli/main.ts', 'src/dns/index.ts'), []);
  t.same(violations('src/services/inspect/commands.ts', 'src/socket-lb/index.ts'), []);
  t.match(violations('src/services/inspect/commands.ts', 'src/socket-lb/maps.ts'), [/only its index.ts/]);
  t.match(violations('src/capability.ts', 'src/services/index.ts'), [/capability.ts may not import services/]);
  t.same(violations('src/dns/server.ts', 'src/dns/records.ts'), []);
  t.same(violations('src/dns/network.ts', 'src/kernel/nftables.ts'), []);
  t.same(violations('src/ingress/routes.ts', 'src/capability.ts'), []);
  t.same(violations('src/dns/flags.ts', 'src/settings.ts'), []);
  t.match(violations('src/settings.ts', 'src/capability.ts'), [/settings.ts may not import capability.ts/]);
});
