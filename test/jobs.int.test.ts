import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { campaignForLeadership } from '../src/cluster/leaderElection.js';
import { createBullmqDispatcher } from '../src/dispatch/bullmqDispatcher.js';
import { startJobFeeder } from '../src/dispatch/jobFeeder.js';
import { createNotifyDispatcher, decodeDispatchNotice, DISPATCH_CHANNEL } from '../src/dispatch/notifyDispatcher.js';
import { acceptOperations } from '../src/store/acceptOperations.js';
import type { DispatchTarget } from '../src/store/findClaimableHeads.js';
import { createPgDb } from '../src/store/pgDb.js';
import { getOperation, listEvents } from '../src/store/readOperations.js';
import { defineOperation } from '../src/worker/defineOperation.js';
import { RetryError } from '../src/worker/handlerErrors.js';
import { HandlerRegistry } from '../src/worker/handlerRegistry.js';
import { Worker } from '../src/worker/worker.js';
import { postgresBackend, serversSkip, type TestDb } from './support/backends.js';
import { testLogger, uniqueId, waitFor } from './support/helpers.js';
import { redisPrefix } from './support/scaleout.js';
import { createServerDatabase } from './support/serverDatabase.js';

describe('BullMQ dispatch [postgres + redis]', { skip: serversSkip }, () => {
  let handle: TestDb;
  const runs = new Map<string, number>();
  const type = `test.count-${uniqueId()}`;
  const registry = new HandlerRegistry().register(
    defineOperation({
      type,
      handle: async ({ operation }) => {
        runs.set(operation.id, (runs.get(operation.id) ?? 0) + 1);
        await new Promise((resolve) => setTimeout(resolve, 50));
        return 'ran';
      },
    }) as never,
  );
  const retryType = `test.retry-once-${uniqueId()}`;
  registry.register(
    defineOperation({
      type: retryType,
      handle: ({ operation }) => {
        if (operation.attempt === 1) throw new RetryError('not yet', { retryAfterMs: 400 });
        return 'second time';
      },
    }) as never,
  );
  let dispatcher: ReturnType<typeof createBullmqDispatcher>;
  let worker: Worker;
  let feeder: { close(): Promise<void> };

  before(async () => {
    handle = await postgresBackend.open();
    const prefix = redisPrefix();
    const redisUrl = process.env.REDIS_URL as string;
    dispatcher = createBullmqDispatcher({ redisUrl, prefix });
    // Polling once a minute: jobs are the only wake-ups this worker gets from outside.
    worker = new Worker({ db: handle.db, registry, logger: testLogger(), announceTo: dispatcher, concurrency: 4, pollIntervalMs: 60_000 });
    worker.start();
    feeder = startJobFeeder({ worker, types: registry.types(), redisUrl, prefix, logger: testLogger() });
  });
  after(async () => {
    await Promise.all([feeder.close(), worker.stop(1000)]);
    await dispatcher.close();
    await handle.cleanup();
    assert.equal(worker.stats.running, 0);
  });

  it('a job delivered twice (and once more after the end) runs the handler once', async () => {
    const [accepted] = await acceptOperations(handle.db, [{ externalId: uniqueId(), type, payload: null, maxAttempts: 3 }], new Date());
    const op = accepted!.operation;
    // Three deliveries of the same operation at once: distinct job ids, so BullMQ runs all three.
    await Promise.all([dispatcher.dispatch([op], 'first'), dispatcher.dispatch([op], 'second'), dispatcher.dispatch([op])]);
    await waitFor('completion', async () => (await getOperation(handle.db, op.id))?.status === 'COMPLETED');
    await dispatcher.dispatch([op], 'late');
    const queue = dispatcher.queue(type);
    await waitFor('the queue to drain', async () => (await queue.getJobCountByTypes('waiting', 'active', 'delayed')) === 0);
    assert.equal(runs.get(op.id), 1);
    const events = (await listEvents(handle.db, op.id)).map((e) => e.event.type);
    assert.deepEqual(events, ['received', 'started', 'completed']);
  });

  it('run_at and retry delays hold in queue mode', async () => {
    const runAt = new Date(Date.now() + 1500).toISOString();
    const [scheduled] = await acceptOperations(handle.db, [{ externalId: uniqueId(), type, payload: null, maxAttempts: 3, runAt }], new Date());
    await dispatcher.dispatch([scheduled!.operation]);
    await waitFor('the scheduled operation', async () => (await getOperation(handle.db, scheduled!.operation.id))?.status === 'COMPLETED');
    const started = (await listEvents(handle.db, scheduled!.operation.id)).find((e) => e.event.type === 'started');
    assert.ok(Date.parse(started!.event.at) >= Date.parse(runAt), 'not started before run_at');

    const [retried] = await acceptOperations(handle.db, [{ externalId: uniqueId(), type: retryType, payload: null, maxAttempts: 3 }], new Date());
    await dispatcher.dispatch([retried!.operation]);
    const done = await waitFor('the retried operation', async () => {
      const op = await getOperation(handle.db, retried!.operation.id);
      return op?.status === 'COMPLETED' ? op : null;
    });
    assert.equal(done.attempts, 2);
    const events = (await listEvents(handle.db, retried!.operation.id)).map((e) => e.event);
    const failed = events.find((e) => e.type === 'attempt_failed')!;
    const second = events.filter((e) => e.type === 'started')[1]!;
    assert.ok(Date.parse(second.at) >= Date.parse(failed.at) + 400, 'the retry waited for its delay');
  });

  it('a batch of due operations is one job, and that one job gets all of them run', async () => {
    const accept = async (count: number, runAt?: string) =>
      (await acceptOperations(handle.db, Array.from({ length: count }, (_, i) => ({ externalId: uniqueId(), type, payload: { i }, maxAttempts: 3, ...(runAt ? { runAt } : {}) })), new Date())).map((a) => a.operation);
    // On a prefix nobody consumes: what the dispatcher puts on the queue.
    const unread = createBullmqDispatcher({ redisUrl: process.env.REDIS_URL as string, prefix: redisPrefix() });
    try {
      const due = await accept(40);
      await unread.dispatch(due);
      const waiting = await unread.queue(type).getWaiting();
      assert.equal(waiting.length, 1);
      assert.deepEqual([...waiting[0]!.data.operationIds].sort(), due.map((op) => op.id).sort());
      const later = await accept(3, new Date(Date.now() + 60_000).toISOString());
      await unread.dispatch(later);
      assert.equal(await unread.queue(type).getDelayedCount(), 3, 'an operation due later gets a wake-up of its own at run_at');
    } finally {
      await unread.queue(type).obliterate({ force: true });
      await unread.close();
    }

    const ops = await accept(40);
    await dispatcher.dispatch(ops);
    await waitFor('all 40 to complete', async () => {
      for (const op of ops) if ((await getOperation(handle.db, op.id))?.status !== 'COMPLETED') return false;
      return true;
    });
    for (const op of ops) assert.equal(runs.get(op.id), 1);
  });

  it('re-enqueueing the same operation version is a no-op while its job waits', async () => {
    const runAt = new Date(Date.now() + 60_000).toISOString();
    const [accepted] = await acceptOperations(handle.db, [{ externalId: uniqueId(), type, payload: null, maxAttempts: 3, runAt }], new Date());
    const op = accepted!.operation;
    await dispatcher.dispatch([op]);
    await dispatcher.dispatch([op]);
    assert.equal(await dispatcher.queue(type).getDelayedCount(), 1, 'one delayed job, waiting for run_at');
  });
});

