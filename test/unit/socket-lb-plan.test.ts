// The socket LB's planner (pure) and where its cgroup is found; the map writer on real BPF maps is test/kernel/socket-lb-maps.test.ts.
import t from 'tap';
import { planSocketLb } from '../../src/socket-lb/plan.js';
import type { ServicePortView } from '../../src/cluster/service-ports.js';
import { cgroupV2Root } from '../../src/socket-lb/dataplane.js';
import type { EndpointInfo, ServiceInfo } from '../../src/cluster/model.js';

const NODE = { nodeName: 'node-a', zone: 'zone-1' };

function view(endpoints: Partial<EndpointInfo & { port: number }>[], service: Partial<ServiceInfo> = {}, protocol: 'TCP' | 'UDP' | 'SCTP' = 'TCP'): ServicePortView {
  return {
    service: { namespace: 'default', name: 'web', type: 'ClusterIP', headless: false, clusterIPs: ['10.0.0.1'], ports: [], externalIPs: [], loadBalancerIPs: [], loadBalancerSourceRanges: [],
      externalTrafficPolicyLocal: false, internalTrafficPolicyLocal: false, ...service },
    port: { name: '', protocol, port: 80, targetPort: 8080 },
    family: 4,
    clusterIP: '10.0.0.1',
    endpoints: endpoints.map((endpoint) => ({ address: '', ready: true, serving: true, terminating: false, port: 8080, ...endpoint })),
  };
}

const endpointsOf = (views: ServicePortView[]) => [...planSocketLb(views, NODE).values()].map((frontend) => frontend.endpoints.map((endpoint) => endpoint.address));

t.test('the planner picks the endpoints the rules would pick for a client on this node', async (t) => {
  t.same(endpointsOf([view([{ address: '10.1.0.3' }, { address: '10.1.0.1' }, { address: '10.1.0.2', ready: false, serving: false }])]), [['10.1.0.1', '10.1.0.3']], 'ready ones, sorted');
  t.same(endpointsOf([view([{ address: '10.1.0.1', ready: false, serving: true, terminating: true }, { address: '10.1.0.2', ready: false, serving: false, terminating: true }])]),
    [['10.1.0.1']], 'no ready endpoint: the serving and terminating ones');
  t.same(endpointsOf([view([{ address: '10.1.0.1', nodeName: 'node-b' }, { address: '10.1.0.2', nodeName: 'node-a' }], { internalTrafficPolicyLocal: true })]), [['10.1.0.2']], 'internalTrafficPolicy Local');
  t.same(endpointsOf([view([{ address: '10.1.0.1', nodeName: 'node-b' }], { internalTrafficPolicyLocal: true })]), [], 'no local endpoint: left to the rules (which drop)');
  t.same(endpointsOf([view([{ address: '10.1.0.1', hintZones: ['zone-1'] }, { address: '10.1.0.2', hintZones: ['zone-2'] }])]), [['10.1.0.1']], 'topology hints');
  t.same(endpointsOf([view([])]), [], 'no endpoint: left to the rules (which reject)');
  t.same(endpointsOf([view([{ address: '10.1.0.1' }], {}, 'SCTP')]), [], 'SCTP is the rules\'');
  const [frontend] = planSocketLb([view([{ address: '10.1.0.1' }], { affinityTimeoutSeconds: 600 }, 'UDP')], NODE).values();
  t.same(frontend, { address: '10.0.0.1', port: 80, protocol: 'UDP', affinityTimeoutSeconds: 600, endpoints: [{ address: '10.1.0.1', port: 8080 }] });
});

t.test('the default cgroup is the cgroup v2 mount point from mountinfo', async (t) => {
  const hybrid = '30 1 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755\n40 30 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n';
  t.equal(cgroupV2Root(hybrid), '/sys/fs/cgroup/unified');
  t.equal(cgroupV2Root('40 30 0:37 / /run/cgroup\\040v2 rw - cgroup2 cgroup2 rw\n'), '/run/cgroup v2', 'octal escapes are decoded');
  t.throws(() => cgroupV2Root('30 1 0:26 / /sys/fs/cgroup ro - tmpfs tmpfs ro\n'), /no cgroup v2 filesystem is mounted/);
});
