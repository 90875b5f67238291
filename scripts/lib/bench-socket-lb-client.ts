// The socket LB benchmark's client, run in a bench cgroup and the node namespace:
//   node bench-socket-lb-client.js short ADDRESS PORT COUNT
//     COUNT connections one after another: connect, a 1-byte request, the reply, close
//   node bench-socket-lb-client.js persistent ADDRESS PORT COUNT
//     one connection in the hostnames echo mode, COUNT request/reply round trips
// It prints "ready" and waits for a line on stdin before it starts, so the caller reads the
// cgroup's cpu.stat around the measured part only (not the process start); then one JSON line.
import net from 'node:net';
import { once } from 'node:events';
import { createInterface } from 'node:readline';

const [mode, address, portText, countText] = process.argv.slice(2);
const port = Number(portText);
const count = Number(countText);
const REPLY_TIMEOUT_MS = 2000;

/** Connect time in µs, or undefined when the connection failed. */
function shortConnection(): Promise<number | undefined> {
  return new Promise((resolve) => {
    const started = process.hrtime.bigint();
    let connectUs = 0;
    const socket = net.connect({ host: address, port });
    const timer = setTimeout(() => { socket.destroy(); resolve(undefined); }, REPLY_TIMEOUT_MS);
    socket.on('connect', () => {
      connectUs = Number(process.hrtime.bigint() - started) / 1000;
      socket.write('x');
    });
    socket.on('data', () => {});
    socket.on('error', () => { clearTimeout(timer); resolve(undefined); });
    socket.on('end', () => { clearTimeout(timer); socket.end(); resolve(connectUs); });
  });
}

async function persistent(): Promise<number> {
  const socket = net.connect({ host: address, port });
  await once(socket, 'connect');
  socket.write('ECHO\n');
  const lines = createInterface({ input: socket })[Symbol.asyncIterator]();
  let answered = 0;
  for (let request = 0; request < count; request++) {
    socket.write('x\n');
    if ((await lines.next()).done) break;
    answered++;
  }
  socket.destroy();
  return answered;
}

const stdin = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
console.log('ready');
await stdin.next();
const started = performance.now();
if (mode === 'short') {
  const connectUs: number[] = [];
  for (let i = 0; i < count; i++) {
    const time = await shortConnection();
    if (time !== undefined) connectUs.push(time);
  }
  console.log(JSON.stringify({ elapsedMs: performance.now() - started, completed: connectUs.length, connectUs }));
} else {
  const completed = await persistent();
  console.log(JSON.stringify({ elapsedMs: performance.now() - started, completed }));
}
await stdin.next();
