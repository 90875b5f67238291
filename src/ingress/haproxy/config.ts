import { join } from 'node:path';
import type { HostRoute, RouteTable } from '../routes.js';
import { GATEWAY_EDITS, GATEWAY_MAPS, GATEWAY_ROUTING, gatewayReplyLines, timeoutLines } from './gateway-rules.js';
import { requestCounterRules, requestTableLines } from './request-counters.js';

// HAProxy's configuration for the route plan, pure. It is written once (and again only for what
// the runtime API cannot do: more backend slots, a restart), and shaped so that every change of
// the plan is a runtime API command: routing is four maps, a Service port is a backend slot (a
// pre-made backend, assigned to it by the maps) holding its endpoints as servers, and certificates
// are crt-list entries, one per TLS host.
//
// Per request: the Host (lower case, no port) picks the rule host, exact (hosts.map), else by its
// first label's wildcard (wildcards.map, keyed '.foo.com'), else '*' (rules with no host); then one
// lookup in routes.map picks the route (map_beg: the longest key that begins the string wins). The
// string is '@' + rule host + path + '/?' ('?' is in no path); a Prefix route's key is '@' + rule
// host + its path + '/' (so '/foo/' begins the strings of '/foo', '/foo/bar', not '/foobar'), an
// Exact route's '@' + rule host + its path + '/?' (only its own path's string, and longer than a
// Prefix key of the same path: Exact wins the tie, the planner's order), and the default backend's
// is '@', the shortest, which begins every string.

export const MAPS = ['hosts', 'wildcards', 'routes', 'redirect', ...GATEWAY_MAPS] as const;
export type MapName = (typeof MAPS)[number];

/** The rule host's key for rules without host: no DNS name is '*'. */
export const ANY_HOST = '*';
/** routes.map's key of the default backend, and the start of every other key. */
export const DEFAULT_ROUTE_KEY = '@';
/** What ends routes.map's lookup string and an Exact route's key. */
const PATH_END = '/?';
/** routes.map's lookup string of a request, and so an Exact route's key. */
const routeLookup = (ruleHost: string, path: string) => `${DEFAULT_ROUTE_KEY}${ruleHost}${path}${PATH_END}`;
/** The crt-list line of the default certificate names a server that never is one, so its own names pick it for no SNI: it is served for the names no entry has. */
export const DEFAULT_CERTIFICATE_FILTER = 'default-certificate.kubenft.invalid';

export interface HaproxyLayout {
  /** The directory HAProxy's files and sockets are in. */
  dir: string;
  config: string;
  masterSocket: string;
  adminSocket: string;
  pidFile: string;
  log: string;
  crtList: string;
  defaultCertificate: string;
  luaScript: string;
  /** The duration buckets' ranges (request-counters.ts), written with the configuration. */
  durationsMap: string;
  map(name: MapName): string;
  certificate(sniName: string): string;
  errorFile(status: number): string;
}

export function haproxyLayout(dir: string): HaproxyLayout {
  return {
    dir, config: join(dir, 'haproxy.cfg'), masterSocket: join(dir, 'master.sock'), adminSocket: join(dir, 'admin.sock'),
    pidFile: join(dir, 'haproxy.pid'), log: join(dir, 'haproxy.log'), crtList: join(dir, 'certificates.crtlist'),
    defaultCertificate: join(dir, 'certs', 'default.pem'), luaScript: join(dir, 'kubenft.lua'), durationsMap: join(dir, 'durations.map'),
    map: (name) => join(dir, `${name}.map`),
    errorFile: (status) => join(dir, 'errors', `${status}.http`),
    // SNI names are DNS names: a file name once '*' is spelled out.
    certificate: (sniName) => join(dir, 'certs', `${sniName.replace('*', '_wildcard_')}.pem`),
  };
}

export interface HaproxySettings {
  httpAddress?: { host: string; port: number };
  httpsAddress?: { host: string; port: number };
  maxBodyBytes: number;
  maxHeaderBytes: number;
  clientTimeoutMs: number;
  backendTimeoutMs: number;
  connectTimeoutMs: number;
  threads: number;
  /** Gateway API's routes (gateway-rules.ts): its maps and Lua router instead of Ingress's maps. */
  gatewayRules?: boolean;
}

