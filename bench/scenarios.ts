import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { createBullmqDispatcher } from '../src/dispatch/bullmqDispatcher.js';
import { createNotifyDispatcher } from '../src/dispatch/notifyDispatcher.js';
import { acceptOperations, type NewOperation } from '../src/store/acceptOperations.js';
import type { Db } from '../src/store/db.js';
import { findClaimableHeads } from '../src/store/findClaimableHeads.js';
import { openDb } from '../src/store/openDb.js';
import { createPgliteDb } from '../src/store/pgliteDb.js';
import { setTypePaused } from '../src/store/typeControls.js';
import { catchUpAfter } from '../test/support/caughtUp.js';
import { dropRedisPrefix, freshDatabase, load, opsdArgs, payload300, percentile, rssMb, spawnListening, type Proc, type Sample } from './support.js';

export type Mode = 'embedded' | 'postgres' | 'postgres+redis';

/** How long each part runs; `bench/run.ts` has the full and quick values. */
export interface Settings {
  runs: number;
  /** Seconds of load per run: saturation, fixed rate, batch, baselines. */
  acceptS: number;
  fixedRateS: number;
  batchS: number;
  baselineS: number;
  /** Operations seeded for a drain on distinct keys, and on 10 keys (bounded by per-key order). */
  drainCount: number;
  orderedDrainCount: number;
  /** Length of each steady 500 ops/s load of the end-to-end scenario, in seconds. */
  endToEndS: number;
  /** How long roles idle after start before their settled RSS is read. */
  settleMs: number;
  /** Processes started per role (its own count: each start costs a second or more of both cores). */
  roleRuns: number;
  databaseUrl: string | undefined;
  redisUrl: string | undefined;
}

let embeddedTemplate: Promise<string> | null = null;

/**
 * An embedded data folder created and migrated once per benchmark run; every embedded store starts
 * as a copy of it, so that runs measure opsd rather than the creation of a database.
 */
function migratedEmbeddedFolder(): Promise<string> {
  embeddedTemplate ??= (async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'opsd-bench-template-'));
    process.once('exit', () => rmSync(dataDir, { recursive: true, force: true }));
    const db = await openDb({ databaseUrl: undefined, dataDir, poolMax: 1 });
    await db.close();
    return dataDir;
  })();
  return embeddedTemplate;
}

/** One isolated, migrated store (and Redis prefix) for one server start. */
export async function modeEnv(mode: Mode, s: Settings): Promise<{ env: Record<string, string>; cleanup(): Promise<void>; dataDir?: string; url?: string }> {
  if (mode === 'embedded') {
    const dataDir = mkdtempSync(join(tmpdir(), 'opsd-bench-'));
    cpSync(await migratedEmbeddedFolder(), dataDir, { recursive: true });
    return { env: { DATABASE_URL: '', REDIS_URL: '', OPSD_DATA_DIR: dataDir }, dataDir, cleanup: async () => rmSync(dataDir, { recursive: true, force: true }) };
  }
  const database = await freshDatabase(s.databaseUrl as string);
  if (mode !== 'postgres+redis') return { env: { DATABASE_URL: database.url, REDIS_URL: '' }, url: database.url, cleanup: database.drop };
  const prefix = `bench-${Date.now()}`;
  return {
    env: { DATABASE_URL: database.url, REDIS_URL: s.redisUrl as string, OPSD_REDIS_PREFIX: prefix },
    url: database.url,
    cleanup: async () => {
      await database.drop();
      await dropRedisPrefix(s.redisUrl as string, prefix);
    },
  };
}

const acceptServerArgs = (mode: Mode) => (mode === 'embedded' ? opsdArgs('start') : opsdArgs('api'));

export async function bareHttp(s: Settings): Promise<Sample[]> {
  const server = await spawnListening([fileURLToPath(new URL('./bareHttp.mjs', import.meta.url))]);
  try {
    const values: number[] = [];
    for (let i = 0; i < s.runs; i += 1) {
      const body = JSON.stringify({ type: 'demo.echo', external_id: 'same', payload: payload300() });
      values.push((await load({ url: server.url, path: '/v1/operations', connections: 64, durationS: s.baselineS, fixedBody: body })).requests.average);
    }
    return [{ scenario: 'bare-http', mode: 'baseline', metric: 'req/s', unit: 'req/s', values }];
  } finally {
    await server.stop();
  }
}

