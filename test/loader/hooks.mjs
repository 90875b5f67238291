// Module hooks that run TypeScript tests and the src/ they import: esbuild strips the types, one file
// at a time, with an inline source map. Not ts-node (tap's default loads the TypeScript compiler into
// every test process, about a second each) and not tsx (its whitespace-minified output makes V8
// coverage count every line of an imported file as run: privatenumber/tsx#433).
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { transform } from 'esbuild';

const typescript = (url) => url.startsWith('file:') && url.endsWith('.ts');

// Sources import each other as `./x.js`, as compiled output does (NodeNext resolution).
export async function resolve(specifier, context, nextResolve) {
  try {
    return await nextResolve(specifier, context);
  } catch (error) {
    if (error?.code !== 'ERR_MODULE_NOT_FOUND' || !specifier.endsWith('.js') || !context.parentURL || !typescript(context.parentURL)) throw error;
    return nextResolve(`${specifier.slice(0, -'.js'.length)}.ts`, context);
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
