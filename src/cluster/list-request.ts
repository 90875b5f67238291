import http from 'node:http';
import https from 'node:https';
import type { KubeConfig, KubernetesListObject, KubernetesObject } from '@kubernetes/client-node';

// A collection's list, read as the API server sends it: one GET with the kubeconfig's credentials
// and TLS settings, the body parsed by JSON.parse. client-node's generated clients decode a list
// into its model classes (every field through its serializer, timestamps into Dates), and the
// objects then needed a JSON round trip each to be wire JSON again. At 10,000 services × 3
// endpoints this took the lists (request to state) from 1.4-1.6 s to 0.6-0.7 s (docs/performance.md).

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

/** GET path?query from the kubeconfig's current cluster; resolves with the parsed list. */
export async function listCollection(
  config: KubeConfig,
  path: string,
  query: Record<string, string | undefined>,
  signal: AbortSignal,
): Promise<KubernetesListObject<KubernetesObject>> {
  const cluster = config.getCurrentCluster();
  if (!cluster) throw new Error('the kubeconfig has no current cluster');
  const url = new URL(cluster.server + path);
  for (const [key, value] of Object.entries(query)) if (value !== undefined) url.searchParams.set(key, value);
  // Credentials (token, client certificate, exec plugins), CA and the proxy-aware agent, as client-node's own requests get them.
  const options: https.RequestOptions = {};
  await config.applyToHTTPSOptions(options);
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
  return JSON.parse(body.text) as KubernetesListObject<KubernetesObject>;
}
