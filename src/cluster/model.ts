// Normalized cluster state: what the planner needs from Services, EndpointSlices and Nodes,
// validated once at the edge so the planner never sees a malformed value.

export type Protocol = 'TCP' | 'UDP' | 'SCTP';
export type IPFamily = 4 | 6;

export interface ServicePortInfo {
  /** '' for the single unnamed port. */
  name: string;
  protocol: Protocol;
  port: number;
  targetPort: number | string;
  nodePort?: number;
}

export interface ServiceInfo {
  namespace: string;
  name: string;
  /** ExternalName services have no address and no rules: only cluster DNS answers for them. */
  type: 'ClusterIP' | 'NodePort' | 'LoadBalancer' | 'ExternalName';
  /** clusterIP None: cluster DNS answers with the ready endpoints' addresses. */
  headless: boolean;
  /**
   * Labelled service.kubernetes.io/service-proxy-name: another proxy's service. kubenft's proxying
   * dataplanes leave it alone, as kube-proxy does; cluster DNS names it, as CoreDNS does.
   */
  otherProxy?: boolean;
  /** The name an ExternalName service aliases (lower case, no trailing dot). */
  externalName?: string;
  /** One per family, primary first; empty for headless services. */
  clusterIPs: string[];
  ports: ServicePortInfo[];
  externalIPs: string[];
  loadBalancerIPs: string[];
  loadBalancerSourceRanges: string[];
  /** Seconds of ClientIP session affinity, or undefined for none. */
  affinityTimeoutSeconds?: number;
  externalTrafficPolicyLocal: boolean;
  internalTrafficPolicyLocal: boolean;
  healthCheckNodePort?: number;
  trafficDistribution?: string;
}

export interface EndpointInfo {
  address: string;
  ready: boolean;
  serving: boolean;
  terminating: boolean;
  nodeName?: string;
  zone?: string;
  hintZones?: string[];
  hintNodes?: string[];
  /** The endpoint's DNS name below a headless service, when its slice names one. */
  hostname?: string;
}

export interface EndpointSlicePort {
  name: string;
  protocol: Protocol;
  port: number;
}

export interface EndpointSliceInfo {
  namespace: string;
  name: string;
  serviceName: string;
  family: IPFamily;
  ports: EndpointSlicePort[];
  endpoints: EndpointInfo[];
  /** Labelled service.kubernetes.io/service-proxy-name: another proxy's endpoints, for cluster DNS only. */
  otherProxy?: boolean;
  /**
   * Labelled service.kubernetes.io/headless, which kube-proxy's selector leaves out: endpoints for
   * cluster DNS and for the ingress, which picks endpoints itself.
   */
  headless?: boolean;
}

export interface NodeInfo {
  name: string;
  addresses: string[];
  zone?: string;
  podCIDRs: string[];
  labels: Record<string, string>;
}

const PLAIN = /^[A-Za-z0-9][-A-Za-z0-9._]{0,99}$/;

/** A name from the input, fit for one log line: quoted and shortened unless it is plainly safe. */
export const printable = (text: string) =>
  PLAIN.test(text) ? text : JSON.stringify(text.length > 100 ? `${text.slice(0, 100)}…` : text);

/** A rejected input object: kind/namespace/name and why, reported and skipped. */
export class ObjectError extends Error {
  constructor(
    readonly kind: string,
    readonly namespace: string | undefined,
    readonly objectName: string | undefined,
    readonly reason: string,
  ) {
    super(`${printable(kind)} ${namespace ? `${printable(namespace)}/` : ''}${objectName === undefined ? '<unnamed>' : printable(objectName)}: ${reason}`);
  }
}

export const serviceKey = (namespace: string, name: string) => `${namespace}/${name}`;
