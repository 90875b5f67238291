import type { HeaderEdits, HostRoute, PathRoute } from '../routes.js';
import { routerExpression } from './expression-check.js';

// Gateway API's routes on HAProxy (--gateway-dataplane=haproxy). An HTTPRoute rule is more than a
// host and a path: header, query and method matches decide in the spec's precedence order, with a
// fall-through to the next rule, and filters act on the request and the response. Most rules are
// none of that (a path, one backend), and those are routed as Ingress's are, by map lookups in
// HAProxy's configuration; a small Lua router takes the rest. Three maps, which the runtime API
// changes like Ingress's:
// - gateway-hosts: host ('foo.com', '*.foo.com', '*' for any host) → '<rule host>/<generation>',
//   the key of its rules in the other two; and WILDCARD_FLAG while any wildcard host has rules;
// - gateway-routes (map_beg, as Ingress's routes.map): that key + an Exact rule's path + '/?' or a
//   Prefix rule's path + '/' → the target ('<slot>/<route>', routeTarget) when the first of the
//   host's rules that can match the key's requests matches all of them and forwards to one backend
//   (gatewayRouteEntries), else ASK_ROUTER; the key + '/' is ASK_ROUTER for the host's regular
//   expressions when no Prefix / has it;
// - gateway-rules: the key + '/<index>' → the rule, encoded below, in the planner's order (its
//   covering wildcards' and any host's rules follow a host's own), which the router walks.
// A host's new rules are written under a new generation first and its gateway-hosts entry then
// switches to them in one command, so a request sees the host's rules before a change or after it,
// never a mix (rules shifted by one inserted before them, say). Nothing here needs a reload
// but a timeout value HAProxy has not seen yet: 2.6's set-timeout takes constants only, so each
// value in use is a line of the slots' backends.

export const GATEWAY_MAPS = ['gateway-hosts', 'gateway-routes', 'gateway-rules'] as const;
export type GatewayMapName = (typeof GATEWAY_MAPS)[number];

/** gateway-routes' value for the requests the Lua router decides. */
export const ASK_ROUTER = 'L';
/** The backend HAProxy's own answers for the router are made in (txn.target '<it>/<route>'), so that the frontend has no rule for them. */
export const GATEWAY_REPLIES = 'gateway_replies';
/** What ends gateway-routes' lookup string and an Exact rule's key, as in Ingress's routes.map ('?' is in no path). */
const PATH_END = '/?';

/** What HAProxy 2.6 cannot carry of an HTTPRoute, by filter type: the planner does not accept a route that uses one (Accepted=False, UnsupportedValue). */
export const HAPROXY_UNSUPPORTED_FILTERS: ReadonlyMap<string, string> = new Map([
  ['RequestMirror', 'HAProxy 2.6 has no request mirroring (--gateway-dataplane=haproxy); the built-in dataplane mirrors'],
]);

/** The rule host key for rules without host. */
const ANY_HOST = '*';
/**
 * gateway-hosts' entry while some wildcard host has rules: only then can a host be under a wildcard
 * deeper than one label, which the Lua converter looks for. Capitals: the request's host is
 * lowercased, so no request's own lookup finds it.
 */
export const WILDCARD_FLAG = { map: 'gateway-hosts', key: 'WILDCARDS', value: '1' } as const;
/** A rule host's key in gateway-hosts (`host` as tableHosts names it: 'foo.com', '*.foo.com', '' for any host). */
const hostKey = (host: string) => (host === '' ? ANY_HOST : host);

const escape = encodeURIComponent;
const edits = (list: { name: string; value: string }[]) => list.map(({ name, value }) => `${escape(name)}:${escape(value)}`).join(',');
const PATH_TYPES = { Exact: 'E', Prefix: 'P', RegularExpression: 'R' } as const;
const EDIT_TYPES = { ReplaceFullPath: 'F', ReplacePrefixMatch: 'P' } as const;

/** The time a rule waits for its backend's response on HAProxy: the shorter of its request and backend timeouts (HAProxy bounds no whole exchange). */
export function ruleTimeoutMs(path: PathRoute): number | undefined {
  const { requestTimeoutMs, backendTimeoutMs } = path.actions ?? {};
  if (requestTimeoutMs === undefined) return backendTimeoutMs;
  return backendTimeoutMs === undefined ? requestTimeoutMs : Math.min(requestTimeoutMs, backendTimeoutMs);
}

