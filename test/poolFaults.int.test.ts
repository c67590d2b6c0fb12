import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createPgDb } from '../src/store/pgDb.js';
import { postgresBackend } from './support/backends.js';
import { startTcpProxy, throughProxy } from './support/tcpProxy.js';

describe('pool faults [postgres]', { skip: postgresBackend.skip }, () => {
  it('a session terminated the moment it connects fails the work that asked for it, not the process', async () => {
    const base = new URL(process.env.DATABASE_URL as string);
    const proxy = await startTcpProxy({ host: base.hostname, port: Number(base.port || 5432) });
    const db = createPgDb({ connectionString: throughProxy(base.toString(), proxy.port), max: 2, connectTimeoutMs: 2000 });
    try {
      proxy.terminateAtStartup();
      // Each asks the pool for a new session; the FATAL lands before the caller holds the client.
      for (let i = 0; i < 5; i += 1) {
        await assert.rejects(db.transaction((tx) => tx.query('SELECT 1')));
        await assert.rejects(db.withSession((session) => session.query('SELECT 1')));
      }
      proxy.restore();
      const { rows } = await db.query<{ one: number }>('SELECT 1 AS one');
      assert.equal(rows[0]?.one, 1);
    } finally {
      await db.close();
      await proxy.close();
    }
  });
});
