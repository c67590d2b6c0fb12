/**
 * Log fields that hold secrets, whatever logs them: authorization headers, wherever they appear in
 * a line. Payload fields a type marks `sensitive` are added per type (see redactionFor).
 */
export const SECRET_PATHS: readonly string[] = [
  'authorization',
  'headers.authorization',
  'req.headers.authorization',
  'request.headers.authorization',
  '*.authorization',
  '*.headers.authorization',
];

/** The paths to redact for a type whose payload fields `sensitive` (dot paths inside the payload) are secret. */
export function redactionFor(sensitive: readonly string[]): string[] {
  return [...SECRET_PATHS, ...sensitive.map((path) => `payload.${path}`)];
}