/**
 * One rule as the Lua router reads it: `key=value` pairs joined by '&', lists by ',', fields by
 * ':', every field percent-encoded (so none holds a separator or a space: a map value is one word).
 */
export function encodeGatewayRule(path: PathRoute, routeNumber: number, slotOf: (backend: string) => string): string {
  const pairs: [string, string][] = [['n', String(routeNumber)], ['t', PATH_TYPES[path.type]], ['m', escape(path.match)]];
  const { conditions, actions } = path;
  if (conditions?.method) pairs.push(['M', escape(conditions.method)]);
  const values = (list: { name: string; value: string; regex?: boolean }[]) => list.map(({ name, value, regex }) => `${escape(name)}:${escape(value)}:${regex ? 'r' : 'e'}`).join(',');
  if (conditions?.headers) pairs.push(['h', values(conditions.headers)]);
  if (conditions?.query) pairs.push(['q', values(conditions.query)]);
  const headerPairs = (prefix: string, edit: HeaderEdits | undefined) => {
    if (!edit) return;
    if (edit.remove.length) pairs.push([`${prefix}r`, edit.remove.map(escape).join(',')]);
    if (edit.set.length) pairs.push([`${prefix}s`, edits(edit.set)]);
    if (edit.add.length) pairs.push([`${prefix}a`, edits(edit.add)]);
  };
  headerPairs('q', actions?.requestHeaders);
  headerPairs('p', actions?.responseHeaders);
  const { redirect, rewrite } = actions ?? {};
  if (redirect) {
    pairs.push(['R', String(redirect.statusCode)]);
    if (redirect.scheme) pairs.push(['Rs', redirect.scheme]);
    if (redirect.hostname) pairs.push(['Rh', escape(redirect.hostname)]);
    if (redirect.port) pairs.push(['Rp', String(redirect.port)]);
    if (redirect.path) pairs.push(['Rt', EDIT_TYPES[redirect.path.type]], ['Rv', escape(redirect.path.value)]);
  } else {
    pairs.push(['b', (actions?.backends ?? []).map(({ backend, weight }) => `${backend === undefined ? '' : slotOf(backend)}:${weight}`).join(',')]);
  }
  if (rewrite?.hostname) pairs.push(['Wh', escape(rewrite.hostname)]);
  if (rewrite?.path) pairs.push(['Wt', EDIT_TYPES[rewrite.path.type]], ['Wv', escape(rewrite.path.value)]);
  const timeout = ruleTimeoutMs(path);
  if (timeout !== undefined) pairs.push(['T', String(timeout)]);
  return pairs.map(([key, value]) => `${key}=${value}`).join('&');
}

/** A host's rules, encoded, in order. */
export const gatewayRuleTexts = (route: HostRoute, encode: (path: PathRoute) => string) => route.paths.map(encode);

/**
 * The backend a rule sends every request it matches to, when it needs no router: no header, query or
 * method match, no filter or timeout, one backend of some weight; undefined otherwise.
 */
export function forwardedBackend(path: PathRoute): string | undefined {
  if (path.conditions || !path.actions) return undefined;
  const { backends, ...others } = path.actions;
  if (Object.values(others).some((value) => value !== undefined) || backends?.length !== 1) return undefined;
  const [{ backend, weight }] = backends;
  return weight > 0 ? backend : undefined;
}

/** `prefix` (a Prefix rule's match) matches `path` element by element ('' is '/', which matches all). */
const prefixCovers = (prefix: string, path: string) => prefix === '' || path === prefix || path.startsWith(`${prefix}/`);

/**
 * Of the requests whose longest gateway-routes key is `key`'s (an Exact or Prefix rule's), which
 * `rule` can match: all (its path matches every one), none, or some (a regular expression; or
 * not known without the request: its conditions are the target's business).
 */
function reach(rule: PathRoute, key: PathRoute): 'all' | 'none' | 'some' {
  if (rule.type === 'RegularExpression') return 'some';
  // An Exact rule's requests find its own key, the longest: no Prefix key's requests are its.
  if (key.type === 'Exact') return (rule.type === 'Exact' ? rule.match === key.match : prefixCovers(rule.match, key.match)) ? 'all' : 'none';
  // A Prefix key's requests are below it but below no longer key: a Prefix rule matches them all when it covers the key's path, else none.
  return rule.type === 'Prefix' && prefixCovers(rule.match, key.match) ? 'all' : 'none';
}

