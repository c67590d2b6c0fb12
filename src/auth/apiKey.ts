import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

/** A key as its holder sends it: `opsd_<id>_<secret>`, where the id finds the stored row. */
export interface ApiKeyToken {
  id: string;
  secret: string;
}

const TOKEN = /^opsd_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/;

/** A fresh key: 8 random bytes of id, 32 of secret. */
export function generateApiKey(): ApiKeyToken & { token: string } {
  const id = randomBytes(8).toString('hex');
  const secret = randomBytes(32).toString('base64url');
  return { id, secret, token: `opsd_${id}_${secret}` };
}

/** The id and secret of a bearer token, or null when it is not shaped like an opsd key. */
export function parseApiKey(token: string): ApiKeyToken | null {
  const match = TOKEN.exec(token);
  return match ? { id: match[1] as string, secret: match[2] as string } : null;
}

/** What the store keeps of a secret. */
export function secretDigest(secret: string): Buffer {
  return createHash('sha256').update(secret).digest();
}

/** Whether `secret` is the one whose digest is `stored`, in time independent of where they differ. */
export function secretMatches(secret: string, stored: Buffer): boolean {
  const digest = secretDigest(secret);
  return digest.length === stored.length && timingSafeEqual(digest, stored);
}

/** The token of an `Authorization: Bearer <token>` header, or null. */
export function bearerToken(header: string | string[] | undefined): string | null {
  const value = Array.isArray(header) ? header[0] : header;
  const match = value ? /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(value) : null;
  return match ? (match[1] as string) : null;
}
