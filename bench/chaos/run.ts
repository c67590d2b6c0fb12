/**
 * The chaos run: a production layout (2 apis + 3 workers, each a process of its own, on a private
 * PostgreSQL cluster, and in `--mode=redis` a private redis-server) under steady submissions on a
 * few hundred keys, while workers are SIGKILLed every few seconds, PostgreSQL crashes
 * (`-m immediate`) and is stopped for ten seconds, backends are terminated and the leader is
 * killed; with Redis, Redis is emptied and stopped; without it, the workers' listening sessions
 * are terminated. Bounded: `--seconds` of load (default 60), then at most 3 minutes to settle.
 * Without `--mode`, it runs both layouts, one after the other, each in a process of its own.
 *
 * It passes when every accepted operation ends in a terminal state with exactly one terminal
 * event, no two handlers on one key ever ran at once and each key's operations ran in acceptance
 * order (from the handlers' own log), no opsd process exited by itself, a killed worker's
 * operations started again within 5 s, and every request was answered within a second (202, or
 * 429/503 with Retry-After). Writes bench/results/chaos-<mode>-*.json.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { startPrivateRedis } from '../../test/support/privateRedis.js';
import { CLI, freePort } from '../support.js';
import { RECONNECT_WINDOW_MS } from '../../src/cluster/workerLiveness.js';
import { createPrivatePostgres } from './privatePostgres.js';

const argument = (name: string) => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
const seconds = Number(argument('seconds') ?? 60);
const MODES = ['redis', 'postgres'] as const;
type Mode = (typeof MODES)[number];
const mode = argument('mode');
if (mode === undefined) process.exit(await runEachMode());
if (!MODES.includes(mode as Mode)) {
  console.error(`--mode must be one of ${MODES.join(', ')}`);
  process.exit(2);
}
const withRedis = mode === 'redis';
const KEYS = 300;
const RATE = 100; // submissions per second
const ANSWER_WITHIN_MS = 1000;
const RERUN_WITHIN_MS = 5000;

const work = mkdtempSync(join(tmpdir(), 'opsd-chaos-'));
const handlerLog = join(work, 'handlers.log');
const processLog = join(work, 'processes.log');
const t0 = Date.now();
const at = () => ((Date.now() - t0) / 1000).toFixed(1);
const say = (message: string) => console.log(`[${at()} s] ${message}`);

interface Role {
  name: string;
  args: string[];
  child: ChildProcess;
  healthUrl: string | null;
}
const killedPids = new Set<number>();
const kills: { pid: number; at: number }[] = [];
/** When the leader was killed: its successor restarts the count towards a rescue. */
const leaderKills: number[] = [];
const selfExits: string[] = [];
let logs = '';

const pgPort = await freePort();
const postgres = createPrivatePostgres(pgPort);
/** When the store (re)started: fast rescue waits RECONNECT_WINDOW_MS after each, for workers to reconnect. */
const storeStarts: number[] = [];
postgres.start();
storeStarts.push(Date.now());
const redis = withRedis ? await startPrivateRedis() : null;
/** The deployment's keys on that Redis: the ones the fault deletes. */
const REDIS_PREFIX = 'opsd-chaos';
const apiPorts = [await freePort(), await freePort()];
// Never the servers of the caller's DATABASE_URL and REDIS_URL: only the private ones started here.
const { REDIS_URL: _callersRedis, ...callersEnv } = process.env;
const env = {
  ...callersEnv,
  DATABASE_URL: postgres.url,
  ...(redis ? { REDIS_URL: redis.url } : {}),
  OPSD_REDIS_PREFIX: REDIS_PREFIX,
  OPSD_HANDLERS: fileURLToPath(new URL('./handlers.mjs', import.meta.url)),
  CHAOS_RUN_LOG: handlerLog,
  LOG_LEVEL: 'info',
  OPSD_AUTH: 'off',
  DB_POOL_MAX: '6',
  OPSD_CONCURRENCY: '8',
  OPSD_GRACE_MS: '2000',
};

function spawnRole(name: string, args: string[]): Role {
  const child = spawn(process.execPath, [CLI, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const role: Role = { name, args, child, healthUrl: null };
  const onLine = (chunk: Buffer) => {
    const text = chunk.toString();
    logs += text.replace(/^/gm, `${name} `);
    const health = /"health_url":"([^"]+)"/.exec(text);
    if (health) role.healthUrl = health[1] ?? null;
  };
  child.stdout?.on('data', onLine);
  child.stderr?.on('data', onLine);
  child.on('exit', (code, signal) => {
    if (!killedPids.has(child.pid ?? -1) && !stopping) selfExits.push(`${name} (pid ${child.pid}) exited by itself: code ${code}, signal ${signal}`);
  });
  return role;
}

