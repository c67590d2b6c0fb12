/**
 * Log fields that hold secrets, whatever logs them: authorization headers at the top of a line and
 * in the objects lines carry (a request, a response, an error, a payload). Payload fields a type
 * marks `sensitive` are added per type (see redactionFor).
 *
 * The paths are spelled out rather than matched with a leading wildcard: pino runs a top-level
 * wildcard over every field of every line and of every child logger's bindings, which doubles the
 * cost of the line each attempt writes.
 */
const CARRIERS = ['req', 'request', 'res', 'response', 'err', 'error', 'payload', 'config', 'options'];

export const SECRET_PATHS: readonly string[] = [
  'authorization',
  'headers.authorization',
  ...CARRIERS.flatMap((carrier) => [`${carrier}.authorization`, `${carrier}.headers.authorization`]),
];

/** The paths to redact for a type whose payload fields `sensitive` (dot paths inside the payload) are secret. */
export function redactionFor(sensitive: readonly string[]): string[] {
  return [...SECRET_PATHS, ...sensitive.map((path) => `payload.${path}`)];
}
