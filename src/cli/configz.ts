import { chosenDataplane } from '../ingress/index.js';
import { formatDuration } from '../settings.js';
import { type AgentOptions, DEFAULT_CONFIG_SYNC_PERIOD_MS } from './options.js';

// kube-proxy's /configz: {"kubeproxy.config.k8s.io": <its configuration>}. kube-proxy registers its
// internal KubeProxyConfiguration (pkg/proxy/apis/config/types.go), which has no JSON tags, so Go
// prints the fields under their Go names (Mode, Linux.Conntrack.MaxPerCore, SyncPeriod "30s"), not
// the file's camelCase; this is that shape, filled from what kubenft runs with. Settings kubenft
// does not implement (IPVS, Windows) show the values it accepts for them: their defaults.

export const CONFIGZ_GROUP = 'kubeproxy.config.k8s.io';
/** kubenft's own settings that are chosen at start rather than given (kube-proxy has no field for them). */
export const KUBENFT_CONFIGZ_GROUP = 'kubenft.io';

/** kube-proxy's client defaults, which kubenft's API source applies too. */
const DEFAULT_QPS = 5;
const DEFAULT_BURST = 10;

export function configz(options: AgentOptions): Record<string, object> {
  const { conntrack } = options;
  const duration = formatDuration;
  return {
    [CONFIGZ_GROUP]: {
      Linux: {
        Conntrack: {
          MaxPerCore: conntrack.maxPerCore,
          Min: conntrack.min,
          TCPEstablishedTimeout: duration(conntrack.tcpEstablishedTimeoutMs),
          TCPCloseWaitTimeout: duration(conntrack.tcpCloseWaitTimeoutMs),
          TCPBeLiberal: conntrack.tcpBeLiberal,
          UDPTimeout: duration(conntrack.udpTimeoutMs),
          UDPStreamTimeout: duration(conntrack.udpStreamTimeoutMs),
        },
        MasqueradeAll: options.masqueradeAll,
        OOMScoreAdj: options.oomScoreAdj,
      },
      Windows: { RunAsService: false },
      FeatureGates: { ...options.featureGates },
      ClientConnection: {
        Kubeconfig: options.kubeconfig ?? '',
        AcceptContentTypes: '',
        ContentType: 'application/json',
        QPS: options.kubeApiQps ?? DEFAULT_QPS,
        Burst: options.kubeApiBurst ?? DEFAULT_BURST,
      },
      // component-base's LoggingConfiguration does have JSON tags.
      Logging: { format: options.logFormat, flushFrequency: '5s', verbosity: options.verbosity, options: { text: { infoBufferSize: '0' }, json: { infoBufferSize: '0' } } },
      HostnameOverride: options.hostnameOverride ?? '',
      BindAddress: options.bindAddress,
      HealthzBindAddress: options.healthzBindAddress,
      MetricsBindAddress: options.metricsBindAddress,
      BindAddressHardFail: false,
      EnableProfiling: false,
      ShowHiddenMetricsForVersion: '',
      Mode: options.proxyMode,
      IPTables: { MasqueradeBit: options.masqueradeBit, LocalhostNodePorts: true },
      IPVS: { Scheduler: '', ExcludeCIDRs: null, StrictARP: false, TCPTimeout: '0s', TCPFinTimeout: '0s', UDPTimeout: '0s' },
      Winkernel: { NetworkName: '', SourceVip: '', EnableDSR: false, RootHnsEndpointName: '', ForwardHealthCheckVip: false },
      NFTables: { MasqueradeBit: options.masqueradeBit },
      DetectLocalMode: options.detectLocalMode,
      DetectLocal: { BridgeInterface: '', ClusterCIDRs: options.clusterCIDRs.length > 0 ? [...options.clusterCIDRs] : null, InterfaceNamePrefix: '' },
      NodePortAddresses: options.nodePortAddresses.length > 0 ? [...options.nodePortAddresses] : null,
      SyncPeriod: duration(options.syncPeriodMs),
      MinSyncPeriod: duration(options.minSyncPeriodMs),
      ConfigSyncPeriod: duration(DEFAULT_CONFIG_SYNC_PERIOD_MS),
    },
    ...(options.ingress.enabled ? { [KUBENFT_CONFIGZ_GROUP]: { Ingress: { Dataplane: chosenDataplane(options.ingress).name } } } : {}),
  };
}
