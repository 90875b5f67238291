import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { HostPortError, joinHostPort, splitHostPort } from './addresses.js';

// A plain HTTP server on one exact bind address, for the health, metrics and DNS probe endpoints:
// handlers are chosen by path alone, and a handler's exception is a 500, never a crash.

export interface HttpEndpoint {
  /** Base URL of the bound address, with the real port when 0 was asked for. */
  url: string;
  /** Stops listening and drops open connections; resolves once the port is free. */
  close(): Promise<void>;
}

export type PathHandler = (path: string, res: ServerResponse, req: IncomingMessage) => void;

/** Splits "ip:port" or "[ipv6]:port". The host must be an IP literal (or empty, meaning every
 *  address, as in Go) so that what is bound is exactly what was configured, never a name's
 *  resolution. */
export function parseBindAddress(address: string): { host: string; port: number } {
  try {
    return splitHostPort(address, { emptyHost: true, zeroPort: true });
  } catch (error) {
    if (!(error instanceof HostPortError)) throw error;
    throw new Error(`bind address ${JSON.stringify(address)}: ${error.problem} (want "ip:port" or "[ipv6]:port")`);
  }
}

/** Serves `handle` on one "ip:port" address. */
export function serveHttp(address: string, handle: PathHandler): Promise<HttpEndpoint> {
  let parsed: { host: string; port: number };
  try {
    parsed = parseBindAddress(address);
  } catch (err) {
    return Promise.reject(err);
  }
  return listen(parsed.host, parsed.port, handle);
}

export function listen(host: string, port: number, handle: PathHandler): Promise<HttpEndpoint> {
  const server = createServer((req, res) => {
    // Only the path selects a handler; a query string is ignored as Go's ServeMux does.
    const path = (req.url ?? '/').split('?', 1)[0]!;
    try {
      handle(path, res, req);
    } catch (err) {
      if (!res.headersSent) res.writeHead(500, { 'Content-Type': 'text/plain; charset=utf-8' });
      res.end(`internal error: ${err instanceof Error ? err.message : String(err)}\n`);
    }
  });
  return new Promise<HttpEndpoint>((resolve, reject) => {
    server.once('error', reject);
    // An empty host listens on every address (dual-stack '::' where IPv6 exists), as Go does.
    server.listen({ host: host === '' ? undefined : host, port }, () => {
      server.off('error', reject);
      const bound = server.address() as AddressInfo;
      resolve({ url: `http://${joinHostPort(bound.address, bound.port)}`, close: () => closeServer(server) });
    });
  });
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve, reject) => {
    server.close((err) => {
      // Closing twice is not a failure: the port is free either way.
      if (err && (err as NodeJS.ErrnoException).code !== 'ERR_SERVER_NOT_RUNNING') reject(err);
      else resolve();
    });
    // close() alone waits for keep-alive connections (a prober's, a scraper's) to go idle.
    server.closeAllConnections();
  });
}
