import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Logger } from 'pino';

// Gateway API's RegularExpression matches are read as ECMAScript (the built-in dataplane runs them
// so), but on HAProxy the Lua router compiles them with HAProxy's Regex class, that is HAProxy's
// regex_comp with the PCRE2 (and its JIT) it was built with. An expression PCRE2 refuses would
// never match there, silently. So each expression is compiled once by that same class, in a
// `haproxy -c` whose lua-load runs Regex.new on the router's exact form of it, and the answers are
// kept: the planner refuses a route whose expression HAProxy cannot compile.

/**
 * An expression as the Lua router compiles it (gateway-rules.ts's `expression`): a path
 * expression must match the whole path, a header's or query parameter's anywhere in the value.
 */
export const routerExpression = (source: string, wholeValue: boolean) => (wholeValue ? `^(?:${source})$` : source);

const MARK = 'kubenft-expression';

/** The lua-load body that compiles each expression (hex-encoded: no Lua quoting to get wrong) as the router does, case-sensitively. */
const checkLua = (forms: string[]) => `
local forms = { ${forms.map((form) => `"${Buffer.from(form).toString('hex')}"`).join(', ')} }
for index, hex in ipairs(forms) do
  local form = (hex:gsub("%x%x", function(pair) return string.char(tonumber(pair, 16)) end))
  local ok, result = Regex.new(form, true)
  io.stdout:write("${MARK} ", index, " ", ok and "ok" or ("error " .. (tostring(result):gsub("\\n", " "))), "\\n")
end
`;

/** PCRE2's words from HAProxy's "regex '...' is invalid (error=..., erroffset=N)". */
const pcreReason = (message: string) => {
  const found = /\(error=(.*), erroffset=(\d+)\)$/.exec(message);
  return found ? `${found[1]} (at offset ${found[2]} of ${JSON.stringify(message.slice(message.indexOf("'") + 1, message.lastIndexOf("' is invalid")))})` : message;
};

export class HaproxyExpressionCheck {
  /** Router form → PCRE2's reason for refusing it, or null when it compiles. */
  private verdicts = new Map<string, string | null>();

  constructor(private readonly haproxy: string, private readonly log: Logger) {}

  /**
   * Compiles the forms in use that were not seen before, in one `haproxy -c`, and forgets those no
   * longer in use. When HAProxy cannot be asked, the new forms stay unjudged (and are served as
   * before), the failure is logged, and the next call asks again.
   */
  async learn(inUse: Iterable<string>): Promise<void> {
    const current = new Set(inUse);
    for (const form of this.verdicts.keys()) if (!current.has(form)) this.verdicts.delete(form);
    const unknown = [...current].filter((form) => !this.verdicts.has(form));
    if (unknown.length === 0) return;
    const dir = mkdtempSync(join(tmpdir(), 'kubenft-expressions-'));
    try {
      writeFileSync(join(dir, 'check.lua'), checkLua(unknown));
      writeFileSync(join(dir, 'haproxy.cfg'), `global\n  lua-load ${join(dir, 'check.lua')}\n`);
      // No listener: -c exits 2 ("will not start") after the Lua has run; the lines are what count.
      const stdout = await new Promise<string>((resolve) => {
        execFile(this.haproxy, ['-c', '-f', join(dir, 'haproxy.cfg')], { timeout: 30_000, maxBuffer: 16 * 1024 * 1024 }, (_error, out) => resolve(String(out)));
      });
      const answers = new Map([...stdout.matchAll(new RegExp(`^${MARK} (\\d+) (ok|error (.*))$`, 'gm'))].map((line) => [Number(line[1]) - 1, line[3]]));
      if (answers.size !== unknown.length) {
        this.log.warn({ stdout: stdout.slice(0, 2000) }, `gateway: HAProxy did not judge ${unknown.length - answers.size} of ${unknown.length} regular expressions; they are served unjudged`);
      }
      for (const [index, reason] of answers) this.verdicts.set(unknown[index], reason === undefined ? null : pcreReason(reason));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  /** Why HAProxy cannot compile this router form, or undefined (it compiles, or was not judged). */
  problem(form: string): string | undefined {
    return this.verdicts.get(form) ?? undefined;
  }
}