/**
 * A host's gateway-routes entries (what follows the host's key, and the value), from its rules in
 * the planner's order: each Exact and Prefix rule's path is a key, whose value is `targetOf` the
 * first rule that can match the key's requests if it matches all of them and forwards alone
 * (forwardedBackend; a conditional rule, a regular expression or a filter first: ASK_ROUTER, which
 * walks the rules as they are, falling through as the spec has it). A key's own rule matches all
 * its requests, so every walk ends by it. Regular expressions match paths no key has: '/' (every
 * path) asks the router too, when no Prefix / rule has that key already.
 */
export function gatewayRouteEntries(rules: readonly PathRoute[], targetOf: (path: PathRoute, backend: string) => string): [string, string][] {
  const entries = new Map<string, string>();
  for (const key of rules) {
    if (key.type === 'RegularExpression') continue;
    const suffix = key.type === 'Exact' ? key.match + PATH_END : `${key.match}/`;
    if (entries.has(suffix)) continue;
    const first = rules.find((rule) => reach(rule, key) !== 'none')!;
    const backend = reach(first, key) === 'all' ? forwardedBackend(first) : undefined;
    entries.set(suffix, backend === undefined ? ASK_ROUTER : targetOf(first, backend));
  }
  if (rules.some((rule) => rule.type === 'RegularExpression') && !entries.has('/')) entries.set('/', ASK_ROUTER);
  return [...entries];
}

/**
 * The map entries of one rule host's rules (as gatewayRuleTexts encodes them) and routes (as
 * gatewayRouteEntries makes them) in one generation, then the host's entry naming the generation
 * (last, so that its rules and routes are there before it names them). `host` is as tableHosts
 * names it ('foo.com', '*.foo.com', '' for any host).
 */
export function gatewayHostEntries(host: string, rules: string[], routes: [string, string][], generation: number): { map: GatewayMapName; key: string; value: string }[] {
  const key = `${hostKey(host)}/${generation}`;
  return [
    ...rules.map((value, index) => ({ map: 'gateway-rules' as const, key: `${key}/${index}`, value })),
    ...routes.map(([suffix, value]) => ({ map: 'gateway-routes' as const, key: key + suffix, value })),
    { map: 'gateway-hosts', key: hostKey(host), value: key },
  ];
}

/**
 * The frontend's routing for Gateway API (it replaces Ingress's): the host's key, by the host's name
 * in gateway-hosts, else by its one-label wildcard's ('*.' and the host without its first label),
 * else (only while WILDCARD_FLAG is there) by a deeper wildcard's, which a Lua converter finds, else
 * any host's ('*'). Then, as Ingress, one gateway-routes lookup of key + path + '/?', whose value
 * is the target or ASK_ROUTER. The router runs for those and for a path with an encoded slash
 * (SHARED_LUA's check); it sets the target, or none (404), or GATEWAY_REPLIES's with txn.gw_outcome
 * for a refusal, a redirect or a 500.
 */
export const GATEWAY_ROUTING = (map: (name: GatewayMapName) => string, plainReply: (status: number, text: string) => string) => [
  `  http-request set-var(txn.gw_rules) var(txn.host),map_str(${map('gateway-hosts')})`,
  `  http-request set-var(txn.gw_rules) var(txn.host),regsub(^[^.]*[.],*.),map_str(${map('gateway-hosts')}) unless { var(txn.gw_rules) -m found }`,
  `  http-request set-var(txn.gw_rules) var(txn.host),lua.kubenft-gateway-host if !{ var(txn.gw_rules) -m found } { str(${WILDCARD_FLAG.key}),map_str(${map('gateway-hosts')}) -m found }`,
  `  http-request set-var(txn.gw_rules) str(${ANY_HOST}),map_str(${map('gateway-hosts')}) unless { var(txn.gw_rules) -m found }`,
  '  http-request set-var(txn.rulehost) var(txn.gw_rules),field(1,/)',
  `  http-request set-var(txn.target) var(txn.gw_rules),concat(,txn.path,${PATH_END}),map_beg(${map('gateway-routes')})`,
  `  http-request lua.kubenft-gateway-route if { var(txn.target) -m str ${ASK_ROUTER} } || { var(txn.path) -m sub %2F }`,
  `  http-request ${plainReply(404, 'Not Found')} unless { var(txn.target) -m found }`,
];

