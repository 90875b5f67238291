import type { HeaderEdits, PathEdit, RouteActions } from './routes.js';

// What a route with actions (Gateway API filters) does to a request on its way, as the proxy's
// workers apply them: header edits both ways, a redirect's Location, a rewritten target. Pure, so
// that every dataplane's behaviour can be checked against the same expectations.

const DEFAULT_PORTS: Record<string, number> = { http: 80, https: 443 };

/** The path with a route's matched prefix (`match`, without its trailing '/') replaced, or the whole path. */
export function editedPath(path: string, edit: PathEdit, matchedPrefix: string): string {
  if (edit.type === 'ReplaceFullPath') return edit.value;
  const rest = path.slice(matchedPrefix.length);
  const edited = (rest.startsWith('/') ? edit.value.replace(/\/+$/, '') : edit.value) + rest;
  return edited === '' ? '/' : edited;
}

export interface RedirectSource {
  secure: boolean;
  /** The routed host (lower case, no port). */
  host: string;
  /** The port the request came in on (the listener's). */
  port: number;
  path: string;
  /** With its '?', or ''. */
  query: string;
}

/**
 * A RequestRedirect's Location, per the spec: the scheme, host, port and path it names replace the
 * request's; with no port, a new scheme's well-known port, else the listener's; a scheme's default
 * port is left out.
 */
export function redirectLocation(redirect: NonNullable<RouteActions['redirect']>, source: RedirectSource, matchedPrefix: string): string {
  const scheme = redirect.scheme ?? (source.secure ? 'https' : 'http');
  const port = redirect.port ?? (redirect.scheme ? DEFAULT_PORTS[scheme] : source.port);
  const host = redirect.hostname ?? source.host;
  const path = redirect.path ? editedPath(source.path, redirect.path, matchedPrefix) : source.path;
  return `${scheme}://${host}${port === DEFAULT_PORTS[scheme] ? '' : `:${port}`}${path}${source.query}`;
}

/** Edits the request's header fields for the backend (raw name, value pairs): remove, then set, then add. */
export function editRequestHeaders(headers: string[], edits: HeaderEdits): string[] {
  const dropped = new Set([...edits.remove.map((name) => name.toLowerCase()), ...edits.set.map(({ name }) => name.toLowerCase())]);
  const edited: string[] = [];
  for (let index = 0; index < headers.length; index += 2) if (!dropped.has(headers[index].toLowerCase())) edited.push(headers[index], headers[index + 1]);
  for (const { name, value } of edits.set) edited.push(name, value);
  for (const { name, value } of edits.add) edited.push(name, value);
  return edited;
}

/** Edits the backend's response header fields (undici's lower-case names) for the client. */
export function editResponseHeaders(headers: Record<string, string | string[] | undefined>, edits: HeaderEdits): void {
  for (const name of edits.remove) delete headers[name.toLowerCase()];
  for (const { name, value } of edits.set) headers[name.toLowerCase()] = value;
  for (const { name, value } of edits.add) {
    const key = name.toLowerCase();
    const current = headers[key];
    headers[key] = current === undefined ? value : [...(Array.isArray(current) ? current : [current]), value];
  }
}

/** The Host field's value replaced (the request keeps one Host). */
export function withHost(headers: string[], host: string): string[] {
  const edited: string[] = [];
  for (let index = 0; index < headers.length; index += 2) if (headers[index].toLowerCase() !== 'host') edited.push(headers[index], headers[index + 1]);
  edited.push('host', host);
  return edited;
}
