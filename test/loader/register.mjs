// tap's node-arg (--import): runs the tests' TypeScript through esbuild's transform, in the hooks below.
import { register } from 'node:module';

register('./hooks.mjs', import.meta.url);
