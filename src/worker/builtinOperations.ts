import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { isIP, type LookupFunction } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { OutboundPolicy } from '../protect/outboundAddress.js';
import type { Json } from '../domain/operation.js';
import { defineOperation, type OperationDefinition } from './defineOperation.js';
import { RejectError, RetryError } from './handlerErrors.js';

/** Completes with its payload. */
export const demoEcho = defineOperation({
  type: 'demo.echo',
  handle: ({ payload }) => payload,
});

/** Waits `payload.ms` (honouring the abort signal), then completes. For tests and benchmarks. */
export const demoSleep = defineOperation<{ ms: number }>({
  type: 'demo.sleep',
  payload: {
    type: 'object',
    required: ['ms'],
    properties: { ms: { type: 'integer', minimum: 0, maximum: 3_600_000 } },
  },
  async handle({ payload, signal, progress }) {
    // A long sleep says how far it has got, once a second.
    let slept = 0;
    while (payload.ms - slept > 1000) {
      await sleep(1000, undefined, { signal });
      slept += 1000;
      progress({ slept_ms: slept, of_ms: payload.ms });
    }
    await sleep(payload.ms - slept, undefined, { signal });
    return { slept_ms: payload.ms };
  },
});

interface HttpRequestPayload {
  method: string;
  url: string;
  headers?: Record<string, string>;
  body?: Json;
}

/** Upper bound on a response body kept in the result, so one large answer cannot bloat the event log. */
const MAX_RESPONSE_BYTES = 256 * 1024;

/**
 * Sends one HTTP request. 2xx completes with status and body; 429, 5xx and network errors retry
 * (honouring `Retry-After`); any other status rejects, redirects included (they are not followed).
 * A 429, or a 503 with Retry-After, asks to wait: when a resource governs `http.request`, it pauses
 * that resource and the attempt is deferred (not counted).
 * Loopback, private, link-local and reserved destinations are refused (`OPSD_HTTP_DESTINATION_REFUSED`),
 * checked on every address the name resolves to, unless `OPSD_HTTP_ALLOW` lists them.
 */
