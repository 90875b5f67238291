// The server class in-process (the kernel test runs it in a worker inside a namespace, out of the
// coverage's reach): prepared answers, negative answers, pods, SERVFAIL before sync, FORMERR; and
// the forwarder's cache against a loopback upstream.
import t from 'tap';
import dgram from 'node:dgram';
import dnsPacket from 'dns-packet';
import { planService, planZone, reverseName } from '../../src/dns/records.js';
import { ClusterDnsServer, type NamesUpdate, serverLabel } from '../../src/dns/server.js';
import { Forwarder } from '../../src/dns/forwarder.js';
import { agedResponse, parseQuery } from '../../src/dns/wire.js';

const config = { addresses: [], port: 0, zone: 'cluster.local', ttl: 5, pods: 'insecure' as const, upstreams: [] };
const ask = async (server: ClusterDnsServer, name: string, type: dnsPacket.RecordType = 'A') =>
  dnsPacket.decode(await server.handle(dnsPacket.encode({ id: 7, type: 'query', flags: dnsPacket.RECURSION_DESIRED, questions: [{ name, type }] }), { proto: 'udp', family: '1', server: 'dns://:53' })!);

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
  const garbage = server.handle(Buffer.from([0, 1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0]), { proto: 'udp', family: '1', server: 'dns://:53' }) as Buffer;
  t.equal(garbage[3] & 15, 1, 'FORMERR');
  server.apply({ type: 'names', seq: 2, serial: 2, remove: ['default/a'], set: [] });
  t.equal((await ask(server, 'a.default.svc.cluster.local')).rcode, 'NXDOMAIN');
  t.ok(server.takeMetrics());
  server.forwarder.close();
});

t.test('a label holding a dot is one label: the name it spells with its neighbours is another name', async (t) => {
  const server = new ClusterDnsServer(config);
  t.teardown(() => server.forwarder.close());
  const plan = { zone: 'cluster.local', ttl: 5 };
  server.apply({ type: 'names', seq: 1, serial: 1, remove: [], namespaces: ['default'],
    set: [['default/a', planService({ namespace: 'default', name: 'a', headless: false, clusterIPs: ['10.0.0.1'], ports: [] }, [], plan)], ['', planZone(['default'], undefined, plan, 1)]] });
  // Raw: dns-packet (like zone files) would read an escaped dot, not put a '.' byte in a label.
  const query = (labels: string[], type = 1) => Buffer.concat([Buffer.from([0, 9, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]),
    ...labels.map((label) => Buffer.concat([Buffer.from([label.length]), Buffer.from(label, 'latin1')])), Buffer.from([0, 0, type, 0, 1])]);
  const rcode = async (labels: string[]) => dnsPacket.decode((await server.handle(query(labels), { proto: 'tcp', family: '1', server: 'dns://:53' }))!).rcode;
  t.equal(await rcode(['a', 'default', 'svc', 'cluster', 'local']), 'NOERROR');
  t.equal(await rcode(['a.default', 'svc', 'cluster', 'local']), 'NXDOMAIN', 'not the service\'s name');
  t.equal(await rcode(['10-1-2-3.default', 'pod', 'cluster', 'local']), 'NXDOMAIN', 'not a pod name');
  t.equal(await rcode(['10-1-2-3', 'default', 'pod', 'cluster', 'local']), 'NOERROR');
  t.equal(await rcode(['x.cluster', 'local']), 'SERVFAIL', 'not in the zone: forwarded (to no upstream here)');
  t.equal(parseQuery(query(['A.b\\', 'C'])).name, 'a\\.b\\\\.c', 'the key escapes dots and backslashes');
});

