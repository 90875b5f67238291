// curl in a test topology's client namespace, every host name sent to one address: status, headers
// and body of each reply, and what the echo pod (test/fixtures/http-echo.mjs) saw of the request.
import type { Topology } from '../../scripts/lib/topology.js';

export interface Reply {
  status: number;
  body: string;
  headers: string;
  pod?: string;
  echo?: { pod: string; method: string; url: string; version: string; headers: string[]; size: number };
}

const MARK = '@@kubenft-status@@';

/** One curl (with `args`, URLs among them) whose connections all go to `address`; one reply per URL. */
export async function curlReplies(topology: Topology, address: string, args: string[]): Promise<Reply[]> {
  const result = await topology.exec(topology.client, [
    'curl', '-sS', '--max-time', '10', '--connect-to', `::${address}:`, '-k', '-D', '-', '-w', `\n${MARK}%{http_code}\n`, ...args,
  ]);
  const replies = result.stdout.split(`${MARK}`).slice(0, -1);
  const codes = [...result.stdout.matchAll(new RegExp(`${MARK}(\\d+)`, 'g'))].map((match) => Number(match[1]));
  return replies.map((text, index) => {
    const cleaned = text.replace(/^\d+\n/, '');
    const split = cleaned.indexOf('\r\n\r\n');
    const headers = split < 0 ? cleaned : cleaned.slice(0, split);
    const body = split < 0 ? '' : cleaned.slice(split + 4).replace(/\n$/, '');
    let echo;
    let pod;
    try {
      const parsed = JSON.parse(body);
      pod = parsed.pod;
      if (parsed.method) echo = parsed;
    } catch {
      // Not a pod's reply (404, 503, redirect): no pod.
    }
    return { status: codes[index], body, headers, pod, echo };
  });
}

/** A response header's value (the first). */
export const header = (reply: Reply, name: string) => new RegExp(`^${name}: (.*)\\r?$`, 'im').exec(reply.headers)?.[1];

/** The values of a request header as the echo pod received it, comma-joined. */
export function echoed(reply: Reply, name: string): string {
  const headers = reply.echo?.headers ?? [];
  const values = [];
  for (let index = 0; index < headers.length; index += 2) if (headers[index].toLowerCase() === name) values.push(headers[index + 1]);
  return values.join(', ');
}
