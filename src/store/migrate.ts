import { readdirSync, readFileSync } from 'node:fs';
import type { Db } from './db.js';

const MIGRATIONS_DIR = new URL('../../migrations/', import.meta.url);
// Any constant works; it names "the opsd migrator" to every process sharing the server.
const MIGRATION_LOCK_KEY = 7_424_001;

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

/** Numbered, forward-only SQL files: `NNN_name.sql`. */
export function loadMigrations(dir: URL = MIGRATIONS_DIR): Migration[] {
  return readdirSync(dir)
    .filter((file) => /^\d+_.+\.sql$/.test(file))
    .sort()
    .map((file) => ({
      version: Number.parseInt(file, 10),
      name: file.replace(/\.sql$/, ''),
      sql: readFileSync(new URL(file, dir), 'utf8'),
    }));
}

/**
 * Applies every migration not yet applied, each in its own transaction, under a session
 * advisory lock so that processes starting together apply each file exactly once.
 * Returns the names it applied.
 */
export async function migrate(db: Db, migrations: Migration[] = loadMigrations()): Promise<string[]> {
  return db.withSession(async (session) => {
    await session.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_KEY]);
    try {
      await session.query(`CREATE TABLE IF NOT EXISTS opsd_migrations (
        version integer PRIMARY KEY,
        name text NOT NULL,
        applied_at timestamptz NOT NULL DEFAULT now()
      )`);
      const { rows } = await session.query<{ version: number }>('SELECT version FROM opsd_migrations');
      const applied = new Set(rows.map((row) => Number(row.version)));
      const done: string[] = [];
      for (const migration of migrations) {
        if (applied.has(migration.version)) continue;
        await session.query('BEGIN');
        try {
          await session.exec(migration.sql);
          await session.query('INSERT INTO opsd_migrations (version, name) VALUES ($1, $2)', [
            migration.version,
            migration.name,
          ]);
          await session.query('COMMIT');
        } catch (error) {
          await session.query('ROLLBACK');
          throw new Error(`migration ${migration.name} failed: ${(error as Error).message}`, { cause: error });
        }
        done.push(migration.name);
      }
      return done;
    } finally {
      await session.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK_KEY]);
    }
  });
}
