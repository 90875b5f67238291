// The server class in-process (the kernel test runs it in a worker inside a namespace, out of the
// coverage's reach): prepared answers, negative answers, pods, SERVFAIL before sync, FORMERR.
import t from 'tap';
import dnsPacket from 'dns-packet';
import { planService, planZone } from '../src/plan/dns.js';
import { ClusterDnsServer } from '../src/dns/server.js';

const config = { addresses: [], port: 0, zone: 'cluster.local', ttl: 5, pods: 'insecure' as const, upstreams: [] };
const ask = async (server: ClusterDnsServer, name: string, type: dnsPacket.RecordType = 'A') =>
  dnsPacket.decode(await server.handle(dnsPacket.encode({ id: 7, type: 'query', flags: dnsPacket.RECURSION_DESIRED, questions: [{ name, type }] }), 'udp', '4')!);

t.test('answers from planned names, SERVFAIL before the first sync, FORMERR for garbage', async (t) => {
  const server = new ClusterDnsServer(config);
  t.equal((await ask(server, 'a.default.svc.cluster.local')).rcode, 'SERVFAIL');
  const plan = { zone: 'cluster.local', ttl: 5 };
  server.apply({ type: 'names', seq: 1, serial: 1, remove: [], namespaces: ['default'],
    set: [['default/a', planService({ namespace: 'default', name: 'a', headless: false, clusterIPs: ['10.0.0.1'], ports: [] }, [], plan)], ['', planZone(['default'], undefined, plan, 1)]] });
  const answer = await ask(server, 'A.default.svc.cluster.local');
  t.equal(answer.id, 7);
  t.same(answer.answers!.map((record) => [record.name, (record as { data: string }).data]), [['A.default.svc.cluster.local', '10.0.0.1']]);
  t.equal((await ask(server, 'b.default.svc.cluster.local')).rcode, 'NXDOMAIN');
  t.equal((await ask(server, 'a.default.svc.cluster.local', 'TXT')).authorities![0].type, 'SOA');
  t.same((await ask(server, '10-1-2-3.default.pod.cluster.local')).answers!.map((record) => (record as { data: string }).data), ['10.1.2.3']);
  t.equal((await ask(server, 'x.example')).rcode, 'SERVFAIL', 'no upstream: SERVFAIL');
  const garbage = server.handle(Buffer.from([0, 1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0]), 'udp', '4') as Buffer;
  t.equal(garbage[3] & 15, 1, 'FORMERR');
  server.apply({ type: 'names', seq: 2, serial: 2, remove: ['default/a'], set: [] });
  t.equal((await ask(server, 'a.default.svc.cluster.local')).rcode, 'NXDOMAIN');
  t.ok(server.takeMetrics());
  server.forwarder.close();
});