t.test('a name two services share is merged from both, whichever changes or goes, though the plans are dropped once applied', async (t) => {
  const server = new ClusterDnsServer(config);
  t.teardown(() => server.forwarder.close());
  const plan = { zone: 'cluster.local', ttl: 5 };
  const headless = (name: string, addresses: string[]) => planService({ namespace: 'default', name, headless: true, clusterIPs: [], ports: [{ name: 'http', protocol: 'TCP', port: 80 }] },
    [{ ports: [{ name: 'http', protocol: 'TCP', port: 8080 }], endpoints: addresses.map((address) => ({ address, ready: true })) }], plan);
  let seq = 0;
  const apply = (set: NamesUpdate['set'], remove: string[] = []) => server.apply({ type: 'names', seq: ++seq, serial: seq, remove, set, namespaces: ['default'] });
  const pointers = async (address: string) => ((await ask(server, reverseName(address), 'PTR')).answers ?? []).map((answer) => (answer as { data: string }).data).sort();
  const a = (name: string) => `10-1-0-1.${name}.default.svc.cluster.local`;

  apply([['default/a', headless('a', ['10.1.0.1', '10.1.0.2'])], ['', planZone(['default'], undefined, plan, 1)]]);
  apply([['default/b', headless('b', ['10.1.0.1'])]]);
  t.same(await pointers('10.1.0.1'), [a('a'), a('b')], 'the second owner\'s part is merged with what the table held for the first');
  apply([['default/a', headless('a', ['10.1.0.1', '10.1.0.3'])]]);
  t.same(await pointers('10.1.0.1'), [a('a'), a('b')], 'a change of one owner keeps the other\'s part');
  t.same(await pointers('10.1.0.2'), [], 'and drops the names it no longer plans');
  t.same(await pointers('10.1.0.3'), ['10-1-0-3.a.default.svc.cluster.local']);
  apply([], ['default/b']);
  t.same(await pointers('10.1.0.1'), [a('a')], 'the owner that goes takes its part along');
  apply([['default/b', headless('b', ['10.1.0.1'])]]);
  apply([], ['default/a']);
  t.same(await pointers('10.1.0.1'), [a('b')]);
  const srv = await ask(server, '_http._tcp.b.default.svc.cluster.local', 'SRV');
  t.same(srv.answers!.map((answer) => (answer as { data: { target: string } }).data.target), [a('b')], 'the other names are untouched');
  t.same(srv.additionals!.map((record) => record.name), [a('b')], 'glue included');
  apply([], ['default/b']);
  t.equal((await ask(server, reverseName('10.1.0.1'), 'PTR')).rcode, 'SERVFAIL', 'a reverse name nobody owns is forwarded (no upstream here)');
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
  const forwarder = new Forwarder([{ address: '127.0.0.1', port: upstream.address().port }], { upstreamAnswered: () => undefined, upstreamFailure: () => undefined, concurrentReject: () => undefined });
  const realNow = Date.now;
  t.teardown(() => { Date.now = realNow; forwarder.close(); upstream.close(); });
  const query = dnsPacket.encode({ id: 1, type: 'query', questions: [{ name: 'www.example', type: 'A' }] });
  const ttls = (response: Buffer | undefined) => dnsPacket.decode(response!).answers!.map((answer) => (answer as { ttl: number }).ttl);
  t.same(ttls((await forwarder.resolve('www.example/1/1', query)).response), [30]);
  const stored = realNow();
  Date.now = () => stored + 7_500;
  const { response: aged, cache } = await forwarder.resolve('www.example/1/1', query);
  t.equal(cache, 'success', 'a cache hit, said so');
  t.same(ttls(aged), [23], '7.5 s in the cache: 7 s off');
  t.equal((dnsPacket.decode(aged!).additionals![0] as { flags?: number }).flags, dnsPacket.DNSSEC_OK, 'the OPT record\'s TTL field (its flags) is left alone');
  t.equal(asked, 1, 'the second answer came from the cache');
  t.same(agedResponse(Buffer.from([0, 1, 0x80, 0, 0, 1, 0, 1]), 5), Buffer.from([0, 1, 0x80, 0, 0, 1, 0, 1]), 'an unreadable response is left as it was');
});

t.test('the server label is CoreDNS\'s: dns:// and the listener\'s address, an IPv6 one in brackets', async (t) => {
  t.equal(serverLabel('169.254.20.10', 53), 'dns://169.254.20.10:53');
  t.equal(serverLabel('fd00:10:96::a', 53), 'dns://[fd00:10:96::a]:53');
});
