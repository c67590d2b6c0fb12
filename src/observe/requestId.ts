import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';

/** What an incoming `x-request-id` may be, to be kept: short, printable, no spaces. */
const ACCEPTED = /^[A-Za-z0-9._:/@=+-]{1,128}$/;

/**
 * The id of a request: the caller's `x-request-id` when it looks like one (so one id follows a
 * request through the caller's own systems), else a fresh UUID. Echoed on the answer, logged as
 * `request_id` on every line about the request.
 */
export function requestIdOf(request: IncomingMessage): string {
  const given = request.headers['x-request-id'];
  return typeof given === 'string' && ACCEPTED.test(given) ? given : randomUUID();
}
