import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import http2, { type Http2ServerRequest, type Http2ServerResponse } from 'node:http2';
import { type Server as TcpServer, type Socket, createServer as createTcpServer, connect as tcpConnect } from 'node:net';
import { Readable } from 'node:stream';
import { type SecureContext, createSecureContext } from 'node:tls';
import { type Dispatcher, Pool, errors as undiciErrors } from 'undici';
import { splitHostPort } from '../kernel/addresses.js';
import { type PathRoute, type RequestFacts, Router, type RouteMatch, routingHost, sameRoute } from './routes.js';
import { editRequestHeaders, editResponseHeaders, editedPath, redirectLocation, withHost } from './route-actions.js';
import { clientHelloNamesServer } from './client-hello.js';
import { parseRequestTarget } from './request-path.js';
import { INGRESS_DURATION_BUCKETS, type DefaultCertificate, durationBucket, type DurationCounts, type FromWorker, type ProxySettings, type RequestCount, type ToWorker } from './proxy-protocol.js';

// One of the ingress proxy's worker processes (one per core, forked by the agent through the
// cluster module, all accepting on the same listening sockets). It routes every request with the
// route table the agent sent whole at its start, changed in place by each sync's changes in one
// synchronous step: a change is in force for the next request and never touches an open connection.

type Request = IncomingMessage | Http2ServerRequest;
type Response = ServerResponse | Http2ServerResponse;

const SERVER_NAME = 'kubenft';
const STATS_INTERVAL_MS = 500;
const MAX_ATTEMPTS = 3;
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);
// RFC 9110 7.6.1: connection-specific fields never cross a proxy (plus those the Connection header names).
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'http2-settings']);
// The proxy sets these itself: a client cannot forge its address to a backend.
const FORWARDING = new Set(['x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'x-forwarded-port', 'x-real-ip']);
/** An upgrade request keeps the fields that ask the backend for it. */
const UPGRADE_FIELDS = new Set(['connection', 'upgrade']);

const send = (message: FromWorker) => process.send?.(message);

/** What routing and forwarding need from a request's header fields, read in one pass over the raw fields (Node's headers object is built lazily: never asking for it saves building it). */
interface RequestFields {
  /** Host, HTTP/2's :authority, or an absolute-form target's authority. */
  host: string;
  /** The tokens of the Connection field(s), lower case, or undefined without one. */
  connection: Set<string> | undefined;
  contentLength: string | undefined;
  transferEncoding: boolean;
}

function tokens(value: string, into: Set<string> = new Set()): Set<string> {
  for (const token of value.split(',')) {
    const trimmed = token.trim().toLowerCase();
    if (trimmed !== '') into.add(trimmed);
  }
  return into;
}

function requestFields(request: Request): RequestFields {
  const fields: RequestFields = { host: '', connection: undefined, contentLength: undefined, transferEncoding: false };
  const raw = request.rawHeaders;
  let authority: string | undefined;
  for (let index = 0; index < raw.length; index += 2) {
    const name = raw[index];
    // Field names are compared by length first: the common case is decided without lowering case.
    switch (name.length) {
      case 4:
        if (name.toLowerCase() === 'host') fields.host ||= raw[index + 1];
        break;
      case 10:
        if (name === ':authority') authority = raw[index + 1];
        else if (name.toLowerCase() === 'connection') fields.connection = tokens(raw[index + 1], fields.connection);
        break;
      case 14:
        if (name.toLowerCase() === 'content-length') fields.contentLength = raw[index + 1];
        break;
      case 17:
        if (name.toLowerCase() === 'transfer-encoding') fields.transferEncoding = true;
        break;
    }
  }
  if (authority !== undefined) fields.host = authority;
  return fields;
}

/** The request's header fields for the backend: raw names and order kept, hop-by-hop and forwarding fields replaced. */
function upstreamHeaders(request: Request, fields: RequestFields, secure: boolean, keep?: ReadonlySet<string>): string[] {
  const named = fields.connection;
  const headers: string[] = [];
  const raw = request.rawHeaders;
  let hasHost = false;
  for (let index = 0; index < raw.length; index += 2) {
    const name = raw[index].toLowerCase();
    if (name.charCodeAt(0) === 0x3a || FORWARDING.has(name)) continue;
    if ((HOP_BY_HOP.has(name) || named?.has(name)) && !keep?.has(name)) continue;
    if (name === 'host') {
      // One Host, the one routed by (RFC 9112 §3.2.2: an absolute-form target's authority replaces it).
      if (!hasHost) headers.push(raw[index], fields.host);
      hasHost = true;
      continue;
    }
    headers.push(raw[index], raw[index + 1]);
  }
  if (!hasHost && fields.host !== '') headers.push('host', fields.host);
  const client = request.socket.remoteAddress ?? '';
  const address = client.startsWith('::ffff:') ? client.slice(7) : client;
  headers.push('x-forwarded-for', address, 'x-real-ip', address, 'x-forwarded-proto', secure ? 'https' : 'http', 'x-forwarded-host', fields.host, 'x-forwarded-port', String(request.socket.localPort ?? ''));
  return headers;
}

function replyPlain(response: Response, status: number, text: string, extra: Record<string, string> = {}): void {
  if (response.headersSent) {
    response.destroy();
    return;
  }
  // HTTP/2 has no Connection header (node refuses it): the stream ends, the session goes on.
  if (response instanceof http2.Http2ServerResponse) delete extra.connection;
  const body = `${status} ${text}\n`;
  response.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body), server: SERVER_NAME, ...extra });
  response.end(body);
}