let stopping = false;
const migrate = spawn(process.execPath, [CLI, 'migrate'], { env, stdio: 'ignore' });
await new Promise((resolve) => migrate.on('exit', resolve));
const workers: Role[] = [0, 1, 2].map((i) => spawnRole(`worker${i}`, ['worker', '--health-port', '0']));
await sleep(1500); // a worker, not the api, should win the first election
// Two apis, as behind a load balancer: a client whose api dies retries the same submission
// (same external_id, so never twice) on the other.
const apis: Role[] = apiPorts.map((port, i) => spawnRole(`api${i}`, ['api', '--port', String(port)]));
for (const port of apiPorts) {
  for (let i = 0; i < 100 && !(await fetch(`http://127.0.0.1:${port}/health/ready`).then((r) => r.ok, () => false)); i += 1) await sleep(200);
}
say(`deployment up: apis on ${apiPorts.join(', ')}, 3 workers, PostgreSQL on ${pgPort}, ${redis ? `Redis at ${redis.url}` : 'no Redis (workers woken by NOTIFY)'}`);

// ---- load ----
const answers: { status: number; ms: number; retryAfter: boolean; at: number }[] = [];
const accepted = new Set<string>();
let inFlight = 0;
let sent = 0;
async function post(port: number, body: string): Promise<Response> {
  return fetch(`http://127.0.0.1:${port}/v1/operations`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body,
    signal: AbortSignal.timeout(ANSWER_WITHIN_MS * 5),
  });
}
async function submitOne(): Promise<void> {
  const n = sent++;
  const started = Date.now();
  inFlight += 1;
  // One in ten runs long enough to be caught mid-run by a kill.
  const ms = n % 10 === 0 ? 1500 : 10 + (n % 40);
  const body = JSON.stringify({ type: 'chaos.step', external_id: `chaos-${t0}-${n}`, ordering_key: `key-${n % KEYS}`, payload: { ms } });
  const first = n % 2;
  try {
    const response = await post(apiPorts[first] as number, body).catch(() => post(apiPorts[1 - first] as number, body));
    const answer = (await response.json()) as { id?: string };
    if ((response.status === 202 || response.status === 200) && answer.id) accepted.add(answer.id);
    answers.push({ status: response.status, ms: Date.now() - started, retryAfter: response.headers.has('retry-after'), at: started });
  } catch {
    answers.push({ status: 0, ms: Date.now() - started, retryAfter: false, at: started });
  } finally {
    inFlight -= 1;
  }
}
const load = (async () => {
  const end = t0 + seconds * 1000;
  while (Date.now() < end) {
    if (inFlight < 50) void submitOne();
    await sleep(1000 / RATE);
  }
  while (inFlight > 0) await sleep(20);
})();

