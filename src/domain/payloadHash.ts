import { hash } from 'node:crypto';
import type { Json } from './operation.js';

/**
 * JSON with object keys sorted at every depth, so equal values serialise equally. Written out
 * with loops rather than map and join: it runs for every payload accepted, and is half the cost
 * of its fingerprint.
 */
export function canonicalJson(value: Json): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  if (Array.isArray(value)) {
    let text = '[';
    for (let i = 0; i < value.length; i += 1) text += (i === 0 ? '' : ',') + canonicalJson(value[i] as Json);
    return `${text}]`;
  }
  const keys = Object.keys(value).sort();
  let text = '{';
  for (let i = 0; i < keys.length; i += 1) {
    const key = keys[i] as string;
    text += `${i === 0 ? '' : ','}${JSON.stringify(key)}:${canonicalJson(value[key] as Json)}`;
  }
  return `${text}}`;
}

/** The fingerprint of a payload's canonical text. */
export function hashCanonical(canonical: string): string {
  return hash('sha256', canonical, 'hex');
}

/** The dedup fingerprint of a payload: key order and whitespace do not matter. */
export function payloadHash(payload: Json): string {
  return hashCanonical(canonicalJson(payload));
}
