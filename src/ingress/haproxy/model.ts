import type { HostRoute, RouteTable, RouteTableChanges } from '../routes.js';
import { encodeGatewayRule, gatewayHostEntries, gatewayLua, gatewayRouteEntries, gatewayRuleTexts, ruleTimeoutMs, WILDCARD_FLAG } from './gateway-rules.js';
import {
  DEFAULT_ROUTE_KEY, SHARED_LUA, errorFiles, ingressLua, type HaproxyLayout, type HaproxySettings, MAPS, type MapEntry, crtListLine, entryId, hostEntries, renderConfig,
  renderCrtList, renderMapFile, routeTarget, serverName, slotName, tableHosts,
} from './config.js';
import { durationBucketMap } from './request-counters.js';

// What HAProxy holds of the route plan, kept beside it: each sync's changes become the runtime API
// commands that take HAProxy from this to the new plan (and this with it), and a reload or a
// restart writes this whole into the configuration files.

export interface RuntimeCommand {
  command: string;
  payload?: string;
}

/** A server taken out of its backend's rotation: deleted once its connections are done. */
export interface DrainingServer {
  slot: string;
  name: string;
}

/** Slots made beyond those in use, so that new Services need no reload until they are used up. */
const MIN_SLOTS = 64;

interface ServerState {
  endpoint: string;
  draining: boolean;
}

/** The default backend's entry, but its value. */
const DEFAULT_ROUTE = { map: 'routes', key: DEFAULT_ROUTE_KEY } as const;

const pemOf = (pair: { cert: string; key: string }) => `${pair.cert.trim()}\n${pair.key.trim()}\n`;

export class HaproxyModel {
  private capacity = 0;
  private readonly slots = new Map<string, string>();
  private free: string[] = [];
  private readonly servers = new Map<string, Map<string, ServerState>>();
  private readonly entries = new Map<string, MapEntry>();
  private readonly byHost = new Map<string, MapEntry[]>();
  /** SNI name → the PEM served for it. */
  private readonly certificates = new Map<string, string>();
  private defaultPem = '';
  /** Routes by number, as the request log names them: the Ingress and the rule path ('' for the default backend). */
  private readonly routeNumbers = new Map<string, number>();
  readonly routes: { ingress: string; path: string }[] = [];
  /** Gateway API: the rules' timeouts, each a line of the slots' backends (gateway-rules.ts); only a reload adds one. */
  private readonly timeouts = new Set<number>();
  /** Why the last changes() needed a reload. */
  reloadReason = '';
  /** Gateway API: each rule host's rules as written, and their generation (gateway-rules.ts). */
  private readonly gatewayHosts = new Map<string, { rules: string[]; generation: number }>();
  private generations = 0;

  /** `gatewayRules`: the table is Gateway API's, routed by gateway-rules.ts's maps and Lua router. */
  constructor(private readonly layout: HaproxyLayout, private readonly gatewayRules = false) {}

  /** Sets the model to a whole table, with room for twice its backends. */
  load(table: RouteTable, defaultCertificate: { cert: string; key: string }): void {
    const backends = Object.keys(table.backends);
    this.capacity = Math.max(this.capacity, MIN_SLOTS, 2 * backends.length);
    this.slots.clear();
    this.servers.clear();
    this.free = Array.from({ length: this.capacity }, (_, index) => slotName(this.capacity - 1 - index));
    for (const key of backends) {
      const slot = this.free.pop()!;
      this.slots.set(key, slot);
      this.servers.set(slot, new Map(table.backends[key].map((endpoint) => [serverName(endpoint), { endpoint, draining: false }])));
    }
    this.entries.clear();
    this.byHost.clear();
    this.gatewayHosts.clear();
    for (const [host, route] of tableHosts(table)) {
      for (const timeout of this.timeoutsOf(route)) this.timeouts.add(timeout);
      this.setHost(host, this.hostEntriesOf(host, route));
    }
    if (table.defaultBackend) this.entries.set(entryId(DEFAULT_ROUTE), { ...DEFAULT_ROUTE, value: this.targetOf({ ...table.defaultBackend, path: '' }) });
    if (this.wildcardFlagWanted()) this.entries.set(entryId(WILDCARD_FLAG), { ...WILDCARD_FLAG });
    this.certificates.clear();
    for (const sniName of this.sniNames(table)) {
      const pem = this.desiredCertificate(table, sniName);
      if (pem) this.certificates.set(sniName, pem);
    }
    this.defaultPem = pemOf(defaultCertificate);
  }

