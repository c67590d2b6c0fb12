import type { Scope } from '../auth/scopes.js';
import type { Queryable } from './db.js';

/** A stored key, without anything that could stand in for it. */
export interface ApiKeyRecord {
  id: string;
  name: string;
  scopes: Scope[];
  createdAt: string;
  revokedAt: string | null;
}

interface KeyRow {
  id: string;
  name: string;
  secret_sha256: Buffer | Uint8Array;
  scopes: Scope[];
  created_at: Date | string;
  revoked_at: Date | string | null;
}

const iso = (value: Date | string) => new Date(value).toISOString();

function toRecord(row: KeyRow): ApiKeyRecord {
  return { id: row.id, name: row.name, scopes: row.scopes, createdAt: iso(row.created_at), revokedAt: row.revoked_at === null ? null : iso(row.revoked_at) };
}

export async function insertApiKey(db: Queryable, key: { id: string; name: string; secretSha256: Buffer; scopes: Scope[] }, now: Date): Promise<ApiKeyRecord> {
  const { rows } = await db.query<KeyRow>(
    `INSERT INTO opsd_api_keys (id, name, secret_sha256, scopes, created_at) VALUES ($1, $2, $3, $4, $5) RETURNING *`,
    [key.id, key.name, key.secretSha256, key.scopes, now.toISOString()],
  );
  return toRecord(rows[0] as KeyRow);
}

export async function listApiKeys(db: Queryable): Promise<ApiKeyRecord[]> {
  const { rows } = await db.query<KeyRow>('SELECT * FROM opsd_api_keys ORDER BY created_at, id');
  return rows.map(toRecord);
}

/** Revokes a key; false when there is no such key or it was already revoked. */
export async function revokeApiKey(db: Queryable, id: string, now: Date): Promise<boolean> {
  const { rowCount } = await db.query('UPDATE opsd_api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL', [id, now.toISOString()]);
  return rowCount > 0;
}

/** The digest and scopes of a live key, or null. */
export async function findLiveApiKey(db: Queryable, id: string): Promise<{ secretSha256: Buffer; scopes: Scope[] } | null> {
  const { rows } = await db.query<KeyRow>('SELECT * FROM opsd_api_keys WHERE id = $1 AND revoked_at IS NULL', [id]);
  const row = rows[0];
  return row ? { secretSha256: Buffer.from(row.secret_sha256), scopes: row.scopes } : null;
}

export async function hasLiveApiKeys(db: Queryable): Promise<boolean> {
  const { rows } = await db.query('SELECT 1 FROM opsd_api_keys WHERE revoked_at IS NULL LIMIT 1');
  return rows.length > 0;
}