type RoutedMatch = RouteMatch & { kind: 'route' };

/** A request's method, fields and query for routes with conditions (Gateway API), read only when a route asks. */
function requestFacts(request: Request, query: string): RequestFacts {
  return {
    method: request.method ?? 'GET', query,
    header(name) {
      const raw = request.rawHeaders;
      const values: string[] = [];
      for (let index = 0; index < raw.length; index += 2) if (raw[index].length === name.length && raw[index].toLowerCase() === name) values.push(raw[index + 1]);
      return values.length === 0 ? undefined : values.join(',');
    },
  };
}


/** Whether the client is still sending a body: such a request cannot be replayed on another endpoint. */
function hasBody(request: Request, fields: RequestFields): boolean {
  if ((fields.contentLength !== undefined && fields.contentLength !== '0') || fields.transferEncoding) return true;
  return 'stream' in request && !request.stream.readableEnded && request.method !== 'GET' && request.method !== 'HEAD';
}

class BodyTooLarge extends Error {}

/** An HTTP/1.1 response with no body that ends the connection, written where no ServerResponse exists. */
function refuse(socket: Socket, status: string): void {
  socket.end(`HTTP/1.1 ${status}\r\nconnection: close\r\ncontent-length: 0\r\nserver: ${SERVER_NAME}\r\n\r\n`);
}

/** Malformed requests (bad request line, headers too large, …) get a 400 and a closed connection; nothing reaches a backend. */
function onClientError(error: NodeJS.ErrnoException, socket: Socket): void {
  if (socket.writable && !(socket as Socket & { _httpMessage?: unknown })._httpMessage) {
    refuse(socket, error.code === 'HPE_HEADER_OVERFLOW' ? '431 Request Header Fields Too Large' : error.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? '408 Request Timeout' : '400 Bad Request');
  }
  socket.destroy();
}

/**
 * CONNECT tunnels nothing here: its authority-form target is refused (400), an origin-form one is
 * 405, as nginx answers them. HTTP/1.1 hands over the socket, HTTP/2 (HTTPS listener) a response.
 */
function onConnect(request: Request, channel: Socket | Http2ServerResponse): void {
  const allowedForm = request.url?.startsWith('/') === true;
  if (channel instanceof http2.Http2ServerResponse) return replyPlain(channel, allowedForm ? 405 : 400, allowedForm ? 'Method Not Allowed' : 'Bad Request');
  channel.on('error', () => channel.destroy());
  refuse(channel, allowedForm ? '405 Method Not Allowed' : '400 Bad Request');
}

