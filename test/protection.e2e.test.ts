import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { startFakeBank } from '../examples/bank-statements/fakeBank.mjs';
import { serversSkip } from './support/backends.js';
import { uniqueId, waitFor } from './support/helpers.js';
import { http, runOpsd, spawnOpsd, type OpsdProcess } from './support/opsdProcess.js';
import { redisPrefix } from './support/scaleout.js';
import { createServerDatabase } from './support/serverDatabase.js';

const HANDLERS = fileURLToPath(new URL('./fixtures/protectHandlers.mjs', import.meta.url));
/** The bank's limit and the resource's rate: high enough that 300 statements take seconds, not a minute. */
const RATE = 20;
const BREAKER = { failures: 5, cooldownMs: 2000 };

interface ResourceView {
  name: string;
  in_flight: number;
  waiting: number;
  throttled: number;
  pauses: number;
  paused: boolean;
  paused_until: string | null;
  breaker: { state: string; since: string | null };
  rate: { limit: number; recent_starts: number };
}

type Bank = Awaited<ReturnType<typeof startFakeBank>>;

/** Calls in every window of `ms` that starts at a call: the most any such window saw. */
function busiestWindow(times: readonly number[], ms: number): number {
  const sorted = [...times].sort((a, b) => a - b);
  let most = 0;
  for (let i = 0, j = 0; i < sorted.length; i += 1) {
    while (j < sorted.length && (sorted[j] as number) < (sorted[i] as number) + ms) j += 1;
    most = Math.max(most, j - i);
  }
  return most;
}