// ---- faults ----
/** Terminates the backends whose application_name is LIKE `pattern`. */
async function terminateBackends(pattern: string): Promise<void> {
  const client = new pg.Client({ connectionString: postgres.url });
  await client.connect();
  try {
    const { rowCount } = await client.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE $1`, [pattern]);
    say(`terminated ${rowCount} backends`);
  } finally {
    await client.end();
  }
}
async function kill(group: Role[], index: number, why: string): Promise<void> {
  const victim = group[index] as Role;
  const pid = victim.child.pid as number;
  killedPids.add(pid);
  kills.push({ pid, at: Date.now() });
  victim.child.kill('SIGKILL');
  say(`SIGKILL ${victim.name} (pid ${pid}): ${why}`);
  await sleep(500);
  group[index] = spawnRole(victim.name, victim.args);
}
const killWorker = (index: number, why: string) => kill(workers, index, why);
/** The process that leads now, from the election lines of the logs (elected, then lost or not). */
function leader(): { group: Role[]; index: number } | null {
  const leading = new Map<number, boolean>();
  for (const match of logs.matchAll(/"pid":(\d+).*"msg":"(elected leader|leadership lost)/g)) {
    leading.set(Number(match[1]), (match[2] ?? '').startsWith('elected'));
  }
  for (const [pid, leads] of leading) {
    if (!leads || killedPids.has(pid)) continue;
    for (const group of [workers, apis]) {
      const index = group.findIndex((role) => role.child.pid === pid);
      if (index >= 0) return { group, index };
    }
  }
  return null;
}
const faults = (async () => {
  const redisFaults: [number, string, () => Promise<void> | void][] = redis
    ? [
        [0.2, 'empty the private Redis (every key of the deployment, on the server this run started)', () => redis.flushOwnKeys(REDIS_PREFIX).then(() => {})],
        [0.3, 'stop Redis for 5 s', async () => {
          await redis.stop();
          await sleep(5000);
          await redis.restart();
        }],
      ]
    : [
        // Without Redis a worker hears of work from its listening session: cut it, and the
        // notices sent until it listens again reach nobody.
        [0.2, 'terminate the workers\' listening sessions', () => terminateBackends('opsd-listener')],
        [0.3, 'terminate the workers\' listening sessions again', () => terminateBackends('opsd-listener')],
      ];
  const plan: [number, string, () => Promise<void> | void][] = [
    ...redisFaults,
    [0.45, 'crash PostgreSQL (restart -m immediate)', () => {
      postgres.restartImmediate();
      storeStarts.push(Date.now());
    }],
    [0.55, 'terminate every opsd backend', () => terminateBackends('opsd%')],
    [0.65, 'kill the leader', async () => {
      const found = leader();
      if (found) {
        leaderKills.push(Date.now());
        await kill(found.group, found.index, 'it leads');
      }
      else say('no leader found in the logs');
    }],
    [0.75, 'stop PostgreSQL for 10 s', async () => {
      postgres.stopImmediate();
      await sleep(10_000);
      postgres.start();
      storeStarts.push(Date.now());
    }],
  ];
  let next = 0;
  let nextKill = RECONNECT_WINDOW_MS / 1000 + 2;
  const under: Promise<void>[] = [];
  for (let s = 0; s < seconds; s += 0.5) {
    await sleep(Math.max(0, t0 + s * 1000 - Date.now()));
    while (next < plan.length && s >= (plan[next]?.[0] ?? 1) * seconds) {
      const [, name, action] = plan[next] as (typeof plan)[number];
      next += 1;
      say(name);
      under.push(Promise.resolve(action()).catch((error: unknown) => say(`${name} failed: ${String(error)}`)));
    }
    if (s >= nextKill) {
      nextKill += 6;
      await killWorker(Math.floor(Math.random() * workers.length), 'periodic');
    }
  }
  await Promise.all(under);
})();

await Promise.all([load, faults]);
say(`load done: ${sent} sent, ${accepted.size} accepted; waiting for every accepted operation to end`);

// ---- settle ----
let client: pg.Client;
for (;;) {
  client = new pg.Client({ connectionString: postgres.url });
  try {
    await client.connect();
    break;
  } catch {
    await sleep(500);
  }
}
const ids = [...accepted];
const deadline = Date.now() + 180_000;
let open = ids.length;
while (Date.now() < deadline) {
  const { rows } = await client.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM operations WHERE id = ANY($1::uuid[]) AND state NOT IN ('COMPLETED', 'REJECTED', 'FAILED', 'CANCELLED')`,
    [ids],
  );
  open = rows[0]?.n ?? 0;
  if (open === 0) break;
  await sleep(1000);
}
say(`settled: ${open} accepted operations not terminal`);

// ---- checks ----
const failures: string[] = [];
if (open > 0) failures.push(`${open} accepted operations never reached a terminal state`);
const { rows: terminalCounts } = await client.query<{ id: string; n: number }>(
  `SELECT o.id, count(e.*) FILTER (WHERE e.type IN ('completed', 'rejected', 'failed', 'cancelled'))::int AS n
   FROM operations o LEFT JOIN operation_events e ON e.operation_id = o.id WHERE o.id = ANY($1::uuid[]) GROUP BY o.id`,
  [ids],
);
const notOnce = terminalCounts.filter((r) => r.n !== 1);
if (notOnce.length > 0) failures.push(`${notOnce.length} operations without exactly one terminal event`);
if (terminalCounts.length !== ids.length) failures.push(`${ids.length - terminalCounts.length} accepted operations missing from the store`);
const { rows: states } = await client.query<{ state: string; n: number }>(
  `SELECT state, count(*)::int AS n FROM operations WHERE id = ANY($1::uuid[]) GROUP BY state`,
  [ids],
);