export const httpRequest = defineOperation<HttpRequestPayload>({
  type: 'http.request',
  payload: {
    type: 'object',
    required: ['method', 'url'],
    additionalProperties: false,
    properties: {
      method: { type: 'string', enum: ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'] },
      url: { type: 'string', pattern: '^https?://', maxLength: 8192 },
      headers: { type: 'object', additionalProperties: { type: 'string' } },
      body: {},
    },
  },
  async handle({ payload, signal }) {
    const body =
      payload.body === undefined ? undefined : typeof payload.body === 'string' ? payload.body : JSON.stringify(payload.body);
    const headers = { ...(typeof payload.body === 'object' && payload.body !== null ? { 'content-type': 'application/json' } : {}), ...payload.headers };
    // Loaded on first use: processes that only accept operations never pay for the HTTP client.
    const { request } = await import('undici');
    const dispatcher = await guardedAgent();
    // An IP written in the URL is connected to without a lookup, so it is checked here.
    const literal = refusedLiteral(payload.url);
    if (literal) throw new RejectError('OPSD_HTTP_DESTINATION_REFUSED', literal);
    let response;
    try {
      response = await request(payload.url, { method: payload.method as 'GET', headers, body, signal, dispatcher });
    } catch (error) {
      if (signal.aborted) throw error;
      const refused = destinationRefusal(error);
      if (refused) throw new RejectError('OPSD_HTTP_DESTINATION_REFUSED', refused);
      throw new RetryError(`request failed: ${(error as Error).message}`, { code: 'OPSD_HTTP_NETWORK_ERROR' });
    }
    const text = await readBounded(response.body);
    const result = { status: response.statusCode, body: parseBody(text) };
    if (response.statusCode >= 200 && response.statusCode < 300) return result;
    if (response.statusCode === 429 || response.statusCode >= 500) {
      const retryAfterMs = parseRetryAfter(response.headers['retry-after'], Date.now());
      // The upstream asks to wait: on a resource, every worker pauses it and the attempt is deferred.
      const asksToWait = response.statusCode === 429 || (response.statusCode === 503 && retryAfterMs !== undefined);
      throw new RetryError(`upstream answered ${response.statusCode}`, {
        code: asksToWait ? 'OPSD_HTTP_THROTTLED' : 'OPSD_HTTP_RETRYABLE_STATUS',
        details: result,
        pauseResource: asksToWait,
        ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
      });
    }
    throw new RejectError('OPSD_HTTP_REJECTED', `upstream answered ${response.statusCode}`, result);
  },
});

let agent: Promise<import('undici').Agent> | null = null;
let policy: OutboundPolicy | null = null;

function outboundPolicy(): OutboundPolicy {
  policy ??= OutboundPolicy.fromEnv();
  return policy;
}

/** Why the IP address written in `url` may not be reached, or null (a name, or an allowed address). */
function refusedLiteral(url: string): string | null {
  const host = new URL(url).hostname.replace(/^\[|\]$/g, '');
  if (isIP(host) === 0 || outboundPolicy().allowsHost(host)) return null;
  return outboundPolicy().refusal(host);
}

/** One connection pool for every http.request attempt, whose every connection passes the outbound policy. */
function guardedAgent(): Promise<import('undici').Agent> {
  agent ??= import('undici').then(({ Agent }) => new Agent({ connect: { lookup: guardedLookup(outboundPolicy()) } }));
  return agent;
}

class DestinationRefused extends Error {
  readonly code = 'OPSD_HTTP_DESTINATION_REFUSED';
}

/**
 * A DNS lookup that fails when any address of the name is refused: checked after resolution, so a
 * public name that resolves to 127.0.0.1 is refused too. IP literals come through here as well.
 */
function guardedLookup(policy: OutboundPolicy): LookupFunction {
  return (hostname, options, callback) => {
    dnsLookup(hostname, { ...options, all: true }, (error, addresses) => {
      if (error) return callback(error, '', 0);
      const list = addresses as LookupAddress[];
      if (!policy.allowsHost(hostname)) {
        for (const { address } of list) {
          const why = policy.refusal(address);
          if (why) return callback(new DestinationRefused(`${hostname}: ${why}`), '', 0);
        }
      }
      if (options.all) return (callback as unknown as (e: null, a: LookupAddress[]) => void)(null, list);
      const first = list[0] as LookupAddress;
      callback(null, first.address, first.family);
    });
  };
}

/** The refusal behind an undici error, if the outbound policy is what failed it. */
function destinationRefusal(error: unknown): string | null {
  for (let current = error as { code?: unknown; cause?: unknown; message?: string } | undefined, depth = 0; current && depth < 5; depth += 1) {
    if (current instanceof DestinationRefused || current.code === 'OPSD_HTTP_DESTINATION_REFUSED') return current.message ?? 'destination refused';
    current = current.cause as typeof current;
  }
  return null;
}

async function readBounded(body: AsyncIterable<Buffer>): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    if (size < MAX_RESPONSE_BYTES) chunks.push(chunk.subarray(0, MAX_RESPONSE_BYTES - size));
    size += chunk.length;
  }
  return Buffer.concat(chunks).toString('utf8');
}

function parseBody(text: string): Json {
  if (text === '') return null;
  try {
    return JSON.parse(text) as Json;
  } catch {
    return text;
  }
}

/** `Retry-After` as delay-seconds or an HTTP date; undefined when absent or unreadable. */
export function parseRetryAfter(header: string | string[] | undefined, nowMs: number): number | undefined {
  const value = Array.isArray(header) ? header[0] : header;
  if (!value) return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000;
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - nowMs);
}

/** Every operation type opsd ships with. */
export const BUILTIN_OPERATIONS: readonly OperationDefinition<never, unknown>[] = [demoEcho, demoSleep, httpRequest] as never;
