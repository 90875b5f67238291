// Coverage floors for the test suite. tap 21 can only demand 100% or nothing, and kubenft's kernel
// paths run in child processes inside namespaces; so the suite reports coverage and this check
// holds the totals at or above deliberate floors (set a little under what the suite reaches).
import { readFileSync } from 'node:fs';

const FLOORS = { lines: 94, statements: 94, functions: 94, branches: 87 };
const { total } = JSON.parse(readFileSync(new URL('../.tap/report/coverage-summary.json', import.meta.url), 'utf8'));
const below = Object.entries(FLOORS).filter(([metric, floor]) => total[metric].pct < floor);
for (const [metric, floor] of Object.entries(FLOORS)) console.log(`coverage ${metric}: ${total[metric].pct}% (floor ${floor}%)`);
if (below.length > 0) {
  console.error(`coverage below its floor: ${below.map(([metric, floor]) => `${metric} ${total[metric].pct}% < ${floor}%`).join(', ')}`);
  process.exit(1);
}
