import { normalizeEndpointSlice, normalizeNode, normalizeService, endpointsToSlices } from './normalize.js';
import { type EndpointSliceInfo, type NodeInfo, ObjectError, type ServiceInfo, serviceKey } from './model.js';

// The cluster as the proxy sees it: the last valid version of every Service, EndpointSlice and this
// Node, plus which services changed since the last sync (the input of a partial sync).

export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata?: { name?: string; namespace?: string; [key: string]: unknown };
  [key: string]: unknown;
}

const sliceOwner = (slice: EndpointSliceInfo) => serviceKey(slice.namespace, slice.serviceName);

/** The kinds the proxy itself reads; other dataplanes register theirs with registerKind. */
export const PROXY_KINDS: readonly string[] = ['Service', 'EndpointSlice', 'Endpoints', 'Node'];

/** Validates one object of a registered kind: returns what is kept, or throws ObjectError naming why not. */
export type Normalizer = (object: KubeObject) => unknown;

/** A kind read beyond the proxy's own: the collection the API server serves it in. */
export interface ListedKind {
  kind: string;
  apiVersion: string;
  /** The collection's path, which the API source lists and watches. */
  path: string;
  fieldSelector?: string;
}

/** A kind read beyond the proxy's own, with its validation. */
export interface WatchedKind extends ListedKind {
  normalize: Normalizer;
}

/**
 * What a reader of the state (a capability) needs listed beyond Services, EndpointSlices and this
 * Node, known from its settings alone: the first lists are asked for with it before the reader's
 * code is loaded.
 */
export interface ListNeeds {
  kinds?: readonly ListedKind[];
  /** Every Service and EndpointSlice, also headless services' and other proxies' (cluster DNS names them all). */
  allServices?: boolean;
  /** The EndpointSlices of headless services too (the ingress routes to them); another proxy's stay its own. */
  headlessSlices?: boolean;
}

/** What a reader of the state needs watched: its lists, each kind with its validation. */
export interface WatchNeeds extends ListNeeds {
  kinds?: readonly WatchedKind[];
}

/** `lists` with each kind's validation, by kind: one description of what a capability reads, not two. */
export function withNormalizers(lists: ListNeeds, normalizers: Readonly<Record<string, Normalizer>>): WatchNeeds {
  return {
    ...lists,
    kinds: lists.kinds?.map((listed) => {
      const normalize = normalizers[listed.kind];
      if (!normalize) throw new Error(`no validation given for the listed kind ${listed.kind}`);
      return { ...listed, normalize };
    }),
  };
}

const otherKey = (object: KubeObject) => (object.metadata?.namespace ? `${object.metadata.namespace}/${object.metadata.name ?? ''}` : object.metadata?.name ?? '');

export class ClusterState {
  readonly services = new Map<string, ServiceInfo>();
  /**
   * Slices by service key, in the order they were last applied. A list, not a map by slice name: a
   * service has one slice or a few, and a Map per service cost ~300 bytes (30 MB at 100k services).
   */
  readonly slices = new Map<string, EndpointSliceInfo[]>();
  /** Every slice by namespace/name, so that an update or delete finds the service that owned it. */
  private readonly slicesByKey = new Map<string, EndpointSliceInfo>();
  node: NodeInfo | undefined;
  private changed = new Set<string>();
  private nodeChanged = false;
  private readonly normalizers = new Map<string, Normalizer>();
  /** Objects of registered kinds (Namespace, Ingress, …): kind → namespace/name → normalized value. */
  private readonly others = new Map<string, Map<string, unknown>>();
  private changedKinds = new Set<string>();

  private readonly watchList: WatchNeeds[] = [];

  /** @param nodeHints whether EndpointSlice forNodes hints count (the PreferSameTrafficDistribution gate) */
  constructor(readonly nodeName: string, readonly nodeHints = true) {}

  /** Before a source starts: keeps what `needs` asks for, which the sources then read. */
  watch(needs: WatchNeeds): void {
    this.watchList.push(needs);
    for (const { kind, normalize } of needs.kinds ?? []) this.registerKind(kind, normalize);
  }

  /** What the sources must watch for this state's readers. */
  get watches(): readonly WatchNeeds[] {
    return this.watchList;
  }

  /** Keeps objects of `kind` for another dataplane (DNS, ingress), validated by `normalize`. */
  registerKind(kind: string, normalize: Normalizer): void {
    this.normalizers.set(kind, normalize);
    this.others.set(kind, new Map());
  }

  /** Every kind this state accepts: what a source should read. */
  get kinds(): string[] {
    return [...PROXY_KINDS, ...this.normalizers.keys()];
  }

