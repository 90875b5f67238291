// The kubenft CLI run from src/ through the tests' TypeScript loader (test/loader), for the unit
// tests that run the real CLI: `npm run test:unit` type-checks but builds nothing, and a dist/ left
// by an older build would test older code. Its coverage maps to src/ as the unit tests' own does
// (the bundle's would come through one source map for all of src/). The kernel tests run the build
// (test/lib/kubenft.ts).
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { projectRoot } from '../../src/kernel/native.js';

/** Node's arguments up to and including the CLI; the CLI's own follow. */
export const SOURCE_CLI = ['--import', pathToFileURL(join(projectRoot(), 'test/loader/register.mjs')).href, join(projectRoot(), 'src/cli/main.ts')];
