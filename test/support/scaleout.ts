import { randomBytes } from 'node:crypto';
import { after } from 'node:test';
import { dropRedisPrefix } from './redisKeys.js';
import pg from 'pg';

/** Prefixes handed out in this test file, each deleted from REDIS_URL's server once the file's tests end. */
const prefixes: string[] = [];

after(async () => {
  const url = process.env.REDIS_URL;
  if (!url) return;
  // Best effort: a server gone by now keeps what it has, and fails no test.
  for (const prefix of prefixes.splice(0)) await dropRedisPrefix(url, prefix).catch(() => undefined);
});

/** A Redis key prefix of the test's own, never the default one a user's deployment keeps its queues under. */
export function redisPrefix(): string {
  const prefix = `opsd-test-${randomBytes(4).toString('hex')}`;
  prefixes.push(prefix);
  return prefix;
}

/** Counts of operations by state, straight from the store. */
export async function stateCounts(client: pg.Client): Promise<Record<string, number>> {
  const { rows } = await client.query<{ state: string; n: number }>('SELECT state, count(*)::int AS n FROM operations GROUP BY state');
  return Object.fromEntries(rows.map((r) => [r.state, r.n]));
}

/**
 * Checks the per-key guarantees from the events alone: per ordering key, the successful attempt of
 * each operation starts after the previous one ended (in acceptance order); exactly one terminal
 * event per operation. Returns whether operations of different keys overlapped.
 */
export async function checkOrderAndUniqueness(client: pg.Client): Promise<{ operations: number; keysOverlap: boolean }> {
  const { rows } = await client.query<{ id: string; ordering_key: string; seq: string; terminal: number; last_start: Date; ended: Date }>(
    `SELECT o.id, o.ordering_key, o.seq,
            count(*) FILTER (WHERE e.type IN ('completed', 'rejected', 'failed', 'cancelled'))::int AS terminal,
            max(e.occurred_at) FILTER (WHERE e.type = 'started') AS last_start,
            max(e.occurred_at) FILTER (WHERE e.type IN ('completed', 'rejected', 'failed', 'cancelled')) AS ended
     FROM operations o JOIN operation_events e ON e.operation_id = o.id
     GROUP BY o.id, o.ordering_key, o.seq
     ORDER BY o.ordering_key, o.seq`,
  );
  const spans: { key: string; start: number; end: number }[] = [];
  let previous: (typeof rows)[number] | undefined;
  for (const row of rows) {
    if (row.terminal !== 1) throw new Error(`operation ${row.id} has ${row.terminal} terminal events`);
    if (previous && previous.ordering_key === row.ordering_key && row.last_start.getTime() < previous.ended.getTime()) {
      throw new Error(`key ${row.ordering_key}: operation ${row.id} started before ${previous.id} (accepted earlier) ended`);
    }
    spans.push({ key: row.ordering_key, start: row.last_start.getTime(), end: row.ended.getTime() });
    previous = row;
  }
  const sorted = spans.sort((a, b) => a.start - b.start);
  const keysOverlap = sorted.some((span, i) => sorted.slice(i + 1, i + 50).some((other) => other.key !== span.key && other.start < span.end));
  return { operations: rows.length, keysOverlap };
}
