import { type SettingsDefinition, fail, hostPort, integerIn } from '../settings.js';
import type { GatewaySettings } from './dataplane.js';

const SECOND_MS = 1000;
/** --gateway-haproxy-dir's default. */
export const DEFAULT_GATEWAY_HAPROXY_DIR = '/run/kubenft/gateway-haproxy';

/** --gateway and its flags; the proxy's limits and timeouts are the ingress proxy's defaults. */
export const GATEWAY_SETTINGS: SettingsDefinition<GatewaySettings> = {
  defaults: () => ({
    enabled: false, className: 'kubenft', httpAddress: '0.0.0.0:80', httpsAddress: '0.0.0.0:443', workers: 0,
    maxBodyBytes: 100 * 1024 * 1024, maxHeaderBytes: 16 * 1024, clientTimeoutMs: 60 * SECOND_MS, backendTimeoutMs: 60 * SECOND_MS, connectTimeoutMs: 5 * SECOND_MS,
    dataplane: 'builtin', haproxyDir: DEFAULT_GATEWAY_HAPROXY_DIR,
  }),
  flags: [
    { flag: 'gateway', kind: 'bool', help: 'also be the Gateway API controller: the proxy on every node serves the GatewayClass\'s Gateways and their HTTPRoutes', defaultText: 'false',
      apply: (o, v: boolean) => { o.enabled = v; } },
    { flag: 'gateway-class', kind: 'string', arg: 'NAME', help: 'the GatewayClass served (its spec.controllerName must be kubenft.io/gateway-controller)', defaultText: 'kubenft',
      apply: (o, v: string, where) => { o.className = v || fail(where, v, 'must not be empty'); } },
    { flag: 'gateway-http-address', kind: 'string', arg: 'IP:PORT', help: 'where HTTP listeners are served (listeners on this port); empty disables them', defaultText: '0.0.0.0:80',
      apply: (o, v: string, where) => { o.httpAddress = v === '' ? undefined : hostPort(v, 80, where); } },
    { flag: 'gateway-https-address', kind: 'string', arg: 'IP:PORT', help: 'where HTTPS listeners are served (listeners on this port); empty disables them', defaultText: '0.0.0.0:443',
      apply: (o, v: string, where) => { o.httpsAddress = v === '' ? undefined : hostPort(v, 443, where); } },
    { flag: 'gateway-workers', kind: 'int', arg: 'N', help: 'Gateway proxy worker processes (HAProxy: threads) per listener address; 0: one per core', defaultText: '0',
      apply: (o, v: number, where) => { o.workers = integerIn(v, 0, 256, where); } },
    { flag: 'gateway-dataplane', kind: 'string', arg: 'haproxy|builtin', help: 'what serves the Gateway listeners: HAProxy through its runtime API (no RequestMirror), or the built-in Node proxy', defaultText: 'builtin',
      apply: (o, v: string, where) => { o.dataplane = v === 'haproxy' || v === 'builtin' ? v : fail(where, v, 'must be haproxy or builtin'); } },
    { flag: 'gateway-haproxy-dir', kind: 'string', arg: 'PATH', help: 'the Gateway HAProxys\' configuration, maps, certificates and sockets (per network namespace and listener address)', defaultText: DEFAULT_GATEWAY_HAPROXY_DIR,
      apply: (o, v: string, where) => { o.haproxyDir = v || fail(where, v, 'must not be empty'); } },
  ],
};