  /** The configuration and the files it reads, for a start or a reload. */
  files(settings: HaproxySettings): { path: string; content: string }[] {
    const servers = new Map([...this.servers].map(([slot, states]) => [slot, [...states.values()].filter((state) => !state.draining).map((state) => state.endpoint)]));
    const byMap = new Map(MAPS.map((name) => [name, [] as MapEntry[]]));
    for (const entry of this.entries.values()) byMap.get(entry.map)!.push(entry);
    return [
      { path: this.layout.config, content: renderConfig(this.layout, settings, this.capacity, servers, this.timeouts) },
      ...MAPS.map((name) => ({ path: this.layout.map(name), content: renderMapFile(byMap.get(name)!) })),
      { path: this.layout.durationsMap, content: durationBucketMap() },
      { path: this.layout.defaultCertificate, content: this.defaultPem },
      ...[...this.certificates].map(([sniName, pem]) => ({ path: this.layout.certificate(sniName), content: pem })),
      { path: this.layout.crtList, content: renderCrtList(this.layout, [...this.certificates.keys()]) },
      { path: this.layout.luaScript, content: SHARED_LUA + (this.gatewayRules ? gatewayLua(this.layout.map('gateway-hosts'), this.layout.map('gateway-rules')) : ingressLua(this.layout.map)) },
      ...errorFiles(this.layout),
    ];
  }

  /**
   * The commands that apply one sync's changes (the model then holds the new table), or undefined
   * when they need a reload (reloadReason says why): more Service ports than slots, a timeout not
   * seen before. Additions come before removals, so a request never meets a host half changed into nothing.
   */
  changes(table: RouteTable, changes: RouteTableChanges, defaultCertificate: { cert: string; key: string }): RuntimeCommand[] | undefined {
    const added = Object.keys(changes.backends).filter((key) => changes.backends[key] !== null && !this.slots.has(key));
    if (added.length > this.free.length) {
      this.reloadReason = 'backend slots used up';
      return undefined;
    }
    const hostChanges: [string, RouteTable['hosts'][string] | null][] = [
      ...Object.entries(changes.hosts),
      ...Object.entries(changes.wildcards).map(([suffix, route]): [string, typeof route] => [`*.${suffix}`, route]),
      ...(changes.anyHost !== undefined ? [['', changes.anyHost] as [string, typeof changes.anyHost]] : []),
    ];
    if (hostChanges.some(([, route]) => route && this.timeoutsOf(route).some((timeout) => !this.timeouts.has(timeout)))) {
      this.reloadReason = 'new route timeout';
      return undefined;
    }
    const commands: RuntimeCommand[] = [];
    const released: string[] = [];
    for (const [key, endpoints] of Object.entries(changes.backends)) {
      if (endpoints === null) {
        const slot = this.slots.get(key);
        if (slot === undefined) continue;
        commands.push(...this.setServers(slot, []));
        this.slots.delete(key);
        released.push(slot);
        continue;
      }
      let slot = this.slots.get(key);
      if (slot === undefined) this.slots.set(key, (slot = this.free.pop()!));
      commands.push(...this.setServers(slot, endpoints));
    }
    const removals: RuntimeCommand[] = [];
    for (const [host, route] of hostChanges) {
      const next = route ? this.hostEntriesOf(host, route) : [];
      if (!route) this.gatewayHosts.delete(host);
      const before = this.byHost.get(host) ?? [];
      const kept = new Set(next.map(entryId));
      for (const entry of next) commands.push(...this.putEntry(entry));
      for (const entry of before) if (!kept.has(entryId(entry))) removals.push(this.deleteEntry(entry));
      this.setHost(host, next);
    }
    // After a new wildcard's entries (its deeper hosts find it from then on), beside an old one's removal.
    const flagged = this.entries.has(entryId(WILDCARD_FLAG));
    if (this.wildcardFlagWanted() && !flagged) commands.push(...this.putEntry({ ...WILDCARD_FLAG }));
    else if (!this.wildcardFlagWanted() && flagged) removals.push(this.deleteEntry(WILDCARD_FLAG));
    const defaultId = entryId(DEFAULT_ROUTE);
    if (changes.defaultBackend) commands.push(...this.putEntry({ ...DEFAULT_ROUTE, value: this.targetOf({ ...changes.defaultBackend, path: '' }) }));
    else if (this.entries.has(defaultId)) removals.push(this.deleteEntry(this.entries.get(defaultId)!));
    commands.push(...removals, ...this.certificateChanges(table, changes, defaultCertificate));
    this.free.push(...released);
    return commands;
  }

