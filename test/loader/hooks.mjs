// Module hooks that run TypeScript tests and the src/ they import: esbuild strips the types, one file
// at a time, with an inline source map. Not ts-node (tap's default loads the TypeScript compiler into
// every test process, about a second each) and not tsx (its whitespace-minified output makes V8
// coverage count every line of an imported file as run: privatenumber/tsx#433).
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { transform } from 'esbuild';

// A URL may carry a query (tap's mockImport adds ?tapmock=…).
const typescript = (url) => url.startsWith('file:') && new URL(url).pathname.endsWith('.ts');

// Sources import each other as `./x.js`, as compiled output does (NodeNext resolution); so does a
// mockImport of a source, whose importer is tap's own module.
export async function resolve(specifier, context, nextResolve) {
  try {
    return await nextResolve(specifier, context);
  } catch (error) {
    const [path, query = ''] = specifier.split(/(?=\?)/);
    const mocked = query.includes('tapmock=');
    if (error?.code !== 'ERR_MODULE_NOT_FOUND' || !path.endsWith('.js') || !(mocked || (context.parentURL && typescript(context.parentURL)))) throw error;
    return nextResolve(`${path.slice(0, -'.js'.length)}.ts${query}`, context);
  }
}

export async function load(url, context, nextLoad) {
  if (!typescript(url)) return nextLoad(url, context);
  const path = fileURLToPath(url);
  const { code } = await transform(await readFile(path, 'utf8'), {
    loader: 'ts',
    format: 'esm',
    target: 'node20',
    sourcemap: 'inline',
    sourcefile: path,
  });
  return { format: 'module', source: code, shortCircuit: true };
}