describe('protection: resources, caps, priorities, admission and pauses across processes [postgres + redis]', { skip: serversSkip }, () => {
  let bank: Bank;
  let database: Awaited<ReturnType<typeof createServerDatabase>>;
  let client: pg.Client;
  let api: OpsdProcess;
  let workers: OpsdProcess[] = [];
  const processes: OpsdProcess[] = [];
  const prefix = redisPrefix();
  const env = () => ({
    DATABASE_URL: database.url,
    REDIS_URL: process.env.REDIS_URL as string,
    OPSD_REDIS_PREFIX: prefix,
    OPSD_HANDLERS: HANDLERS,
    BANK_URL: bank.url,
    BANK_RATE: String(RATE),
    BANK_BREAKER_FAILURES: String(BREAKER.failures),
    BANK_BREAKER_COOLDOWN_MS: String(BREAKER.cooldownMs),
    OPSD_LEASE_MS: '5000',
    DB_POOL_MAX: '4',
    LOG_LEVEL: 'warn',
  });
  const spawn = async (args: string[], extra: Record<string, string> = {}) => {
    const started = await spawnOpsd(args, { ...env(), LOG_LEVEL: 'info', ...extra });
    processes.push(started);
    return started;
  };
  const startAll = async () => {
    api = await spawn(['api', '--port', '0']);
    workers = [];
    for (let i = 0; i < 3; i += 1) workers.push(await spawn(['worker', '--concurrency', '10', '--health-port', '0']));
  };
  const stopAll = async () => {
    for (const p of [api, ...workers]) p.child.kill('SIGTERM');
    await Promise.all([api, ...workers].map((p) => p.exited));
  };
  const bankResource = async () => (await http<{ resources: ResourceView[] }>(`${api.url}/v1/admin/resources`)).body.resources.find((r) => r.name === 'bank-inter') as ResourceView;
  const submit = async (operations: object[]) => {
    const response = await http<{ results: { status: number; operation?: { id: string } }[] }>(`${api.url}/v1/operations/batch`, { method: 'POST', body: { operations } });
    assert.equal(response.status, 200);
    return response.body.results.map((r) => {
      assert.ok([200, 202].includes(r.status), JSON.stringify(r));
      return r.operation?.id as string;
    });
  };
  const statements = (count: number, extra: object = {}) =>
    Array.from({ length: count }, (_, i) => ({ type: 'bank.statement', external_id: uniqueId('st'), payload: { account: `acct-${i}` }, ...extra }));
  const allEnded = (ids: string[], timeoutMs = 60_000) =>
    waitFor(`${ids.length} operations to end`, async () => {
      const { rows } = await client.query<{ n: number }>(`SELECT count(*)::int AS n FROM operations WHERE id = ANY($1::uuid[]) AND state IN ('COMPLETED', 'REJECTED', 'FAILED', 'CANCELLED')`, [ids]);
      return rows[0]?.n === ids.length;
    }, { timeoutMs, intervalMs: 100 });
  const states = async (ids: string[]) => {
    const { rows } = await client.query<{ state: string; n: number }>('SELECT state, count(*)::int AS n FROM operations WHERE id = ANY($1::uuid[]) GROUP BY state', [ids]);
    return Object.fromEntries(rows.map((r) => [r.state, r.n]));
  };

  before(async () => {
    bank = await startFakeBank({ limit: RATE });
    database = await createServerDatabase(process.env.DATABASE_URL as string);
    const migrated = await runOpsd(['migrate'], env());
    assert.equal(migrated.code, 0, migrated.stderr);
    client = new pg.Client({ connectionString: database.url });
    await client.connect();
    await startAll();
  });
  after(async () => {
    for (const p of processes) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
    await Promise.all(processes.map((p) => p.exited));
    await client?.end();
    await database?.drop();
    await bank?.close();
  });

  it('three workers keep to the bank rate in every window; every statement completes in one attempt', async () => {
    const since = Date.now();
    const ids = await submit(statements(300));
    await allEnded(ids);
    assert.deepEqual(await states(ids), { COMPLETED: 300 });
    const calls = bank.calls.filter((c) => c.at >= since);
    assert.equal(calls.length, 300, 'one call per statement');
    assert.ok(calls.every((c) => c.status === 200), 'the bank never had to say 429');
    const busiest = busiestWindow(calls.map((c) => c.at), 1000);
    assert.ok(busiest <= RATE, `the bank saw ${busiest} calls in one second (limit ${RATE})`);
    const { rows } = await client.query<{ n: number }>(`SELECT count(*)::int AS n FROM operation_events WHERE type = 'started' AND operation_id = ANY($1::uuid[])`, [ids]);
    assert.equal(rows[0]?.n, 300, 'no attempt was spent waiting for a start');
  });

  it('a 429 with Retry-After: 2 pauses the bank for every worker; the attempt it hit is deferred, not counted', async () => {
    const since = Date.now();
    bank.throttleNext(2);
    const ids = await submit(statements(20));
    await allEnded(ids);
    assert.deepEqual(await states(ids), { COMPLETED: 20 });
    const calls = bank.calls.filter((c) => c.at >= since);
    const throttled = calls.find((c) => c.status === 429);
    assert.ok(throttled, 'the bank answered 429 once');
    // Calls already under way when the 429 came back may land just after it; nothing after that until the pause ends.
    const during = calls.filter((c) => c.at > throttled.at + 100 && c.at < throttled.at + 1900);
    assert.deepEqual(during, [], 'no call reached the bank during the pause');
    const resumed = calls.filter((c) => c.at >= throttled.at + 1900);
    assert.ok(resumed.length > 0 && (resumed[0] as { at: number }).at < throttled.at + 3500, 'calls resumed once the pause ended');
    const { rows } = await client.query<{ attempts: number; deferred: number }>(
      `SELECT o.attempts, count(*) FILTER (WHERE e.type = 'deferred')::int AS deferred
       FROM operations o JOIN operation_events e ON e.operation_id = o.id
       WHERE o.id = ANY($1::uuid[]) GROUP BY o.id, o.attempts HAVING count(*) FILTER (WHERE e.type = 'deferred') > 0`,
      [ids],
    );
    assert.deepEqual(rows, [{ attempts: 1, deferred: 1 }], 'the throttled statement was deferred once and completed on its one counted attempt');
    const view = await bankResource();
    assert.ok(view.throttled >= 1 && view.pauses >= 1, JSON.stringify(view));
  });

  it('the breaker opens after its failures, lets nothing through in the cool-down, probes once, and closes when the bank recovers', async () => {
    const since = Date.now();
    bank.fail(true);
    const ids = await submit(statements(30, { max_attempts: 20 }));
    const opened = await waitFor('the breaker to open', async () => {
      const view = await bankResource();
      return view.breaker.state === 'open' ? Date.parse(view.breaker.since as string) : null;
    }, { intervalMs: 20 });
    const failuresBeforeOpen = bank.calls.filter((c) => c.at >= since && c.at <= opened).length;
    assert.ok(failuresBeforeOpen >= BREAKER.failures, `${failuresBeforeOpen} failed calls before it opened`);
    // The probe comes after the cool-down; then, with the bank still failing, it opens again.
    const firstProbe = await waitFor('a probe after the cool-down', () => bank.calls.find((c) => c.at > opened + 200), { intervalMs: 20 });
    assert.ok(firstProbe.at >= opened + BREAKER.cooldownMs - 50, `a call ${firstProbe.at - opened} ms after it opened, within the cool-down`);
    await waitFor('the probe to open it again', async () => (await bankResource()).breaker.state === 'open' && Date.parse((await bankResource()).breaker.since as string) > opened, { intervalMs: 20 });
    const probesWhileFailing = bank.calls.filter((c) => c.at > opened + 200 && c.at < firstProbe.at + 500);
    assert.equal(probesWhileFailing.length, 1, 'one probe through a half-open breaker');
    bank.fail(false);
    await allEnded(ids);
    assert.deepEqual(await states(ids), { COMPLETED: 30 }, 'no statement failed for the time the breaker was open');
    assert.equal((await bankResource()).breaker.state, 'closed');
  });

  it('a cluster-wide cap of 3 holds across three workers of concurrency 10', async () => {
    const ids = await submit(Array.from({ length: 30 }, () => ({ type: 'test.capped', external_id: uniqueId('cap'), payload: null })));
    let most = 0;
    const sampling = (async () => {
      for (;;) {
        const { rows } = await client.query<{ n: number; open: number }>(
          `SELECT count(*) FILTER (WHERE state = 'PROCESSING')::int AS n, count(*) FILTER (WHERE state IN ('PENDING', 'PROCESSING'))::int AS open FROM operations WHERE type = 'test.capped'`,
        );
        most = Math.max(most, rows[0]?.n ?? 0);
        if (rows[0]?.open === 0) return;
        await new Promise((resolve) => setTimeout(resolve, 15));
      }
    })();
    await allEnded(ids);
    await sampling;
    assert.ok(most <= 3, `${most} PROCESSING at once`);
    assert.ok(most >= 2, 'the cap still lets them run side by side');
  });

  it('with a backlog, higher priorities start first, never ahead of an earlier operation on their key', async () => {
    const paused = await http(`${api.url}/v1/admin/types/test.prioritized/pause`, { method: 'POST' });
    assert.deepEqual(paused, { status: 200, body: { type: 'test.prioritized', paused: true } });
    const op = (priority: number, key = uniqueId('k')) => ({ type: 'test.prioritized', external_id: uniqueId('p'), payload: null, priority, ordering_key: key });
    const low = await submit(Array.from({ length: 15 }, () => op(-5)));
    const high = await submit(Array.from({ length: 15 }, () => op(5)));
    const [earlierLow, laterHigh] = await submit([op(-5, 'shared-key'), op(5, 'shared-key')]);
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.deepEqual(await states([...low, ...high]), { PENDING: 30 }, 'nothing runs while the type is paused');
    assert.equal((await http(`${api.url}/v1/admin/types/test.prioritized/resume`, { method: 'POST' })).status, 200);
    const all = [...low, ...high, earlierLow as string, laterHigh as string];
    await allEnded(all);
    const { rows } = await client.query<{ id: string; started: Date }>(`SELECT operation_id AS id, occurred_at AS started FROM operation_events WHERE type = 'started' AND operation_id = ANY($1::uuid[])`, [all]);
    const startOf = new Map(rows.map((r) => [r.id, r.started.getTime()]));
    const lastHigh = Math.max(...high.map((id) => startOf.get(id) as number));
    const firstLow = Math.min(...low.map((id) => startOf.get(id) as number));
    assert.ok(lastHigh <= firstLow, 'every high-priority operation started before any low-priority one');
    assert.ok((startOf.get(laterHigh as string) as number) >= (startOf.get(earlierLow as string) as number), 'the high one on a shared key waited for the low one accepted before it');
  });

  it('a burst of 2,000 against a small in-flight limit gets 202, 200 or 429 with Retry-After, never 5xx; health answers; every 202 is stored', async () => {
    const small = await spawn(['api', '--port', '0'], { OPSD_MAX_IN_FLIGHT: '4', OPSD_ADMISSION_WAIT_MS: '20' });
    let bursting = true;
    const healthDuringBurst: number[] = [];
    const probing = (async () => {
      while (bursting) {
        healthDuringBurst.push((await fetch(`${small.url}/health/ready`)).status);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    })();
    const answers = await Promise.all(
      Array.from({ length: 2000 }, async (_, i) => {
        const external = `burst-${prefix}-${i}`;
        const response = await fetch(`${small.url}/v1/operations`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ type: 'demo.echo', external_id: external, payload: { i } }) });
        const body = (await response.json()) as { id?: string; error?: { code: string } };
        return { status: response.status, retryAfter: response.headers.get('retry-after'), id: body.id, code: body.error?.code };
      }),
    );
    bursting = false;
    await probing;
    assert.ok(healthDuringBurst.length > 0);
    assert.deepEqual([...new Set(healthDuringBurst)], [200], 'health answered 200 all through the burst');
    const byStatus = new Map<number, number>();
    for (const a of answers) byStatus.set(a.status, (byStatus.get(a.status) ?? 0) + 1);
    assert.deepEqual([...byStatus.keys()].filter((s) => ![200, 202, 429].includes(s)), [], `statuses: ${JSON.stringify([...byStatus])}`);
    assert.ok((byStatus.get(429) ?? 0) > 0, 'the limit refused some');
    assert.ok((byStatus.get(202) ?? 0) > 0, 'and took others');
    for (const a of answers.filter((x) => x.status === 429)) {
      assert.equal(a.code, 'OPSD_ERR_OVERLOADED');
      assert.ok(Number(a.retryAfter) > 0);
    }
    const accepted = answers.filter((a) => a.status === 202).map((a) => a.id as string);
    const { rows } = await client.query<{ n: number }>('SELECT count(*)::int AS n FROM operations WHERE id = ANY($1::uuid[])', [accepted]);
    assert.equal(rows[0]?.n, accepted.length, 'every 202 is in the store');
    small.child.kill('SIGTERM');
    await small.exited;
  });

  it('a full backlog sheds its own type only, lower priorities first', async () => {
    assert.equal((await http(`${api.url}/v1/admin/types/test.shed/pause`, { method: 'POST' })).status, 200);
    const one = async (type: string, priority = 0) =>
      http<{ error?: { code: string } }>(`${api.url}/v1/operations`, { method: 'POST', body: { type, external_id: uniqueId('shed'), payload: null, priority } });
    const statuses: number[] = [];
    for (let i = 0; i < 25; i += 1) statuses.push((await one('test.shed')).status);
    assert.deepEqual(statuses.slice(0, 20), Array(20).fill(202));
    const refused = await one('test.shed');
    assert.equal(refused.status, 429);
    assert.equal(refused.body.error?.code, 'OPSD_ERR_BACKLOG_FULL');
    assert.equal((await one('test.shed', -1)).status, 429, 'a low priority is shed too');
    assert.equal((await one('demo.echo')).status, 202, 'other types are still accepted');
    assert.equal((await http(`${api.url}/v1/admin/types/test.shed/resume`, { method: 'POST' })).status, 200);
  });

  it('a pause survives a restart of every process; resume picks up where it stopped', async () => {
    assert.equal((await http(`${api.url}/v1/admin/resources/bank-inter/pause`, { method: 'POST' })).status, 200);
    assert.equal((await http(`${api.url}/v1/admin/types/test.capped/pause`, { method: 'POST' })).status, 200);
    await stopAll();
    await startAll();
    const ids = await submit([...statements(5), ...Array.from({ length: 5 }, () => ({ type: 'test.capped', external_id: uniqueId('cap'), payload: null }))]);
    await new Promise((resolve) => setTimeout(resolve, 1500));
    assert.deepEqual(await states(ids), { PENDING: 10 }, 'nothing paused ran after the restart');
    assert.equal((await bankResource()).paused, true);
    const stats = (await http<{ types: { type: string; paused: boolean }[] }>(`${api.url}/v1/admin/stats`)).body.types;
    assert.equal(stats.find((t) => t.type === 'test.capped')?.paused, true);
    assert.equal((await http(`${api.url}/v1/admin/resources/bank-inter/resume`, { method: 'POST' })).status, 200);
    assert.equal((await http(`${api.url}/v1/admin/types/test.capped/resume`, { method: 'POST' })).status, 200);
    await allEnded(ids);
    assert.deepEqual(await states(ids), { COMPLETED: 10 });
  });
});