/** One entry of one map. */
export interface MapEntry {
  map: MapName;
  key: string;
  value: string;
}

/** A map entry's identity: a map holds one value per key here. */
export const entryId = (entry: { map: MapName; key: string }) => `${entry.map} ${entry.key}`;

/** The rule host's key of a host of the table ('' for rules without host, '*.foo.com' for a wildcard). */
export const ruleHostKey = (host: string) => (host === '' ? ANY_HOST : host);

/**
 * The map entries of one rule host's routes, each path's value its target: the backend's slot and
 * the route's number (routeTarget), which the request log names. `host` is as in the table's hosts
 * ('foo.com'), wildcards ('*.' + the suffix) or '' (anyHost).
 */
export function hostEntries(host: string, route: HostRoute, targetOf: (route: { backend: string; ingress: string; path: string }) => string): MapEntry[] {
  const ruleHost = ruleHostKey(host);
  const entries: MapEntry[] = [];
  if (host.startsWith('*.')) entries.push({ map: 'wildcards', key: host.slice(1), value: ruleHost });
  else if (host !== '') entries.push({ map: 'hosts', key: host, value: ruleHost });
  if (route.redirectToHttps) entries.push({ map: 'redirect', key: ruleHost, value: '1' });
  // The planner's paths are unique per type and match: each is one key.
  for (const path of route.paths) {
    const key = path.type === 'Exact' ? routeLookup(ruleHost, path.match) : `${DEFAULT_ROUTE_KEY}${ruleHost}${path.match}/`;
    entries.push({ map: 'routes', key, value: targetOf(path) });
  }
  return entries;
}

/** Every rule host of a table with its routes, as hostEntries names them. */
export function tableHosts(table: RouteTable): [string, HostRoute][] {
  return [
    ...Object.entries(table.hosts),
    ...Object.entries(table.wildcards).map(([suffix, route]): [string, HostRoute] => [`*.${suffix}`, route]),
    ...(table.anyHost ? [['', table.anyHost] as [string, HostRoute]] : []),
  ];
}

/** A server's name for an endpoint ('10.0.0.1:80', '[fd00::1]:80', which is also how HAProxy reads its address): names take letters, digits, '.', '_' and '-'. */
export const serverName = (endpoint: string) => `e_${endpoint.replace(/[^A-Za-z0-9.-]/g, '_')}`;

/** The certificate's SNI filter for a TLS host of the table (tlsHosts: the name; tlsWildcards: '*.' + the suffix). */
export const crtListLine = (file: string, sniName: string) => `${file} [alpn h2,http/1.1] ${sniName}`;

