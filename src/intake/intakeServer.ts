import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Ajv } from 'ajv';
import type { Logger } from 'pino';
import { errorBody, unexpectedError, validationError } from '../api/httpErrors.js';
import { answerClientError, drainRequest, serverTimeouts } from '../api/clientErrors.js';
import { parseBatchBody, parseJsonBody } from '../api/parseJsonBody.js';
import { batchSchema, newOperationSchema } from '../api/schemas.js';
import { storeReadiness } from '../store/storeReadiness.js';
import type { SubmittedOperation } from '../api/submission.js';
import type { SubmissionReply, Submissions } from '../api/submissions.js';
import { OpsdError, RETRY_AFTER_S } from '../domain/errors.js';
import type { Db } from '../store/db.js';
import { createAdmission, PRESSURE_DEFAULTS, type Admission, type PressureOptions } from '../protect/admission.js';
import { createPressureGauge } from '../protect/pressureGauge.js';
import { observeNodeRequest, serveObservability } from '../observe/serveObservability.js';
import { requestIdOf } from '../observe/requestId.js';
import type { Observability } from '../observe/startObservability.js';
import { gateNodeRequest, type Authenticator } from '../auth/authenticator.js';
import { WEBHOOK_PATH_PREFIX, type ReceiveWebhook } from '../webhooks/receiveWebhook.js';

export interface IntakeServerOptions {
  port: number;
  host: string;
  db: Db;
  submissions: Submissions;
  /** Compiles the body schemas; shared with whoever validates batch items. */
  validator: Ajv;
  logger: Logger;
  /** Largest accepted body in bytes. */
  bodyLimit: number;
  /** Longest time a whole request may take to arrive, in ms; then 408. Default 30000. */
  requestTimeoutMs?: number;
  /** Requests in flight and the wait for a turn (429 past them). Default: see ADMISSION_DEFAULTS. */
  admission?: Admission;
  /** Saturation thresholds (503 past them). Default: event loop delay 1000 ms, 100 callers waiting for the store. */
  pressure?: PressureOptions;
  /** `/metrics`, `/health` and the HTTP metrics; without it neither route is served. */
  observability?: Observability;
  /** Who may call which route; without it every route is open. */
  authenticator?: Authenticator;
  /** `POST /v1/webhooks/:source`; without it the route is not served. */
  webhooks?: ReceiveWebhook;
}

export interface IntakeServer {
  url: string;
  /** Refuses new requests (503), lets those under way finish, then closes. */
  close(): Promise<void>;
}

type Route = (text: string) => Promise<SubmissionReply>;

/**
 * The intake's HTTP server: submission and health, with the same contract and error codes as the
 * api. Plain node:http rather than Fastify because the intake must stay small in memory and fast to
 * start, and it serves four routes.
 */
export async function startIntakeServer(options: IntakeServerOptions): Promise<IntakeServer> {
  const { submissions, logger } = options;
  const validateOne = options.validator.compile<SubmittedOperation>(newOperationSchema);
  const validateBatch = options.validator.compile<{ operations: unknown[] }>(batchSchema);
  const admission = options.admission ?? createAdmission();
  const pressure = createPressureGauge({ db: options.db, ...(options.pressure ?? PRESSURE_DEFAULTS) });
  let closing = false;

  const routes: Record<string, Route> = {
    '/v1/operations': async (text) => {
      const body = parseJsonBody(text);
      if (!validateOne(body)) throw validationError(validateOne, 'body');
      return submissions.submitOne(body);
    },
    '/v1/operations/batch': async (text) => {
      const { value, itemProblems } = parseBatchBody(text);
      if (!validateBatch(value)) throw validationError(validateBatch, 'body');
      return { status: 200, headers: {}, body: await submissions.submitBatch(value.operations, itemProblems) };
    },
  };

  async function handle(request: IncomingMessage): Promise<SubmissionReply> {
    const path = (request.url ?? '/').split('?')[0] as string;
    if (closing) {
      return replyOf(new OpsdError('OPSD_ERR_UNAVAILABLE', 'shutting down'), { connection: 'close' });
    }
    if (request.method === 'GET' && path === '/health/live') return { status: 200, headers: {}, body: { status: 'live' } };
    if (request.method === 'GET' && path === '/health/ready') {
      const readiness = await storeReadiness(options.db);
      if (readiness.ready) return { status: 200, headers: {}, body: { status: 'ready' } };
      return replyOf(new OpsdError('OPSD_ERR_UNAVAILABLE', readiness.reason));
    }
    const webhookSource = options.webhooks && path.startsWith(WEBHOOK_PATH_PREFIX) ? path.slice(WEBHOOK_PATH_PREFIX.length) : null;
    const route = request.method === 'POST' ? routes[path] : undefined;
    if (webhookSource !== null && request.method !== 'POST') {
      return replyOf(new OpsdError('OPSD_ERR_METHOD_NOT_ALLOWED', `${request.method ?? ''} is not served on ${path}; use POST`), { allow: 'POST' });
    }
    if (!route && webhookSource === null) {
      const allowed = ALLOWED[path];
      if (allowed) {
        return replyOf(new OpsdError('OPSD_ERR_METHOD_NOT_ALLOWED', `${request.method ?? ''} is not served on ${path}; use ${allowed}`), { allow: allowed });
      }
      throw new OpsdError('OPSD_ERR_ROUTE_NOT_FOUND', `no route ${request.method ?? ''} ${path}`);
    }
    const saturation = pressure.saturation();
    if (saturation) {
      admission.stats.refusedSaturated += 1;
      throw new OpsdError('OPSD_ERR_SATURATED', saturation);
    }
    const release = await admission.admit();
    try {
      if (webhookSource !== null && options.webhooks) {
        return await options.webhooks(decodeSource(webhookSource), await readJsonBytes(request, options.bodyLimit), request.headers);
      }
      return await (route as Route)(await readJsonText(request, options.bodyLimit));
    } finally {
      release();
    }
  }

  const server = createServer(serverTimeouts(options.requestTimeoutMs ?? 30_000), (request, response) => {
    const path = (request.url ?? '/').split('?')[0] as string;
    const requestId = requestIdOf(request);
    response.setHeader('x-request-id', requestId);
    observeNodeRequest(options.observability, request, response, path in ALLOWED || path === '/metrics' || path === '/health' ? path : path.startsWith(WEBHOOK_PATH_PREFIX) ? '/v1/webhooks/:source' : 'unmatched');
    const serve = () => {
      if (serveObservability(request, response, path, options.observability)) return;
      handle(request).then(
        (reply) => send(response, reply),
        async (error: unknown) => {
          const reply = errorReply(error, logger.child({ request_id: requestId }));
          if (reply.status === 413) await drainRequest(request);
          send(response, reply);
        },
      );
    };
    gateNodeRequest(
      options.authenticator,
      request,
      path,
      serve,
      (refusal) => void drainRequest(request).then(() => send(response, replyOf(refusal.error, refusal.headers))),
      (error) => send(response, errorReply(error, logger.child({ request_id: requestId }))),
    );
  });
  server.on('clientError', answerClientError);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://${options.host.includes(':') ? `[${options.host}]` : options.host}:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        closing = true;
        pressure.stop();
        server.close(() => resolve());
        server.closeIdleConnections();
      }),
  };
}

