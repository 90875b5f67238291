import { OptionsError, type SettingsDefinition, fail, hostPort, integerIn, ipAddresses, namespacedName, positive } from '../settings.js';
import type { IngressOptions } from './dataplane.js';

/** --ingress and its settings. */
export interface IngressSettings extends IngressOptions {
  enabled: boolean;
}

const SECOND_MS = 1000;
/** --ingress-haproxy-dir's default. */
export const DEFAULT_INGRESS_HAPROXY_DIR = '/run/kubenft/ingress-haproxy';

export const INGRESS_SETTINGS: SettingsDefinition<IngressSettings> = {
  defaults: () => ({
    enabled: false, className: 'kubenft', httpAddress: '0.0.0.0:80', httpsAddress: '0.0.0.0:443',
    maxBodyBytes: 100 * 1024 * 1024, maxHeaderBytes: 16 * 1024, clientTimeoutMs: 60 * SECOND_MS, backendTimeoutMs: 60 * SECOND_MS, connectTimeoutMs: 5 * SECOND_MS, workers: 0,
    statusAddresses: [], dataplane: undefined, haproxyDir: DEFAULT_INGRESS_HAPROXY_DIR,
  }),
  flags: [
    { flag: 'ingress', kind: 'bool', help: 'also be the ingress controller: a proxy on every node routes the served Ingresses', defaultText: 'false',
      apply: (o, v: boolean) => { o.enabled = v; } },
    { flag: 'ingress-class', kind: 'string', arg: 'NAME', help: 'serve Ingresses annotated kubernetes.io/ingress.class: NAME (and those of kubenft.io/ingress-controller\'s IngressClasses)', defaultText: 'kubenft',
      apply: (o, v: string, where) => { o.className = v || fail(where, v, 'must not be empty'); } },
    { flag: 'ingress-http-address', kind: 'string', arg: 'IP:PORT', help: 'plain HTTP listener of the ingress proxy; empty disables it', defaultText: '0.0.0.0:80',
      apply: (o, v: string, where) => { o.httpAddress = v === '' ? undefined : hostPort(v, 80, where); } },
    { flag: 'ingress-https-address', kind: 'string', arg: 'IP:PORT', help: 'HTTPS (and HTTP/2) listener of the ingress proxy; empty disables it', defaultText: '0.0.0.0:443',
      apply: (o, v: string, where) => { o.httpsAddress = v === '' ? undefined : hostPort(v, 443, where); } },
    { flag: 'ingress-default-certificate', kind: 'string', arg: 'NAMESPACE/NAME', help: 'TLS Secret served for unknown or absent SNI (default: one generated at start)',
      apply: (o, v: string, where) => { o.defaultCertificate = namespacedName(v, where); } },
    { flag: 'ingress-service', kind: 'string', arg: 'NAMESPACE/NAME', help: 'the ingress\'s LoadBalancer Service (cf. --publish-service): its LB and external IPs on the listeners\' ports reach the proxy; the status shows them',
      apply: (o, v: string, where) => { o.service = namespacedName(v, where); } },
    { flag: 'ingress-max-body-size', kind: 'int', arg: 'BYTES', help: 'larger request bodies get a 413', defaultText: String(100 * 1024 * 1024),
      apply: (o, v: number, where) => { o.maxBodyBytes = integerIn(v, 0, Number.MAX_SAFE_INTEGER, where); } },
    { flag: 'ingress-max-header-size', kind: 'int', arg: 'BYTES', help: 'larger request (or response) headers get a 431 (or a 502)', defaultText: String(16 * 1024),
      apply: (o, v: number, where) => { o.maxHeaderBytes = integerIn(v, 1024, 1024 * 1024, where); } },
    { flag: 'ingress-client-timeout', kind: 'duration', arg: 'DURATION', help: 'close client connections idle (or sending a request) this long', defaultText: '1m0s',
      apply: (o, v: number, where) => { o.clientTimeoutMs = positive(v, where); } },
    { flag: 'ingress-backend-timeout', kind: 'duration', arg: 'DURATION', help: 'a backend silent this long (before its response, within its body) fails the request (504); a WebSocket idle this long is closed', defaultText: '1m0s',
      apply: (o, v: number, where) => { o.backendTimeoutMs = positive(v, where); } },
    { flag: 'ingress-connect-timeout', kind: 'duration', arg: 'DURATION', help: 'a backend not connected within this fails the request or WebSocket (504), cf. proxy-connect-timeout', defaultText: '5s',
      apply: (o, v: number, where) => { o.connectTimeoutMs = positive(v, where); } },
    { flag: 'ingress-status-address', kind: 'list', arg: 'IP[,IP]', help: 'agent mode: the served Ingresses\' status.loadBalancer addresses (default: the elected writer\'s node addresses)',
      apply: (o, v: string[], where) => { o.statusAddresses = ipAddresses(v, where); } },
    { flag: 'ingress-workers', kind: 'int', arg: 'N', help: 'ingress proxy worker processes; 0: one per core', defaultText: '0',
      apply: (o, v: number, where) => { o.workers = integerIn(v, 0, 256, where); } },
    // ---- the ingress dataplane (issue 28) ----
    { flag: 'ingress-dataplane', kind: 'string', arg: 'haproxy|builtin', help: 'what serves the routes: HAProxy programmed through its runtime API, or the built-in Node proxy', defaultText: 'haproxy where it is installed, else builtin',
      apply: (o, v: string, where) => { o.dataplane = v === 'haproxy' || v === 'builtin' ? v : fail(where, v, 'must be haproxy or builtin'); } },
    { flag: 'ingress-haproxy-dir', kind: 'string', arg: 'PATH', help: 'HAProxy\'s configuration, maps, certificates and sockets (a subdirectory per network namespace)', defaultText: DEFAULT_INGRESS_HAPROXY_DIR,
      apply: (o, v: string, where) => { o.haproxyDir = v || fail(where, v, 'must not be empty'); } },
  ],
  check(settings, { proxyMode }) {
    if (settings.service && !settings.enabled) throw new OptionsError('--ingress-service needs --ingress');
    if (settings.service && proxyMode !== 'nftables') throw new OptionsError('--ingress-service steers its addresses to the proxy with nftables rules: it needs --proxy-mode=nftables');
  },
};
