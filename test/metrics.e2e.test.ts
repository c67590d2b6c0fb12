import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { postgresBackend } from './support/backends.js';
import { uniqueId, waitFor } from './support/helpers.js';
import { http, runOpsd, spawnOpsd, type OpsdProcess } from './support/opsdProcess.js';
import { prometheusSkip, promtoolCheck, promtoolCheckMetrics, startPrometheus } from './support/prometheus.js';
import { createServerDatabase } from './support/serverDatabase.js';

const DEPLOY = (file: string) => fileURLToPath(new URL(`../deploy/${file}`, import.meta.url));
const skip = postgresBackend.skip || prometheusSkip();

describe('metrics of a deployment, scraped by a real Prometheus [postgres]', { skip }, () => {
  let database: Awaited<ReturnType<typeof createServerDatabase>>;
  const processes: OpsdProcess[] = [];
  let api: OpsdProcess;
  let intake: OpsdProcess;
  let workers: OpsdProcess[];
  const env = () => ({ DATABASE_URL: database.url, REDIS_URL: '', DB_POOL_MAX: '4', OPSD_POLL_INTERVAL_MS: '200' });
  const spawn = async (args: string[]) => {
    const started = await spawnOpsd(args, env());
    processes.push(started);
    return started;
  };

  before(async () => {
    database = await createServerDatabase(process.env.DATABASE_URL as string);
    assert.equal((await runOpsd(['migrate'], env())).code, 0);
    api = await spawn(['api', '--port', '0']);
    intake = await spawn(['intake', '--port', '0']);
    workers = [await spawn(['worker', '--health-port', '0']), await spawn(['worker', '--health-port', '0'])];
  });
  after(async () => {
    for (const p of processes) if (p.child.exitCode === null) p.child.kill('SIGKILL');
    await Promise.all(processes.map((p) => p.exited));
    await database?.drop();
  });

  it("every role's /metrics passes promtool check metrics", async () => {
    for (const process of [api, intake, ...workers]) {
      const response = await fetch(`${process.url}/metrics`);
      assert.equal(response.status, 200);
      assert.match(response.headers.get('content-type') ?? '', /^text\/plain/);
      const text = await response.text();
      assert.match(text, /^opsd_process_resident_memory_bytes\{/m);
      assert.equal(promtoolCheckMetrics(text), '', `${process.url}/metrics`);
    }
  });

  it('Prometheus scrapes the api and two workers and reads opsd_operations_completed_total back', async () => {
    const type = 'demo.echo';
    const count = 30;
    const operations = Array.from({ length: count }, () => ({ type, external_id: uniqueId('scraped'), payload: null }));
    assert.equal((await http(`${api.url}/v1/operations/batch`, { method: 'POST', body: { operations } })).status, 200);
    const hostPort = (url: string) => new URL(url).host;
    const prometheus = await startPrometheus([
      { job: 'opsd-api', hostPort: hostPort(api.url) },
      ...workers.map((w) => ({ job: 'opsd-worker', hostPort: hostPort(w.url) })),
    ]);
    try {
      const up = await waitFor('all three targets up', async () => {
        const result = await prometheus.query('up');
        return result.length === 3 && result.every((r) => r.value === 1) ? result : null;
      }, { timeoutMs: 30_000, intervalMs: 250 });
      assert.equal(up.length, 3);
      const completed = await waitFor(`${count} completions read through Prometheus`, async () => {
        const [total] = await prometheus.query(`sum(opsd_operations_completed_total{type="${type}"})`);
        return total && total.value === count ? total.value : null;
      }, { timeoutMs: 30_000, intervalMs: 250 });
      assert.equal(completed, count);
      const accepted = await prometheus.query(`sum(opsd_operations_accepted_total{type="${type}", job="opsd-api"})`);
      assert.equal(accepted[0]?.value, count, 'the api counted what it accepted');
    } finally {
      await prometheus.stop();
    }
  });

  it('the sample scrape config and alert rules under deploy/ pass promtool, and they and the dashboard only use metrics opsd serves', async () => {
    assert.equal(promtoolCheck('config', DEPLOY('prometheus.yml')), '');
    assert.equal(promtoolCheck('rules', DEPLOY('opsd-alerts.yml')), '');
    const served = new Set<string>();
    for (const process of [api, intake, ...workers]) {
      for (const line of (await (await fetch(`${process.url}/metrics`)).text()).split('\n')) {
        const family = /^# TYPE (\S+) /.exec(line)?.[1];
        if (family) served.add(family);
      }
    }
    const dashboard = readFileSync(DEPLOY('grafana-dashboard.json'), 'utf8');
    JSON.parse(dashboard);
    for (const source of [dashboard, readFileSync(DEPLOY('opsd-alerts.yml'), 'utf8')]) {
      for (const [name] of source.matchAll(/opsd_[a-z0-9_]+/g)) {
        const family = name.replace(/_(bucket|count|sum)$/, '');
        // Served only in queue mode (with REDIS_URL), which this deployment is not.
        if (family === 'opsd_queue_jobs') continue;
        assert.ok(served.has(family), `${name} is not a metric opsd serves`);
      }
    }
  });
});
