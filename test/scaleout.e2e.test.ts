import assert from 'node:assert/strict';
import { get as httpGet } from 'node:http';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { acceptOperations } from '../src/store/acceptOperations.js';
import { createPgDb } from '../src/store/pgDb.js';
import { getOperation, listEvents } from '../src/store/readOperations.js';
import { serversSkip } from './support/backends.js';
import { uniqueId, waitFor } from './support/helpers.js';
import { http, listeningUrl, runOpsd, spawnOpsd, type OpsdProcess } from './support/opsdProcess.js';
import { privateRedisSkip, startPrivateRedis } from './support/privateRedis.js';
import { checkOrderAndUniqueness, redisPrefix, stateCounts } from './support/scaleout.js';
import { createServerDatabase } from './support/serverDatabase.js';

interface Stats {
  leader: boolean;
  completed: number;
}

/** A deployment of separate processes on its own database, and its own key prefix on Redis (or on `redisUrl`). */
function deployment(redisUrl?: () => string) {
  const processes: OpsdProcess[] = [];
  let database: Awaited<ReturnType<typeof createServerDatabase>>;
  let client: pg.Client;
  const env = () => ({
    DATABASE_URL: database.url,
    REDIS_URL: redisUrl?.() ?? (process.env.REDIS_URL as string),
    OPSD_REDIS_PREFIX: prefix,
    OPSD_LEASE_MS: '2000',
    // Keeps a whole deployment inside this server's 100 connections, beside the other suites.
    DB_POOL_MAX: '4',
  });
  const prefix = redisPrefix();
  return {
    env,
    get client() {
      return client;
    },
    async setUp() {
      database = await createServerDatabase(process.env.DATABASE_URL as string);
      const migrated = await runOpsd(['migrate'], env());
      assert.equal(migrated.code, 0, migrated.stderr);
      client = new pg.Client({ connectionString: database.url });
      await client.connect();
    },
    async spawn(args: string[], extraEnv: Record<string, string> = {}) {
      const started = await spawnOpsd(args, { ...env(), ...extraEnv }, args.includes('--cluster') ? { waitFor: null } : {});
      processes.push(started);
      return started;
    },
    async tearDown() {
      for (const p of processes) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
      await Promise.all(processes.map((p) => p.exited));
      await client?.end();
      await database?.drop();
    },
  };
}

async function submitBatches(apiUrl: string, count: number, keys: number, ms: number): Promise<void> {
  const prefix = uniqueId('op');
  for (let start = 0; start < count; start += 100) {
    const operations = Array.from({ length: Math.min(100, count - start) }, (_, j) => ({
      type: 'demo.sleep',
      external_id: `${prefix}-${start + j}`,
      payload: { ms },
      ordering_key: `key-${(start + j) % keys}`,
    }));
    const response = await http<{ results: { status: number }[] }>(`${apiUrl}/v1/operations/batch`, { method: 'POST', body: { operations } });
    assert.equal(response.status, 200);
    assert.ok(response.body.results.every((r) => r.status === 202));
  }
}

