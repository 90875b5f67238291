import pino, { type Logger } from 'pino';
import { performance } from 'node:perf_hooks';
import type { LogFormat } from './options.js';

// The agent's log on stderr in kube-proxy's two --logging-format values. json: one object a
// line, with an ISO time and a level name (pino's own serializer, told to write those). text:
// klog's header (severity letter, MMDD hh:mm:ss.uuuuuu, PID, a source slot), the message, then
// key=value pairs as klog writes them (strings quoted, errors as their message). pino hands a
// text stream each record as the JSON line it would have written; re-reading that line costs
// little at the agent's few lines a sync, and keeps every call site on pino's interface.

const PINO_LEVEL_LETTERS: [number, string][] = [[60, 'F'], [50, 'E'], [40, 'W'], [0, 'I']];

const two = (value: number) => String(value).padStart(2, '0');

/** klog's header: I1207 03:34:56.123456   12345 kubenft]; `epochMicros` the record's time in µs since the epoch. */
function klogHeader(levelNumber: number, epochMicros: number, pid: number): string {
  const letter = PINO_LEVEL_LETTERS.find(([floor]) => levelNumber >= floor)![1];
  const time = new Date(Math.floor(epochMicros / 1000));
  const micros = String(Math.floor(epochMicros) % 1_000_000).padStart(6, '0');
  const clock = `${two(time.getHours())}:${two(time.getMinutes())}:${two(time.getSeconds())}.${micros}`;
  return `${letter}${two(time.getMonth() + 1)}${two(time.getDate())} ${clock} ${String(pid).padStart(7)} kubenft]`;
}

function klogValue(key: string, value: unknown): string {
  if (key === 'err' && value && typeof value === 'object' && 'message' in value) return JSON.stringify(String(value.message));
  if (typeof value === 'number' || typeof value === 'boolean' || value === null) return String(value);
  return JSON.stringify(value);
}

// Date.now() has only milliseconds; the monotonic clock's origin plus its reading has the
// microseconds klog prints (Node's clock is good to well under a microsecond).
const epochMicrosNow = () => Math.floor((performance.timeOrigin + performance.now()) * 1000);

/** One pino record (its JSON line, `time` in µs since the epoch) as a klog text line. */
export function klogLine(json: string, pid = process.pid): string {
  const { level, time, msg, ...fields } = JSON.parse(json) as Record<string, unknown>;
  const pairs = Object.entries(fields).map(([key, value]) => ` ${key}=${klogValue(key, value)}`).join('');
  return `${klogHeader(level as number, time as number, pid)} ${msg ?? ''}${pairs}\n`;
}

const pinoLevel = (verbosity: number) => (verbosity >= 6 ? 'trace' : verbosity >= 4 ? 'debug' : 'info');

/**
 * The process's logger on file descriptor `fd`. -v as kube-proxy uses it: 0-3 routine
 * information, 4+ debugging, 6+ every detail. Writes are synchronous, so nothing is lost at exit.
 */
export function createLogger(format: LogFormat, verbosity: number, fd = 2): Logger {
  const level = pinoLevel(verbosity);
  // SonicBoom: synchronous, and it retries a write the pipe refused for now (EAGAIN).
  const destination = pino.destination({ fd, sync: true });
  if (format === 'json') {
    return pino({
      level,
      base: { component: 'kubenft' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    }, destination);
  }
  return pino({ level, base: null, timestamp: () => `,"time":${epochMicrosNow()}` }, { write: (line: string) => destination.write(klogLine(line)) });
}