const seconds = (ms: number) => `${Math.max(1, Math.ceil(ms))}ms`;
/** A reply's body as the built-in's: its status line's words and a line feed. */
const replyBody = (status: number, text: string) => `${status} ${text}\n`;
/** A reply HAProxy makes itself (in its quoted strings a line feed is \n). */
const plainReply = (status: number, text: string) => `return status ${status} content-type "text/plain; charset=utf-8" string "${replyBody(status, text).replace('\n', '\\n')}"`;
const address = ({ host, port }: { host: string; port: number }) => (host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`);

/** The replies HAProxy makes itself, worded as the built-in proxy's (as errorfiles: they replace the parser's too; 2.6 makes no 431 of its own: see plainReply). */
const OWN_REPLIES: [number, string][] = [
  [400, 'Bad Request'], [403, 'Forbidden'], [405, 'Method Not Allowed'], [408, 'Request Timeout'], [413, 'Content Too Large'],
  [500, 'Internal Server Error'], [501, 'Not Implemented'], [502, 'Bad Gateway'], [503, 'Service Unavailable'], [504, 'Gateway Timeout'],
];

/** A path map's value, txn.target: where a route sends a request (a slot) and which route it is (for the request metrics), read with field() where used (a rule setting each aside costs ~300 instructions per request). */
export const routeTarget = (slot: string, route: number) => `${slot}/${route}`;

/** The ring HAProxy logs the requests it answers itself into (request-counters.ts counts the others); the agent reads it over the stats socket (show events). */
export const REQUEST_RING = 'kubenft-requests';
/** One request's log line: the route's number ('-' without one), the rule host, status, the times to its response header (%TR %Tw %Tc %Tr, -1 when a stage did not happen). */
export const REQUEST_LOG_FORMAT = '%[var(txn.target),field(2,/)] %[var(txn.rulehost)] %ST %TR %Tw %Tc %Tr';

/** A backend slot's name. */
export const slotName = (index: number) => `slot_${index}`;
export const isSlotName = (name: string) => /^slot_\d+$/.test(name);

/** Ingress's routing: the rule host, then its route in routes.map (see the top of this file). */
function ingressRouting(map: (name: MapName) => string): string[] {
  return [
    `  http-request set-var(txn.rulehost) var(txn.host),map_str(${map('hosts')})`,
    // No wildcard either: the rules with no host (the map's default value).
    `  http-request set-var(txn.rulehost) var(txn.host),regsub(^[^.]+,),map_str(${map('wildcards')},${ANY_HOST}) unless { var(txn.rulehost) -m found }`,
    `  http-request set-var(txn.target) str(${DEFAULT_ROUTE_KEY}),concat(,txn.rulehost,),concat(,txn.path,${PATH_END}),map_beg(${map('routes')})`,
    // One rule, run only for a path with an encoded slash (ingressLua): each rule costs ~300
    // instructions per request even when its condition is false.
    '  http-request lua.kubenft-encoded-slash if { var(txn.path) -m sub %2F }',
    `  http-request ${plainReply(404, 'Not Found')} unless { var(txn.target) -m found }`,
    `  http-request redirect location https://%[var(txn.host)]%[pathq] code 308 if !{ ssl_fc } { var(txn.rulehost),map_str(${map('redirect')}) -m found }`,
  ];
}

/**
 * The whole configuration: the slots (0 … slots-1, those in use with their servers) and the files
 * the maps and certificates are read from, which `files` writes beside it; `timeouts`: the Gateway
 * rules' timeouts (gateway-rules.ts).
 */
