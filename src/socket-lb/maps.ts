import ipaddr from 'ipaddr.js';
import { native } from '../kernel/native.js';
import { type SocketLbEndpoint, type SocketLbFrontend, frontendKey } from './plan.js';

// The socket LB's maps (native/bpf/socket_lb.h), fed from the plan: encodes entries and applies a
// change make-before-break. A frontend's endpoints live in slots {id, base + i}; a change writes
// the new list in the other half of the slot index space, then points the frontend at it, then
// deletes the old half, so a connect() sees either the old list or the new one, never a mix.

export type SocketLbMapName = 'services' | 'slots' | 'reverse' | 'affinity';
const MAP_NAMES: SocketLbMapName[] = ['services', 'slots', 'reverse', 'affinity'];

/** The pins of the maps under a pin directory, as the addon names them (native/socket_lb.cc: MapPin). */
export const mapPins = (pinDir: string) => MAP_NAMES.map((name) => `${pinDir}/map_${name}`);

export interface SocketLbHandle {
  attach(cgroupPath: string): void;
  update(map: SocketLbMapName, keys: Buffer, values: Buffer): void;
  remove(map: SocketLbMapName, keys: Buffer): void;
  dump(map: SocketLbMapName): { keys: Buffer; values: Buffer };
  /** Destroys connected UDP sockets of the cgroup's processes that the programs aimed at these endpoints. */
  destroyUdpSockets(cgroupPath: string, endpoints: Buffer): Promise<number>;
  close(): void;
}

export interface SocketLbAddon {
  SocketLb: new (options: { pinDir?: string; hostNetnsCookie?: bigint }) => SocketLbHandle;
  netnsCookie(): bigint;
  bpffs(dir: string, mountIfMissing: boolean): boolean;
  cleanup(pinDir: string): number;
}

export const socketLbAddon = () => (native() as unknown as { socketLb: SocketLbAddon }).socketLb;

const SERVICE_KEY_SIZE = 20;
const SERVICE_SIZE = 16;
const SLOT_KEY_SIZE = 8;
const BACKEND_SIZE = 20;
/** The two halves of a frontend's slot indexes, used in turn. */
const SECOND_HALF = 0x8000_0000;
/** Entries per bpf(2) batch call: bounds how long one call holds the map. */
const BATCH_ENTRIES = 4096;
const PROTOCOL_NUMBERS = { TCP: 6, UDP: 17 } as const;
const PROTOCOL_NAMES: Record<number, 'TCP' | 'UDP'> = { 6: 'TCP', 17: 'UDP' };

/** 16 bytes, IPv4 as ::ffff:a.b.c.d (the programs' form). */
function addressBytes(address: string): number[] {
  const parsed = ipaddr.parse(address);
  return parsed.kind() === 'ipv4' ? (parsed as ipaddr.IPv4).toIPv4MappedAddress().toByteArray() : parsed.toByteArray();
}

function addressText(bytes: Buffer): string {
  const address = ipaddr.fromByteArray([...bytes]) as ipaddr.IPv6;
  return address.isIPv4MappedAddress() ? address.toIPv4Address().toString() : address.toString();
}

class Packer {
  readonly buffer: Buffer;
  private offset = 0;
  constructor(count: number, size: number) {
    this.buffer = Buffer.alloc(count * size);
  }
  address(address: string, port: number): this {
    this.buffer.set(addressBytes(address), this.offset);
    this.buffer.writeUInt16BE(port, this.offset + 16);
    this.offset += 18;
    return this;
  }
  u8(value: number): this {
    this.buffer.writeUInt8(value, this.offset);
    this.offset += 1;
    return this;
  }
  skip(bytes: number): this {
    this.offset += bytes;
    return this;
  }
  /** Host byte order, as the programs read their own integers (x86 and arm64: little-endian). */
  u32(value: number): this {
    this.buffer.writeUInt32LE(value, this.offset);
    this.offset += 4;
    return this;
  }
}

/** A frontend as the maps hold it: its slots {id, base + i} and the endpoints found in them. */
export interface InstalledFrontend {
  id: number;
  base: number;
  count: number;
  affinityTimeoutSeconds: number;
  endpoints: SocketLbEndpoint[];
}

/**
 * What the maps hold, decoded: each frontend by frontendKey, and the slots no frontend points at
 * (a change interrupted between its steps).
 */
