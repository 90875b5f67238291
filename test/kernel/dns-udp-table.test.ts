// The addon's UDP answer table (native/udp_answers.cc) behind the cluster DNS server, on a real
// loopback socket: dig as the client for what the table answers and what it passes up, and a
// differential fuzz: for every hostile or mutated packet the native answer must be the very bytes
// the JS server gives for it (or both stay silent), and the server keeps answering.
import t from 'tap';
import dgram from 'node:dgram';
import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import dnsPacket from 'dns-packet';
import { native } from '../../src/kernel/native.js';
import { planService, planZone } from '../../src/dns/records.js';
import { ClusterDnsServer, DNS_DURATION_BUCKETS, type NamesUpdate, serveUdp } from '../../src/dns/server.js';
import { MATCH, TableOps } from '../../src/dns/udp-table.js';

const run = promisify(execFile);
const plan = { zone: 'cluster.local', ttl: 5 };
const config = { addresses: [], port: 0, zone: 'cluster.local', ttl: 5, pods: 'insecure' as const, upstreams: [] };
const Z = 'svc.cluster.local';

const names = (webEndpoints: number): NamesUpdate => ({
  type: 'names', seq: 1, serial: 1, remove: [], namespaces: ['default'],
  set: [
    ['default/hostnames', planService({ namespace: 'default', name: 'hostnames', headless: false, clusterIPs: ['10.0.0.20', 'fd00:10:96::20'], ports: [{ name: 'http', protocol: 'TCP', port: 80 }] }, [], plan)],
    ['default/many', planService({ namespace: 'default', name: 'many', headless: true, clusterIPs: [], ports: [] },
      [{ ports: [], endpoints: Array.from({ length: webEndpoints }, (_, index) => ({ address: `10.245.0.${index + 1}`, ready: true })) }], plan)],
    ['default/ext', planService({ namespace: 'default', name: 'ext', headless: false, clusterIPs: [], externalName: `hostnames.default.${Z}`, ports: [] }, [], plan)],
    ['', planZone(['default'], undefined, plan, 1)],
  ],
});

t.test('the table answers cluster names natively; the rest reaches the JS server', async (t) => {
  const server = new ClusterDnsServer(config);
  let passed = 0;
  const socket = serveUdp(server, '127.0.0.1', 0, 2);
  const original = server.handle.bind(server);
  server.handle = (...args) => { passed++; return original(...args); };
  t.teardown(() => { socket.close(); server.forwarder.close(); });
  const dig = async (...args: string[]) => (await run('dig', ['+time=2', '+tries=1', '-p', String(socket.port), '@127.0.0.1', ...args])).stdout;
  const status = async (...args: string[]) => /status: (\w+)/.exec(await dig(...args))?.[1];

  t.equal(await status(`hostnames.default.${Z}`), 'SERVFAIL', 'before the first sync the table is empty: SERVFAIL from JS');
  t.equal(passed, 1);
  server.apply(names(20));
  passed = 0;
  t.match(await dig(`HostNames.DEFAULT.${Z}`, 'A'), /^HostNames\.DEFAULT\.svc\.cluster\.local\.\s+5\s+IN\s+A\s+10\.0\.0\.20$/m, 'the query\'s case is kept');
  t.match(await dig(`hostnames.default.${Z}`, 'AAAA'), /IN\s+AAAA\s+fd00:10:96::20/);
  t.match(await dig(`_http._tcp.hostnames.default.${Z}`, 'SRV'), /IN\s+SRV\s+0 50 80 hostnames\.default\.svc\.cluster\.local\./);
  t.match(await dig('-x', '10.0.0.20'), /PTR\s+hostnames\.default\.svc\.cluster\.local\./);
  const srv = await dig(`_HtTp._TcP.HostNames.Default.svc.ClUsTeR.LoCaL`, 'SRV');
  t.match(srv, /^_HtTp\._TcP\.HostNames\.Default\.svc\.ClUsTeR\.LoCaL\.\s+5\s+IN\s+SRV\s+0 50 80 hostnames\.default\.svc\.ClUsTeR\.LoCaL\.$/m,
    'an SRV target keeps the query\'s case for the zone, as CoreDNS\'s');
  t.match(srv, /^hostnames\.default\.svc\.ClUsTeR\.LoCaL\.\s+5\s+IN\s+A\s+10\.0\.0\.20$/m, 'and so does its glue');
  t.match(await dig(`hostnames.default.${Z}`, 'TXT'), /status: NOERROR[\s\S]*ANSWER: 0[\s\S]*AUTHORITY SECTION:\ncluster\.local\.\s+5\s+IN\s+SOA/, 'NODATA carries the SOA');
  t.match(await dig(`nothing.default.${Z}`), /status: NXDOMAIN[\s\S]*AUTHORITY SECTION:\ncluster\.local\.\s+5\s+IN\s+SOA\s+ns\.dns\.cluster\.local\./, 'NXDOMAIN carries the SOA');
  t.match(await dig('+nord', `hostnames.default.${Z}`), /flags: qr aa ra;/, 'RD is copied from the query, not set');
  t.match(await dig('+noedns', '+ignore', `many.default.${Z}`), /flags: qr aa tc rd ra;[\s\S]*ANSWER: 0/, 'without EDNS an answer over 512 bytes is the question with TC');
  t.match(await dig(`many.default.${Z}`), /ANSWER: 20,[\s\S]*udp: 1232/, 'with EDNS it fits the 1232 bytes kubenft advertises');
  t.equal(passed, 0, 'none of these reached the JS server');

  t.match(await dig('10-1-2-3.default.pod.cluster.local'), /IN\s+A\s+10\.1\.2\.3/, 'pod names are computed by the JS server');
  t.equal(await status('10-1-2-3\\.default.pod.cluster.local'), 'NXDOMAIN', 'a label holding a dot is not two labels (the JS server)');
  t.match(await dig(`ext.default.${Z}`), /CNAME\s+hostnames\.default\.svc\.cluster\.local\.[\s\S]*A\s+10\.0\.0\.20/, 'ExternalName is chased by the JS server');
  t.match(await dig('-c', 'CH', `hostnames.default.${Z}`), /status: REFUSED/, 'another class goes to the JS server');
  t.equal(passed, 4);

  server.apply({ type: 'names', seq: 2, serial: 2, remove: ['default/hostnames'], set: [] });
  t.equal(await status(`hostnames.default.${Z}`), 'NXDOMAIN', 'an update swaps the table');
  const metrics = server.takeMetrics()!;
  const label = `dns://127.0.0.1:${socket.port}`;
  t.ok(metrics.requests[`${label}|udp|1|A`] >= 4, 'native answers are counted with the JS ones, under the socket\'s address');
  t.ok(metrics.responses[`${label}|NXDOMAIN|kubernetes`] >= 2 && metrics.responses[`${label}|NOERROR|kubernetes`] >= 8);
  const durations = metrics.durations[label];
  t.equal(durations.buckets.length, DNS_DURATION_BUCKETS.length + 1, 'a bucket per bound, and one past the last');
  t.equal(durations.buckets.reduce((sum, count) => sum + count, 0), Object.values(metrics.responses).reduce((sum, count) => sum + count, 0), 'every response has a duration');
});