/** Durable single-row INSERT transactions into a table shaped like operation_events, 64 at a time. */
export async function bareInsert(mode: 'embedded' | 'postgres', s: Settings): Promise<Sample[]> {
  const { env, cleanup, dataDir, url } = await modeEnv(mode, s);
  void env;
  const db: Db = mode === 'embedded' ? await createPgliteDb(dataDir) : await openDb({ databaseUrl: url, dataDir: '', poolMax: 25, migrate: false });
  try {
    await db.query(`CREATE TABLE bench_events (position bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, operation_id uuid NOT NULL,
      seq integer NOT NULL, type text NOT NULL, data jsonb NOT NULL, external_id text, payload_hash text, occurred_at timestamptz NOT NULL, UNIQUE (operation_id, seq))`);
    const values: number[] = [];
    const data = JSON.stringify(payload300());
    for (let run = 0; run < s.runs; run += 1) {
      let count = 0;
      const deadline = performance.now() + s.baselineS * 1000;
      await Promise.all(
        Array.from({ length: 64 }, async () => {
          while (performance.now() < deadline) {
            await db.query(
              `INSERT INTO bench_events (operation_id, seq, type, data, external_id, payload_hash, occurred_at) VALUES (gen_random_uuid(), 1, 'received', $1, md5(random()::text), md5(random()::text), now())`,
              [data],
            );
            count += 1;
          }
        }),
      );
      values.push(count / s.baselineS);
    }
    return [{ scenario: 'bare-insert', mode, metric: 'inserts/s', unit: 'tx/s', values }];
  } finally {
    await db.close();
    await cleanup();
  }
}

/** accept at saturation, accept at a fixed 2,000 req/s, and batch accept, on one server per mode. */
export async function accept(mode: Mode, s: Settings): Promise<Sample[]> {
  const { env, cleanup } = await modeEnv(mode, s);
  const server = await spawnListening(acceptServerArgs(mode), env);
  try {
    const sat = { rps: [] as number[], p50: [] as number[], p99: [] as number[], errors: [] as number[] };
    const fixed = { p50: [] as number[], p90: [] as number[], p95: [] as number[], p99: [] as number[], errors: [] as number[] };
    const batch: number[] = [];
    for (let i = 0; i < s.runs; i += 1) {
      const r = await load({ url: server.url, path: '/v1/operations', connections: 64, durationS: s.acceptS });
      sat.rps.push(r.requests.average);
      sat.p50.push(r.latency.p50);
      sat.p99.push(r.latency.p99);
      sat.errors.push(r.errors + r.non2xx);
    }
    for (let i = 0; i < s.runs; i += 1) {
      const latencies: number[] = [];
      const r = await load({ url: server.url, path: '/v1/operations', connections: 64, durationS: s.fixedRateS, overallRate: 2000, latencies });
      fixed.p50.push(percentile(latencies, 50));
      fixed.p90.push(percentile(latencies, 90));
      fixed.p95.push(percentile(latencies, 95));
      fixed.p99.push(percentile(latencies, 99));
      fixed.errors.push(r.errors + r.non2xx + r.timeouts);
    }
    for (let i = 0; i < s.runs; i += 1) {
      const r = await load({ url: server.url, path: '/v1/operations/batch', connections: 8, durationS: s.batchS, batch: 100 });
      batch.push(r.requests.average * 100);
    }
    return [
      { scenario: 'accept', mode, metric: 'req/s', unit: 'req/s', values: sat.rps, baseline: 'bare-http' },
      { scenario: 'accept', mode, metric: 'p50', unit: 'ms', values: sat.p50 },
      { scenario: 'accept', mode, metric: 'p99', unit: 'ms', values: sat.p99 },
      { scenario: 'accept', mode, metric: 'errors', unit: 'count', values: sat.errors },
      { scenario: 'accept@2000/s', mode, metric: 'p50', unit: 'ms', values: fixed.p50 },
      { scenario: 'accept@2000/s', mode, metric: 'p90', unit: 'ms', values: fixed.p90 },
      { scenario: 'accept@2000/s', mode, metric: 'p95', unit: 'ms', values: fixed.p95 },
      { scenario: 'accept@2000/s', mode, metric: 'p99', unit: 'ms', values: fixed.p99 },
      { scenario: 'accept@2000/s', mode, metric: 'errors', unit: 'count', values: fixed.errors },
      { scenario: 'batch-accept', mode, metric: 'ops/s', unit: 'ops/s', values: batch },
    ];
  } finally {
    await server.stop();
    await cleanup();
  }
}