function listen(server: TcpServer, address: { host: string; port: number }): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: address.host, port: address.port }, () => resolve());
  });
}

/**
 * What the worker counts between two reports to the agent, every STATS_INTERVAL_MS. Requests are
 * counted per label set: the agent's work per report grows with the label sets, not the requests.
 */
class RequestStats {
  private requestCounts = new Map<string, RequestCount>();
  private durationCounts = new Map<string, DurationCounts>();
  private upstreamErrors: Record<string, number> = {};
  private activeConnections = 0;
  private lastReportedConnections = 0;

  record(match: RoutedMatch, status: number, started: number): void {
    const { ingress } = match.route;
    const key = `${ingress} ${match.ruleHost} ${match.path} ${status}`;
    const requests = this.requestCounts.get(key);
    if (requests) requests.count++;
    else this.requestCounts.set(key, { ingress, host: match.ruleHost, path: match.path, status, count: 1 });
    const seconds = (performance.now() - started) / 1000;
    let durations = this.durationCounts.get(ingress);
    if (!durations) this.durationCounts.set(ingress, (durations = { ingress, buckets: new Array<number>(INGRESS_DURATION_BUCKETS.length + 1).fill(0), sum: 0 }));
    durations.buckets[durationBucket(seconds)]++;
    durations.sum += seconds;
  }

  /** A backend's connection or exchange failed. */
  upstreamError(backend: string): void {
    this.upstreamErrors[backend] = (this.upstreamErrors[backend] ?? 0) + 1;
  }

  countConnections(server: http.Server | http2.Http2SecureServer, event: 'connection' | 'secureConnection'): void {
    server.on(event, (socket: Socket) => {
      this.activeConnections++;
      socket.once('close', () => this.activeConnections--);
    });
  }

  /** Sends what was counted since the last report, if anything changed, and starts counting afresh. */
  report(): void {
    if (this.requestCounts.size === 0 && Object.keys(this.upstreamErrors).length === 0 && this.activeConnections === this.lastReportedConnections) return;
    send({ type: 'stats', requests: [...this.requestCounts.values()], durations: [...this.durationCounts.values()], upstreamErrors: this.upstreamErrors, activeConnections: this.activeConnections });
    this.lastReportedConnections = this.activeConnections;
    this.requestCounts = new Map();
    this.durationCounts = new Map();
    this.upstreamErrors = {};
  }
}

/** The worker: its settings, the route table and certificates the agent sends, its backends' pools and its servers. */
class ProxyWorker {
  private router = new Router();
  /** The routes' generation; changes for any other than the next one wait for the whole table. */
  private generation = 0;
  private awaitingRoutes = false;
  /** The generated certificate's context, and the one served for unknown or absent SNI. */
  private readonly generatedContext: SecureContext;
  private defaultContext: SecureContext;
  private defaultCertificate: DefaultCertificate = null;
  private contexts = new Map<string, { pem: string; context: SecureContext }>();
  private readonly pools = new Map<string, Pool>();
  private readonly cursors = new Map<string, number>();
  readonly stats = new RequestStats();
  private sniServer: http2.Http2SecureServer | undefined;
  private defaultCertificateServer: http2.Http2SecureServer | undefined;

  constructor(private readonly settings: ProxySettings) {
    this.generatedContext = createSecureContext(settings.defaultCertificate);
    this.defaultContext = this.generatedContext;
  }

  /** A certificate's context: rebuilt only when its PEM changed, so a rotation takes effect on the next handshake and handshakes already done keep theirs. */
  private contextOf(key: string, pair: { cert: string; key: string }): { pem: string; context: SecureContext } {
    const pem = pair.cert + pair.key;
    const kept = this.contexts.get(key);
    return kept?.pem === pem ? kept : { pem, context: createSecureContext(pair) };
  }

