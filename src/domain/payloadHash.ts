import { createHash } from 'node:crypto';
import type { Json } from './operation.js';

/** JSON with object keys sorted at every depth, so equal values serialise equally. */
export function canonicalJson(value: Json): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  const keys = Object.keys(value).sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(value[k] as Json)}`).join(',')}}`;
}

/** The dedup fingerprint of a payload: key order and whitespace do not matter. */
export function payloadHash(payload: Json): string {
  return createHash('sha256').update(canonicalJson(payload)).digest('hex');
}