/** `prefix`: put before every external id and key, so that seeds of one store never share either. */
async function seed(db: Db, count: number, keys: number | 'distinct', prefix = ''): Promise<void> {
  for (let start = 0; start < count; start += 1000) {
    const items: NewOperation[] = Array.from({ length: Math.min(1000, count - start) }, (_, j) => {
      const i = start + j;
      return { externalId: `${prefix}drain-${i}`, type: 'demo.echo', payload: { i }, maxAttempts: 3, orderingKey: `${prefix}k-${keys === 'distinct' ? i : i % keys}` };
    });
    await acceptOperations(db, items, new Date(Date.now() - 1000));
  }
}

async function drainRate(db: Db): Promise<number> {
  const { rows } = await db.query<{ n: number; seconds: number }>(
    `SELECT count(*) FILTER (WHERE type = 'completed')::int AS n,
            extract(epoch FROM max(occurred_at) FILTER (WHERE type = 'completed') - min(occurred_at) FILTER (WHERE type = 'started'))::float8 AS seconds
     FROM operation_events`,
  );
  return (rows[0]?.n ?? 0) / Math.max(0.001, rows[0]?.seconds ?? 0);
}

/**
 * accept → COMPLETED at a steady 500 operations/s, from the event log (`received` to `completed`
 * of each operation). One deployment per mode (`start`; `api` + `worker` with Redis) and `runs`
 * loads on it, each with its own external-id prefix.
 */
/**
 * `separate`: the production layout, `opsd api` and `opsd worker` as processes of their own (with
 * Redis always; on PostgreSQL alone when asked). Otherwise `opsd start`, one process.
 */
export async function endToEnd(mode: Mode, s: Settings, layout: 'start' | 'separate' = mode === 'postgres+redis' ? 'separate' : 'start'): Promise<Sample[]> {
  const { env, cleanup, dataDir, url } = await modeEnv(mode, s);
  const procs: Proc[] = [];
  const prefixes: string[] = [];
  const errors: number[] = [];
  const label = mode === 'postgres' && layout === 'separate' ? 'postgres, api + worker' : mode;
  try {
    if (layout === 'separate') {
      procs.push(await spawnListening(opsdArgs('api'), env));
      procs.push(await spawnListening(opsdArgs('worker', '--concurrency', '100'), env, '--health-port'));
    } else {
      procs.push(await spawnListening(opsdArgs('start', '--concurrency', '100'), env));
    }
    const apiUrl = (procs[0] as Proc).url;
    for (let run = 0; run < s.runs; run += 1) {
      const prefix = `e2e${run}-${Date.now().toString(36)}`;
      prefixes.push(prefix);
      const r = await load({ url: apiUrl, path: '/v1/operations', connections: 16, durationS: s.endToEndS, overallRate: 500, idPrefix: prefix });
      errors.push(r.errors + r.non2xx + r.timeouts);
      await waitUntil(async () => (await countInState(apiUrl, 'PENDING')) === 0 && (await countInState(apiUrl, 'PROCESSING')) === 0);
    }
    await Promise.all(procs.map((p) => p.stop()));
    procs.length = 0;
    const db = mode === 'embedded' ? await createPgliteDb(dataDir) : await openDb({ databaseUrl: url, dataDir: '', poolMax: 2, migrate: false });
    const p50: number[] = [];
    const p99: number[] = [];
    try {
      for (const prefix of prefixes) {
        const { rows } = await db.query<{ p50: number; p99: number }>(
          `SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS p50, percentile_cont(0.99) WITHIN GROUP (ORDER BY ms) AS p99
           FROM (SELECT extract(epoch FROM c.occurred_at - r.occurred_at) * 1000 AS ms
                 FROM operation_events r JOIN operation_events c ON c.operation_id = r.operation_id AND c.type = 'completed'
                 WHERE r.type = 'received' AND r.external_id LIKE $1) AS latencies`,
          [`${prefix}-%`],
        );
        p50.push(Number(rows[0]?.p50));
        p99.push(Number(rows[0]?.p99));
      }
    } finally {
      await db.close();
    }
    return [
      { scenario: 'end-to-end@500/s', mode: label, metric: 'p50', unit: 'ms', values: p50 },
      { scenario: 'end-to-end@500/s', mode: label, metric: 'p99', unit: 'ms', values: p99 },
      { scenario: 'end-to-end@500/s', mode: label, metric: 'errors', unit: 'count', values: errors },
    ];
  } finally {
    await Promise.all(procs.map((p) => p.stop()));
    await cleanup();
  }
}