  /** A removed endpoint gets no new request; its pool finishes what it carries, then closes. */
  private releasePool(endpoint: string): void {
    const pool = this.pools.get(endpoint);
    if (!pool) return;
    this.pools.delete(endpoint);
    void pool.close().catch(() => undefined);
  }

  private applyDefaultCertificate(next: DefaultCertificate): void {
    if (next?.cert === this.defaultCertificate?.cert && next?.key === this.defaultCertificate?.key) return;
    this.defaultCertificate = next;
    this.defaultContext = next ? createSecureContext(next) : this.generatedContext;
    this.defaultCertificateServer?.setSecureContext(next ?? this.settings.defaultCertificate);
  }

  applyWholeRoutes(message: ToWorker & { type: 'routes' }): void {
    this.router = new Router(message.table);
    this.generation = message.generation;
    this.awaitingRoutes = false;
    this.contexts = new Map(Object.entries(message.table.certificates).map(([key, pair]) => [key, this.contextOf(key, pair)]));
    for (const endpoint of [...this.pools.keys()]) if (!this.router.lists(endpoint)) this.releasePool(endpoint);
    this.applyDefaultCertificate(message.defaultCertificate);
  }

  applyRouteChanges(message: ToWorker & { type: 'route-changes' }): void {
    if (this.awaitingRoutes) return;
    if (message.generation !== this.generation + 1) {
      this.awaitingRoutes = true;
      send({ type: 'resend-routes' });
      return;
    }
    this.generation = message.generation;
    for (const endpoint of this.router.apply(message.changes)) this.releasePool(endpoint);
    for (const [key, pair] of Object.entries(message.changes.certificates)) {
      if (pair === null) this.contexts.delete(key);
      else this.contexts.set(key, this.contextOf(key, pair));
    }
    if (message.defaultCertificate !== undefined) this.applyDefaultCertificate(message.defaultCertificate);
  }

  poolFor(endpoint: string): Pool {
    let pool = this.pools.get(endpoint);
    if (!pool) {
      pool = new Pool(`http://${endpoint}`, {
        headersTimeout: this.settings.backendTimeoutMs, bodyTimeout: this.settings.backendTimeoutMs, connectTimeout: this.settings.connectTimeoutMs,
        keepAliveTimeout: 4_000, maxHeaderSize: this.settings.maxHeaderBytes,
      });
      this.pools.set(endpoint, pool);
    }
    return pool;
  }

  /** Round robin from a random start, so that workers and restarts do not all begin with the same pod. */
  pickEndpoint(backend: string, endpoints: string[], exclude: Set<string>): string | undefined {
    const start = this.cursors.get(backend) ?? Math.floor(Math.random() * endpoints.length);
    for (let offset = 0; offset < endpoints.length; offset++) {
      const endpoint = endpoints[(start + offset) % endpoints.length];
      if (exclude.has(endpoint)) continue;
      this.cursors.set(backend, (start + offset + 1) % endpoints.length);
      return endpoint;
    }
    return undefined;
  }

  /**
   * The request's route, by its normalized path (src/ingress/request-path.ts), and the target the
   * backend gets: that path and the query as sent. Undefined (400) for a target nginx refuses too,
   * and for a path with an encoded slash that routes elsewhere when the slash is read as a separator.
   */
  private routeOf(request: Request, fields: RequestFields): { match: RouteMatch; host: string; target: string; path: string; query: string } | undefined {
    const target = parseRequestTarget(request.url ?? '');
    if (target === undefined) return undefined;
    if (target.authority !== undefined) fields.host = target.authority;
    const host = routingHost(fields.host);
    const facts = requestFacts(request, target.query);
    const match = this.router.match(host, target.path.path, facts);
    if (target.path.slashed !== undefined && !sameRoute(match, this.router.match(host, target.path.slashed, facts))) return undefined;
    return { match, host, target: target.path.path + target.query, path: target.path.path, query: target.query };
  }