export function renderConfig(layout: HaproxyLayout, settings: HaproxySettings, slots: number, servers: Map<string, string[]>, timeouts: ReadonlySet<number> = new Set()): string {
  const map = (name: MapName) => layout.map(name);
  // A request's header block must fit in a buffer with room for the rewrites (the forwarded headers).
  const bufferSize = Math.max(16_384, settings.maxHeaderBytes + 4096);
  const counters = requestCounterRules(layout.durationsMap);
  const lines = [
    '# Written by kubenft (--ingress-dataplane=haproxy); changed through the runtime API, rewritten on reload.',
    'global',
    `  stats socket ${layout.adminSocket} mode 600 level admin expose-fd listeners`,
    `  nbthread ${settings.threads}`,
    `  tune.bufsize ${bufferSize}`,
    '  tune.maxrewrite 2048',
    '  hard-stop-after 5m',
    `  lua-load ${layout.luaScript}`,
    '',
    `ring ${REQUEST_RING}`,
    '  format raw',
    '  maxlen 256',
    // Some seconds of requests at full speed, should the agent read late.
    '  size 8388608',
    '',
    'defaults',
    '  mode http',
    '  option http-keep-alive',
    `  timeout client ${seconds(settings.clientTimeoutMs)}`,
    `  timeout http-request ${seconds(settings.clientTimeoutMs)}`,
    `  timeout http-keep-alive ${seconds(settings.clientTimeoutMs)}`,
    `  timeout server ${seconds(settings.backendTimeoutMs)}`,
    `  timeout tunnel ${seconds(settings.backendTimeoutMs)}`,
    `  timeout connect ${seconds(settings.connectTimeoutMs)}`,
    '  retries 2',
    '  option redispatch 1',
    // Failed connects only: any other retry-on condition (an L7 retry) keeps a copy of every request,
    // a third of the instructions HAProxy spent on one (callgrind: docs/performance.md).
    '  retry-on conn-failure',
    ...OWN_REPLIES.map(([status]) => `  errorfile ${status} ${layout.errorFile(status)}`),
    '',
    'frontend ingress',
    ...(settings.httpAddress ? [`  bind ${address(settings.httpAddress)}`] : []),
    ...(settings.httpsAddress ? [`  bind ${address(settings.httpsAddress)} ssl crt-list ${layout.crtList} alpn h2,http/1.1`] : []),
    `  http-request ${plainReply(431, 'Request Header Fields Too Large')} if { req.hdrs,length gt ${settings.maxHeaderBytes} }`,
    `  http-request deny deny_status 413 if { req.hdr(content-length) -m int gt ${settings.maxBodyBytes} }`,
    // CONNECT and the asterisk-form route nowhere (HAProxy's parser refuses CONNECT with a path itself).
    '  http-request deny deny_status 400 if METH_CONNECT || { url * }',
    // The path as nginx routes it (src/ingress/request-path.ts), by the Lua action (SHARED_LUA) run
    // only for a path that can need it: one rule in the common case where normalize-uri's steps
    // were eight, each ~300 instructions when it has nothing to do (callgrind: docs/performance.md).
    // The condition sets txn.path aside as it reads the path (a rule of its own costs as much), and
    // the action sets it again to the path it makes.
    '  http-request lua.kubenft-normal-path if { path,set-var(txn.path) -m sub % // /. }',
    // The Gateway's router reads the query here (its query matches, its redirects' Location).
    ...(settings.gatewayRules ? ['  http-request set-var(txn.query) query'] : []),
    // RFC 9110 §7.6.1: the fields the Connection header names are hop-by-hop too (HAProxy drops only its own).
    '  http-request lua.kubenft-hop-by-hop if { req.hdr(connection) -m reg -i ^(?!(?:close|keep-alive|upgrade)$) }',
    '  http-request set-var(txn.host) req.hdr(host),lower,regsub(:[0-9]*$,)',
    ...(settings.gatewayRules ? GATEWAY_ROUTING(map, plainReply) : ingressRouting(map)),
    // The proxy sets these itself: a client cannot forge its address to a backend.
    '  http-request set-header x-forwarded-for %[src]',
    '  http-request set-header x-real-ip %[src]',
    '  http-request set-header x-forwarded-proto %[ssl_fc,iif(https,http)]',
    '  http-request set-header x-forwarded-host %[req.hdr(host)]',
    '  http-request set-header x-forwarded-port %[dst_port]',
    ...(settings.gatewayRules ? GATEWAY_EDITS : []),
    ...counters.request,
    ...counters.response,
    `  http-after-response set-header server kubenft unless { res.hdr(server) -m found }`,
    '  use_backend %[var(txn.target),field(1,/)]',
    `  log ring@${REQUEST_RING} format raw local0 info`,
    `  log-format "${REQUEST_LOG_FORMAT}"`,
    '',
    ...requestTableLines(),
    '',
    ...(settings.gatewayRules ? [...gatewayReplyLines(plainReply), ''] : []),
  ];
  for (let index = 0; index < slots; index++) {
    const name = slotName(index);
    lines.push(`backend ${name}`, '  balance roundrobin', ...timeoutLines(timeouts), ...(servers.get(name) ?? []).map((endpoint) => `  server ${serverName(endpoint)} ${endpoint}`), '');
  }
  return lines.join('\n');
}

/**
 * The Lua both routers load: the action that removes the fields a Connection header names (keeping
 * an upgrade's), the path's normal form, and an encoded slash's other reading of a path. An encoded slash is data, but a
 * backend may read it as a separator: a path holding one is refused when that reading reaches
 * another route, or holds a dot segment.
 */