/** Operations in `state`, as the API lists them (1 or 0 is enough to know). */
async function countInState(apiUrl: string, state: string): Promise<number> {
  const response = await fetch(`${apiUrl}/v1/operations?state=${state}&limit=1`);
  return ((await response.json()) as { operations: unknown[] }).operations.length;
}

/**
 * N PENDING operations seeded first, then workers started and woken: operations/s from first start
 * to last completion. `history`: on a server, that many operations done before them, with the
 * table then vacuumed and analyzed: the statistics of a queue that had caught up
 * (docs/performance.md), kept while the burst drains, as a large table's would be (autovacuum is
 * off for this table, which is small enough that it would analyze it).
 */
export async function drain(mode: Mode, workers: number, keys: number | 'distinct', s: Settings, options: { history?: number } = {}): Promise<Sample> {
  const values: number[] = [];
  const count = keys === 'distinct' ? s.drainCount : s.orderedDrainCount;
  for (let run = 0; run < s.runs; run += 1) {
    const { env, cleanup, dataDir, url } = await modeEnv(mode, s);
    const procs: Proc[] = [];
    try {
      if (mode === 'embedded') {
        const db = await createPgliteDb(dataDir);
        await seed(db, count, keys);
        await db.close();
        const server = await spawnListening(opsdArgs('start', '--concurrency', '100'), env);
        procs.push(server);
        await waitUntil(async () => ((await (await fetch(`${server.url}/v1/operations?state=PENDING&limit=1`)).json()) as { operations: unknown[] }).operations.length === 0 &&
          ((await (await fetch(`${server.url}/v1/operations?state=PROCESSING&limit=1`)).json()) as { operations: unknown[] }).operations.length === 0);
        await server.stop();
        procs.length = 0;
        const after = await createPgliteDb(dataDir);
        values.push(await drainRate(after));
        await after.close();
      } else {
        const db = await openDb({ databaseUrl: url, dataDir: '', poolMax: 10 });
        const { history } = options;
        if (history) await catchUpAfter(db, () => seed(db, history, 'distinct', 'done-'));
        await seed(db, count, keys);
        // Woken as accepting wakes them. Through Redis, a wake-up job per batch of heads; on
        // PostgreSQL alone one NOTIFY, which every worker hears. A woken worker claims while it finds work.
        const queued = mode === 'postgres+redis';
        const wakeUps = await findClaimableHeads(db, { limit: queued ? count : 1 });
        // Paused until every worker is up: a process still loading its modules must not share the
        // two cores with one that already drains.
        await setTypePaused(db, 'demo.echo', true);
        procs.push(...(await Promise.all(Array.from({ length: workers }, () => spawnListening(opsdArgs('worker', '--concurrency', '100'), env, '--health-port')))));
        await setTypePaused(db, 'demo.echo', false);
        const dispatcher = queued ? createBullmqDispatcher({ redisUrl: env.REDIS_URL as string, prefix: env.OPSD_REDIS_PREFIX as string }) : createNotifyDispatcher(db);
        for (let i = 0; i < wakeUps.length; i += 1000) await dispatcher.dispatch(wakeUps.slice(i, i + 1000));
        await dispatcher.close();
        const client = new pg.Client({ connectionString: url });
        await client.connect();
        await waitUntil(async () => (await client.query<{ n: number }>(`SELECT count(*)::int AS n FROM operations WHERE state = 'COMPLETED'`)).rows[0]?.n === count + (options.history ?? 0));
        await client.end();
        values.push(await drainRate(db));
        await db.close();
      }
    } finally {
      await Promise.all(procs.map((p) => p.stop()));
      await cleanup();
    }
  }
  const what = keys === 'distinct' ? `${count} ops, distinct keys` : `${count} ops, ${keys} keys`;
  const after = options.history ? `, after ${options.history} done` : '';
  return { scenario: `drain ${workers}w ${what}${after}`, mode, metric: 'ops/s', unit: 'ops/s', values };
}