/** The backend of the router's own answers: its rules run for them alone. */
export const gatewayReplyLines = (plainReply: (status: number, text: string) => string) => [
  `backend ${GATEWAY_REPLIES}`,
  '  http-request deny deny_status 400 if { var(txn.gw_outcome) -m str refused }',
  `  http-request ${plainReply(500, 'Internal Server Error')} if { var(txn.gw_outcome) -m str 500 }`,
  ...[301, 302, 303, 307, 308].map((status) => `  http-request redirect location %[var(txn.gw_location)] code ${status} if { var(txn.gw_outcome) -m str ${status} }`),
];

/** After the forwarded headers are set: the rule's request header edits and rewrites, and its response header edits. */
export const GATEWAY_EDITS = [
  '  http-request lua.kubenft-gateway-request if { var(txn.gw_request) -m found }',
  '  http-response lua.kubenft-gateway-response if { var(txn.gw_response) -m found }',
];

/** A slot backend's lines for the timeouts rules use (set by the router as txn.gw_timeout). */
export const timeoutLines = (timeouts: Iterable<number>) => [...timeouts].sort((a, b) => a - b)
  .map((ms) => `  http-request set-timeout server ${ms}ms if { var(txn.gw_timeout) -m int eq ${ms} }`);

/** routerExpression's whole-value form as a Lua expression of the local `source` (JSON's string quoting is Lua's for these characters). */
const ANCHORED_LUA = routerExpression('\0', true).split('\0').map((part) => JSON.stringify(part)).join(' .. source .. ');