  /** RequestMirror: a copy of a request without a body to one endpoint of each mirror backend; its answer is dropped. */
  private mirror(backends: string[], options: Dispatcher.DispatchOptions): void {
    for (const backend of backends) {
      const endpoint = this.pickEndpoint(backend, this.router.endpointsOf(backend), new Set());
      if (endpoint === undefined) continue;
      this.poolFor(endpoint).request({ ...options, body: null }).then(({ body }) => body.dump(), () => undefined);
    }
  }

  /** The request body as it streams to the backend, failing past --ingress-max-body-size (a declared length fails at once). */
  private async *limitedBody(request: Request): AsyncGenerator<Buffer> {
    let seen = 0;
    for await (const chunk of request as AsyncIterable<Buffer>) {
      seen += chunk.length;
      if (seen > this.settings.maxBodyBytes) throw new BodyTooLarge();
      yield chunk;
    }
  }

  private handle(request: Request, response: Response, secure: boolean): void {
    const started = performance.now();
    const fields = requestFields(request);
    const routed = this.routeOf(request, fields);
    if (routed === undefined) return replyPlain(response, 400, 'Bad Request');
    const { match, host, target } = routed;
    if (match.kind === 'none') return replyPlain(response, 404, 'Not Found');
    if (!secure && match.redirectToHttps) {
      this.stats.record(match, 308, started);
      return replyPlain(response, 308, 'Permanent Redirect', { location: `https://${host}${target}` });
    }
    const actions = (match.route as PathRoute).actions;
    if (actions?.redirect) {
      this.stats.record(match, actions.redirect.statusCode, started);
      const location = redirectLocation(actions.redirect, { secure, host, port: request.socket.localPort ?? 0, path: routed.path, query: routed.query }, (match.route as PathRoute).match);
      return replyPlain(response, actions.redirect.statusCode, 'Redirect', { location });
    }
    if (match.backend === undefined) {
      this.stats.record(match, 500, started);
      return replyPlain(response, 500, 'Internal Server Error');
    }
    if (match.endpoints.length === 0) {
      this.stats.record(match, 503, started);
      return replyPlain(response, 503, 'Service Unavailable');
    }
    if (Number(fields.contentLength ?? 0) > this.settings.maxBodyBytes) {
      this.stats.record(match, 413, started);
      return replyPlain(response, 413, 'Content Too Large', { connection: 'close' });
    }
    const method = request.method ?? 'GET';
    const body = hasBody(request, fields);
    let headers = upstreamHeaders(request, fields, secure);
    let path = target;
    if (actions) {
      if (actions.requestHeaders) headers = editRequestHeaders(headers, actions.requestHeaders);
      if (actions.rewrite?.hostname) headers = withHost(headers, actions.rewrite.hostname);
      if (actions.rewrite?.path) path = editedPath(routed.path, actions.rewrite.path, (match.route as PathRoute).match) + routed.query;
      if (actions.mirrors && !body) this.mirror(actions.mirrors, { path, method: method as Dispatcher.HttpMethod, headers });
    }
    const exchange = new Exchange(this, request, response, match, started, {
      path, method: method as Dispatcher.HttpMethod, headers, body: body ? Readable.from(this.limitedBody(request)) : null,
      ...(actions?.backendTimeoutMs ? { headersTimeout: actions.backendTimeoutMs } : {}),
    }, IDEMPOTENT.has(method) && !body);
    if (actions?.requestTimeoutMs) exchange.limit(actions.requestTimeoutMs);
    exchange.attempt();
  }