// Real handler runs, from their own log: per key, no two runs at once and in acceptance order.
interface Note { id: string; key: string; attempt: number; phase: 'start' | 'end'; pid: number; at: number }
const notes = readFileSync(handlerLog, 'utf8').trim().split('\n').filter(Boolean).map((line) => JSON.parse(line) as Note);
const killedAt = new Map(kills.map((k) => [k.pid, k.at]));
const runs = new Map<string, { id: string; key: string; pid: number; start: number; end: number | null }>();
for (const note of notes) {
  const runKey = `${note.id}:${note.attempt}:${note.pid}`;
  if (note.phase === 'start') runs.set(runKey, { id: note.id, key: note.key, pid: note.pid, start: note.at, end: null });
  else {
    const run = runs.get(runKey);
    if (run) run.end = note.at;
  }
}
const byKey = new Map<string, { id: string; start: number; end: number }[]>();
let unfinishedUnkilled = 0;
for (const run of runs.values()) {
  const end = run.end ?? killedAt.get(run.pid) ?? null;
  if (end === null) {
    unfinishedUnkilled += 1;
    continue;
  }
  const list = byKey.get(run.key) ?? [];
  list.push({ id: run.id, start: run.start, end });
  byKey.set(run.key, list);
}
let overlaps = 0;
for (const list of byKey.values()) {
  list.sort((a, b) => a.start - b.start);
  for (let i = 1; i < list.length; i += 1) if ((list[i] as { start: number }).start < (list[i - 1] as { end: number }).end) overlaps += 1;
}
if (overlaps > 0) failures.push(`${overlaps} handler runs overlapped another on the same key`);
// In acceptance order: along a key, once a run of an operation has started, no run of one accepted
// before it starts (every run ends before the next begins, so the starts order the runs).
const { rows: seqRows } = await client.query<{ id: string; seq: string }>(`SELECT id, seq FROM operations WHERE id = ANY($1::uuid[])`, [
  [...new Set([...runs.values()].map((run) => run.id))],
]);
const seqOf = new Map(seqRows.map((row) => [row.id, BigInt(row.seq)]));
const outOfOrder: string[] = [];
for (const [key, list] of byKey) {
  for (let i = 1; i < list.length; i += 1) {
    const before = list[i - 1] as { id: string };
    const after = list[i] as { id: string };
    if ((seqOf.get(after.id) ?? 0n) < (seqOf.get(before.id) ?? 0n)) outOfOrder.push(`${key}: ${after.id} ran after ${before.id}, accepted after it`);
  }
}
if (outOfOrder.length > 0) failures.push(`${outOfOrder.length} handler runs out of acceptance order on their key: ${outOfOrder.slice(0, 5).join('; ')}`);
if (unfinishedUnkilled > 0) failures.push(`${unfinishedUnkilled} handler runs never ended in a process that was not killed`);

