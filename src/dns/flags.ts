import { OptionsError, type SettingsDefinition, fail, hostAndPort, hostPort, integerIn, ipAddresses } from '../settings.js';
import type { DnsOptions } from './dataplane.js';

/** A probe server's address: IP[:PORT], [IPv6]:PORT, :PORT (every address, as CoreDNS writes it) or '' (off). */
function probeAddress(text: string, defaultPort: number, where: string): string {
  const everyAddress = /^:(\d{1,5})$/.exec(text);
  if (everyAddress && !(Number(everyAddress[1]) >= 1 && Number(everyAddress[1]) <= 65535)) fail(where, text, 'port must be 1-65535');
  return text === '' || everyAddress ? text : hostPort(text, defaultPort, where);
}

/** --cluster-dns and --dns-*: cluster DNS is on when it has addresses. */
export const DNS_SETTINGS: SettingsDefinition<DnsOptions> = {
  defaults: () => ({ addresses: [], zone: 'cluster.local', ttl: 5, pods: 'insecure' }),
  flags: [
    { flag: 'cluster-dns', kind: 'list', arg: 'IP[,IP]', help: 'serve cluster DNS on these addresses, UDP and TCP 53 (e.g. 169.254.20.10 and the kube-dns ClusterIP)',
      apply: (o, v: string[], where) => { o.addresses = ipAddresses(v, where); } },
    { flag: 'cluster-domain', kind: 'string', arg: 'DOMAIN', help: 'the cluster DNS zone', defaultText: 'cluster.local',
      apply: (o, v: string, where) => {
        const zone = v.toLowerCase().replace(/\.$/, '');
        if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/.test(zone) || zone.length > 200) fail(where, v, 'is not a domain name');
        o.zone = zone;
      } },
    { flag: 'dns-upstream', kind: 'list', arg: 'IP[:PORT][,...]', help: 'where names outside the cluster go (default: /etc/resolv.conf\'s nameservers, minus --cluster-dns)',
      apply: (o, v: string[], where) => {
        o.upstreams = v.map((item) => {
          const { host, port } = hostAndPort(item, 53, where);
          return { address: host, port };
        });
      } },
    { flag: 'dns-ttl', kind: 'int', arg: 'SECONDS', help: 'TTL of cluster DNS answers (0-3600)', defaultText: '5',
      apply: (o, v: number, where) => { o.ttl = integerIn(v, 0, 3600, where); } },
    { flag: 'dns-pods', kind: 'string', arg: 'insecure|disabled', help: 'pod A records a-b-c-d.<ns>.pod.<zone>: insecure (any dashed IP, as kubeadm\'s CoreDNS) or disabled', defaultText: 'insecure',
      apply: (o, v: string, where) => { o.pods = v === 'disabled' ? 'disabled' : v === 'insecure' || v === '' ? 'insecure' : fail(where, v, 'is not insecure or disabled'); } },
    { flag: 'dns-health-address', kind: 'string', arg: '[IP]:PORT', help: 'cluster DNS\'s /health (CoreDNS\'s): OK while serving; :PORT: every address; empty: off', defaultText: 'first --cluster-dns address:8080',
      apply: (o, v: string, where) => { o.healthAddress = probeAddress(v, 8080, where); } },
    { flag: 'dns-ready-address', kind: 'string', arg: '[IP]:PORT', help: 'cluster DNS\'s /ready (CoreDNS\'s): 200 once the synced names are served; empty: off', defaultText: 'first --cluster-dns address:8181',
      apply: (o, v: string, where) => { o.readyAddress = probeAddress(v, 8181, where); } },
  ],
  check(settings) {
    for (const [flag, value] of [['--dns-health-address', settings.healthAddress], ['--dns-ready-address', settings.readyAddress]]) {
      if (value !== undefined && settings.addresses.length === 0) throw new OptionsError(`${flag} needs --cluster-dns`);
    }
  },
};
