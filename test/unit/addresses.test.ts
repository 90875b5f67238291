// The one reading of addresses with ports (kernel/addresses.ts) that every flag, config field,
// command argument and iptables dump goes through, over the forms operators and tools write.
import t from 'tap';
import { isIP } from 'node:net';
import { HostPortError, cidrFamily, ipFamily, joinHostPort, networkCIDR, splitHostPort } from '../../src/kernel/addresses.js';

t.test('ipFamily agrees with node:net on literals and refuses what is not one', async (t) => {
  for (const text of ['10.0.0.1', '0.0.0.0', '255.255.255.255', '::', '::1', 'fd00::1', '::ffff:10.0.0.1', 'fe80::1%eth0', '2001:db8::a:b:c:d']) {
    t.equal(ipFamily(text), isIP(text), text);
    t.not(ipFamily(text), 0, text);
  }
  for (const text of ['', 'localhost', '10.0.0', '010.0.0.1', '10.0.0.256', '0x0a.0.0.1', ' 10.0.0.1', '10.0.0.1 ', '[::1]', 'fd00:::1', '10.0.0.0/8', '1e3.0.0.1']) {
    t.equal(ipFamily(text), 0, JSON.stringify(text));
    t.equal(isIP(text), 0, `${JSON.stringify(text)} (node:net agrees)`);
  }
});

t.test('host:port with a port required, as bind addresses and --to take it', async (t) => {
  t.same(splitHostPort('10.0.0.1:80'), { host: '10.0.0.1', port: 80 });
  t.same(splitHostPort('[fd00::1]:53'), { host: 'fd00::1', port: 53 });
  t.same(splitHostPort('[::]:65535'), { host: '::', port: 65535 });
  t.same(splitHostPort('[::ffff:10.0.0.1]:8080'), { host: '::ffff:10.0.0.1', port: 8080 });
  const refused: [string, string][] = [
    ['10.0.0.1', 'needs a port'],
    ['fd00::1', 'needs a port'],
    // An IPv6 address with a port needs its brackets: this is the address fd00::1:80.
    ['fd00::1:80', 'needs a port'],
    ['[fd00::1]', 'needs a port'],
    ['localhost:80', 'not an address'],
    ['[10.0.0.1]:80', 'not an address'],
    ['[localhost]:80', 'not an address'],
    [':80', 'not an address'],
    ['10.0.0.1:', 'not an address'],
    ['10.0.0.1:-1', 'not an address'],
    ['10.0.0.1:8o', 'not an address'],
    ['10.0.0.1:+80', 'not an address'],
    ['10.0.0.1: 80', 'not an address'],
    ['[fd00::1]80', 'not an address'],
    ['', 'not an address'],
    ['10.0.0.1:0', 'port out of range'],
    ['10.0.0.1:65536', 'port out of range'],
    ['[fd00::1]:99999', 'port out of range'],
  ];
  for (const [text, problem] of refused) t.throws(() => splitHostPort(text), new HostPortError(problem as 'not an address', text), text);
});

t.test('the rules a caller opts into: a bare address, an empty host, port 0', async (t) => {
  const optional = { portOptional: true };
  t.same(splitHostPort('10.0.0.1', optional), { host: '10.0.0.1', port: undefined });
  t.same(splitHostPort('fd00::1', optional), { host: 'fd00::1', port: undefined });
  t.same(splitHostPort('fd00::1:80', optional), { host: 'fd00::1:80', port: undefined });
  t.same(splitHostPort('[fd00::1]', optional), { host: 'fd00::1', port: undefined });
  t.same(splitHostPort('10.0.0.1:53', optional), { host: '10.0.0.1', port: 53 });
  t.throws(() => splitHostPort('pod-a', optional), { problem: 'not an address' });
  t.same(splitHostPort(':10256', { emptyHost: true }), { host: '', port: 10256 });
  t.throws(() => splitHostPort(':', { emptyHost: true }), { problem: 'not an address' });
  t.same(splitHostPort('127.0.0.1:0', { zeroPort: true }), { host: '127.0.0.1', port: 0 });
  t.same(splitHostPort('[::1]:0', { zeroPort: true }), { host: '::1', port: 0 });
});

t.test('joinHostPort writes what splitHostPort reads', async (t) => {
  t.equal(joinHostPort('10.0.0.1', 80), '10.0.0.1:80');
  t.equal(joinHostPort('fd00::1', 80), '[fd00::1]:80');
  t.equal(joinHostPort('::', '443'), '[::]:443');
  for (const [host, port] of [['10.0.0.1', 1], ['fd00::1', 53], ['::ffff:10.0.0.1', 65535]] as const) {
    t.same(splitHostPort(joinHostPort(host, port)), { host, port });
  }
});

t.test('a CIDR is read as its network, and its family is its address\'s', async (t) => {
  t.equal(networkCIDR('10.1.2.3/8'), '10.0.0.0/8');
  t.equal(networkCIDR('10.96.0.0/12'), '10.96.0.0/12');
  t.equal(networkCIDR('fd00:10:96::1/64'), 'fd00:10:96::/64');
  t.equal(networkCIDR('0.0.0.0/0'), '0.0.0.0/0');
  for (const bad of ['10.0.0.0', '10.0.0.0/33', 'fd00::/129', '10.0.0/8', 'example/8', '']) t.throws(() => networkCIDR(bad), bad);
  t.equal(cidrFamily('10.0.0.0/8'), 4);
  t.equal(cidrFamily('fd00::/64'), 6);
  t.equal(cidrFamily('10.0.0.1'), 4);
  t.equal(cidrFamily('example/8'), 0);
});