t.test('a malformed table update or socket is refused, naming what is wrong', async (t) => {
  const table = native().answerTable();
  const socket = native().udpAnswers({ address: '127.0.0.1', port: 0, threads: 1, durationBounds: DNS_DURATION_BUCKETS, table }, () => undefined);
  t.teardown(() => socket.close());
  const good = new TableOps().setTemplate(MATCH.suffix, 'example', { flags: 0x8403 }).take();
  t.throws(() => table.update(good.subarray(0, good.length - 2)), /truncated/);
  t.throws(() => table.update(Buffer.from([9, 0, 0, 0, 0, 1, 1, 0])), /unknown table op 9/);
  t.throws(() => table.update(Buffer.from([1, 0, 0, 1, 0, 1, 1, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0])), /shorter than its question/);
  t.throws(() => table.update(Buffer.from([2, 0, 0, 1, 0, 1, 1, 0, 0, 0, 0, 0])), /answers are exact matches/);
  t.throws(() => native().udpAnswers({ address: '127.0.0.1', port: 0, threads: 1, durationBounds: [], table: {} as never }, () => undefined), /table must be an answerTable/);
  t.throws(() => native().udpAnswers({ address: 'not an address', port: 0, threads: 1, durationBounds: [], table }, () => undefined), /not an IP address/);
  t.throws(() => native().udpAnswers({ address: '127.0.0.1', port: socket.port, threads: 1, durationBounds: [], table }, () => undefined), /cannot bind 127\.0\.0\.1:\d+: .*in use/i);
});

