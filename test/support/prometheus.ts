import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { toolsSkip } from './backends.js';
import { freePort, waitFor } from './helpers.js';

/** Why promtool and prometheus (Debian's `prometheus` package) cannot be used here, or false. */
export function prometheusSkip(): string | false {
  return toolsSkip(['promtool', 'prometheus'], 'the tests that check metrics with them (Debian package prometheus)');
}

/** `promtool check metrics` over a scrape: its complaints, or an empty string. */
export function promtoolCheckMetrics(text: string): string {
  const result = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
  return result.status === 0 ? '' : `${result.stdout}${result.stderr}` || `promtool exited ${result.status}`;
}

/** `promtool check <what> <file>`: its complaints, or an empty string. */
export function promtoolCheck(what: 'config' | 'rules', file: string): string {
  const result = spawnSync('promtool', ['check', what, file], { encoding: 'utf8' });
  return result.status === 0 ? '' : `${result.stdout}${result.stderr}`;
}

/**
 * A Prometheus server of the test's own on 127.0.0.1, scraping `targets` every second, with its
 * data in a temporary folder removed on stop.
 */
export async function startPrometheus(targets: { job: string; hostPort: string }[]) {
  const dir = mkdtempSync(join(tmpdir(), 'opsd-prometheus-'));
  const port = await freePort();
  const byJob = new Map<string, string[]>();
  for (const t of targets) byJob.set(t.job, [...(byJob.get(t.job) ?? []), t.hostPort]);
  const config = [
    'global:',
    '  scrape_interval: 1s',
    '  evaluation_interval: 1s',
    'scrape_configs:',
    ...[...byJob].flatMap(([job, hosts]) => [`  - job_name: ${job}`, '    static_configs:', `      - targets: [${hosts.map((h) => `'${h}'`).join(', ')}]`]),
  ].join('\n');
  writeFileSync(join(dir, 'prometheus.yml'), `${config}\n`);
  const server = spawn(
    'prometheus',
    [`--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let log = '';
  server.stderr?.on('data', (chunk: Buffer) => (log += chunk.toString()));
  const url = `http://127.0.0.1:${port}`;
  await waitFor('prometheus to be ready', async () => (await fetch(`${url}/-/ready`).catch(() => null))?.ok, { timeoutMs: 30_000, intervalMs: 100 });
  return {
    url,
    log: () => log,
    /** An instant query through the HTTP API: each series' labels and value. */
    async query(promql: string): Promise<{ metric: Record<string, string>; value: number }[]> {
      const response = await fetch(`${url}/api/v1/query?query=${encodeURIComponent(promql)}`);
      const body = (await response.json()) as { status: string; data: { result: { metric: Record<string, string>; value: [number, string] }[] } };
      if (body.status !== 'success') throw new Error(`query failed: ${JSON.stringify(body)}`);
      return body.data.result.map((r) => ({ metric: r.metric, value: Number(r.value[1]) }));
    },
    async stop() {
      if (server.exitCode === null) {
        server.kill('SIGTERM');
        await new Promise((resolve) => server.once('exit', resolve));
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