async function waitUntil(probe: () => Promise<boolean>, timeoutMs = 300_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * Start-to-ready time and RSS of each role. Processes start one after the other and stay up (idle
 * ones use next to no CPU); each one's RSS is read 1 s after it is ready, and again once settled,
 * `settleMs` after ready, when V8 has given back the heap it grew while loading (it does so after
 * 8-16 s without allocation).
 */
export async function roles(s: Settings): Promise<Sample[]> {
  const list: { role: string; mode: Mode; args: string[]; portFlag?: string }[] = [{ role: 'start', mode: 'embedded', args: opsdArgs('start') }];
  const serverMode: Mode = s.redisUrl ? 'postgres+redis' : 'postgres';
  if (s.databaseUrl) {
    list.push(
      { role: 'intake', mode: serverMode, args: opsdArgs('intake') },
      { role: 'api', mode: serverMode, args: opsdArgs('api') },
      { role: 'worker', mode: serverMode, args: opsdArgs('worker'), portFlag: '--health-port' },
      { role: 'start', mode: serverMode, args: opsdArgs('start') },
    );
  }
  const cleanups: (() => Promise<void>)[] = [];
  const server = s.databaseUrl ? await modeEnv(serverMode, s) : null;
  if (server) cleanups.push(server.cleanup);
  // Embedded processes each need a data folder of their own.
  const envFor = async (mode: Mode) => {
    if (mode !== 'embedded') return (server as NonNullable<typeof server>).env;
    const embedded = await modeEnv('embedded', s);
    cleanups.push(embedded.cleanup);
    return embedded.env;
  };
  const samples: Sample[] = [];
  const running: Proc[] = [];
  const readings: Promise<number>[] = [];
  const readRssAfter = (pid: number, ms: number) => new Promise<number>((resolve) => setTimeout(() => resolve(rssMb(pid)), ms));
  try {
    for (const { role, mode, args, portFlag } of list) {
      const ready: number[] = [];
      const afterStart: Promise<number>[] = [];
      const settled: Promise<number>[] = [];
      for (let i = 0; i < s.roleRuns; i += 1) {
        const proc = await spawnListening(args, await envFor(mode), portFlag);
        running.push(proc);
        ready.push(proc.readyMs);
        afterStart.push(readRssAfter(proc.child.pid as number, 1000));
        settled.push(readRssAfter(proc.child.pid as number, s.settleMs));
      }
      readings.push(...afterStart, ...settled);
      samples.push({ scenario: `role ${role}`, mode, metric: 'ready', unit: 'ms', values: ready });
      samples.push({ scenario: `role ${role}`, mode, metric: 'RSS 1 s after ready', unit: 'MB', values: await Promise.all(afterStart) });
      const idle: Sample = { scenario: `role ${role}`, mode, metric: 'idle RSS', unit: 'MB', values: [] };
      samples.push(idle);
      void Promise.all(settled).then((values) => idle.values.push(...values));
    }
    await Promise.all(readings);
  } finally {
    await Promise.all(running.map((proc) => proc.stop()));
    for (const cleanup of cleanups) await cleanup();
  }
  return samples;
}

/**
 * The cost of a scrape: `GET /metrics` of an `opsd api` whose store holds `count` operations (a
 * tenth of them PENDING), once its first reading of the store is in. Medians over 20 scrapes per
 * run. The store gauges are read in the background every 5 s, so a scrape never waits for a scan.
 */
export async function metricsScrape(s: Settings, count = 100_000): Promise<Sample> {
  const values: number[] = [];
  const { env, cleanup, url } = await modeEnv('postgres', s);
  try {
    const db = await openDb({ databaseUrl: url, dataDir: '', poolMax: 10 });
    await seed(db, count, 'distinct');
    // Most of them done, as in a store that has been running for a while.
    await db.query(`UPDATE operations SET state = 'COMPLETED', version = version + 1 WHERE seq % 10 <> 0`);
    await db.close();
    const api = await spawnListening(opsdArgs('api'), env);
    try {
      for (let run = 0; run < s.runs; run += 1) {
        const times: number[] = [];
        for (let i = 0; i < 20; i += 1) {
          const started = performance.now();
          const response = await fetch(`${api.url}/metrics`);
          await response.text();
          times.push(performance.now() - started);
        }
        values.push(percentile(times, 50));
      }
    } finally {
      await api.stop();
    }
  } finally {
    await cleanup();
  }
  return { scenario: `metrics scrape, ${count.toLocaleString('en-US')} operations in the store`, mode: 'postgres', metric: 'p50', unit: 'ms', values };
}