/** Valid queries of every kind the table holds, then mutated: case, flags, EDNS sizes, lengths, bytes. */
function hostilePackets(count: number): Buffer[] {
  const random = (n: number) => Math.floor(Math.random() * n);
  const questions: [string, dnsPacket.RecordType][] = [
    [`hostnames.default.${Z}`, 'A'], [`HOSTNAMES.default.${Z}`, 'AAAA'], ['_http._TCP.hostnames.default.svc.CLUSTER.local', 'SRV'], [`_http._tcp.hostnames.default.${Z}`, 'SRV'], [`many.default.${Z}`, 'A'],
    ['20.0.0.10.in-addr.arpa', 'PTR'], [`nothing.default.${Z}`, 'A'], [`hostnames.default.${Z}`, 'MX'], ['cluster.local', 'SOA'], ['cluster.local', 'NS'],
    ['10-1-2-3.default.pod.cluster.local', 'A'], [`ext.default.${Z}`, 'A'], ['cluster.local', 'AXFR'], ['x.example', 'A'],
    ['10-1-2-3.default.pod.cluster.local', 'A'], [`hostnames.default.${Z}`, 'A'], [`ext.default.${Z}`, 'A'],
  ];
  /** Questions whose first dot is a byte of the first label: they must not match the name they spell. */
  const dotted = new Set([14, 15, 16]);
  const packets: Buffer[] = [];
  for (let i = 0; i < count; i++) {
    const [name, type] = questions[i % questions.length];
    const edns = i % 3 === 0 ? [] : [{ type: 'OPT' as const, name: '.', udpPayloadSize: [0, 100, 512, 1232, 4096][random(5)] }];
    const valid = dnsPacket.encode({ id: random(65536), type: 'query', flags: random(2) ? dnsPacket.RECURSION_DESIRED : 0, questions: [{ name, type }], additionals: edns });
    const packet = Buffer.from(valid);
    if (dotted.has(i % questions.length)) {
      const first = packet[12];
      packet[12] = first + 1 + packet[13 + first];
      packet[13 + first] = '.'.charCodeAt(0);
    }
    switch (i % 8) {
      case 0: break;
      case 1: packet[random(packet.length)] = random(256); break;
      case 2: packets.push(packet.subarray(0, random(packet.length))); continue;
      case 3: packet[2] = random(256); packet[3] = random(256); break;
      case 4: packet.writeUInt16BE(random(3), 4); packet.writeUInt16BE(random(3), 6); packet.writeUInt16BE(random(3), 10); break;
      case 5: packets.push(Buffer.concat([packet.subarray(0, 12), Buffer.from([0xc0, 12, 0, 1, 0, 1])])); continue;
      case 6: packets.push(Buffer.from(Array.from({ length: random(300) }, () => random(256)))); continue;
      case 7: packets.push(Buffer.concat([packet.subarray(0, 12), Buffer.alloc(130, 1), Buffer.from([0, 0, 1, 0, 1])])); continue;
    }
    packets.push(packet);
  }
  return packets;
}

t.test('differential fuzz: the native answer is the JS answer, byte for byte', async (t) => {
  const native = new ClusterDnsServer(config);
  const reference = new ClusterDnsServer(config);
  native.apply(names(60));
  reference.apply(names(60));
  const socket = serveUdp(native, '127.0.0.1', 0, 1);
  const client = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => client.bind(0, '127.0.0.1', resolve));
  t.teardown(() => { socket.close(); client.close(); native.forwarder.close(); reference.forwarder.close(); });
  const received: Buffer[] = [];
  client.on('message', (message) => received.push(message));
  const exchange = async (packet: Buffer, waitMs: number) => {
    received.length = 0;
    client.send(packet, socket.port, '127.0.0.1');
    const deadline = Date.now() + waitMs;
    while (received.length === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 1));
    return received[0];
  };

  let differences = 0;
  let answered = 0;
  for (const packet of hostilePackets(1200)) {
    const expected = await reference.handle(packet, { proto: 'udp', family: '1', server: 'dns://127.0.0.1:0' });
    const got = await exchange(packet, expected ? 1000 : 20);
    if (got) answered++;
    // Packets over the socket's 4 KiB slot are dropped natively; none of these is that long.
    if (!(expected === undefined ? got === undefined : got?.equals(expected))) {
      if (differences++ < 5) t.fail(`packet ${packet.toString('hex')}: expected ${expected?.toString('hex')}, got ${got?.toString('hex')}`);
    }
  }
  t.equal(differences, 0, `${answered} answers, each identical to the JS server's`);
  t.ok(answered > 600);
  t.equal(await exchange(Buffer.alloc(5000, 7), 50), undefined, 'a datagram over 4 KiB is dropped');
  t.same(native.takeMetrics()?.dropped, { [`dns://127.0.0.1:${socket.port}|oversized`]: 1 }, 'and counted');
  const after = dnsPacket.decode((await exchange(dnsPacket.encode({ id: 9, type: 'query', questions: [{ name: `hostnames.default.${Z}`, type: 'A' }] }), 1000))!);
  t.same(after.answers!.map((answer) => answer.data), ['10.0.0.20'], 'the server keeps answering');
});

t.test('queries passed up while the JS thread is busy beyond the queue\'s 1024 are dropped and counted', async (t) => {
  const server = new ClusterDnsServer(config);
  server.apply(names(1));
  const socket = serveUdp(server, '127.0.0.1', 0, 1);
  t.teardown(() => { socket.close(); server.forwarder.close(); });
  // A pod name: the table passes it up. execFileSync blocks this thread while the child sends.
  const query = dnsPacket.encode({ id: 1, type: 'query', questions: [{ name: '10-1-2-3.default.pod.cluster.local', type: 'A' }] }).toString('hex');
  const sender = `const s = require('node:dgram').createSocket('udp4'); const q = Buffer.from('${query}', 'hex'); let left = 2000;
    const next = () => left-- > 0 ? s.send(q, ${socket.port}, '127.0.0.1', next) : setTimeout(() => s.close(), 200); next();`;
  execFileSync(process.execPath, ['-e', sender]);
  await new Promise((resolve) => setTimeout(resolve, 200));
  const dropped = server.takeMetrics()?.dropped;
  const backlog = dropped?.[`dns://127.0.0.1:${socket.port}|backlog`];
  t.ok(backlog !== undefined && backlog >= 2000 - 1024 - 1, `${backlog} of 2000 dropped with 1024 queued`);
  t.notOk(dropped?.[`dns://127.0.0.1:${socket.port}|oversized`]);
});
