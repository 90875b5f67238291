// The server class in-process (the kernel test runs it in a worker inside a namespace, out of the
// coverage's reach): prepared answers, negative answers, pods, SERVFAIL before sync, FORMERR; and
// the forwarder's cache against a loopback upstream.
import t from 'tap';
import dgram from 'node:dgram';
import dnsPacket from 'dns-packet';
import { planService, planZone } from '../src/plan/dns.js';
import { ClusterDnsServer } from '../src/dns/server.js';
import { Forwarder } from '../src/dns/forwarder.js';
import { agedResponse } from '../src/dns/wire.js';

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

t.test('a cached upstream answer is served with its TTLs lowered by its time in the cache', async (t) => {
  const upstream = dgram.createSocket('udp4');
  let asked = 0;
  upstream.on('message', (message, from) => {
    asked++;
    const query = dnsPacket.decode(message);
    upstream.send(dnsPacket.encode({ id: query.id, type: 'response', questions: query.questions, answers: [{ name: 'www.example', type: 'A', ttl: 30, data: '192.0.2.1' }],
      additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 1232, flags: dnsPacket.DNSSEC_OK }] }), from.port, from.address);
  });
  await new Promise<void>((resolve) => upstream.bind(0, '127.0.0.1', resolve));
  const forwarder = new Forwarder([{ address: '127.0.0.1', port: upstream.address().port }], { cacheHit: () => undefined, cacheMiss: () => undefined, upstreamFailure: () => undefined });
  const realNow = Date.now;
  t.teardown(() => { Date.now = realNow; forwarder.close(); upstream.close(); });
  const query = dnsPacket.encode({ id: 1, type: 'query', questions: [{ name: 'www.example', type: 'A' }] });
  const ttls = (response: Buffer | undefined) => dnsPacket.decode(response!).answers!.map((answer) => (answer as { ttl: number }).ttl);
  t.same(ttls(await forwarder.resolve('www.example/1/1', query)), [30]);
  const stored = realNow();
  Date.now = () => stored + 7_500;
  const aged = await forwarder.resolve('www.example/1/1', query);
  t.same(ttls(aged), [23], '7.5 s in the cache: 7 s off');
  t.equal((dnsPacket.decode(aged!).additionals![0] as { flags?: number }).flags, dnsPacket.DNSSEC_OK, 'the OPT record\'s TTL field (its flags) is left alone');
  t.equal(asked, 1, 'the second answer came from the cache');
  t.same(agedResponse(Buffer.from([0, 1, 0x80, 0, 0, 1, 0, 1]), 5), Buffer.from([0, 1, 0x80, 0, 0, 1, 0, 1]), 'an unreadable response is left as it was');
});
