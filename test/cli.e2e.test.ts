import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { postgresBackend } from './support/backends.js';
import { holdTransaction } from './support/heldTransaction.js';
import { createServerDatabase } from './support/serverDatabase.js';
import { uniqueId, waitFor } from './support/helpers.js';
import { http, runOpsd, startOpsd } from './support/opsdProcess.js';

// Embedded: no server at all, whatever the environment names (never a queue under a user's prefix).
const embedded = { DATABASE_URL: '', REDIS_URL: '' };

describe('opsd command', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'opsd-cli-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('--help on every command', async () => {
    for (const args of [['--help'], ...['start', 'api', 'intake', 'worker', 'migrate', 'doctor'].map((c) => [c, '--help'])]) {
      const { code, stdout } = await runOpsd(args);
      assert.equal(code, 0);
      assert.match(stdout, /Usage: opsd/);
    }
    const { stdout } = await runOpsd(['start', '--help']);
    for (const flag of ['--port', '--database-url', '--data-dir', '--handlers', '--concurrency', '--grace-ms', '--log-level']) {
      assert.ok(stdout.includes(flag), `start --help mentions ${flag}`);
    }
  });

  it('fails at start with a clear message on invalid configuration', async () => {
    const cases: [Record<string, string>, RegExp][] = [
      [{ PORT: 'eighty' }, /PORT must be an integer from 0 to 65535 \(got "eighty"\)/],
      [{ DATABASE_URL: 'mysql://localhost/db' }, /DATABASE_URL must be a postgres:\/\/ URL/],
      [{ LOG_LEVEL: 'loud' }, /LOG_LEVEL must be one of/],
      [{ OPSD_HANDLERS: join(dir, 'missing.mjs') }, /OPSD_HANDLERS names a file that does not exist/],
    ];
    for (const [env, message] of cases) {
      const { code, stderr } = await runOpsd(['start'], { OPSD_DATA_DIR: join(dir, 'never'), ...env });
      assert.equal(code, 2, `exit code for ${JSON.stringify(env)}`);
      assert.match(stderr, message);
    }
  });

  it('migrate applies the migrations once', async () => {
    const dataDir = join(dir, 'migrate');
    const first = await runOpsd(['migrate', '--data-dir', dataDir], embedded);
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stdout, /applied: 001_operations/);
    const second = await runOpsd(['migrate', '--data-dir', dataDir], embedded);
    assert.equal(second.code, 0, second.stderr);
    assert.match(second.stdout, /up to date/);
  });

  it('a second opsd start on the same data folder refuses, naming the folder and the holder', async () => {
    const dataDir = join(dir, 'shared-data');
    const first = await startOpsd({ ...embedded, OPSD_DATA_DIR: dataDir });
    try {
      const second = await runOpsd(['start', '--port', '0'], { ...embedded, OPSD_DATA_DIR: dataDir });
      assert.equal(second.code, 1);
      assert.match(second.stderr, new RegExp(`data folder ${dataDir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is in use by another opsd process \\(pid ${first.child.pid}\\)`));
    } finally {
      first.child.kill('SIGTERM');
      await first.exited;
    }
    // Released on a clean stop, and a lock whose process is gone is taken over.
    writeFileSync(join(dataDir, 'opsd.lock'), '999999999');
    const again = await startOpsd({ ...embedded, OPSD_DATA_DIR: dataDir });
    again.child.kill('SIGTERM');
    assert.equal((await again.exited).code, 0);
  });

  it('runs handlers from OPSD_HANDLERS, drains on SIGTERM and exits 0', async () => {
    const handlers = join(dir, 'handlers.mjs');
    const entry = pathToFileURL(join(process.cwd(), 'dist/index.js')).href;
    writeFileSync(
      handlers,
      `import { defineOperation, RejectError } from ${JSON.stringify(entry)};
export const charge = defineOperation({
  type: 'payments.charge',
  payload: { type: 'object', required: ['amount'], properties: { amount: { type: 'integer' } } },
  async handle({ payload }) {
    if (payload.amount > 1000) throw new RejectError('LIMIT_EXCEEDED', 'amount over limit');
    await new Promise((resolve) => setTimeout(resolve, 400));
    return { charged: payload.amount };
  },
});
`,
    );
    const opsd = await startOpsd({ ...embedded, OPSD_DATA_DIR: join(dir, 'handlers-data'), OPSD_HANDLERS: handlers });
    const small = await http<{ id: string }>(`${opsd.url}/v1/operations`, {
      method: 'POST',
      body: { type: 'payments.charge', external_id: uniqueId('pay'), payload: { amount: 10 } },
    });
    assert.equal(small.status, 202);
    const invalid = await http<{ error: { code: string } }>(`${opsd.url}/v1/operations`, {
      method: 'POST',
      body: { type: 'payments.charge', external_id: uniqueId('pay'), payload: { amount: 'ten' } },
    });
    assert.equal(invalid.body.error.code, 'OPSD_ERR_PAYLOAD_INVALID');
    await waitFor('the charge to be running', async () => (await http<{ state: string }>(`${opsd.url}/v1/operations/${small.body.id}`)).body.state === 'PROCESSING');
    opsd.child.kill('SIGTERM');
    const exit = await opsd.exited;
    assert.equal(exit.code, 0, opsd.output());
    assert.match(opsd.output(), /"completed":1/, 'the running handler finished inside the grace period');

    const restarted = await startOpsd({ ...embedded, OPSD_DATA_DIR: join(dir, 'handlers-data'), OPSD_HANDLERS: handlers });
    try {
      const { body } = await http<{ state: string; result: unknown }>(`${restarted.url}/v1/operations/${small.body.id}`);
      assert.deepEqual([body.state, body.result], ['COMPLETED', { charged: 10 }]);
      const big = await http<{ id: string }>(`${restarted.url}/v1/operations`, {
        method: 'POST',
        body: { type: 'payments.charge', external_id: uniqueId('pay'), payload: { amount: 5000 } },
      });
      const rejected = await waitFor('the big charge to be rejected', async () => {
        const op = await http<{ state: string; error: { code: string } | null }>(`${restarted.url}/v1/operations/${big.body.id}`);
        return op.body.state === 'REJECTED' ? op.body : null;
      });
      assert.equal(rejected.error?.code, 'LIMIT_EXCEEDED');
    } finally {
      restarted.child.kill('SIGTERM');
      assert.equal((await restarted.exited).code, 0);
    }
  });

  it('a second signal exits at once without waiting for the grace period', async () => {
    const opsd = await startOpsd({ ...embedded, OPSD_DATA_DIR: join(dir, 'second-signal'), OPSD_GRACE_MS: '60000' });
    const { body } = await http<{ id: string }>(`${opsd.url}/v1/operations`, {
      method: 'POST',
      body: { type: 'demo.sleep', external_id: uniqueId('long'), payload: { ms: 60_000 } },
    });
    await waitFor('the long sleep to be running', async () => (await http<{ state: string }>(`${opsd.url}/v1/operations/${body.id}`)).body.state === 'PROCESSING');
    const sentAt = Date.now();
    opsd.child.kill('SIGTERM');
    await waitFor('the shutdown to begin', () => opsd.output().includes('shutting down'));
    opsd.child.kill('SIGINT');
    const exit = await opsd.exited;
    assert.equal(exit.code, 130);
    assert.ok(Date.now() - sentAt < 30_000, 'did not wait for the 60 s grace period');
  });
});