/** The Lua router, reading gateway-hosts and gateway-rules at these paths. */
export const gatewayLua = (hostsMap: string, rulesMap: string) => `
local gateway_hosts = Map.new(${JSON.stringify(hostsMap)}, Map._str)
local gateway_rules = Map.new(${JSON.stringify(rulesMap)}, Map._str)

local function unescape(text)
  return (text:gsub("%%(%x%x)", function(hex) return string.char(tonumber(hex, 16)) end))
end

local function fields(item)
  local list = {}
  for part in (item .. ":"):gmatch("([^:]*):") do list[#list + 1] = unescape(part) end
  return list
end

local function items(text)
  local list = {}
  if text == nil or text == "" then return list end
  for item in (text .. ","):gmatch("([^,]*),") do list[#list + 1] = fields(item) end
  return list
end

-- Decoded rules by their text (a map value), so that a rule is parsed once, not per request.
local decoded, decoded_count = {}, 0
local function rule_of(text)
  local rule = decoded[text]
  if rule then return rule end
  local raw = {}
  for key, value in text:gmatch("([^&=]+)=([^&]*)") do raw[key] = value end
  rule = {
    text = text, route = raw.n, type = raw.t, match = unescape(raw.m or ""), method = raw.M and unescape(raw.M),
    headers = items(raw.h), query = items(raw.q), backends = raw.b and items(raw.b),
    request_remove = items(raw.qr), request_set = items(raw.qs), request_add = items(raw.qa),
    response_remove = items(raw.pr), response_set = items(raw.ps), response_add = items(raw.pa),
    redirect = raw.R, redirect_scheme = raw.Rs, redirect_host = raw.Rh and unescape(raw.Rh), redirect_port = raw.Rp and tonumber(raw.Rp),
    redirect_path = raw.Rt, redirect_value = raw.Rv and unescape(raw.Rv),
    rewrite_host = raw.Wh and unescape(raw.Wh), rewrite_path = raw.Wt, rewrite_value = raw.Wv and unescape(raw.Wv),
    timeout = raw.T and tonumber(raw.T),
  }
  rule.edits_request = raw.qr or raw.qs or raw.qa or raw.Wh or raw.Wt
  rule.edits_response = raw.pr or raw.ps or raw.pa
  if decoded_count >= 100000 then decoded, decoded_count = {}, 0 end
  decoded[text], decoded_count = rule, decoded_count + 1
  return rule
end

-- The anchored form is expression-check.ts's routerExpression, written in here from it: HAProxy
-- judges each expression in that form beforehand, so the two cannot drift apart.
local expressions = {}
local function expression(source, anchored)
  local key = (anchored and "^" or "") .. source
  local found = expressions[key]
  if found == nil then
    local ok, compiled = Regex.new(anchored and (${ANCHORED_LUA}) or source, true)
    found = ok and compiled or false
    expressions[key] = found
  end
  return found
end

-- As the built-in's pathMatches: Exact whole, RegularExpression whole, PathPrefix by elements.
local function path_matches(rule, path)
  if rule.type == "E" then return path == rule.match end
  if rule.type == "R" then
    local compiled = expression(rule.match, true)
    return compiled and compiled:exec(path)
  end
  local prefix = rule.match
  if path:sub(1, #prefix) ~= prefix then return false end
  return #path == #prefix or path:byte(#prefix + 1) == 47
end

local function value_holds(match, value)
  if value == nil then return false end
  if match[3] == "r" then
    local compiled = expression(match[2], false)
    return compiled and compiled:exec(value)
  end
  return value == match[2]
end

local function form_unescape(text)
  return unescape((text:gsub("+", " ")))
end

-- What a request holds beyond host and path, read once and only when a rule asks.
local function facts_of(txn)
  local facts = {}
  function facts.header(name)
    facts.headers = facts.headers or txn.http:req_get_headers()
    local values = facts.headers[name]
    if values == nil then return nil end
    local list, index = {}, 0
    while values[index] ~= nil do list[#list + 1] = values[index]; index = index + 1 end
    return table.concat(list, ",")
  end
  function facts.query(name)
    if facts.params == nil then
      facts.params = {}
      local query = txn:get_var("txn.query") or ""
      for pair in (query .. "&"):gmatch("([^&]*)&") do
        if pair ~= "" then
          local equals = pair:find("=", 1, true)
          local key = form_unescape(equals and pair:sub(1, equals - 1) or pair)
          if facts.params[key] == nil then facts.params[key] = form_unescape(equals and pair:sub(equals + 1) or "") end
        end
      end
    end
    return facts.params[name]
  end
  function facts.method()
    facts.verb = facts.verb or txn.f:method()
    return facts.verb
  end
  return facts
end

local function conditions_hold(rule, facts)
  if rule.method and rule.method ~= facts.method() then return false end
  for _, match in ipairs(rule.headers) do if not value_holds(match, facts.header(match[1])) then return false end end
  for _, match in ipairs(rule.query) do if not value_holds(match, facts.query(match[1])) then return false end end
  return true
end

-- A host neither gateway-hosts nor its one-label wildcard names (GATEWAY_ROUTING): the key of
-- its longest deeper wildcard suffix's rules (Gateway API's span labels), else any host's. A converter, not
-- an action: it is handed the host alone, where an action's transaction object costs more than the
-- rest of the routing.
core.register_converters("kubenft-gateway-host", function(host)
  local dot = host:find(".", 1, true)
  dot = dot and host:find(".", dot + 1, true)
  while dot do
    local key = gateway_hosts:lookup("*" .. host:sub(dot))
    if key then return key end
    dot = host:find(".", dot + 1, true)
  end
  return gateway_hosts:lookup("*")
end)

-- The first rule under the host's key (one generation) that matches, in the planner's order.
local function first_rule(key, path, facts)
  local index = 0
  while true do
    local text = gateway_rules:lookup(key .. "/" .. index)
    if text == nil then return nil end
    local rule = rule_of(text)
    if path_matches(rule, path) and conditions_hold(rule, facts) then return rule end
    index = index + 1
  end
end

local function edited_path(path, kind, value, prefix)
  if kind == "F" then return value end
  local rest = path:sub(#prefix + 1)
  local edited = (rest:sub(1, 1) == "/" and (value:gsub("/+$", "")) or value) .. rest
  if edited == "" then return "/" end
  return edited
end

local DEFAULT_PORTS = { http = 80, https = 443 }

-- A RequestRedirect's Location, as the built-in's redirectLocation.
local function location_of(txn, rule, host, path)
  -- ssl_fc is 1 or 0 in Lua, and 0 is true there.
  local scheme = rule.redirect_scheme or (txn.f:ssl_fc() == 1 and "https" or "http")
  local port = rule.redirect_port or (rule.redirect_scheme and DEFAULT_PORTS[scheme]) or tonumber(txn.f:dst_port())
  local target = rule.redirect_path and edited_path(path, rule.redirect_path, rule.redirect_value, rule.match) or path
  local query = txn:get_var("txn.query")
  return scheme .. "://" .. (rule.redirect_host or host) .. (port == DEFAULT_PORTS[scheme] and "" or (":" .. port)) .. target .. (query and ("?" .. query) or "")
end

-- A weighted rule's slot for one request (all weights zero, or an unresolved backend drawn: none, a 500).
local function weighted_slot(backends)
  local total = 0
  for _, backend in ipairs(backends) do total = total + (tonumber(backend[2]) or 0) end
  if total == 0 then return nil end
  local point = math.random() * total
  for _, backend in ipairs(backends) do
    point = point - (tonumber(backend[2]) or 0)
    if point < 0 then return backend[1] ~= "" and backend[1] or nil end
  end
  local last = backends[#backends][1]
  return last ~= "" and last or nil
end

-- A request gateway-routes left to it (ASK_ROUTER) or whose path has an encoded slash: the host's
-- rules walked. No rule: no target (404).
core.register_action("kubenft-gateway-route", { "http-req" }, function(txn)
  txn:unset_var("txn.target")
  local key = txn:get_var("txn.gw_rules")
  if key == nil then return end
  local path = txn:get_var("txn.path") or "/"
  local facts = facts_of(txn)
  local rule = first_rule(key, path, facts)
  if rule == nil then return end
  -- HAProxy's own answers are made in their backend; 'slot/route' as an Ingress map's value (routeTarget).
  local function reply(outcome, route)
    txn:set_var("txn.target", ${JSON.stringify(GATEWAY_REPLIES)} .. "/" .. route)
    txn:set_var("txn.gw_outcome", outcome)
  end
  -- An encoded slash (SHARED_LUA): refused when the slashed reading reaches another rule.
  if path:find("%2F", 1, true) then
    local slashed = slashed_reading(path)
    if has_dot_segment(slashed) or first_rule(key, slashed, facts) ~= rule then
      reply("refused", "-")
      return
    end
  end
  if rule.redirect then
    txn:set_var("txn.gw_location", location_of(txn, rule, txn:get_var("txn.host") or "", path))
    reply(rule.redirect, rule.route)
    return
  end
  local slot = weighted_slot(rule.backends or {})
  if slot == nil then
    reply("500", rule.route)
    return
  end
  txn:set_var("txn.target", slot .. "/" .. rule.route)
  if rule.timeout then txn:set_var("txn.gw_timeout", rule.timeout) end
  if rule.edits_request then txn:set_var("txn.gw_request", rule.text) end
  if rule.edits_response then txn:set_var("txn.gw_response", rule.text) end
end)

-- As the built-in's editRequestHeaders: remove, then set, then add; then the rewrites.
core.register_action("kubenft-gateway-request", { "http-req" }, function(txn)
  local rule = rule_of(txn:get_var("txn.gw_request"))
  for _, name in ipairs(rule.request_remove) do txn.http:req_del_header(name[1]) end
  for _, edit in ipairs(rule.request_set) do txn.http:req_set_header(edit[1], edit[2]) end
  for _, edit in ipairs(rule.request_add) do txn.http:req_add_header(edit[1], edit[2]) end
  if rule.rewrite_host then txn.http:req_set_header("host", rule.rewrite_host) end
  if rule.rewrite_path then
    txn.http:req_set_path(edited_path(txn:get_var("txn.path") or "/", rule.rewrite_path, rule.rewrite_value, rule.match))
  end
end)

core.register_action("kubenft-gateway-response", { "http-res" }, function(txn)
  local rule = rule_of(txn:get_var("txn.gw_response"))
  for _, name in ipairs(rule.response_remove) do txn.http:res_del_header(name[1]) end
  for _, edit in ipairs(rule.response_set) do txn.http:res_set_header(edit[1], edit[2]) end
  for _, edit in ipairs(rule.response_add) do txn.http:res_add_header(edit[1], edit[2]) end
end)
`;
