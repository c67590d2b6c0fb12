import { spawnSync } from 'node:child_process';
import { after, before, describe } from 'node:test';
import type { Db } from '../../src/store/db.js';
import { migrate, type Migration } from '../../src/store/migrate.js';
import { createPgDb } from '../../src/store/pgDb.js';
import { createPgliteDb } from '../../src/store/pgliteDb.js';
import { createServerDatabase } from './serverDatabase.js';

/** A migrated, isolated database for one test file, and how to throw it away. */
export interface TestDb {
  db: Db;
  /** The URL of the suite's own database (PostgreSQL only), for a second connection to the same tables. */
  url?: string;
  cleanup(): Promise<void>;
}

export interface Backend {
  name: 'pglite' | 'postgres';
  /** Why this backend is skipped here, or false. */
  skip: string | false;
  /** `migrations`: those to apply (every one by default), for a store as an earlier release left it. */
  open(options?: { poolMax?: number; migrations?: Migration[] }): Promise<TestDb>;
}

const databaseUrl = process.env.DATABASE_URL;

/** CI sets OPSD_REQUIRE_SERVERS=1: there a missing server is a failure, never a skip. */
export function requireServers(): boolean {
  return process.env.OPSD_REQUIRE_SERVERS === '1';
}

/**
 * Why tests that run `tools` (programs on PATH, from Debian's packages) are skipped here, or false.
 * Where servers are required (CI), a missing tool is a failure, never a skip.
 */
export function toolsSkip(tools: readonly string[], tests: string): string | false {
  const missing = tools.filter((tool) => spawnSync(tool, ['--version'], { stdio: 'ignore' }).status !== 0);
  if (missing.length === 0) return false;
  if (requireServers()) throw new Error(`OPSD_REQUIRE_SERVERS=1 but ${missing.join(' and ')} is not on PATH: ${tests} must run`);
  return `${missing.join(' and ')} is not on PATH, so ${tests} are skipped`;
}

/** Why suites that need Redis are skipped here, or false. */
export const redisSkip: string | false = process.env.REDIS_URL
  ? false
  : 'REDIS_URL is not set, so the Redis suite is skipped (set it to a redis:// URL to run it)';

/** Why suites that need a PostgreSQL server (and nothing else) are skipped here, or false. */
export const databaseSkip: string | false = databaseUrl ? false : 'DATABASE_URL is not set, so the suites that need a PostgreSQL server are skipped';

/** Why suites that need both servers are skipped here, or false. */
export const serversSkip: string | false = !databaseUrl
  ? 'DATABASE_URL is not set, so the scale-out suite is skipped (it needs PostgreSQL and Redis)'
  : redisSkip;

if (requireServers() && !process.env.REDIS_URL) {
  throw new Error('OPSD_REQUIRE_SERVERS=1 but REDIS_URL is not set: the Redis suites must run');
}

if (requireServers() && !databaseUrl) {
  throw new Error('OPSD_REQUIRE_SERVERS=1 but DATABASE_URL is not set: the PostgreSQL suite must run');
}

export const pgliteBackend: Backend = {
  name: 'pglite',
  skip: false,
  async open(options = {}) {
    const db = await createPgliteDb(undefined);
    await migrate(db, options.migrations);
    return { db, cleanup: () => db.close() };
  },
};

export const postgresBackend: Backend = {
  name: 'postgres',
  skip: databaseUrl ? false : 'DATABASE_URL is not set, so the PostgreSQL suite is skipped (set it to a postgres:// URL to run it)',
  async open(options = {}) {
    // A database of its own, never anything in the one DATABASE_URL names: tests must not touch a user's data.
    const database = await createServerDatabase(databaseUrl as string);
    const db = createPgDb({ connectionString: database.url, max: options.poolMax ?? 10 });
    await migrate(db, options.migrations);
    return {
      db,
      url: database.url,
      async cleanup() {
        await db.close();
        await database.drop();
      },
    };
  },
};

export const BACKENDS: readonly Backend[] = [pgliteBackend, postgresBackend];

/**
 * Declares the same suite once per backend: the conformance rule that PGlite and PostgreSQL
 * behave alike. Each suite gets its own database for all its tests.
 */
export function describeEachBackend(title: string, body: (db: () => Db, backend: Backend) => void): void {
  for (const backend of BACKENDS) {
    describe(`${title} [${backend.name}]`, { skip: backend.skip }, () => {
      let handle: TestDb | undefined;
      before(async () => {
        handle = await backend.open();
      });
      after(async () => {
        await handle?.cleanup();
      });
      body(() => {
        if (!handle) throw new Error('database not open yet');
        return handle.db;
      }, backend);
    });
  }
}