  /** The valid objects of a registered kind, by namespace/name (name alone for cluster-scoped kinds). */
  objectsOf<T>(kind: string): ReadonlyMap<string, T> {
    return (this.others.get(kind) ?? new Map()) as ReadonlyMap<string, T>;
  }

  /** Applies an added or modified object; throws ObjectError (and keeps the old version) when it is invalid. */
  apply(object: KubeObject): void {
    try {
      this.applyValid(object);
    } catch (error) {
      if (error instanceof ObjectError) throw error;
      // A shape the validators did not foresee must still name the object rather than stop the proxy.
      const metadata = typeof object === 'object' && object !== null ? object.metadata : undefined;
      throw new ObjectError(String(object?.kind), metadata?.namespace, metadata?.name, (error as Error).message);
    }
  }

  private applyValid(object: KubeObject): void {
    switch (object.kind) {
      case 'Service':
        return this.setService(object, normalizeService(object));
      case 'EndpointSlice':
        return this.setSlice(object, normalizeEndpointSlice(object));
      case 'Endpoints':
        for (const slice of endpointsToSlices(object)) this.apply(slice as KubeObject);
        return;
      case 'Node': {
        const node = normalizeNode(object);
        if (node.name !== this.nodeName) return;
        this.nodeChanged ||= JSON.stringify(node.labels) !== JSON.stringify(this.node?.labels);
        this.node = node;
        return;
      }
      default:
        if (!this.normalizers.has(object.kind ?? '')) throw new ObjectError(object.kind ?? '<no kind>', object.metadata?.namespace, object.metadata?.name, 'unsupported kind');
        return this.applyOther(object);
    }
  }

  /** Keeps a registered kind's object; a normalizer's undefined means the object is not one to keep. */
  private applyOther(object: KubeObject): void {
    const value = this.normalizers.get(object.kind!)!(object);
    if (value === undefined) this.others.get(object.kind!)!.delete(otherKey(object));
    else this.others.get(object.kind!)!.set(otherKey(object), value);
    this.changedKinds.add(object.kind!);
  }

  delete(object: KubeObject): void {
    const namespace = object.metadata?.namespace ?? 'default';
    const name = object.metadata?.name ?? '';
    if (object.kind === 'Service') {
      this.services.delete(serviceKey(namespace, name));
      this.changed.add(serviceKey(namespace, name));
    } else if (object.kind === 'EndpointSlice') {
      this.removeSlice(`${namespace}/${name}`);
    } else if (object.kind === 'Endpoints') {
      for (const slice of endpointsToSlices(object) as KubeObject[]) this.delete(slice);
    } else if (object.kind === 'Node' && name === this.nodeName) {
      this.node = undefined;
      this.nodeChanged = true;
    } else if (this.others.get(object.kind ?? '')?.delete(otherKey(object))) {
      this.changedKinds.add(object.kind!);
    }
  }

  private setService(object: KubeObject, service: ServiceInfo): void {
    const key = serviceKey(object.metadata?.namespace ?? 'default', object.metadata?.name ?? '');
    this.services.set(key, service);
    this.changed.add(key);
  }

  private setSlice(object: KubeObject, slice: EndpointSliceInfo | undefined): void {
    const sliceKey = `${object.metadata?.namespace ?? 'default'}/${object.metadata?.name}`;
    this.removeSlice(sliceKey);
    if (!slice) return;
    const owner = sliceOwner(slice);
    const slices = this.slices.get(owner);
    if (slices) slices.push(slice);
    else this.slices.set(owner, [slice]);
    this.slicesByKey.set(sliceKey, slice);
    this.changed.add(owner);
  }

  private removeSlice(sliceKey: string): void {
    const slice = this.slicesByKey.get(sliceKey);
    if (slice === undefined) return;
    this.slicesByKey.delete(sliceKey);
    const owner = sliceOwner(slice);
    const slices = this.slices.get(owner)!;
    slices.splice(slices.indexOf(slice), 1);
    if (slices.length === 0) this.slices.delete(owner);
    this.changed.add(owner);
  }

  /** Service keys changed since the last call, whether this node's labels changed, and the other kinds changed. */
  takeChanges(): { services: Set<string>; nodeLabelsChanged: boolean; kinds: Set<string> } {
    const changes = { services: this.changed, nodeLabelsChanged: this.nodeChanged, kinds: this.changedKinds };
    this.changed = new Set();
    this.nodeChanged = false;
    this.changedKinds = new Set();
    return changes;
  }

  get endpointCount(): number {
    let count = 0;
    for (const slices of this.slices.values()) for (const slice of slices) count += slice.endpoints.length;
    return count;
  }
}
