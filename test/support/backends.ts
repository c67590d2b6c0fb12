import { randomBytes } from 'node:crypto';
import { after, before, describe } from 'node:test';
import pg from 'pg';
import type { Db } from '../../src/store/db.js';
import { migrate } from '../../src/store/migrate.js';
import { createPgDb } from '../../src/store/pgDb.js';
import { createPgliteDb } from '../../src/store/pgliteDb.js';

/** A migrated, isolated database for one test file, and how to throw it away. */
export interface TestDb {
  db: Db;
  /** The schema the suite lives in (PostgreSQL only), for a second connection to the same tables. */
  schema?: string;
  cleanup(): Promise<void>;
}

export interface Backend {
  name: 'pglite' | 'postgres';
  /** Why this backend is skipped here, or false. */
  skip: string | false;
  open(options?: { poolMax?: number }): Promise<TestDb>;
}

const databaseUrl = process.env.DATABASE_URL;

/** CI sets OPSD_REQUIRE_SERVERS=1: there a missing server is a failure, never a skip. */
export function requireServers(): boolean {
  return process.env.OPSD_REQUIRE_SERVERS === '1';
}

/** Why suites that need Redis are skipped here, or false. */
export const redisSkip: string | false = process.env.REDIS_URL
  ? false
  : 'REDIS_URL is not set, so the Redis suite is skipped (set it to a redis:// URL to run it)';

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
  async open() {
    const db = await createPgliteDb(undefined);
    await migrate(db);
    return { db, cleanup: () => db.close() };
  },
};

export const postgresBackend: Backend = {
  name: 'postgres',
  skip: databaseUrl ? false : 'DATABASE_URL is not set, so the PostgreSQL suite is skipped (set it to a postgres:// URL to run it)',
  async open(options = {}) {
    const url = databaseUrl as string;
    const schema = `opsd_test_${process.pid}_${randomBytes(4).toString('hex')}`;
    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    await admin.query(`CREATE SCHEMA ${schema}`);
    await admin.end();
    const db = createPgDb({ connectionString: url, schema, max: options.poolMax ?? 10 });
    await migrate(db);
    return {
      db,
      schema,
      async cleanup() {
        await db.close();
        const dropper = new pg.Client({ connectionString: url });
        await dropper.connect();
        await dropper.query(`DROP SCHEMA ${schema} CASCADE`);
        await dropper.end();
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
