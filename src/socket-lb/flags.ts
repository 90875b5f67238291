import type { SettingsDefinition } from '../settings.js';
import type { SocketLbSettings } from './dataplane.js';

/** --socket-lb and its settings. */
export interface SocketLbOptions extends SocketLbSettings {
  enabled: boolean;
}

const DEFAULT_PIN_DIR = '/sys/fs/bpf/kubenft';

export const SOCKET_LB_SETTINGS: SettingsDefinition<SocketLbOptions> = {
  defaults: () => ({ enabled: false, hostOnly: false, pinDir: DEFAULT_PIN_DIR }),
  flags: [
    { flag: 'socket-lb', kind: 'bool', help: 'nftables mode: a local connect() or sendmsg() to a ClusterIP goes straight to an endpoint (cgroup BPF), no per-packet NAT', defaultText: 'false',
      apply: (o, v: boolean) => { o.enabled = v; } },
    { flag: 'socket-lb-cgroup', kind: 'string', arg: 'PATH', help: 'the cgroup v2 directory the socket LB attaches to', defaultText: 'the cgroup v2 root',
      apply: (o, v: string) => { o.cgroup = v || undefined; } },
    { flag: 'socket-lb-host-only', kind: 'bool', help: 'socket LB only for processes in the node\'s network namespace (pods keep the packet-level path: sidecar meshes)', defaultText: 'false',
      apply: (o, v: boolean) => { o.hostOnly = v; } },
    { flag: 'socket-lb-pin-dir', kind: 'string', arg: 'PATH', help: 'where the socket LB pins its links and maps, on a bpf filesystem (mounted at /sys/fs/bpf if missing)', defaultText: DEFAULT_PIN_DIR,
      apply: (o, v: string) => { o.pinDir = v || DEFAULT_PIN_DIR; } },
  ],
};
