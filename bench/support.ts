import { randomBytes } from 'node:crypto';
import { spawn, type ChildProcess } from 'node:child_process';
import type { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import { freePort } from '../test/support/helpers.js';

export { freePort };

export const CLI = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));

export interface Sample {
  scenario: string;
  mode: string;
  metric: string;
  unit: string;
  values: number[];
  baseline?: string;
}

export interface Proc {
  child: ChildProcess;
  url: string;
  stop(): Promise<void>;
}


/**
 * Spawns `node <args> <portFlag> <port>` with logs at warn (a log line per operation would
 * measure the terminal) and resolves once its /health/ready answers.
 */
export async function spawnListening(
  args: string[],
  env: Record<string, string | undefined> = {},
  portFlag = '--port',
): Promise<Proc & { readyMs: number }> {
  const port = await freePort();
  const started = performance.now();
  const child = spawn(process.execPath, [...args, portFlag, String(port)], {
    // Auth off: the figures are of opsd's own path; the cost of a key check is measured apart (docs/performance.md).
    env: { ...process.env, LOG_LEVEL: 'warn', OPSD_AUTH: 'off', ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const url = `http://127.0.0.1:${port}`;
  const exited = new Promise<never>((_, reject) => child.on('exit', (code) => reject(new Error(`${args.join(' ')} exited ${code}: ${stderr}`))));
  const readyMs = await Promise.race([waitReady(url, started), exited]);
  return {
    child,
    url,
    readyMs,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}

/** Milliseconds from `started` until GET /health/ready answers 200 (bare servers: until they listen). */
async function waitReady(url: string, started: number): Promise<number> {
  for (let i = 0; i < 600; i += 1) {
    const response = await fetch(`${url}/health/ready`).catch(() => null);
    if (response && (response.status === 200 || response.status === 404)) return performance.now() - started;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`${url} never became ready`);
}

/**
 * Node's flags for the opsd processes the benchmark starts, from `OPSD_BENCH_NODE_ARGS` (space
 * separated), so that they can be profiled where they run: `--cpu-prof` is refused in NODE_OPTIONS.
 */
const OPSD_NODE_ARGS = (process.env.OPSD_BENCH_NODE_ARGS ?? '').split(' ').filter((arg) => arg !== '');

export function opsdArgs(command: string, ...rest: string[]): string[] {
  return [...OPSD_NODE_ARGS, CLI, command, ...rest];
}

/** Resident memory of a process, from /proc. */
export function rssMb(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith('VmRSS:'));
  return Number(line?.replace(/\D+/g, '') ?? 0) / 1024;
}

export function payload300(): Record<string, unknown> {
  return { account: 'acct_4f9c2e1b7a', amount: 12_345, currency: 'EUR', reference: 'invoice-2026-11-000123', memo: 'x'.repeat(180) };
}

/** An autocannon run of unique submissions (or batches of `batch` submissions) to POST `path`. */
export async function load(options: {
  url: string;
  path: string;
  connections: number;
  durationS: number;
  batch?: number;
  overallRate?: number;
  fixedBody?: string;
  /** Prefix of the external ids sent (default: random), to find this load's operations later. */
  idPrefix?: string;
  /** Filled with the latency of every response, in ms, for percentiles autocannon does not report. */
  latencies?: number[];
}): Promise<autocannon.Result> {
  const prefix = options.idPrefix ?? randomBytes(4).toString('hex');
  let n = 0;
  const operation = () => ({ type: 'demo.echo', external_id: `${prefix}-${(n += 1)}`, payload: payload300() });
  const instance = autocannon({
    url: options.url,
    connections: options.connections,
    duration: options.durationS,
    ...(options.overallRate ? { overallRate: options.overallRate } : {}),
    requests: [
      {
        method: 'POST',
        path: options.path,
        headers: { 'content-type': 'application/json' },
        setupRequest: (request: autocannon.Request) => ({
          ...request,
          body:
            options.fixedBody ??
            (options.batch
              ? JSON.stringify({ operations: Array.from({ length: options.batch }, operation) })
              : JSON.stringify(operation())),
        }),
      },
    ],
  });
  const { latencies } = options;
  // autocannon returns its tracker, an EventEmitter that is also thenable; the types only say Promise.
  if (latencies) (instance as unknown as EventEmitter).on('response', (_client: unknown, _status: number, _bytes: number, ms: number) => latencies.push(ms));
  return instance;
}

/** The nearest-rank percentile `p` (0-100) of `values`. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] as number;
}

export { dropRedisPrefix } from '../test/support/redisKeys.js';

/** A fresh database on the server for one run; dropped after. */
export { createServerDatabase as freshDatabase } from '../test/support/serverDatabase.js';

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}
