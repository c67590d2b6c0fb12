import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';

const RUN = fileURLToPath(new URL('../examples/bank-statements/run.mjs', import.meta.url));

describe('examples', () => {
  it('bank-statements: the walk-through drains its statements through a bank that allows 5 per second, without one 429', async () => {
    // The README's second command, shortened: an embedded store, no server needed.
    const child = spawn(process.execPath, [RUN], { env: { ...process.env, STATEMENTS: '15', DATABASE_URL: '', REDIS_URL: '' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    assert.equal(code, 0, output);
    assert.match(output, /done +15\/15/);
    assert.match(output, /"COMPLETED":15/);
    const summary = /the bank saw (\d+) calls, at most (\d+) in any second, (\d+) answered 429/.exec(output);
    assert.ok(summary, output);
    assert.deepEqual(summary.slice(1).map(Number), [15, 5, 0]);
  });
});