/** The body as text, refused when it is not declared JSON or is too large. */
async function readJsonText(request: IncomingMessage, limit: number): Promise<string> {
  return (await readJsonBytes(request, limit)).toString('utf8');
}

/** The body's bytes, refused when it is not declared JSON or is too large. */
async function readJsonBytes(request: IncomingMessage, limit: number): Promise<Buffer> {
  const contentType = (request.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase();
  if (contentType !== 'application/json') {
    throw new OpsdError('OPSD_ERR_UNSUPPORTED_MEDIA_TYPE', `unsupported content type "${contentType ?? ''}"; send application/json`);
  }
  const tooLarge = () => new OpsdError('OPSD_ERR_PAYLOAD_TOO_LARGE', `the body is over the limit of ${limit} bytes`);
  if (Number(request.headers['content-length'] ?? 0) > limit) throw tooLarge();
  // Listeners rather than for-await: leaving a for-await early destroys the socket, and the
  // client of a refused body could not read its 413 (the rest is drained before answering).
  return new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const stop = (error: OpsdError) => {
      request.off('data', onData).off('end', onEnd).off('error', onError).off('aborted', onAborted);
      reject(error);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) stop(tooLarge());
      else chunks.push(chunk);
    };
    const onEnd = () => resolve(Buffer.concat(chunks));
    // The client hung up mid-body: its error, not the store's.
    const onError = (error: Error) => stop(new OpsdError('OPSD_ERR_MALFORMED_JSON', `the body was cut off: ${error.message}`));
    const onAborted = () => stop(new OpsdError('OPSD_ERR_MALFORMED_JSON', 'the body was cut off'));
    request.on('data', onData).on('end', onEnd).on('error', onError).on('aborted', onAborted);
  });
}

/** The `:source` of a webhook path, as the api's router decodes it. */
function decodeSource(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new OpsdError('OPSD_ERR_BAD_REQUEST', 'the URL is not valid percent-encoded UTF-8');
  }
}

/** Methods served on each path, for a 405 with `Allow`. */
const ALLOWED: Record<string, string> = {
  '/v1/operations': 'POST',
  '/v1/operations/batch': 'POST',
  '/health/live': 'GET',
  '/health/ready': 'GET',
};

function replyOf(error: OpsdError, headers: Record<string, string> = {}): SubmissionReply {
  const retryAfter = RETRY_AFTER_S[error.code];
  return { status: error.status, headers: { ...(retryAfter !== undefined ? { 'retry-after': String(retryAfter) } : {}), ...headers }, body: errorBody(error) };
}

function errorReply(error: unknown, logger: Logger): SubmissionReply {
  if (error instanceof OpsdError) {
    // A refused body may be half read; the connection cannot be reused.
    const headers: Record<string, string> = error.code === 'OPSD_ERR_PAYLOAD_TOO_LARGE' ? { connection: 'close' } : {};
    return replyOf(error, headers);
  }
  return replyOf(unexpectedError(error, logger));
}

function send(response: ServerResponse, reply: SubmissionReply): void {
  const body = JSON.stringify(reply.body);
  response.writeHead(reply.status, {
    ...reply.headers,
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(body),
  });
  response.end(body);
}
