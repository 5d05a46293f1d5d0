import { lookup as dnsLookup, type LookupAddress, type LookupOptions } from 'node:dns';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { isIP } from 'node:net';
import { forbiddenTargetReason } from './target-guard.js';

export interface PostOptions {
  timeoutMs: number;
  /** webhooks.allowPrivateTargets */
  allowPrivateTargets: boolean;
  headers?: Record<string, string>;
  /** Stops the try at once (shutdown). */
  signal?: AbortSignal;
}

export interface PostResult {
  /** The HTTP status, or null when no response came. */
  status: number | null;
  /** Why the try failed, in words (null for a 2xx). */
  error: string | null;
  /** The target resolved to an address the SSRF rule refuses: no request was sent. */
  forbidden: boolean;
  durationMs: number;
}

/** The bytes of a response body kept for the error message; the rest is read and dropped. */
const BODY_EXCERPT_BYTES = 300;

/**
 * POSTs a body to a URL with the SSRF rule applied where it matters: the host name is resolved
 * here, every address it resolves to is checked, and the connection goes to a checked address
 * (the request's `lookup` hands the socket those addresses, never a fresh DNS answer), so a name
 * that resolves to something else a moment later (DNS rebinding) cannot redirect the POST. The
 * Host header and TLS SNI still carry the URL's name. No redirects are followed.
 */
export async function postJson(url: URL, body: string, options: PostOptions): Promise<PostResult> {
  const started = Date.now();
  const finish = (status: number | null, error: string | null, forbidden = false): PostResult => ({
    status,
    error,
    forbidden,
    durationMs: Date.now() - started,
  });
  const controller = new AbortController();
  const onOuterAbort = (): void => controller.abort(new Error('interrupted: the webhook sender is stopping'));
  options.signal?.addEventListener('abort', onOuterAbort, { once: true });
  if (options.signal?.aborted) onOuterAbort();
  const timer = setTimeout(() => controller.abort(new Error(`timed out after ${options.timeoutMs / 1000} s (webhooks.timeoutSeconds)`)), options.timeoutMs);
  try {
    const host = url.hostname.replace(/^\[|\]$/g, '');
    let addresses: LookupAddress[];
    try {
      addresses = await resolve(host, controller.signal);
    } catch (error) {
      return finish(null, `cannot resolve ${host}: ${describeError(error, controller.signal)}`);
    }
    if (addresses.length === 0) return finish(null, `cannot resolve ${host}: no addresses`);
    if (!options.allowPrivateTargets) {
      for (const { address } of addresses) {
        const reason = forbiddenTargetReason(address);
        if (reason !== null) {
          const what = isIP(host) ? `${address} is` : `${host} resolves to ${address}, which is`;
          return finish(null, `refused: ${what} ${reason}; webhooks go only to public addresses unless webhooks.allowPrivateTargets is true`, true);
        }
      }
    }
    try {
      const { status, excerpt } = await send(url, host, addresses, body, options.headers ?? {}, controller.signal);
      if (status >= 200 && status < 300) return finish(status, null);
      return finish(status, `HTTP ${status}${excerpt ? `: ${excerpt}` : ''}`);
    } catch (error) {
      return finish(null, describeError(error, controller.signal));
    }
  } finally {
    clearTimeout(timer);
    options.signal?.removeEventListener('abort', onOuterAbort);
  }
}

function resolve(host: string, signal: AbortSignal): Promise<LookupAddress[]> {
  const family = isIP(host);
  if (family !== 0) return Promise.resolve([{ address: host, family }]);
  return new Promise((resolvePromise, reject) => {
    const onAbort = (): void => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    dnsLookup(host, { all: true, verbatim: true }, (error, found) => {
      signal.removeEventListener('abort', onAbort);
      if (error) reject(error);
      else resolvePromise(found);
    });
  });
}

function send(url: URL, host: string, addresses: LookupAddress[], body: string, headers: Record<string, string>, signal: AbortSignal): Promise<{ status: number; excerpt: string }> {
  const checked = addresses.map(({ address, family }) => ({ address, family }));
  const first = checked[0] as LookupAddress;
  // Hands the socket the addresses checked above instead of asking DNS again.
  const pinnedLookup = (
    _hostname: string,
    lookupOptions: LookupOptions,
    callback: (error: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void,
  ): void => {
    if (lookupOptions.all) callback(null, checked);
    else callback(null, first.address, first.family);
  };
  const secure = url.protocol === 'https:';
  const request = secure ? httpsRequest : httpRequest;
  const payload = Buffer.from(body, 'utf8');
  return new Promise((resolvePromise, reject) => {
    const req = request({
      method: 'POST',
      host,
      port: url.port === '' ? (secure ? 443 : 80) : Number(url.port),
      path: `${url.pathname}${url.search}`,
      headers: {
        ...headers,
        host: url.host,
        'content-type': 'application/json',
        'content-length': String(payload.length),
      },
      ...(url.username !== '' ? { auth: `${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}` } : {}),
      lookup: pinnedLookup,
      // One connection per try: a pooled socket would skip the check above.
      agent: false,
      signal,
      ...(secure && isIP(host) === 0 ? { servername: host } : {}),
    });
    req.on('error', reject);
    req.on('response', (response: IncomingMessage) => {
      const status = response.statusCode ?? 0;
      const excerpt: Buffer[] = [];
      let kept = 0;
      response.on('data', (chunk: Buffer) => {
        if (kept < BODY_EXCERPT_BYTES) {
          excerpt.push(chunk.subarray(0, BODY_EXCERPT_BYTES - kept));
          kept += chunk.length;
        }
      });
      response.on('error', reject);
      response.on('end', () => resolvePromise({ status, excerpt: Buffer.concat(excerpt).toString('utf8').replace(/\s+/g, ' ').trim() }));
    });
    req.end(payload);
  });
}

function describeError(error: unknown, signal: AbortSignal): string {
  if (signal.aborted && signal.reason instanceof Error) return signal.reason.message;
  if (error instanceof Error) {
    const code = (error as NodeJS.ErrnoException).code;
    return code && !error.message.includes(code) ? `${code}: ${error.message}` : error.message;
  }
  return String(error);
}
