// Data from the API reaches external tools (iptables-restore, conntrack) only as argument vectors:
// no source file may start a shell. A static check, so that a new call site cannot slip in.
import t from 'tap';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

// exec/execSync from child_process (imported by name or called on the module), a spawn with
// `shell: true`, or an explicit `sh -c`. RegExp#exec is fine: it follows a dot after a pattern.
const SHELL_APIS = /import\s*\{[^}]*\bexec(Sync)?\b[^}]*\}\s*from\s*'node:child_process'|child_?[pP]rocess\.exec(Sync)?\s*\(|shell\s*:\s*true|['"`](?:\/bin\/)?(?:ba)?sh['"`]\s*,\s*\[\s*['"`]-c/;

function sources(directory: string): string[] {
  return readdirSync(directory).flatMap((entry) => {
    const path = join(directory, entry);
    return statSync(path).isDirectory() ? sources(path) : path.endsWith('.ts') ? [path] : [];
  });
}

t.test('no source file under src/ invokes a shell', async (t) => {
  const files = sources(new URL('../../src', import.meta.url).pathname);
  t.ok(files.length > 10, 'the sources were found');
  for (const file of files) t.notMatch(readFileSync(file, 'utf8'), SHELL_APIS, file);
});

t.test('the check itself catches a shell call', async (t) => {
  t.match("import { execSync } from 'node:child_process';", SHELL_APIS);
  t.match("childProcess.exec('iptables ' + name)", SHELL_APIS);
  t.notMatch('/line (\\d+)/.exec(stderr)', SHELL_APIS);
  t.match("spawn('sh', ['-c', command])", SHELL_APIS);
  t.match('spawn(cmd, { shell: true })', SHELL_APIS);
  t.notMatch("execFile('conntrack', args)", SHELL_APIS);
});