  /**
   * A whole table (a full sync's, or one planned anew) as changes to what the model holds: every
   * host, backend and TLS name of either, so that changes() writes only what differs and an
   * unchanged table is no command at all. Rule generations, route numbers and slots stay as they
   * are: only a host whose rules differ is written again.
   */
  wholeChanges(table: RouteTable): RouteTableChanges {
    const changes: RouteTableChanges = {
      hosts: {}, wildcards: {}, defaultBackend: table.defaultBackend ?? null, backends: {}, certificates: { ...table.certificates }, tlsHosts: {}, tlsWildcards: {},
    };
    const setHost = (host: string, route: HostRoute | null) => {
      if (host === '') changes.anyHost = route;
      else if (host.startsWith('*.')) changes.wildcards[host.slice(2)] = route;
      else changes.hosts[host] = route;
    };
    for (const host of this.byHost.keys()) setHost(host, null);
    for (const [host, route] of tableHosts(table)) setHost(host, route);
    for (const key of this.slots.keys()) changes.backends[key] = null;
    Object.assign(changes.backends, table.backends);
    for (const sniName of this.certificates.keys()) {
      if (sniName.startsWith('*.')) changes.tlsWildcards[sniName.slice(2)] = null;
      else changes.tlsHosts[sniName] = null;
    }
    Object.assign(changes.tlsHosts, table.tlsHosts);
    Object.assign(changes.tlsWildcards, table.tlsWildcards);
    return changes;
  }

  /** The backend key a slot serves now (the upstream error metric's label), or the slot's name. */
  backendOf(slot: string): string {
    for (const [key, each] of this.slots) if (each === slot) return key;
    return slot;
  }

  /** A route's map value: its backend's slot and its number. */
  private readonly targetOf = (route: { backend: string; ingress: string; path: string }): string => routeTarget(this.slots.get(route.backend)!, this.numberOf(route));

  /** A route's number, as the request log names it. */
  private numberOf(route: { ingress: string; path: string }): number {
    const id = `${route.ingress} ${route.path}`;
    let number = this.routeNumbers.get(id);
    if (number === undefined) {
      number = this.routes.push({ ingress: route.ingress, path: route.path }) - 1;
      this.routeNumbers.set(id, number);
    }
    return number;
  }

  /** A host's map entries; Gateway rules and routes in a new generation when they differ from those written. */
  private hostEntriesOf(host: string, route: HostRoute): MapEntry[] {
    if (!this.gatewayRules) return hostEntries(host, route, this.targetOf);
    const slotOf = (backend: string) => this.slots.get(backend)!;
    const rules = gatewayRuleTexts(route, (path) => encodeGatewayRule(path, this.numberOf(path), slotOf));
    const routes = gatewayRouteEntries(route.paths, (path, backend) => routeTarget(slotOf(backend), this.numberOf(path)));
    // A rule's text holds all its routes entries are made of (its path, matches, filters, slots and route number).
    let written = this.gatewayHosts.get(host);
    if (!written || written.rules.length !== rules.length || written.rules.some((rule, index) => rule !== rules[index])) {
      this.gatewayHosts.set(host, (written = { rules, generation: this.generations++ }));
    }
    return gatewayHostEntries(host, rules, routes, written.generation);
  }

  /** Gateway API: WILDCARD_FLAG belongs in gateway-hosts while a wildcard host has rules. */
  private wildcardFlagWanted(): boolean {
    if (!this.gatewayRules) return false;
    for (const host of this.gatewayHosts.keys()) if (host.startsWith('*.')) return true;
    return false;
  }

  private timeoutsOf(route: HostRoute): number[] {
    if (!this.gatewayRules) return [];
    return route.paths.map(ruleTimeoutMs).filter((timeout): timeout is number => timeout !== undefined);
  }

  /** Servers of a slot to take out of rotation; forget() them once they are deleted. */
  draining(): DrainingServer[] {
    const found: DrainingServer[] = [];
    for (const [slot, states] of this.servers) for (const [name, state] of states) if (state.draining) found.push({ slot, name });
    return found;
  }

  forget({ slot, name }: DrainingServer): void {
    const state = this.servers.get(slot)?.get(name);
    if (state?.draining) this.servers.get(slot)!.delete(name);
  }

  private setHost(host: string, entries: MapEntry[]): void {
    for (const entry of entries) this.entries.set(entryId(entry), entry);
    if (entries.length > 0) this.byHost.set(host, entries);
    else this.byHost.delete(host);
  }

