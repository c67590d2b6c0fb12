import pg from 'pg';

/**
 * A transaction opened on `url` and kept open until `release`: a snapshot only, or, with `writes`,
 * a transaction id too (without a row written), which is what makes it hold back the cleanup of
 * other databases' tables.
 */
export async function holdTransaction(url: string, options: { writes: boolean; applicationName?: string }): Promise<{ release: () => Promise<void> }> {
  const client = new pg.Client({ connectionString: url, ...(options.applicationName ? { application_name: options.applicationName } : {}) });
  await client.connect();
  try {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
    await client.query(options.writes ? 'SELECT pg_current_xact_id()' : 'SELECT 1');
  } catch (error) {
    await client.end();
    throw error;
  }
  let released = false;
  return {
    async release() {
      if (released) return;
      released = true;
      await client.query('COMMIT').catch(() => undefined);
      await client.end();
    },
  };
}
