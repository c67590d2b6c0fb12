import type { Queryable } from './db.js';

/** Pauses or resumes a type, in the store, so every process and every restart sees it. */
export async function setTypePaused(db: Queryable, type: string, paused: boolean): Promise<void> {
  await db.query(
    `INSERT INTO opsd_type_controls (type, paused, updated_at) VALUES ($1, $2, now())
     ON CONFLICT (type) DO UPDATE SET paused = EXCLUDED.paused, updated_at = EXCLUDED.updated_at`,
    [type, paused],
  );
}

/** The types an operator paused. */
export async function pausedTypes(db: Queryable): Promise<Set<string>> {
  const { rows } = await db.query<{ type: string }>('SELECT type FROM opsd_type_controls WHERE paused');
  return new Set(rows.map((row) => row.type));
}
