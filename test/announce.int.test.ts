import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { createBodyValidator } from '../src/api/bodyValidator.js';
import { newOperationSchema } from '../src/api/schemas.js';
import { createSubmissions } from '../src/api/submissions.js';
import { createNotifyDispatcher, decodeDispatchNotice, DISPATCH_CHANNEL } from '../src/dispatch/notifyDispatcher.js';
import { acceptOperations, type NewOperation } from '../src/store/acceptOperations.js';
import type { DispatchTarget } from '../src/store/findClaimableHeads.js';
import { defineOperation } from '../src/worker/defineOperation.js';
import { HandlerRegistry } from '../src/worker/handlerRegistry.js';
import { postgresBackend, type TestDb } from './support/backends.js';
import { countingStatements } from './support/countingDb.js';
import { testLogger, uniqueId, waitFor } from './support/helpers.js';

/** A connection that LISTENs on `channel` and keeps every payload it hears. */
async function listen(url: string, channel: string): Promise<{ payloads: string[]; close(): Promise<void> }> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  const payloads: string[] = [];
  client.on('notification', (message) => payloads.push(message.payload ?? ''));
  await client.query(`LISTEN ${client.escapeIdentifier(channel)}`);
  return { payloads, close: () => client.end() };
}

const item = (type: string, runAt?: string): NewOperation => ({ externalId: uniqueId(), type, payload: { n: 1 }, maxAttempts: 1, runAt });

/** The targets a notice names, with `runAt` as an instant, to compare with what was accepted. */
const instants = (targets: readonly DispatchTarget[]) => targets.map((t) => ({ ...t, runAt: new Date(t.runAt).toISOString() }));

/**
 * Without Redis, an accept wakes workers in other processes by NOTIFY. The notices go out in the
 * accepting statement: a NOTIFY of its own cost each accept a round trip and a transaction more.
 */
describe('notices sent by the accepting statement [postgres]', { skip: postgresBackend.skip }, () => {
  let handle: TestDb;
  before(async () => {
    handle = await postgresBackend.open();
  });
  after(async () => {
    await handle?.cleanup();
  });

  it('announce what was inserted, when it commits, and nothing that was replayed', async () => {
    const channel = uniqueId('channel');
    const listener = await listen(handle.url as string, channel);
    try {
      const items = [item('demo.echo'), item('demo.echo', '2030-01-01T00:00:00.000Z'), item('demo.sleep')];
      const { db, count } = countingStatements(handle.db, () => true);
      const results = await acceptOperations(db, items, new Date(), { announceOn: channel });
      assert.equal(count(), 1, 'one statement inserts and announces');
      await waitFor('the notice', () => listener.payloads.length > 0 || null);
      const heard = listener.payloads.flatMap(decodeDispatchNotice);
      assert.deepEqual(
        instants(heard),
        results.map((r) => ({ id: r.operation.id, type: r.operation.type, version: 1, runAt: r.operation.runAt })),
      );

      const replayed = await acceptOperations(handle.db, items, new Date(), { announceOn: channel });
      assert.deepEqual(replayed.map((r) => r.outcome), ['replayed', 'replayed', 'replayed']);
      await handle.db.query('SELECT pg_sleep(0.2)');
      assert.equal(listener.payloads.length, 1, 'nothing is announced for a replay');
    } finally {
      await listener.close();
    }
  });

  it('keep each notice under PostgreSQL limit of 8,000 bytes, whatever the types', async () => {
    const channel = uniqueId('channel');
    const listener = await listen(handle.url as string, channel);
    try {
      // 128 characters that JSON escapes to six bytes each: the longest entry a type can make.
      const type = '\u0001'.repeat(128);
      const items = Array.from({ length: 300 }, () => item(type));
      const results = await acceptOperations(handle.db, items, new Date(), { announceOn: channel });
      await waitFor('every target announced', () => listener.payloads.flatMap(decodeDispatchNotice).length >= items.length || null);
      assert.ok(listener.payloads.length > 1, 'the targets took several notices');
      for (const payload of listener.payloads) assert.ok(Buffer.byteLength(payload) < 8000, `a notice of ${Buffer.byteLength(payload)} bytes`);
      assert.deepEqual(
        listener.payloads.flatMap(decodeDispatchNotice).map((t) => t.id),
        results.map((r) => r.operation.id),
        'every accepted operation, in submission order',
      );
    } finally {
      await listener.close();
    }
  });

  it('a submission through the NOTIFY dispatcher costs one statement, and the workers hear of it', async () => {
    const listener = await listen(handle.url as string, DISPATCH_CHANNEL);
    try {
      const registry = new HandlerRegistry().register(defineOperation({ type: 'demo.echo', handle: async () => null }) as never);
      const { db, count } = countingStatements(handle.db, () => true);
      const submissions = createSubmissions({
        db,
        registry,
        dispatcher: createNotifyDispatcher(db),
        logger: testLogger(),
        now: () => new Date(),
        validateItem: createBodyValidator().compile(newOperationSchema),
      });
      const reply = await submissions.submitOne({ external_id: uniqueId(), type: 'demo.echo', payload: null });
      assert.equal(reply.status, 202);
      await waitFor('the notice', () => listener.payloads.length > 0 || null);
      assert.equal(count(), 1, 'the accept and its notice are one statement');
      const id = (reply.body as { id: string }).id;
      assert.deepEqual(listener.payloads.flatMap(decodeDispatchNotice).map((t) => t.id), [id]);
    } finally {
      await listener.close();
    }
  });
});