// A killed worker's operations: how long until each started again elsewhere, counted from the
// kill, or from the end of the reconnect window of a store that (re)started after it, or from the
// election of a new leader when the leader was killed before the rescue (the new one starts its
// own count; that case is reported apart).
const elections = [...logs.matchAll(/"time":(\d+)[^\n]*"msg":"elected leader/g)].map((m) => Number(m[1])).sort((a, b) => a - b);
let delayedByFailover = 0;
const rerunDelays: number[] = [];
const slowDetails: string[] = [];
for (const run of runs.values()) {
  const killed = killedAt.get(run.pid);
  if (run.end !== null || killed === undefined) continue;
  const next = [...runs.values()].filter((r) => r.id === run.id && r.start > run.start).sort((a, b) => a.start - b.start)[0];
  if (!next) continue;
  const storeStart = Math.max(...storeStarts.filter((s) => s <= next.start));
  let from = Math.max(killed, storeStart + RECONNECT_WINDOW_MS);
  const failover = leaderKills.find((at) => at >= from - 1500 && at < next.start);
  if (failover !== undefined) {
    delayedByFailover += 1;
    from = Math.max(from, elections.find((at) => at > failover) ?? failover);
  }
  const delay = next.start - from;
  rerunDelays.push(delay);
  if (delay > RERUN_WITHIN_MS) slowDetails.push(`${run.id} of pid ${run.pid}: killed at ${((killed - t0) / 1000).toFixed(1)} s, ran again at ${((next.start - t0) / 1000).toFixed(1)} s`);
}
const slowReruns = rerunDelays.filter((d) => d > RERUN_WITHIN_MS);
if (slowReruns.length > 0) {
  failures.push(`${slowReruns.length} of ${rerunDelays.length} operations of killed workers took over ${RERUN_WITHIN_MS} ms to run again (max ${Math.max(...slowReruns)} ms): ${slowDetails.join('; ')}`);
}
if (selfExits.length > 0) failures.push(...selfExits);

const late = answers.filter((a) => a.ms > ANSWER_WITHIN_MS || a.status === 0);
const refusedWithoutRetryAfter = answers.filter((a) => (a.status === 429 || a.status === 503) && !a.retryAfter);
const unexpected = answers.filter((a) => a.status !== 0 && ![200, 202, 429, 503].includes(a.status));
if (late.length > 0) {
  const when = late.map((a) => `${a.status || 'no answer'} after ${a.ms} ms, sent at ${((a.at - t0) / 1000).toFixed(1)} s`);
  failures.push(`${late.length} of ${answers.length} requests not answered within ${ANSWER_WITHIN_MS} ms: ${when.slice(0, 10).join('; ')}`);
}
if (refusedWithoutRetryAfter.length > 0) failures.push(`${refusedWithoutRetryAfter.length} 429/503 answers without Retry-After`);
if (unexpected.length > 0) failures.push(`${unexpected.length} answers with status ${[...new Set(unexpected.map((a) => a.status))].join(', ')}`);

const statusCounts = Object.fromEntries([...new Set(answers.map((a) => a.status))].map((s) => [s, answers.filter((a) => a.status === s).length]));
const runsPerCompleted = new Map<string, number>();
for (const run of runs.values()) if (run.end !== null) runsPerCompleted.set(run.id, (runsPerCompleted.get(run.id) ?? 0) + 1);
// A handler that returned runs again only when its process died before the outcome was written.
const lastStartById = new Map<string, number>();
for (const run of runs.values()) lastStartById.set(run.id, Math.max(lastStartById.get(run.id) ?? 0, run.start));
const rerunAfterReturn = [...runs.values()].filter(
  (run) => run.end !== null && !killedAt.has(run.pid) && (lastStartById.get(run.id) as number) > run.end,
);
if (rerunAfterReturn.length > 0) {
  failures.push(`${rerunAfterReturn.length} handlers returned in a process that was never killed and ran again: ${rerunAfterReturn.slice(0, 10).map((r) => `${r.id} (pid ${r.pid})`).join(', ')}`);
}
const report = {
  mode,
  seconds,
  sent,
  accepted: ids.length,
  states: Object.fromEntries(states.map((r) => [r.state, r.n])),
  answers: statusCounts,
  slowest_answer_ms: Math.max(0, ...answers.map((a) => a.ms)),
  worker_kills: kills.length,
  reruns_after_kill: { count: rerunDelays.length, max_ms: Math.max(0, ...rerunDelays), counted_from_a_new_leader: delayedByFailover },
  handler_runs_completed_twice: [...runsPerCompleted.values()].filter((n) => n > 1).length,
  handler_runs_out_of_key_order: outOfOrder.length,
  failures,
};
await client.end();
stopping = true;
for (const role of [...apis, ...workers]) role.child.kill('SIGKILL');
await redis?.close();
postgres.destroy();
mkdirSync(new URL('../results/', import.meta.url), { recursive: true });
const file = new URL(`../results/chaos-${mode}-${new Date().toISOString().replace(/[:.]/g, '-')}.json`, import.meta.url);
writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`);
writeFileSync(processLog, logs);
console.log(JSON.stringify(report, null, 2));
console.log(failures.length === 0 ? `chaos run (${mode}): PASS` : `chaos run (${mode}): FAIL (process logs in ${processLog})`);
process.exit(failures.length === 0 ? 0 : 1);

/** Runs this script once per mode, each in a process of its own; the exit code is the worst of them. */
async function runEachMode(): Promise<number> {
  const outcomes: string[] = [];
  let worst = 0;
  for (const each of MODES) {
    const child = spawn(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), `--mode=${each}`, `--seconds=${seconds}`], { stdio: 'inherit' });
    const code = await new Promise<number>((resolve) => child.on('exit', (exitCode) => resolve(exitCode ?? 1)));
    outcomes.push(`${each}: ${code === 0 ? 'PASS' : 'FAIL'}`);
    worst = Math.max(worst, code);
  }
  console.log(`chaos runs: ${outcomes.join(', ')}`);
  return worst;
}
