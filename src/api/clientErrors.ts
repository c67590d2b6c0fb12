import { STATUS_CODES, type IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { ERROR_CATALOG, OpsdError, type ErrorCode } from '../domain/errors.js';
import { errorBody } from './httpErrors.js';

/**
 * Answers what the HTTP parser itself refused, before any route ran (a malformed request line,
 * headers over the limit, a request that did not arrive in time), with an opsd code and body
 * instead of Node's own, then closes the connection once the answer is written.
 */
export function answerClientError(error: NodeJS.ErrnoException, socket: Duplex): void {
  if (error.code === 'ECONNRESET' || socket.destroyed) return;
  const code: ErrorCode =
    error.code === 'ERR_HTTP_REQUEST_TIMEOUT'
      ? 'OPSD_ERR_REQUEST_TIMEOUT'
      : error.code === 'HPE_HEADER_OVERFLOW'
        ? 'OPSD_ERR_HEADERS_TOO_LARGE'
        : 'OPSD_ERR_BAD_REQUEST';
  const status = ERROR_CATALOG[code].status;
  const body = JSON.stringify(errorBody(new OpsdError(code)));
  if (socket.writable) {
    socket.end(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: application/json; charset=utf-8\r\n` +
        `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
  } else {
    socket.destroy();
  }
}

/** Most bytes of a refused body read and thrown away so that its client can read the answer. */
const DRAIN_MAX_BYTES = 16 * 1024 * 1024;
/** Longest time spent on that. */
const DRAIN_MAX_MS = 5000;

/**
 * Reads and discards the rest of a request whose body was refused (too large), up to a bound.
 * Answering while the client still sends makes the server close a socket with unread data, which
 * resets the connection: most clients then report a network error instead of the 413.
 */
export function drainRequest(request: IncomingMessage): Promise<void> {
  if (request.complete || request.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    let read = 0;
    const done = () => {
      clearTimeout(timer);
      request.off('data', onData).off('end', done).off('error', done).off('close', done);
      resolve();
    };
    const onData = (chunk: Buffer) => {
      read += chunk.length;
      if (read > DRAIN_MAX_BYTES) done();
    };
    const timer = setTimeout(done, DRAIN_MAX_MS);
    request.on('data', onData).on('end', done).on('error', done).on('close', done);
    request.resume();
  });
}

/**
 * Bounds on how long a request may take to arrive, as node:http server options: headers within
 * min(10 s, the request timeout), the whole request within the request timeout (then 408). Node
 * checks them every `connectionsCheckingInterval`, 30 s by default: far too coarse for them.
 */
export function serverTimeouts(requestTimeoutMs: number) {
  return {
    headersTimeout: Math.min(10_000, requestTimeoutMs),
    requestTimeout: requestTimeoutMs,
    connectionsCheckingInterval: Math.max(100, Math.min(1000, Math.floor(requestTimeoutMs / 4))),
  };
}
