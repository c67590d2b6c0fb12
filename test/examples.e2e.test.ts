import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';

const RUN = fileURLToPath(new URL('../examples/bank-statements/run.mjs', import.meta.url));
const CODE_REVIEW = fileURLToPath(new URL('../examples/code-review/run.mjs', import.meta.url));

describe('examples', () => {
  it('bank-statements: the walk-through drains its statements through a bank that allows 5 per second, at 4 per second, without one 429', async () => {
    // The README's second command, shortened: an embedded store, no server needed. opsd runs at 4 per
    // second, a little under the bank's 5, as docs/protection.md advises: on a loaded machine a call
    // can reach the bank more than the rate's 100 ms margin after its start, and the bank then counts
    // it in the next of its seconds (the documented burst: 6 calls in a second and one 429, in 4 of
    // 32 runs of this test at the bank's own 5 on one machine, old code and new, most under load).
    const env = { ...process.env, STATEMENTS: '15', BANK_RATE: '4', DATABASE_URL: '', REDIS_URL: '' };
    const child = spawn(process.execPath, [RUN], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    assert.equal(code, 0, output);
    assert.match(output, /done +15\/15/);
    assert.match(output, /"COMPLETED":15/);
    const summary = /the bank saw (\d+) calls, at most (\d+) in any second, (\d+) answered 429/.exec(output);
    assert.ok(summary, output);
    const [calls, busiest, throttled] = summary.slice(1).map(Number);
    assert.deepEqual({ calls, throttled }, { calls: 15, throttled: 0 });
    assert.ok(busiest! <= 5, `the bank saw ${busiest} calls in one second`);
  });

  it('code-review: a signed pull_request delivery becomes one review per push, ordered per pull request, each announced by a verified status webhook', async () => {
    const child = spawn(process.execPath, [CODE_REVIEW], { env: { ...process.env, DATABASE_URL: '', REDIS_URL: '' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    assert.equal(code, 0, output);
    assert.match(output, /\(pull_request, delivery (\w+)\) → 202 PENDING\n.*\(pull_request, delivery \1\) → 200/);
    assert.match(output, /\(ping, delivery \w+\) → 200 ignored/);
    assert.match(output, /a forged signature\) → 401 OPSD_ERR_WEBHOOK_SIGNATURE/);
    assert.match(output, /the receiver got 2 status webhooks/);
    const reviews = [...output.matchAll(/operation\.completed {2}acme\/shop#42 @ (\w+)/g)].map((m) => m[1]);
    assert.deepEqual(reviews, ['6dcb09b', 'e5bd391'], 'the opened push is reviewed before the next one');
  });
});
