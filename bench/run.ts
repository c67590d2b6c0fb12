import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { accept, bareHttp, bareInsert, drain, endToEnd, metricsScrape, roles, type Mode, type Settings } from './scenarios.js';
import { drainPeer, PEERS } from './peers.js';
import { median, type Sample } from './support.js';

const quick = process.argv.includes('--quick');
const only = process.argv.find((a) => a.startsWith('--only='))?.slice('--only='.length);
// Full: every scenario, 3 runs each, sized to finish in about 10 minutes on 2 cores (measured:
// 15 s loads and 10 s baselines took 13 min), so loads are shorter than 15 s and the 10-key
// drains, bounded by per-key order, use 2,000 operations.
const settings: Settings = {
  runs: 3,
  acceptS: quick ? 1 : 10,
  fixedRateS: quick ? 1 : 5,
  batchS: quick ? 1 : 3,
  endToEndS: quick ? 1 : 3,
  baselineS: quick ? 1 : 5,
  drainCount: quick ? 1000 : Number(process.env.OPSD_BENCH_DRAIN ?? 20_000),
  orderedDrainCount: quick ? 500 : 2000,
  // V8 gives back the heap it grew while loading after 8-16 s idle on a slow day (the intake: 67.5 →
  // 58 MB at 10 s in one start, at 16 s in the next), so idle RSS is read 20 s after ready.
  settleMs: 20_000,
  // Quick starts each role once: fifteen starts side by side took 42 s of a 3-minute quick run on a slow day.
  roleRuns: quick ? 1 : 3,
  databaseUrl: process.env.DATABASE_URL || undefined,
  redisUrl: process.env.REDIS_URL || undefined,
};

const modes: Mode[] = ['embedded'];
if (settings.databaseUrl) modes.push('postgres');
else console.log('skipping postgres modes: DATABASE_URL is not set');
if (settings.databaseUrl && settings.redisUrl) modes.push('postgres+redis');
else console.log('skipping postgres+redis mode: DATABASE_URL and REDIS_URL are both needed');

const samples: Sample[] = [];
const started = Date.now();
const step = async (name: string, fn: () => Promise<Sample[] | Sample>) => {
  if (only && !name.startsWith(only)) return;
  const t = Date.now();
  const result = await fn();
  samples.push(...(Array.isArray(result) ? result : [result]));
  console.error(`  ${name}: ${((Date.now() - t) / 1000).toFixed(1)} s`);
};

await step('bare-http', () => bareHttp(settings));
await step('bare-insert embedded', () => bareInsert('embedded', settings));
if (settings.databaseUrl) await step('bare-insert postgres', () => bareInsert('postgres', settings));
for (const mode of modes) await step(`accept ${mode}`, () => accept(mode, settings));
for (const mode of modes) await step(`end-to-end ${mode}`, () => endToEnd(mode, settings));
if (modes.includes('postgres')) await step('end-to-end postgres api + worker', () => endToEnd('postgres', settings, 'separate'));
await step('drain embedded', () => drain('embedded', 1, 'distinct', settings));
if (!quick) await step('drain embedded 10 keys', () => drain('embedded', 1, 10, settings));
for (const mode of modes.filter((m) => m !== 'embedded')) {
  for (const keys of [10, 'distinct'] as const) {
    const workerCounts = quick || keys === 10 ? [1] : [1, 2];
    for (const workers of workerCounts) await step(`drain ${mode} ${workers}w ${keys}`, () => drain(mode, workers, keys, settings));
  }
}
// A burst after the queue caught up: the statistics of its idle table, against the drains above.
if (!quick && modes.includes('postgres')) await step('drain postgres 1w caught-up', () => drain('postgres', 1, 'distinct', settings, { history: 50_000 }));
// The peers drain the same number of no-op jobs as the distinct-key drains, one after another.
for (const peer of PEERS) {
  const needs = peer === 'bullmq' ? settings.redisUrl : settings.databaseUrl;
  if (needs) await step(`drain peer ${peer}`, () => drainPeer(peer, settings));
  else console.log(`skipping peer ${peer}: ${peer === 'bullmq' ? 'REDIS_URL' : 'DATABASE_URL'} is not set`);
}
await step('roles', () => roles(settings));
if (settings.databaseUrl) await step('metrics scrape', () => metricsScrape(settings, quick ? 20_000 : 100_000));
else console.log('skipping the metrics scrape: DATABASE_URL is not set');