  /**
   * WebSocket and other upgrades: the request goes to an endpoint over a fresh connection, then bytes
   * flow both ways untouched. An endpoint not connected within connectTimeoutMs gets the client a 504;
   * a tunnel with no byte either way for backendTimeoutMs is closed (ingress-nginx: proxy-connect-
   * timeout, and proxy-read-timeout closing idle WebSockets).
   */
  private tunnel(request: IncomingMessage, client: Socket, head: Buffer, secure: boolean): void {
    client.on('error', () => client.destroy());
    const fields = requestFields(request);
    const routed = this.routeOf(request, fields);
    if (routed === undefined) return refuse(client, '400 Bad Request');
    const { match, target } = routed;
    if (match.kind === 'none') return refuse(client, '404 Not Found');
    if (match.backend === undefined) return refuse(client, '500 Internal Server Error');
    const backend = match.backend;
    const endpoint = this.pickEndpoint(backend, match.endpoints, new Set());
    if (endpoint === undefined) return refuse(client, '503 Service Unavailable');
    const started = performance.now();
    const upstream = tcpConnect(splitHostPort(endpoint));
    const headers = upstreamHeaders(request, fields, secure, UPGRADE_FIELDS);
    let lines = `${request.method} ${target} HTTP/1.1\r\n`;
    for (let index = 0; index < headers.length; index += 2) lines += `${headers[index]}: ${headers[index + 1]}\r\n`;
    upstream.setNoDelay(true);
    const countError = () => this.stats.upstreamError(backend);
    const connectTimer = setTimeout(() => {
      countError();
      this.stats.record(match, 504, started);
      refuse(client, '504 Gateway Timeout');
      upstream.destroy();
    }, this.settings.connectTimeoutMs);
    upstream.once('connect', () => {
      clearTimeout(connectTimer);
      // Either direction's bytes pass through the client socket (read or written): its idleness is the tunnel's.
      client.setTimeout(this.settings.backendTimeoutMs, () => client.destroy());
      this.stats.record(match, 101, started);
      upstream.write(`${lines}\r\n`);
      if (head.length > 0) upstream.write(head);
      upstream.pipe(client).on('error', () => upstream.destroy());
      client.pipe(upstream);
    });
    upstream.on('error', () => {
      clearTimeout(connectTimer);
      countError();
      if (upstream.connecting || client.bytesWritten === 0) refuse(client, '502 Bad Gateway');
      else client.destroy();
    });
    client.on('close', () => {
      clearTimeout(connectTimer);
      upstream.destroy();
    });
    upstream.on('close', () => client.destroy());
  }

  private onRequest(secure: boolean) {
    return (request: Request, response: Response) => {
      try {
        this.handle(request, response, secure);
      } catch {
        if (!response.destroyed) replyPlain(response, 500, 'Internal Server Error');
      }
    };
  }

  /**
   * An HTTPS server that never listens: handOverByServerName gives it its connections. Both serve
   * HTTP/1.1 and h2 (ALPN) alike; they differ only in where a connection's certificate comes from.
   */
  private secureServer(certificates: Pick<http2.SecureServerOptions, 'SNICallback' | 'cert' | 'key'>): http2.Http2SecureServer {
    const server = http2.createSecureServer({
      allowHTTP1: true, ...certificates, maxSessionMemory: 10, settings: { maxHeaderListSize: this.settings.maxHeaderBytes },
    }, this.onRequest(true));
    server.on('upgrade', (request: IncomingMessage, socket: Socket, head: Buffer) => this.tunnel(request, socket, head, true));
    server.on('tlsClientError', (_error, socket) => socket.destroy());
    server.on('connect', onConnect);
    server.setTimeout(this.settings.clientTimeoutMs);
    this.stats.countConnections(server, 'secureConnection');
    return server;
  }

