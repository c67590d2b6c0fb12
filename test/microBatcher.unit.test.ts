import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createMicroBatcher } from '../src/lib/microBatcher.js';

/** A `run` whose calls the test finishes by hand, recording the batches it was given. */
function controlledRun() {
  const batches: number[][] = [];
  const pending: (() => void)[] = [];
  const run = (items: number[]) => {
    batches.push(items);
    return new Promise<number[]>((resolve) => pending.push(() => resolve(items.map((n) => n * 10))));
  };
  const finishNext = () => pending.shift()?.();
  return { run, batches, finishNext };
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

/** A few turns of the event loop until `done`; fails if it never is. */
async function turnsUntil(what: string, done: () => boolean): Promise<void> {
  for (let i = 0; i < 10 && !done(); i += 1) await tick();
  assert.ok(done(), what);
}

describe('micro-batcher', () => {
  it('coalesces calls of one tick into one batch and answers each caller in order', async () => {
    const { run, batches, finishNext } = controlledRun();
    const submit = createMicroBatcher(run, { maxBatch: 10 });
    const answers = Promise.all([1, 2, 3].map((n) => submit(n)));
    await tick();
    finishNext();
    assert.deepEqual(await answers, [10, 20, 30]);
    assert.deepEqual(batches, [[1, 2, 3]]);
  });

  it('splits at maxBatch', async () => {
    const { run, batches, finishNext } = controlledRun();
    const submit = createMicroBatcher(run, { maxBatch: 2 });
    const answers = Promise.all([1, 2, 3].map((n) => submit(n)));
    await tick();
    finishNext();
    finishNext();
    assert.deepEqual(await answers, [10, 20, 30]);
    assert.deepEqual(batches, [[1, 2], [3]]);
  });

  it('a caller whose deadline passes stops waiting: a queued item never runs, one already running is dropped', async () => {
    const { run, batches, finishNext } = controlledRun();
    const submit = createMicroBatcher(run, { maxBatch: 10, maxInFlight: 1 });
    const deadline = (ms: number, message: string) => ({ at: Date.now() + ms, error: () => new Error(message) });
    // Each refusal is awaited from the start: whichever deadline the timer reaches first, no
    // rejection is ever left without a handler.
    const first = assert.rejects(submit(1, { deadline: deadline(60, 'gave up') }), /gave up/);
    await tick();
    const second = assert.rejects(submit(2, { deadline: deadline(60, 'too late') }), /too late/);
    const third = submit(3);
    await tick();
    assert.deepEqual(batches, [[1]]);

    await Promise.all([first, second]);
    finishNext();
    await turnsUntil('the next batch starts', () => batches.length === 2);
    assert.deepEqual(batches, [[1], [3]], 'the expired queued item is gone; the running one finished its call');
    finishNext();
    assert.equal(await third, 30);
    await assert.rejects(submit(4, { deadline: { at: Date.now() - 1, error: () => new Error('already') } }), /already/);
  });

  it('each caller waits until its own deadline, whatever order they came in', async () => {
    const { run, batches, finishNext } = controlledRun();
    const submit = createMicroBatcher(run, { maxBatch: 10, maxInFlight: 1 });
    const settled: string[] = [];
    const track = (name: string, promise: Promise<number>) =>
      promise.then(
        () => settled.push(`${name} answered`),
        (error: Error) => settled.push(`${name} ${error.message}`),
      );
    const started = Date.now();
    const running = track('running', submit(1, { deadline: { at: started + 10_000, error: () => new Error('expired') } }));
    await tick();
    const late = track('late', submit(2, { deadline: { at: started + 400, error: () => new Error('expired') } }));
    const early = track('early', submit(3, { deadline: { at: started + 80, error: () => new Error('expired') } }));
    await early;
    assert.ok(Date.now() - started >= 75, 'not before its deadline');
    assert.deepEqual(settled, ['early expired'], 'the later deadline still waits');
    finishNext();
    await running;
    await turnsUntil('the next batch starts', () => batches.length === 2);
    assert.deepEqual(batches, [[1], [2]]);
    finishNext();
    await late;
    assert.deepEqual(settled, ['early expired', 'running answered', 'late answered']);
  });

  it('with maxInFlight, what arrives during a call waits and goes as one batch after it', async () => {
    const { run, batches, finishNext } = controlledRun();
    const submit = createMicroBatcher(run, { maxBatch: 10, maxInFlight: 1 });
    const first = submit(1);
    await tick();
    const later = [submit(2), submit(3)];
    await tick();
    const evenLater = submit(4);
    await tick();
    assert.deepEqual(batches, [[1]], 'nothing else starts while one call is under way');
    finishNext();
    assert.equal(await first, 10);
    await turnsUntil('the next batch starts', () => batches.length === 2);
    assert.deepEqual(batches, [[1], [2, 3, 4]]);
    finishNext();
    assert.deepEqual(await Promise.all([...later, evenLater]), [20, 30, 40]);
  });

  it('a failing call rejects its callers and does not hold back the next batch', async () => {
    let calls = 0;
    const submit = createMicroBatcher(
      async (items: number[]) => {
        calls += 1;
        if (calls === 1) throw new Error('store down');
        return items;
      },
      { maxBatch: 10, maxInFlight: 1 },
    );
    await assert.rejects(Promise.all([submit(1), submit(2)]), /store down/);
    assert.deepEqual(await Promise.all([submit(3), submit(4)]), [3, 4]);
  });

  it('a run that throws synchronously rejects its callers too', async () => {
    const submit = createMicroBatcher((): Promise<number[]> => {
      throw new Error('bad input');
    }, { maxBatch: 10, maxInFlight: 1 });
    await assert.rejects(submit(1), /bad input/);
    await assert.rejects(submit(2), /bad input/, 'the batcher is not wedged');
  });

  it('with isolate, a batch the store refuses is tried item by item so a bad item fails alone', async () => {
    const batches: number[][] = [];
    const submit = createMicroBatcher(
      async (items: number[]) => {
        batches.push(items);
        if (items.includes(13)) throw Object.assign(new Error('unstorable'), { code: '22P05' });
        return items.map((n) => n * 10);
      },
      { maxBatch: 10, isolate: (error) => (error as { code?: string }).code === '22P05' },
    );
    const results = await Promise.allSettled([submit(1), submit(13), submit(2)]);
    assert.deepEqual(results.map((r) => r.status), ['fulfilled', 'rejected', 'fulfilled']);
    assert.deepEqual(results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : [])), [10, 20]);
    assert.deepEqual(batches, [[1, 13, 2], [1], [13], [2]]);
  });

  it('without isolate for that error, every caller of the batch gets it (a store that is down is not retried item by item)', async () => {
    let calls = 0;
    const submit = createMicroBatcher(
      async (): Promise<number[]> => {
        calls += 1;
        throw Object.assign(new Error('down'), { code: 'ECONNREFUSED' });
      },
      { maxBatch: 10, isolate: (error) => (error as { code?: string }).code !== 'ECONNREFUSED' },
    );
    const results = await Promise.allSettled([submit(1), submit(2), submit(3)]);
    assert.ok(results.every((r) => r.status === 'rejected'));
    assert.equal(calls, 1);
  });

  it('refuses at once past maxQueued instead of queueing without bound', async () => {
    const { run, batches, finishNext } = controlledRun();
    const submit = createMicroBatcher(run, { maxBatch: 2, maxInFlight: 1, maxQueued: 3, overloaded: (n) => new Error(`full at ${n}`) });
    const first = submit(1);
    await turnsUntil('the first batch starts', () => batches.length === 1);
    const queued = [submit(2), submit(3), submit(4)];
    await assert.rejects(submit(5), /full at 3/);
    finishNext();
    assert.equal(await first, 10);
    await turnsUntil('the second batch starts', () => batches.length === 2);
    finishNext();
    await turnsUntil('the third batch starts', () => batches.length === 3);
    finishNext();
    assert.deepEqual(await Promise.all(queued), [20, 30, 40]);
    assert.deepEqual(batches, [[1], [2, 3], [4]]);
  });
});