const medianOf = (scenario: string, mode: string) => {
  const found = samples.find((s) => s.scenario === scenario && s.mode === mode);
  return found ? median(found.values) : undefined;
};
const peerMedians = PEERS.map((peer) => [peer, medianOf(`drain ${settings.drainCount} no-op jobs`, peer)] as const).filter((p): p is readonly [typeof p[0], number] => p[1] !== undefined);
const bestPeer = peerMedians.reduce<readonly [string, number] | null>((best, p) => (best === null || p[1] > best[1] ? p : best), null);
const rows = samples.map((s) => {
  const m = median(s.values);
  let baseline: string | null = null;
  let ratio: number | null = null;
  if (s.scenario === 'accept' && s.metric === 'req/s') {
    const http = medianOf('bare-http', 'baseline');
    if (http) [baseline, ratio] = ['bare-http', m / http];
  }
  if (s.scenario === 'batch-accept' && s.metric === 'ops/s') {
    const insert = medianOf('bare-insert', s.mode === 'embedded' ? 'embedded' : 'postgres');
    if (insert) [baseline, ratio] = ['bare-insert', m / insert];
  }
  // opsd's drains on distinct keys against the fastest peer of this run.
  if (bestPeer && s.scenario.startsWith('drain') && s.scenario.endsWith('distinct keys') && s.mode !== 'embedded') {
    [baseline, ratio] = [`best peer (${bestPeer[0]})`, m / bestPeer[1]];
  }
  return { scenario: s.scenario, mode: s.mode, metric: s.metric, median: m, min: Math.min(...s.values), max: Math.max(...s.values), unit: s.unit, runs: s.values.length, baseline, ratio };
});
// Drains with separate worker processes against one worker process on PostgreSQL, same run.
const onePostgresWorker = medianOf(`drain 1w ${settings.drainCount} ops, distinct keys`, 'postgres');
for (const row of rows.filter((r) => r.scenario === `drain 2w ${settings.drainCount} ops, distinct keys`)) {
  if (onePostgresWorker) rows.push({ ...row, metric: 'ops/s vs 1 worker', baseline: '1 worker on PostgreSQL', ratio: row.median / onePostgresWorker });
}
// The drain after the queue caught up against the same drain on fresh statistics.
for (const row of rows.filter((r) => r.scenario.startsWith(`drain 1w ${settings.drainCount} ops, distinct keys, after`))) {
  if (onePostgresWorker) [row.baseline, row.ratio] = ['the same drain on fresh statistics', row.median / onePostgresWorker];
}
// accept is also compared with the durable single-insert rate of its own store.
for (const row of rows.filter((r) => r.scenario === 'accept' && r.metric === 'req/s')) {
  const insert = medianOf('bare-insert', row.mode === 'embedded' ? 'embedded' : 'postgres');
  if (insert) rows.push({ ...row, metric: 'req/s vs insert', baseline: 'bare-insert', ratio: row.median / insert });
}

const fmt = (n: number) => (n >= 100 ? Math.round(n).toLocaleString('en-US') : n.toFixed(1));
console.log(`\nopsd benchmark ${quick ? '(quick)' : '(full)'}: ${new Date().toISOString()}, ${os.cpus().length} cores, Node ${process.version}, ${((Date.now() - started) / 1000).toFixed(0)} s\n`);
console.log('| scenario | mode | metric | median | min–max | unit | ratio |');
console.log('| --- | --- | --- | --- | --- | --- | --- |');
for (const r of rows) {
  console.log(`| ${r.scenario} | ${r.mode} | ${r.metric} | ${fmt(r.median)} | ${fmt(r.min)}–${fmt(r.max)} | ${r.unit} | ${r.ratio === null ? '' : `${r.ratio.toFixed(2)}× ${r.baseline}`} |`);
}
mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
const file = new URL(`./results/${new Date().toISOString().replace(/[:.]/g, '-')}.json`, import.meta.url);
writeFileSync(file, JSON.stringify({ quick, started_at: new Date(started).toISOString(), cpus: os.cpus().length, node: process.version, results: rows }, null, 2));
console.log(`\nwritten: ${file.pathname}`);
process.exit(0);