describe('scale-out on PostgreSQL + Redis', { skip: serversSkip }, () => {
  it('3 workers + 1 api: 2,000 operations on 50 keys survive a worker SIGKILL', async () => {
    const d = deployment();
    await d.setUp();
    try {
      const api = await d.spawn(['api', '--port', '0']);
      const workers = await Promise.all([0, 1, 2].map(() => d.spawn(['worker', '--health-port', '0', '--concurrency', '20'])));
      await submitBatches(api.url, 2000, 50, 10);
      await waitFor('a quarter done', async () => ((await stateCounts(d.client)).COMPLETED ?? 0) >= 500, { timeoutMs: 60_000 });

      const victim = workers[Math.floor(Math.random() * workers.length)] as OpsdProcess;
      victim.child.kill('SIGKILL');
      await victim.exited;
      await d.spawn(['worker', '--health-port', '0', '--concurrency', '20']);

      await waitFor('all 2,000 completed', async () => ((await stateCounts(d.client)).COMPLETED ?? 0) === 2000, { timeoutMs: 120_000, intervalMs: 250 });
      const { operations, keysOverlap } = await checkOrderAndUniqueness(d.client);
      assert.equal(operations, 2000);
      assert.ok(keysOverlap, 'different keys ran in parallel');
    } finally {
      await d.tearDown();
    }
  });

  it('a private Redis (started by this test) loses every key of the deployment mid-run: every accepted operation still completes', { skip: privateRedisSkip() }, async () => {
    const redis = await startPrivateRedis();
    const d = deployment(() => redis.url);
    await d.setUp();
    try {
      const api = await d.spawn(['api', '--port', '0']);
      await d.spawn(['worker', '--health-port', '0', '--concurrency', '8']);
      await submitBatches(api.url, 200, 4, 20);
      await waitFor('some done', async () => ((await stateCounts(d.client)).COMPLETED ?? 0) >= 20, { timeoutMs: 60_000 });
      // Every key the deployment keeps, on the server this test started: as if Redis had lost its data.
      assert.ok((await redis.flushOwnKeys(d.env().OPSD_REDIS_PREFIX)) > 0, 'the deployment had keys to lose');
      const before = (await stateCounts(d.client)).COMPLETED ?? 0;
      assert.ok(before < 200, 'the flush happened mid-run');
      await waitFor('all 200 completed after the flush', async () => ((await stateCounts(d.client)).COMPLETED ?? 0) === 200, { timeoutMs: 90_000, intervalMs: 250 });
      assert.equal((await checkOrderAndUniqueness(d.client)).operations, 200);
    } finally {
      await d.tearDown();
      await redis.close();
    }
  });

  it('leader failover: another process takes over and rescues what the dead leader was running', async () => {
    const d = deployment();
    await d.setUp();
    // A lease far longer than the test: only the liveness rescue can bring these operations back in time.
    const longLease = { OPSD_LEASE_MS: '120000' };
    const db = createPgDb({ connectionString: d.env().DATABASE_URL, max: 2 });
    try {
      const workers = await Promise.all([0, 1].map(() => d.spawn(['worker', '--health-port', '0', '--concurrency', '20'], longLease)));
      const statsOf = async (w: OpsdProcess) => (await http<Stats>(`${w.url}/stats`)).body;
      const leader = await waitFor('a leader', async () => {
        for (const w of workers) if ((await statsOf(w)).leader) return w;
        return null;
      });
      const follower = workers.find((w) => w !== leader) as OpsdProcess;
      assert.equal((await statsOf(follower)).leader, false, 'exactly one leader');
      // Twice as many as one worker takes at once: whichever claims first, the other (the leader
      // or not) still finds twenty, so the leader runs some of them whatever the timing.
      const accepted = await acceptOperations(
        db,
        Array.from({ length: 40 }, () => ({ externalId: uniqueId(), type: 'demo.sleep', payload: { ms: 3000 }, maxAttempts: 3 })),
        new Date(),
      );
      const ids = accepted.map((r) => r.operation.id);
      const held = await waitFor('the leader to run some of them', async () => {
        const { rows } = await db.query<{ id: string }>(`SELECT id FROM operations WHERE id = ANY($1::uuid[]) AND state = 'PROCESSING' AND lease_owner LIKE $2`, [ids, `%:${leader.child.pid}:%`]);
        return rows.length > 0 ? rows.map((r) => r.id) : null;
      });
      leader.child.kill('SIGKILL');
      await leader.exited;
      await waitFor('the follower to lead', async () => (await statsOf(follower)).leader, { timeoutMs: 10_000 });
      for (const id of held) {
        await waitFor('the dead leader\'s operations to complete elsewhere', async () => (await getOperation(db, id))?.status === 'COMPLETED', { timeoutMs: 30_000 });
        const types = (await listEvents(db, id)).map((e) => e.event.type);
        assert.deepEqual(types, ['received', 'started', 'lease_expired', 'started', 'completed']);
      }
    } finally {
      await db.close();
      await d.tearDown();
    }
  });

  it('intake accepts operations, serves nothing else, and hands them to the leader at once', async () => {
    const d = deployment();
    await d.setUp();
    try {
      const intake = await d.spawn(['intake', '--port', '0']);
      const worker = await d.spawn(['worker', '--health-port', '0']);
      await waitFor('the worker to lead', async () => (await http<Stats>(`${worker.url}/stats`)).body.leader);
      const accepted = await http<{ id: string }>(`${intake.url}/v1/operations`, {
        method: 'POST',
        body: { type: 'demo.echo', external_id: uniqueId('in'), payload: { x: 1 } },
      });
      assert.equal(accepted.status, 202);
      assert.equal((await http(`${intake.url}/v1/operations/${accepted.body.id}`)).status, 404);
      await waitFor('the worker to complete it', async () => (await http<Stats>(`${worker.url}/stats`)).body.completed === 1);
      // The reconciler only re-dispatches operations untouched for 5 s: a start sooner than that
      // came from the intake's NOTIFY, relayed to BullMQ by the leader.
      const { rows } = await d.client.query<{ waited_ms: number }>(
        `SELECT extract(epoch FROM (s.occurred_at - r.occurred_at)) * 1000 AS waited_ms
           FROM operation_events r JOIN operation_events s USING (operation_id)
          WHERE r.operation_id = $1 AND r.type = 'received' AND s.type = 'started'`,
        [accepted.body.id],
      );
      assert.ok(Number(rows[0]?.waited_ms) < 5000, `started ${rows[0]?.waited_ms} ms after it was received`);
    } finally {
      await d.tearDown();
    }
  });
});