  /**
   * Node 20's SNICallback does not replace the connection's certificates with the context it
   * returns: it adds that context's certificate to the ones the server's own context gave the
   * connection (nodejs/node#54235; later Node swaps the whole context). OpenSSL keeps one
   * certificate per key type and TLS 1.3 picks among them by the client's signature algorithms,
   * which list ECDSA first: an RSA host's connection also carried the ECDSA default certificate and
   * was served it. So a connection that names a server is handshaken by sniServer, which has no
   * certificate of its own (the SNICallback's is the only one), and one that names none by
   * defaultCertificateServer, which holds the default certificate alone. The ClientHello is read to
   * tell them apart and put back into the socket, where the TLS server reads it as if it were new
   * (Node's TLS socket takes over the bytes a socket has buffered).
   */
  private handOverByServerName(socket: Socket): void {
    const chunks: Buffer[] = [];
    const fail = () => socket.destroy();
    const onData = (chunk: Buffer) => {
      chunks.push(chunk);
      const received = chunks.length === 1 ? chunk : Buffer.concat(chunks);
      // Not TLS, or a ClientHello it cannot read: false, and OpenSSL decides, with the default certificate to serve.
      const named = clientHelloNamesServer(received);
      if (named === undefined) return;
      socket.off('data', onData).off('error', fail).pause();
      socket.setTimeout(0);
      socket.unshift(received);
      (named ? this.sniServer : this.defaultCertificateServer)!.emit('connection', socket);
    };
    socket.on('data', onData).on('error', fail);
    socket.setTimeout(this.settings.clientTimeoutMs, fail);
  }

  async start(): Promise<void> {
    const servers: Promise<void>[] = [];
    const common = { maxHeaderSize: this.settings.maxHeaderBytes, requestTimeout: this.settings.clientTimeoutMs, headersTimeout: this.settings.clientTimeoutMs, keepAliveTimeout: this.settings.clientTimeoutMs };
    if (this.settings.httpAddress) {
      const server = http.createServer({ ...common }, this.onRequest(false));
      server.on('upgrade', (request: IncomingMessage, socket: Socket, head: Buffer) => this.tunnel(request, socket, head, false));
      server.on('clientError', onClientError);
      server.on('connect', onConnect);
      this.stats.countConnections(server, 'connection');
      servers.push(listen(server, this.settings.httpAddress));
    }
    if (this.settings.httpsAddress) {
      this.sniServer = this.secureServer({
        SNICallback: (serverName, done) => {
          const key = this.router.certificateFor(serverName);
          done(null, (key ? this.contexts.get(key)?.context : undefined) ?? this.defaultContext);
        },
      });
      this.defaultCertificateServer = this.secureServer(this.defaultCertificate ?? this.settings.defaultCertificate);
      servers.push(listen(createTcpServer((socket) => this.handOverByServerName(socket)), this.settings.httpsAddress));
    }
    await Promise.all(servers);
    setInterval(() => this.stats.report(), STATS_INTERVAL_MS).unref();
    send({ type: 'listening' });
  }
}

/**
 * One request's way to a backend, on undici's dispatch API: the response streams straight from
 * the endpoint's connection into the client's (no body stream, no promise, no pipeline per
 * request), with backpressure both ways. A connection that fails before any response byte moves
 * an idempotent request to another endpoint.
 */
class Exchange implements Dispatcher.DispatchHandler {
  private readonly tried = new Set<string>();
  private controller: Dispatcher.DispatchController | undefined;
  private responding = false;
  private finished = false;
  private deadline: NodeJS.Timeout | undefined;

  constructor(
    private readonly worker: ProxyWorker,
    private readonly request: Request,
    private readonly response: Response,
    private readonly match: RoutedMatch,
    private readonly started: number,
    private readonly options: Dispatcher.DispatchOptions,
    private readonly retryable: boolean,
  ) {}

  /** A request timeout (Gateway API): past it the exchange ends, with a 504 if no response has begun. */
  limit(timeoutMs: number): void {
    this.deadline = setTimeout(() => {
      if (this.finished) return;
      this.finished = true;
      this.controller?.abort(new Error('request timeout'));
      if (this.responding) return void this.response.destroy();
      this.worker.stats.record(this.match, 504, this.started);
      replyPlain(this.response, 504, 'Gateway Timeout');
    }, timeoutMs);
  }

