import http from 'node:http';
import https from 'node:https';
import type { KubernetesListObject, KubernetesObject } from '@kubernetes/client-node';
import type { ApiEndpoint } from './api-endpoint.js';

// A collection's list, read as the API server sends it: one GET with the kubeconfig's credentials
// and TLS settings (an ApiEndpoint: client-node's, or api-endpoint.ts's plain reading), the body
// parsed by JSON.parse. client-node's generated clients decode a list into its model classes (every field through its serializer, timestamps into Dates), and the
// objects then needed a JSON round trip each to be wire JSON again. At 10,000 services × 3
// endpoints this took the lists (request to state) from 1.4-1.6 s to 0.6-0.7 s (docs/performance.md).
//
// A list is read in pages (limit/continue, as client-go's pager reads one), so the process never
// holds a whole collection's body: at 100,000 services the EndpointSlice list is 166 MB of JSON,
// held three times over (the chunks, their concatenation, the string) before JSON.parse.
// Every page is of the first page's snapshot; a continue token that expires before the last page
// (410) makes the list start again in one request, as client-go's pager does.

/** Objects per page; client-go's pager asks for 500, at the cost of 200 round trips per 100,000. */
export const LIST_PAGE_SIZE = 5_000;

/** An API server's refusal, with the reason its Status gave. */
export class ListError extends Error {
  constructor(
    message: string,
    readonly statusCode: number,
  ) {
    super(message);
  }
}

function statusMessage(body: string): string {
  try {
    return String((JSON.parse(body) as { message?: unknown }).message ?? '');
  } catch {
    return body.slice(0, 200);
  }
}

/** A list page as the server sends it (client-node's V1ListMeta names `continue` `_continue`). */
interface ListPage {
  apiVersion?: string;
  kind?: string;
  metadata?: { resourceVersion?: string; continue?: string };
  items: KubernetesObject[];
}

/** GET path?query from the endpoint's server, page by page; resolves with every item in one list. */
export async function listCollection(
  { server, options }: ApiEndpoint,
  path: string,
  query: Record<string, string | undefined>,
  signal: AbortSignal,
): Promise<KubernetesListObject<KubernetesObject>> {
  const get = (pageQuery: Record<string, string | undefined>) => listPage(server + path, { ...query, ...pageQuery }, options, signal);
  const asList = ({ apiVersion, kind, metadata, items }: ListPage) => ({ apiVersion, kind, metadata: { resourceVersion: metadata?.resourceVersion }, items });
  let page = await get({ limit: String(LIST_PAGE_SIZE) });
  const items = page.items;
  while (page.metadata?.continue) {
    try {
      page = await get({ limit: String(LIST_PAGE_SIZE), continue: page.metadata.continue });
    } catch (error) {
      if (error instanceof ListError && error.statusCode === 410) return asList(await get({}));
      throw error;
    }
    for (const item of page.items) items.push(item);
  }
  return asList({ ...page, items });
}

async function listPage(
  server: string,
  query: Record<string, string | undefined>,
  options: https.RequestOptions,
  signal: AbortSignal,
): Promise<ListPage> {
  const url = new URL(server);
  for (const [key, value] of Object.entries(query)) if (value !== undefined) url.searchParams.set(key, value);
  const client = url.protocol === 'https:' ? https : http;
  const body = await new Promise<{ status: number; text: string }>((resolve, reject) => {
    const request = client.request(url, { ...options, method: 'GET', signal, headers: { ...options.headers, Accept: 'application/json' } }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.once('error', reject);
      response.once('end', () => resolve({ status: response.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
    });
    request.once('error', reject);
    request.end();
  });
  if (body.status !== 200) throw new ListError(statusMessage(body.text) || `GET ${url.pathname}`, body.status);
  return JSON.parse(body.text) as ListPage;
}