export const SHARED_LUA = `core.register_action("kubenft-hop-by-hop", { "http-req" }, function(txn)
  local headers = txn.http:req_get_headers()["connection"]
  if headers == nil then return end
  local upgrade = false
  for _, value in pairs(headers) do
    for token in string.gmatch(value, "[^,%s]+") do
      local name = string.lower(token)
      if name == "upgrade" then upgrade = true
      elseif name ~= "close" and name ~= "keep-alive" then txn.http:req_del_header(name) end
    end
  end
  if upgrade then txn.http:req_set_header("connection", "upgrade") else txn.http:req_del_header("connection") end
end)

-- HAProxy's own reply to a request it refuses (as its errorfile for 400).
local function refuse(txn)
  txn:done(txn:reply({ status = 400, headers = { ["content-type"] = { "text/plain; charset=utf-8" }, server = { "kubenft" } }, body = ${JSON.stringify(replyBody(400, 'Bad Request'))} }))
end

-- A path as nginx routes it: what HAProxy's normalize-uri steps percent-decode-unreserved strict,
-- percent-to-uppercase strict, path-merge-slashes, path-strip-dot and path-strip-dotdot make of
-- it, in that order; nil where nginx answers 400: a malformed escape, an encoded NUL, '..' above
-- the root. Escapes of unreserved octets are decoded before the dot segments are resolved (so
-- %2e%2e is '..'); the others are kept, in upper case.
local function normal_path(path)
  if (path:gsub("%%%x%x", "")):find("%", 1, true) then return nil end
  path = path:gsub("%%(%x%x)", function(hex)
    local octet = string.char(tonumber(hex, 16))
    if octet:find("^[A-Za-z0-9._~-]$") then return octet end
    return "%" .. hex:upper()
  end)
  if path:find("%00", 1, true) then return nil end
  local kept, last = {}, nil
  for segment in path:gsub("//+", "/"):gmatch("/([^/]*)") do
    if segment == ".." then
      if #kept == 0 then return nil end
      kept[#kept] = nil
    elseif segment ~= "." then kept[#kept + 1] = segment end
    last = segment
  end
  -- A last '.' or '..' leaves its directory's slash.
  local trailing = (last == "." or last == "..") and #kept > 0 and "/" or ""
  return "/" .. table.concat(kept, "/") .. trailing
end

core.register_action("kubenft-normal-path", { "http-req" }, function(txn)
  local path = txn.sf:path()
  local normal = normal_path(path)
  if normal == nil then return refuse(txn) end
  if normal == path then return end
  txn.http:req_set_path(normal)
  txn:set_var("txn.path", normal)
end)

-- The path as a backend that takes %2F for '/' reads it (slashes merged again).
local function slashed_reading(path)
  return ((path:gsub("%%2F", "/")):gsub("/+", "/"))
end

local function has_dot_segment(path)
  return ("/" .. path .. "/"):find("/%.%.?/") ~= nil
end
`;

/** Ingress's encoded-slash check (the router's own lookups, in Lua): the slashed reading must have the target the path has. */
export const ingressLua = (map: (name: MapName) => string) => `
local routes = Map.new(${JSON.stringify(map('routes'))}, Map._beg)

local function target_of(rule_host, path)
  return routes:lookup(${JSON.stringify(DEFAULT_ROUTE_KEY)} .. rule_host .. path .. ${JSON.stringify(PATH_END)})
end

core.register_action("kubenft-encoded-slash", { "http-req" }, function(txn)
  local slashed = slashed_reading(txn:get_var("txn.path"))
  if has_dot_segment(slashed) or target_of(txn:get_var("txn.rulehost"), slashed) ~= txn:get_var("txn.target") then refuse(txn) end
end)
`;

/** The errorfiles: raw responses. */
export function errorFiles(layout: HaproxyLayout): { path: string; content: string }[] {
  return OWN_REPLIES.map(([status, text]) => {
    const body = replyBody(status, text);
    return { path: layout.errorFile(status), content: `HTTP/1.1 ${status} ${text}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ${body.length}\r\nserver: kubenft\r\n\r\n${body}` };
  });
}

/** The files a configuration reads: each map's entries, and the crt-list (the default certificate first). */
export function renderMapFile(entries: MapEntry[]): string {
  return entries.map((entry) => `${entry.key} ${entry.value}\n`).join('');
}

export function renderCrtList(layout: HaproxyLayout, sniNames: string[]): string {
  return [crtListLine(layout.defaultCertificate, DEFAULT_CERTIFICATE_FILTER), ...sniNames.map((name) => crtListLine(layout.certificate(name), name))].join('\n') + '\n';
}
