// The "hostnames" pod server: tells every client which pod answered and which
// addresses the pod saw, so tests can check load balancing and NAT.
//
//   node hostnames-server.js --name POD --port 9376 [--port 9377 ...] [--udp]
//                            [--exit-on-stdin-eof]
//
// TCP protocol (the client speaks first, so one port serves all three modes):
//   "GET ..."         -> HTTP/1.0 200 whose body is the JSON line (curl works)
//   "ECHO\n"          -> connection stays open; each later line comes back as
//                        "<pod> <line>" until the client closes
//   anything else     -> the JSON line, then the server closes
//   nothing for 100ms -> the JSON line, then the server closes (nc, /dev/tcp)
// UDP: every datagram is answered with the JSON line.
// Prints "ready" on stdout once every listener is bound. A program, not a
// library: importing it starts a server (`import type` is fine).
import dgram from 'node:dgram';
import { once } from 'node:events';
import net from 'node:net';
import os from 'node:os';
import { parseArgs } from 'node:util';

export interface HostnamesReply {
  pod: string;
  local: string;
  localPort: number;
  remote: string;
  remotePort: number;
  protocol: 'tcp' | 'udp';
}

// Waiting for the client to speak first is what lets curl and the echo mode
// share a port with the plain reply; silent clients only pay this delay.
const SILENT_CLIENT_GRACE_MS = 100;

function unmapIPv4(address: string | undefined): string {
  if (address === undefined) return '';
  return address.startsWith('::ffff:') && net.isIPv4(address.slice(7)) ? address.slice(7) : address;
}

type FirstMessage = 'http' | 'echo' | 'plain' | 'undecided';

function classifyFirstMessage(received: string): FirstMessage {
  if (received.startsWith('GET ')) return 'http';
  const newline = received.indexOf('\n');
  if (newline === -1) {
    const couldStillBecome = 'GET '.startsWith(received) || 'ECHO\r\n'.startsWith(received);
    return couldStillBecome ? 'undecided' : 'plain';
  }
  return received.slice(0, newline).trimEnd() === 'ECHO' ? 'echo' : 'plain';
}

function serveTcpConnection(podName: string, socket: net.Socket): void {
  // Probes may reset connections on purpose; a reset is not a server failure.
  socket.on('error', () => socket.destroy());
  socket.setEncoding('utf8');
  const reply: HostnamesReply = {
    pod: podName,
    local: unmapIPv4(socket.localAddress),
    localPort: socket.localPort ?? 0,
    remote: unmapIPv4(socket.remoteAddress),
    remotePort: socket.remotePort ?? 0,
    protocol: 'tcp',
  };
  const replyLine = JSON.stringify(reply) + '\n';
  let received = '';
  let mode: FirstMessage = 'undecided';

  const answerPlain = (): void => {
    mode = 'plain';
    socket.end(replyLine);
  };
  const graceTimer = setTimeout(answerPlain, SILENT_CLIENT_GRACE_MS);
  socket.on('close', () => clearTimeout(graceTimer));

  const echoCompleteLines = (): void => {
    let newline: number;
    while ((newline = received.indexOf('\n')) !== -1) {
      socket.write(`${podName} ${received.slice(0, newline).trimEnd()}\n`);
      received = received.slice(newline + 1);
    }
  };

  socket.on('data', (chunk: string) => {
    if (mode === 'plain' || mode === 'http') return;
    received += chunk;
    if (mode === 'echo') return echoCompleteLines();
    mode = classifyFirstMessage(received);
    if (mode === 'undecided') return;
    clearTimeout(graceTimer);
    if (mode === 'plain') return answerPlain();
    if (mode === 'http') {
      socket.end(
        'HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n' +
          `Content-Length: ${Buffer.byteLength(replyLine)}\r\nConnection: close\r\n\r\n${replyLine}`,
      );
      return;
    }
    received = received.slice(received.indexOf('\n') + 1);
    echoCompleteLines();
  });
}

// Node cannot tell a wildcard UDP socket which address a datagram was sent to,
// so we also bind each of the pod's own addresses: the kernel prefers the exact
// match, and `local` (and the reply's source) is then the real destination.
// The wildcard sockets still catch anything else (their `local` is the wildcard).
function udpBindAddresses(): string[] {
  const own = Object.values(os.networkInterfaces())
    .flat()
    .filter((entry) => entry !== undefined && !(entry.family === 'IPv6' && entry.scopeid !== 0))
    .map((entry) => entry!.address);
  return [...new Set(own), '0.0.0.0', '::'];
}

async function listenUdp(podName: string, address: string, port: number): Promise<dgram.Socket> {
  const isIPv6 = net.isIPv6(address);
  const socket = dgram.createSocket({
    type: isIPv6 ? 'udp6' : 'udp4',
    reuseAddr: true, // lets the per-address sockets share the port with the wildcard ones
    ipv6Only: isIPv6, // '::' must not claim IPv4: '0.0.0.0' owns that
  });
  socket.on('message', (_message, sender) => {
    const reply: HostnamesReply = {
      pod: podName,
      local: address,
      localPort: port,
      remote: unmapIPv4(sender.address),
      remotePort: sender.port,
      protocol: 'udp',
    };
    socket.send(JSON.stringify(reply) + '\n', sender.port, sender.address);
  });
  socket.bind(port, address);
  await once(socket, 'listening');
  return socket;
}

async function listenTcp(podName: string, port: number): Promise<net.Server> {
  const server = net.createServer((socket) => serveTcpConnection(podName, socket));
  server.listen({ host: '::', port, ipv6Only: false });
  await once(server, 'listening');
  return server;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      name: { type: 'string' },
      port: { type: 'string', multiple: true },
      udp: { type: 'boolean', default: false },
      'exit-on-stdin-eof': { type: 'boolean', default: false },
    },
  });
  const podName = values.name ?? os.hostname();
  const ports = (values.port ?? ['9376']).map(Number);
  if (ports.some((port) => !Number.isInteger(port) || port < 1 || port > 65535)) {
    throw new Error(`invalid --port in ${JSON.stringify(values.port)}`);
  }

  const closers: Array<() => void> = [];
  for (const port of ports) {
    const server = await listenTcp(podName, port);
    closers.push(() => server.close());
    if (values.udp) {
      for (const address of udpBindAddresses()) {
        const socket = await listenUdp(podName, address, port);
        closers.push(() => socket.close());
      }
    }
  }

  const exit = (): never => {
    for (const close of closers) close();
    process.exit(0);
  };
  process.on('SIGTERM', exit);
  process.on('SIGINT', exit);
  // The parent holds our stdin pipe; EOF means it died, so do not outlive it.
  if (values['exit-on-stdin-eof']) {
    process.stdin.on('end', exit);
    process.stdin.resume();
  }
  process.stdout.write('ready\n');
}

main().catch((error: unknown) => {
  process.stderr.write(`hostnames-server: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