  private putEntry(entry: MapEntry): RuntimeCommand[] {
    const id = entryId(entry);
    const previous = this.entries.get(id);
    this.entries.set(id, entry);
    if (previous?.value === entry.value) return [];
    return [{ command: `${previous ? 'set' : 'add'} map ${this.layout.map(entry.map)} ${entry.key} ${entry.value}` }];
  }

  private deleteEntry(entry: MapEntry): RuntimeCommand {
    this.entries.delete(entryId(entry));
    return { command: `del map ${this.layout.map(entry.map)} ${entry.key}` };
  }

  /** Endpoints become servers in the slot (one back from draining is made ready again); servers of endpoints gone drain. */
  private setServers(slot: string, endpoints: string[]): RuntimeCommand[] {
    let states = this.servers.get(slot);
    if (!states) this.servers.set(slot, (states = new Map()));
    const commands: RuntimeCommand[] = [];
    const wanted = new Set(endpoints.map(serverName));
    for (const endpoint of endpoints) {
      const name = serverName(endpoint);
      const state = states.get(name);
      if (state && !state.draining) continue;
      if (state) commands.push({ command: `set server ${slot}/${name} state ready` });
      else commands.push({ command: `add server ${slot}/${name} ${endpoint}` }, { command: `enable server ${slot}/${name}` });
      states.set(name, { endpoint, draining: false });
    }
    for (const [name, state] of states) {
      if (wanted.has(name) || state.draining) continue;
      // In maintenance a server takes no new request and finishes those it has.
      commands.push({ command: `set server ${slot}/${name} state maint` });
      state.draining = true;
    }
    return commands;
  }

  /** The SNI names of the table's TLS hosts. */
  private sniNames(table: RouteTable): string[] {
    return [...Object.keys(table.tlsHosts), ...Object.keys(table.tlsWildcards).map((suffix) => `*.${suffix}`)];
  }

  /** The PEM an SNI name is served with, or undefined when its Secret is missing (the default certificate then). */
  private desiredCertificate(table: RouteTable, sniName: string): string | undefined {
    const wildcard = sniName.startsWith('*.');
    const tlsHosts = wildcard ? table.tlsWildcards : table.tlsHosts;
    const name = wildcard ? sniName.slice(2) : sniName;
    const secret = Object.hasOwn(tlsHosts, name) ? tlsHosts[name] : undefined;
    const pair = secret !== undefined && Object.hasOwn(table.certificates, secret) ? table.certificates[secret] : undefined;
    return pair && pemOf(pair);
  }

  private certificateChanges(table: RouteTable, changes: RouteTableChanges, defaultCertificate: { cert: string; key: string }): RuntimeCommand[] {
    const touched = new Set([...Object.keys(changes.tlsHosts), ...Object.keys(changes.tlsWildcards).map((suffix) => `*.${suffix}`)]);
    const rotated = new Set(Object.keys(changes.certificates));
    if (rotated.size > 0) {
      for (const [name, secret] of Object.entries(table.tlsHosts)) if (rotated.has(secret)) touched.add(name);
      for (const [suffix, secret] of Object.entries(table.tlsWildcards)) if (rotated.has(secret)) touched.add(`*.${suffix}`);
      // A Secret no host uses any more was removed from its hosts above.
      for (const [name] of this.certificates) if (!touched.has(name) && this.desiredCertificate(table, name) === undefined) touched.add(name);
    }
    const commands: RuntimeCommand[] = [];
    for (const sniName of touched) {
      const pem = this.desiredCertificate(table, sniName);
      const previous = this.certificates.get(sniName);
      if (pem === previous) continue;
      const file = this.layout.certificate(sniName);
      if (pem === undefined) {
        commands.push({ command: `del ssl crt-list ${this.layout.crtList} ${file}` }, { command: `del ssl cert ${file}` });
        this.certificates.delete(sniName);
        continue;
      }
      if (previous === undefined) commands.push({ command: `new ssl cert ${file}` });
      commands.push({ command: `set ssl cert ${file}`, payload: pem }, { command: `commit ssl cert ${file}` });
      if (previous === undefined) commands.push({ command: `add ssl crt-list ${this.layout.crtList}`, payload: crtListLine(file, sniName) });
      this.certificates.set(sniName, pem);
    }
    const defaultPem = pemOf(defaultCertificate);
    if (defaultPem !== this.defaultPem) {
      commands.push({ command: `set ssl cert ${this.layout.defaultCertificate}`, payload: defaultPem }, { command: `commit ssl cert ${this.layout.defaultCertificate}` });
      this.defaultPem = defaultPem;
    }
    return commands;
  }
}
