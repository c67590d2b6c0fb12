// The bank-statements walk-through: a fake bank that allows 5 requests per second, opsd with the
// example's handlers, 200 statements submitted at once, and the bank resource as opsd sees it
// while they drain. `node examples/bank-statements/run.mjs` (after `npm install`).
import { fileURLToPath } from 'node:url';
import { startOpsd } from '../startOpsd.mjs';
import { startFakeBank } from './fakeBank.mjs';

const COUNT = Number(process.env.STATEMENTS ?? 200);
const here = (path) => fileURLToPath(new URL(path, import.meta.url));

const bank = await startFakeBank({ limit: 5 });
const { url, stop } = await startOpsd({ OPSD_HANDLERS: here('./handlers.mjs'), BANK_URL: bank.url });
console.log(`fake bank on ${bank.url} (5 requests per second, then 429); opsd on ${url}`);

const json = async (path, init) => (await fetch(`${url}${path}`, init)).json();
const operations = Array.from({ length: COUNT }, (_, i) => ({ type: 'bank.statement', external_id: `statement-${i}`, payload: { account: `acct-${i % 40}` } }));
await json('/v1/operations/batch', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ operations }) });
console.log(`submitted ${COUNT} statements; GET /v1/admin/resources every second while they drain:\n`);

const started = Date.now();
for (;;) {
  const { resources } = await json('/v1/admin/resources');
  const r = resources.find((x) => x.name === 'bank-inter');
  const done = COUNT - r.waiting - r.in_flight;
  console.log(
    `${String(Math.round((Date.now() - started) / 1000)).padStart(3)} s  done ${String(done).padStart(3)}/${COUNT}  ` +
      `starts in the last second ${r.rate.recent_starts}/${r.rate.limit}  in flight ${r.in_flight}/${r.concurrency}  waiting ${r.waiting}  ` +
      `breaker ${r.breaker.state}  429s ${r.throttled}`,
  );
  if (done >= COUNT) break;
  await new Promise((resolve) => setTimeout(resolve, 1000));
}

const { types } = await json('/v1/admin/stats');
console.log(`\nGET /v1/admin/stats, bank.statement: ${JSON.stringify(types.find((t) => t.type === 'bank.statement'))}`);
const times = bank.calls.map((c) => c.at).sort((a, b) => a - b);
const busiest = Math.max(...times.map((t) => times.filter((u) => u >= t && u < t + 1000).length));
console.log(`the bank saw ${bank.calls.length} calls, at most ${busiest} in any second, ${bank.calls.filter((c) => c.status === 429).length} answered 429`);
await stop();
await bank.close();
