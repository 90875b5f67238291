// What the Gateway API lists from the API server, known before its code loads (flags.ts and dataplane.ts share it).
import type { ListNeeds } from '../capability.js';

const GROUP_PATH = '/apis/gateway.networking.k8s.io';

/** Gateway API's kinds (the standard channel's versions), TLS Secrets, and Namespaces for allowedRoutes' selectors. */
export const GATEWAY_LISTS: ListNeeds = {
  headlessSlices: true,
  kinds: [
    { kind: 'GatewayClass', apiVersion: 'gateway.networking.k8s.io/v1', path: `${GROUP_PATH}/v1/gatewayclasses` },
    { kind: 'Gateway', apiVersion: 'gateway.networking.k8s.io/v1', path: `${GROUP_PATH}/v1/gateways` },
    { kind: 'HTTPRoute', apiVersion: 'gateway.networking.k8s.io/v1', path: `${GROUP_PATH}/v1/httproutes` },
    { kind: 'ReferenceGrant', apiVersion: 'gateway.networking.k8s.io/v1beta1', path: `${GROUP_PATH}/v1beta1/referencegrants` },
    { kind: 'Secret', apiVersion: 'v1', path: '/api/v1/secrets', fieldSelector: 'type=kubernetes.io/tls' },
    { kind: 'Namespace', apiVersion: 'v1', path: '/api/v1/namespaces' },
  ],
};