describe('intake → leader relay by NOTIFY [postgres]', { skip: serversSkip }, () => {
  it('the leader hears what an intake dispatches, and only while it leads', async () => {
    const database = await createServerDatabase(process.env.DATABASE_URL as string);
    const db = createPgDb({ connectionString: database.url, max: 2, applicationName: 'opsd-test' });
    const heard: DispatchTarget[] = [];
    const leadership = campaignForLeadership({
      databaseUrl: database.url,
      logger: testLogger(),
      intervalMs: 100,
      listen: { channel: DISPATCH_CHANNEL, onNotice: (payload) => heard.push(...decodeDispatchNotice(payload)) },
      onElected: () => {},
      onDeposed: () => {},
    });
    try {
      await waitFor('leadership', () => leadership.isLeader());
      const targets = Array.from({ length: 300 }, (_, i) => ({
        id: randomUUID(),
        type: i % 2 ? 'demo.echo' : 'demo.sleep',
        version: 1,
        runAt: new Date(Date.UTC(2030, 0, 1, 0, 0, i % 60)).toISOString(),
      }));
      await createNotifyDispatcher(db).dispatch(targets);
      await waitFor('every target relayed', () => heard.length >= targets.length);
      assert.deepEqual(heard, targets);

      await leadership.stop();
      await createNotifyDispatcher(db).dispatch(targets.slice(0, 1));
      await db.query('SELECT pg_sleep(0.2)');
      assert.equal(heard.length, targets.length, 'a process that stepped down no longer relays');
    } finally {
      await leadership.stop();
      await db.close();
      await database.drop();
    }
  });
});
