import { randomBytes } from 'node:crypto';
import pg from 'pg';

/**
 * A whole database of its own on the PostgreSQL server, for a suite or for the child processes a
 * test starts: tests never write into the database DATABASE_URL names. Dropped (with any connection a killed child left) on cleanup.
 */
export async function createServerDatabase(baseUrl: string): Promise<{ url: string; drop(): Promise<void> }> {
  const name = `opsd_test_${process.pid}_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: baseUrl });
  await admin.connect();
  // template0: nobody connects to it, so two files creating databases at once never collide.
  await admin.query(`CREATE DATABASE ${name} TEMPLATE template0`);
  await admin.end();
  const url = new URL(baseUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    async drop() {
      const dropper = new pg.Client({ connectionString: baseUrl });
      await dropper.connect();
      await dropper.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await dropper.end();
    },
  };
}
