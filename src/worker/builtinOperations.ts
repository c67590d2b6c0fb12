import { setTimeout as sleep } from 'node:timers/promises';
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
  async handle({ payload, signal }) {
    await sleep(payload.ms, undefined, { signal });
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
 * (honouring `Retry-After`); any other status rejects.
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
    let response;
    try {
      response = await request(payload.url, { method: payload.method as 'GET', headers, body, signal });
    } catch (error) {
      if (signal.aborted) throw error;
      throw new RetryError(`request failed: ${(error as Error).message}`, { code: 'OPSD_HTTP_NETWORK_ERROR' });
    }
    const text = await readBounded(response.body);
    const result = { status: response.statusCode, body: parseBody(text) };
    if (response.statusCode >= 200 && response.statusCode < 300) return result;
    if (response.statusCode === 429 || response.statusCode >= 500) {
      const retryAfterMs = parseRetryAfter(response.headers['retry-after'], Date.now());
      throw new RetryError(`upstream answered ${response.statusCode}`, {
        code: 'OPSD_HTTP_RETRYABLE_STATUS',
        details: result,
        ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
      });
    }
    throw new RejectError('OPSD_HTTP_REJECTED', `upstream answered ${response.statusCode}`, result);
  },
});

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