  attempt(): void {
    const endpoint = this.worker.pickEndpoint(this.match.backend!, this.match.endpoints, this.tried)!;
    this.tried.add(endpoint);
    this.worker.poolFor(endpoint).dispatch(this.options, this);
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    if (this.controller === undefined) {
      // The client gone: the backend's request is abandoned too, and its connection with it.
      this.response.once('close', () => {
        if (!this.finished) this.controller?.abort(new Error('client closed'));
      });
    }
    this.controller = controller;
  }

  onResponseStart(controller: Dispatcher.DispatchController, statusCode: number, headers: Record<string, string | string[] | undefined>): void {
    // 1xx interim responses stay between the proxy and the backend.
    if (statusCode < 200) return;
    this.responding = true;
    const connection = headers.connection;
    const named = connection === undefined ? undefined : tokens(Array.isArray(connection) ? connection.join(',') : connection);
    for (const name in headers) if (HOP_BY_HOP.has(name) || named?.has(name)) delete headers[name];
    const edits = (this.match.route as PathRoute).actions?.responseHeaders;
    if (edits) {
      editResponseHeaders(headers, edits);
      // Node adds a Date field of its own unless told not to.
      if (edits.remove.includes('date')) this.response.sendDate = false;
    }
    headers.server ??= SERVER_NAME;
    try {
      this.response.writeHead(statusCode, headers as Record<string, string | string[]>);
    } catch {
      // A field the client's protocol cannot carry (HTTP/2 is stricter than HTTP/1.1): the exchange fails, the worker goes on.
      controller.abort(new Error('response header not forwardable'));
      this.response.destroy();
      return;
    }
    this.worker.stats.record(this.match, statusCode, this.started);
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if ((this.response as NodeJS.WritableStream).write(chunk)) return;
    controller.pause();
    this.response.once('drain', () => controller.resume());
  }

  onResponseEnd(): void {
    this.finished = true;
    clearTimeout(this.deadline);
    this.response.end();
  }

  onResponseError(_controller: Dispatcher.DispatchController, error: Error): void {
    // The request timeout ended it and answered already.
    if (this.finished && this.deadline) return;
    this.finished = true;
    clearTimeout(this.deadline);
    if (this.responding) {
      this.response.destroy();
      return;
    }
    if (error instanceof BodyTooLarge) {
      this.worker.stats.record(this.match, 413, this.started);
      return replyPlain(this.response, 413, 'Content Too Large', { connection: 'close' });
    }
    if (this.response.destroyed || this.request.destroyed) return;
    this.worker.stats.upstreamError(this.match.backend!);
    if (this.retryable && this.tried.size < MAX_ATTEMPTS && this.tried.size < this.match.endpoints.length) {
      this.finished = false;
      return this.attempt();
    }
    const timedOut = error instanceof undiciErrors.HeadersTimeoutError || error instanceof undiciErrors.ConnectTimeoutError;
    this.worker.stats.record(this.match, timedOut ? 504 : 502, this.started);
    replyPlain(this.response, timedOut ? 504 : 502, timedOut ? 'Gateway Timeout' : 'Bad Gateway');
  }
}

// The agent sends the settings first (its answer to 'ready'), then the routes whole and their changes.
process.once('message', (first: ToWorker) => {
  if (first.type !== 'settings') throw new Error(`the agent sent ${first.type} before the settings`);
  const worker = new ProxyWorker(first.settings);
  process.on('message', (message: ToWorker) => {
    if (message.type === 'routes') worker.applyWholeRoutes(message);
    else if (message.type === 'route-changes') worker.applyRouteChanges(message);
  });
  worker.start().catch((error: Error) => {
    process.stderr.write(`kubenft ingress worker: ${error.message}\n`);
    process.exit(1);
  });
});
// Nothing a client sends may end the worker: an unexpected error is logged and the connection it came from is lost at most.
process.on('uncaughtException', (error) => process.stderr.write(`kubenft ingress worker: unexpected error: ${error.stack ?? error.message}\n`));
process.on('disconnect', () => process.exit(0));
send({ type: 'ready' });