describe('scale-out on PostgreSQL alone', { skip: serversSkip }, () => {
  /** Seconds from `received` to `started`, the longest over the given operations. */
  async function longestWaitToStart(client: pg.Client, externalIdPrefix: string): Promise<number> {
    const { rows } = await client.query<{ waited_ms: number | null; n: number }>(
      `SELECT max(extract(epoch FROM (s.occurred_at - r.occurred_at)) * 1000) AS waited_ms, count(*)::int AS n
         FROM operation_events r JOIN operation_events s ON s.operation_id = r.operation_id AND s.type = 'started' AND s.seq = 2
        WHERE r.type = 'received' AND r.external_id LIKE $1 || '%'`,
      [externalIdPrefix],
    );
    return Number(rows[0]?.waited_ms);
  }

  const listenerPids = async (client: pg.Client) =>
    (await client.query<{ pid: number }>(`SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'opsd-listener'`)).rows.map((r) => r.pid);

  it('workers that poll once a minute start what the api accepts within moments (NOTIFY), also after their listening session is killed', async () => {
    const d = deployment(() => '');
    await d.setUp();
    try {
      const api = await d.spawn(['api', '--port', '0']);
      const slowPoll = { OPSD_POLL_INTERVAL_MS: '60000' };
      await Promise.all([0, 1].map(() => d.spawn(['worker', '--health-port', '0', '--concurrency', '10'], slowPoll)));
      await waitFor('both workers to listen', async () => (await listenerPids(d.client)).length === 2);

      const submit = async (prefix: string) => {
        const operations = Array.from({ length: 40 }, (_, i) => ({ type: 'demo.echo', external_id: `${prefix}-${i}`, payload: { i }, ordering_key: `k-${i % 4}` }));
        const response = await http<{ results: { status: number }[] }>(`${api.url}/v1/operations/batch`, { method: 'POST', body: { operations } });
        assert.equal(response.status, 200);
        await waitFor(`${prefix} to complete`, async () => (await d.client.query(`SELECT 1 FROM operations WHERE external_id LIKE $1 || '%' AND state = 'COMPLETED'`, [prefix])).rowCount === 40, { timeoutMs: 20_000 });
        // Without a wake-up the first of them would wait for a poll, up to 60 s.
        const waited = await longestWaitToStart(d.client, prefix);
        assert.ok(waited < 5000, `${prefix}: an operation started ${waited} ms after it was received`);
      };

      await submit(uniqueId('first'));
      const before = await listenerPids(d.client);
      await d.client.query('SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid', [before]);
      await waitFor('both listeners to reconnect', async () => {
        const now = await listenerPids(d.client);
        return now.length === 2 && now.every((pid) => !before.includes(pid));
      });
      await submit(uniqueId('second'));
      const checked = await checkOrderAndUniqueness(d.client);
      assert.equal(checked.operations, 80);
    } finally {
      await d.tearDown();
    }
  });
});

/** GET on a connection of its own (node:cluster hands each connection to one child). */
function onNewConnection(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    httpGet(url, { agent: false }, (response) => {
      let body = '';
      response.on('data', (chunk: Buffer) => (body += chunk.toString()));
      response.on('end', () => resolve(body));
    }).on('error', reject);
  });
}

describe('opsd worker --cluster', { skip: serversSkip }, () => {
  const d = deployment();
  before(() => d.setUp());
  after(() => d.tearDown());

  const childPids = (output: string) =>
    output
      .split('\n')
      .filter((line) => line.includes('"child started"'))
      .map((line) => (JSON.parse(line) as { child: number }).child);

  it('respawns a child that dies; SIGTERM drains every child and exits 0', async () => {
    const supervisor = await d.spawn(['worker', '--cluster', '2', '--health-port', '0'], {});
    await waitFor('two children', () => childPids(supervisor.output()).length === 2);
    await waitFor('children ready', () => (supervisor.output().match(/"opsd listening"/g) ?? []).length === 2);
    process.kill(childPids(supervisor.output())[0] as number, 'SIGKILL');
    await waitFor('a respawn', () => childPids(supervisor.output()).length === 3 && supervisor.output().includes('child died; respawning'));
    await waitFor('the new child ready', () => (supervisor.output().match(/"opsd listening"/g) ?? []).length === 3);
    // The children share the health port, a connection each: the respawned one says how many were respawned before it.
    const healthUrl = listeningUrl(supervisor.output()) as string;
    await waitFor('the respawned child to report the restart', async () => /^opsd_cluster_restarts\{[^}]*\} 1$/m.test(await onNewConnection(`${healthUrl}/metrics`)));
    supervisor.child.kill('SIGTERM');
    const exit = await supervisor.exited;
    assert.equal(exit.code, 0, supervisor.output().slice(-3000));
    assert.match(supervisor.output(), /all children stopped/);
    assert.equal((supervisor.output().match(/"msg":"stopped"/g) ?? []).length, 2, `both live children drained: ${supervisor.output().slice(-4000)}`);
  });

  it('gives up with exit 1 when children die faster than the restart limit', async () => {
    const crashing = await d.spawn(['worker', '--cluster', '1', '--health-port', '0'], { OPSD_HANDLERS: '/dev/null' });
    const exit = await crashing.exited;
    assert.equal(exit.code, 1);
    assert.match(crashing.output(), /restart limit/);
  });
});
