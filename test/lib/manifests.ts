// Builders for the Kubernetes objects the tests feed kubenft, and a temp-file writer for them.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';

export interface PortSpec {
  name?: string;
  port: number;
  targetPort?: number | string;
  protocol?: 'TCP' | 'UDP' | 'SCTP';
  nodePort?: number;
}

export function service(name: string, clusterIP: string | string[], ports: PortSpec[], spec: Record<string, unknown> = {}, extra: Record<string, unknown> = {}) {
  const clusterIPs = Array.isArray(clusterIP) ? clusterIP : [clusterIP];
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name, namespace: 'default' },
    spec: { clusterIP: clusterIPs[0], clusterIPs, ports: ports.map((port) => ({ protocol: 'TCP', ...port })), ...spec },
    ...extra,
  };
}

export interface EndpointSpec {
  ip: string;
  ready?: boolean;
  serving?: boolean;
  terminating?: boolean;
  nodeName?: string;
  zone?: string;
  forZones?: string[];
  forNodes?: string[];
}

export function slice(serviceName: string, ports: { name?: string; port: number; protocol?: string }[], endpoints: EndpointSpec[], options: { name?: string; addressType?: 'IPv4' | 'IPv6' } = {}) {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name: options.name ?? `${serviceName}-${options.addressType ?? 'IPv4'}`.toLowerCase(), namespace: 'default', labels: { 'kubernetes.io/service-name': serviceName } },
    addressType: options.addressType ?? 'IPv4',
    ports: ports.map((port) => ({ name: port.name ?? '', protocol: port.protocol ?? 'TCP', port: port.port })),
    endpoints: endpoints.map((endpoint) => ({
      addresses: [endpoint.ip],
      conditions: { ready: endpoint.ready ?? true, serving: endpoint.serving ?? endpoint.ready ?? true, terminating: endpoint.terminating ?? false },
      ...(endpoint.nodeName ? { nodeName: endpoint.nodeName } : {}),
      ...(endpoint.zone ? { zone: endpoint.zone } : {}),
      ...(endpoint.forZones || endpoint.forNodes
        ? { hints: { ...(endpoint.forZones ? { forZones: endpoint.forZones.map((name) => ({ name })) } : {}), ...(endpoint.forNodes ? { forNodes: endpoint.forNodes.map((name) => ({ name })) } : {}) } }
        : {}),
    })),
  };
}

export function node(name: string, addresses: string[], options: { zone?: string; podCIDRs?: string[] } = {}) {
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name, labels: options.zone ? { 'topology.kubernetes.io/zone': options.zone } : {} },
    spec: options.podCIDRs ? { podCIDR: options.podCIDRs[0], podCIDRs: options.podCIDRs } : {},
    status: { addresses: addresses.map((address) => ({ type: 'InternalIP', address })) },
  };
}

/**
 * An object as YAML that kubectl (and so kubenft) reads back as that object: kubectl reads YAML 1.1
 * scalars, so a string such as "yes" or "010" must be quoted.
 */
export const manifestYaml = (object: unknown) => stringify(object, { version: '1.1' });

/** A temporary manifests file; `write` replaces its content, `remove` deletes its directory. */
export class ManifestFile {
  private readonly directory = mkdtempSync(join(tmpdir(), 'kubenft-test-'));
  readonly path = join(this.directory, 'manifests.yaml');

  constructor(objects: unknown[] = []) {
    this.write(objects);
  }

  write(objects: unknown[]): void {
    this.writeText(objects.map(manifestYaml).join('---\n'));
  }

  /** Replaces the content with `text` as it is (documents a test wrote itself, broken ones too). */
  writeText(text: string): void {
    writeFileSync(this.path, text);
  }

  /** Writes another file next to the manifests (removed with them) and returns its path. */
  writeBeside(name: string, text: string): string {
    const path = join(this.directory, name);
    writeFileSync(path, text);
    return path;
  }

  remove(): void {
    rmSync(this.directory, { recursive: true, force: true });
  }
}