export function readMaps(handle: Pick<SocketLbHandle, 'dump'>): { installed: Map<string, InstalledFrontend>; strays: { id: number; index: number }[] } {
  const services = handle.dump('services');
  const slots = handle.dump('slots');
  const endpointsBySlot = new Map<string, SocketLbEndpoint>();
  for (let offset = 0; offset < slots.keys.length; offset += SLOT_KEY_SIZE) {
    const value = slots.values.subarray((offset / SLOT_KEY_SIZE) * BACKEND_SIZE);
    endpointsBySlot.set(`${slots.keys.readUInt32LE(offset)}/${slots.keys.readUInt32LE(offset + 4)}`, { address: addressText(value.subarray(0, 16)), port: value.readUInt16BE(16) });
  }
  const strays = new Set(endpointsBySlot.keys());
  const installed = new Map<string, InstalledFrontend>();
  for (let index = 0; index * SERVICE_KEY_SIZE < services.keys.length; index++) {
    const key = services.keys.subarray(index * SERVICE_KEY_SIZE);
    const value = services.values.subarray(index * SERVICE_SIZE);
    const [base, count, affinityTimeoutSeconds, id] = [0, 4, 8, 12].map((at) => value.readUInt32LE(at));
    const endpoints: SocketLbEndpoint[] = [];
    for (let slot = 0; slot < count; slot++) {
      const endpoint = endpointsBySlot.get(`${id}/${base + slot}`);
      if (endpoint) endpoints.push(endpoint);
      strays.delete(`${id}/${base + slot}`);
    }
    const protocol = PROTOCOL_NAMES[key.readUInt8(18)];
    if (!protocol) continue;
    installed.set(frontendKey({ protocol, address: addressText(key.subarray(0, 16)), port: key.readUInt16BE(16) }), { id, base, count, affinityTimeoutSeconds, endpoints });
  }
  return { installed, strays: [...strays].map((stray) => ({ id: Number(stray.split('/')[0]), index: Number(stray.split('/')[1]) })) };
}

const sameEndpoints = (a: SocketLbEndpoint[], b: SocketLbEndpoint[]) =>
  a.length === b.length && a.every((endpoint, index) => endpoint.address === b[index].address && endpoint.port === b[index].port);

export interface ApplyReport {
  /** Frontends written or removed. */
  changed: number;
  /** UDP endpoints that left a frontend (their connected sockets are destroyed). */
  removedUdpEndpoints: SocketLbEndpoint[];
}

export class SocketLbMaps {
  private readonly installed = new Map<string, InstalledFrontend>();
  private readonly freeIds: number[] = [];
  private nextId = 1;

  /** Takes over what a previous agent left in pinned maps, so unchanged frontends are not rewritten. */
  constructor(private readonly handle: SocketLbHandle) {
    const { installed, strays } = readMaps(handle);
    for (const [key, frontend] of installed) {
      this.installed.set(key, frontend);
      this.nextId = Math.max(this.nextId, frontend.id + 1);
    }
    const strayKeys = new Packer(strays.length, SLOT_KEY_SIZE);
    for (const { id, index } of strays) strayKeys.u32(id).u32(index);
    this.batched('remove', 'slots', strayKeys.buffer, SLOT_KEY_SIZE);
  }

  get size(): number {
    return this.installed.size;
  }

