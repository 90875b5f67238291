// What the ingress lists from the API server, known before its code loads (flags.ts and dataplane.ts share it).
import type { ListNeeds } from '../capability.js';

/**
 * The ingress routes to headless services' endpoints too, and reads Ingresses, their classes and
 * TLS Secrets (only those, selected by the server: it never reads another Secret's data).
 */
export const INGRESS_LISTS: ListNeeds = {
  headlessSlices: true,
  kinds: [
    { kind: 'Ingress', apiVersion: 'networking.k8s.io/v1', path: '/apis/networking.k8s.io/v1/ingresses' },
    { kind: 'IngressClass', apiVersion: 'networking.k8s.io/v1', path: '/apis/networking.k8s.io/v1/ingressclasses' },
    { kind: 'Secret', apiVersion: 'v1', path: '/api/v1/secrets', fieldSelector: 'type=kubernetes.io/tls' },
  ],
};