describe('opsd doctor', { skip: postgresBackend.skip }, () => {
  it('adds up the connections of a deployment and warns when the server would run out', async () => {
    const small = await runOpsd(['doctor', '--api', '1', '--worker', '1', '--intake', '1'], { REDIS_URL: 'redis://127.0.0.1:6379' });
    assert.equal(small.code, 0, small.stderr);
    assert.match(small.stdout, /\| api \| 1 \| 26 \| 26 \|/);
    assert.match(small.stdout, /\| worker \| 1 \| 17 \| 17 \|/);
    assert.match(small.stdout, /\| intake \| 1 \| 5 \| 5 \|/);
    assert.match(small.stdout, /\| all \| 3 \| \| 48 \|/);
    assert.match(small.stdout, /max_connections \d+/);

    const big = await runOpsd(['doctor', '--api', '10', '--worker', '50', '--cluster', '4'], { REDIS_URL: 'redis://127.0.0.1:6379' });
    assert.equal(big.code, 1);
    assert.match(big.stdout, /WARNING: this deployment would open 4440 connections/);

    const pooled = await runOpsd(['doctor', '--worker', '2'], { DB_POOL_MAX: '3', REDIS_URL: 'redis://127.0.0.1:6379' });
    assert.match(pooled.stdout, /\| worker \| 2 \| 5 \| 10 \|/);

    // On PostgreSQL alone each worker also listens for accepted operations on a session of its own.
    const listening = await runOpsd(['doctor', '--worker', '2'], { DB_POOL_MAX: '3', REDIS_URL: '' });
    assert.match(listening.stdout, /\| worker \| 2 \| 6 \| 12 \|/);
  });

  it('lists the transactions that hold back the cleanup of its tables: any in its database, one that wrote anywhere', async () => {
    const mine = await createServerDatabase(process.env.DATABASE_URL as string);
    const other = await createServerDatabase(process.env.DATABASE_URL as string);
    const tag = uniqueId('held');
    const held: { release: () => Promise<void> }[] = [];
    const hold = async (url: string, name: string, writes: boolean) => {
      held.push(await holdTransaction(url, { writes, applicationName: `${tag}-${name}` }));
    };
    const doctor = (age: string) => runOpsd(['doctor', '--worker', '1', '--max-transaction-age', age], { DATABASE_URL: mine.url, REDIS_URL: '' });
    try {
      await hold(mine.url, 'same-read', false);
      await hold(other.url, 'other-write', true);
      await hold(other.url, 'other-read', false);
      await new Promise((resolve) => setTimeout(resolve, 1_200));
      const listed = await doctor('1');
      assert.equal(listed.code, 0, listed.stderr);
      assert.match(listed.stdout, /WARNING: \d+ transactions? older than 1 s holds? back the cleanup of opsd's tables/);
      assert.ok(listed.stdout.includes(`"${tag}-same-read"`), listed.stdout);
      assert.ok(listed.stdout.includes(`"${tag}-other-write"`), listed.stdout);
      assert.ok(!listed.stdout.includes(`"${tag}-other-read"`), 'a read-only transaction in another database holds nothing back');
      // Younger than the age asked about: not listed.
      assert.ok(!(await doctor('3600')).stdout.includes(tag));
      for (const transaction of held.splice(0)) await transaction.release();
      assert.ok(!(await doctor('0')).stdout.includes(tag), 'ended transactions are not listed');
      for (const bad of ['-1', 'NaN', '1e999', '', '0x10', '10000000000']) {
        const refused = await doctor(bad);
        assert.equal(refused.code, 2, `--max-transaction-age ${JSON.stringify(bad)}`);
        assert.match(refused.stderr, /--max-transaction-age must be a number of seconds/);
      }
    } finally {
      for (const transaction of held) await transaction.release().catch(() => undefined);
      await mine.drop();
      await other.drop();
    }
  });
});