  /**
   * Brings the given frontends to their planned state (undefined: removed). With `all`, every
   * installed frontend missing from `frontends` is removed too (a full sync).
   */
  apply(frontends: Map<string, SocketLbFrontend | undefined>, all = false): ApplyReport {
    const changes = new Map(frontends);
    if (all) for (const key of this.installed.keys()) if (!changes.has(key)) changes.set(key, undefined);
    const written: [string, SocketLbFrontend, InstalledFrontend][] = [];
    const removed: [string, InstalledFrontend][] = [];
    const oldSlots: InstalledFrontend[] = [];
    const removedUdpEndpoints: SocketLbEndpoint[] = [];
    for (const [key, frontend] of changes) {
      const current = this.installed.get(key);
      if (!frontend) {
        if (current) removed.push([key, current]);
        continue;
      }
      if (current && current.affinityTimeoutSeconds === frontend.affinityTimeoutSeconds && sameEndpoints(current.endpoints, frontend.endpoints)) continue;
      const id = current?.id ?? this.freeIds.pop() ?? this.nextId++;
      const base = current && current.base === 0 ? SECOND_HALF : 0;
      written.push([key, frontend, { id, base, count: frontend.endpoints.length, affinityTimeoutSeconds: frontend.affinityTimeoutSeconds, endpoints: frontend.endpoints }]);
      if (current) oldSlots.push(current);
      if (current && frontend.protocol === 'UDP') {
        const kept = new Set(frontend.endpoints.map((endpoint) => `${endpoint.address} ${endpoint.port}`));
        removedUdpEndpoints.push(...current.endpoints.filter((endpoint) => !kept.has(`${endpoint.address} ${endpoint.port}`)));
      }
    }
    for (const [key, current] of removed) if (key.startsWith('UDP ')) removedUdpEndpoints.push(...current.endpoints);

    // 1. The new slots, unseen until a frontend points at them.
    const slotCount = written.reduce((sum, [, , next]) => sum + next.count, 0);
    const slotKeys = new Packer(slotCount, SLOT_KEY_SIZE);
    const backends = new Packer(slotCount, BACKEND_SIZE);
    for (const [, , next] of written) {
      next.endpoints.forEach((endpoint, index) => {
        slotKeys.u32(next.id).u32(next.base + index);
        backends.address(endpoint.address, endpoint.port).skip(2);
      });
    }
    this.batched('update', 'slots', slotKeys.buffer, SLOT_KEY_SIZE, backends.buffer, BACKEND_SIZE);
    // 2. The frontends, each switching to its new slots at once.
    const serviceKeys = new Packer(written.length, SERVICE_KEY_SIZE);
    const services = new Packer(written.length, SERVICE_SIZE);
    for (const [, frontend, next] of written) {
      serviceKeys.address(frontend.address, frontend.port).u8(PROTOCOL_NUMBERS[frontend.protocol]).skip(1);
      services.u32(next.base).u32(next.count).u32(next.affinityTimeoutSeconds).u32(next.id);
    }
    this.batched('update', 'services', serviceKeys.buffer, SERVICE_KEY_SIZE, services.buffer, SERVICE_SIZE);
    for (const [key, , next] of written) this.installed.set(key, next);
    // 3. Frontends that are gone, then every slot no frontend points at any more.
    const goneKeys = new Packer(removed.length, SERVICE_KEY_SIZE);
    for (const [key] of removed) {
      const [protocol, address, port] = key.split(' ');
      goneKeys.address(address, Number(port)).u8(PROTOCOL_NUMBERS[protocol as 'TCP' | 'UDP']).skip(1);
    }
    this.batched('remove', 'services', goneKeys.buffer, SERVICE_KEY_SIZE);
    for (const [key, current] of removed) {
      this.installed.delete(key);
      this.freeIds.push(current.id);
    }
    const staleSlots = [...oldSlots, ...removed.map(([, current]) => current)];
    const staleKeys = new Packer(staleSlots.reduce((sum, stale) => sum + stale.count, 0), SLOT_KEY_SIZE);
    for (const stale of staleSlots) for (let index = 0; index < stale.count; index++) staleKeys.u32(stale.id).u32(stale.base + index);
    this.batched('remove', 'slots', staleKeys.buffer, SLOT_KEY_SIZE);
    return { changed: written.length + removed.length, removedUdpEndpoints };
  }

  /** Packed slb_backend structs, for destroyUdpSockets. */
  static endpointsBuffer(endpoints: SocketLbEndpoint[]): Buffer {
    const packer = new Packer(endpoints.length, BACKEND_SIZE);
    for (const endpoint of endpoints) packer.address(endpoint.address, endpoint.port).skip(2);
    return packer.buffer;
  }

  private batched(operation: 'update' | 'remove', map: SocketLbMapName, keys: Buffer, keySize: number, values?: Buffer, valueSize = 0): void {
    for (let first = 0; first * keySize < keys.length; first += BATCH_ENTRIES) {
      const keyBatch = keys.subarray(first * keySize, (first + BATCH_ENTRIES) * keySize);
      if (operation === 'update') this.handle.update(map, keyBatch, values!.subarray(first * valueSize, (first + BATCH_ENTRIES) * valueSize));
      else this.handle.remove(map, keyBatch);
    }
  }
}
