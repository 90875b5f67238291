// The shape of src/ (docs/architecture.md), held by reading every import: imports flow one way,
// cli → agent → capabilities → the capability contract (capability.ts) → cluster → kernel; a
// capability is entered only through its index.ts, by the agent, the CLI or another capability;
// nothing imports in a cycle, in src/ or in scripts/. Type-only imports count: a cycle of types is
// still a tangle.
import t from 'tap';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import ts from 'typescript';

const ROOT = resolve(dirname(new URL(import.meta.url).pathname), '..');

/** The capability folders: each one of the product's capabilities, entered through its index.ts. */
const CAPABILITIES = ['services', 'socket-lb', 'dns', 'ingress', 'gateway'];
/** Who may import whom: a module imports its own area or a lower one, never a higher one. */
const LAYERS: Record<string, number> = {
  kernel: 0, cluster: 1, 'capability.ts': 2,
  ...Object.fromEntries(CAPABILITIES.map((name) => [name, 3])),
  agent: 4, cli: 5,
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
      if (CAPABILITIES.includes(targetArea) && target !== `src/${targetArea}/index.ts`) {
        problems.push(`${module} imports ${target}: outside ${targetArea}/, only its index.ts is imported`);
      } else if (CAPABILITIES.includes(targetArea) && CAPABILITIES.includes(area)) {
        // One capability may use another through its index.ts (the services view lists the socket LB's maps).
      } else if (LAYERS[targetArea] >= LAYERS[area]) {
        problems.push(`${module} imports ${target}: ${area} may not import ${targetArea} (imports flow cli → agent → capabilities → capability.ts → cluster → kernel)`);
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
});
