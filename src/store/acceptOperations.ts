import { decide } from '../domain/decide.js';
import { evolve } from '../domain/evolve.js';
import { PRIORITY_RANGE, type Json, type OperationState } from '../domain/operation.js';
import { payloadHash } from '../domain/payloadHash.js';
import { prepared, type Db } from './db.js';
import { uuidv7 } from '../lib/uuidv7.js';
import { isTransientConflict } from './storeErrors.js';
import { eventToRecord, rowToOperation, type OperationRow, type StoredOperation } from './operationRow.js';

/** What a client submits. */
export interface NewOperation {
  externalId: string;
  type: string;
  payload: Json;
  /** Default: the external id. */
  orderingKey?: string | undefined;
  maxAttempts: number;
  /** ISO-8601; default: now. */
  runAt?: string | undefined;
  /** From PRIORITY_RANGE; default 0. */
  priority?: number | undefined;
  /** The webhook delivery it came from, kept with the `received` event (not part of its identity). */
  delivery?: Json | undefined;
}

/**
 * Per item: `accepted` (new), `replayed` (identical resubmission, nothing written),
 * `conflict` (the external id is taken by a different type or payload; `operation` is the holder)
 * or `mismatch` (same type and payload, but different options: `fields` names them).
 */
export type AcceptResult =
  | { outcome: 'accepted'; operation: StoredOperation }
  | { outcome: 'replayed'; operation: StoredOperation }
  | { outcome: 'conflict'; operation: StoredOperation }
  | { outcome: 'mismatch'; operation: StoredOperation; fields: string[] };

/** A deadlock or serialization failure is retried this many times before it reaches the caller. */
const TRANSIENT_RETRIES = 5;

interface Candidate {
  index: number;
  state: OperationState;
  eventRecord: Record<string, unknown>;
}

export interface AcceptOptions {
  /**
   * A NOTIFY channel on which the same statement announces what it inserted, delivered when it
   * commits: a notice per 7,000 bytes of `[id, type, version, runAt]` entries, the format of
   * src/dispatch/notifyDispatcher.ts.
   */
  announceOn?: string | undefined;
}

/**
 * Accepts a batch in one statement: inserts the operations that are new and their `received`
 * events together; `ON CONFLICT (external_id) DO NOTHING` makes concurrent identical submissions
 * race safely (the loser waits for the winner's commit, then reads its row).
 */
export async function acceptOperations(db: Db, items: readonly NewOperation[], now: Date, options: AcceptOptions = {}): Promise<AcceptResult[]> {
  const at = now.toISOString();
  const hashes = items.map((item) => payloadHash(item.payload));
  const firstByExternalId = new Map<string, Candidate>();
  const candidates: Candidate[] = [];
  items.forEach((item, index) => {
    if (firstByExternalId.has(item.externalId)) return;
    const [received] = decide(
      {
        kind: 'accept',
        now: at,
        operationId: uuidv7(),
        externalId: item.externalId,
        operationType: item.type,
        payload: item.payload,
        payloadHash: hashes[index] as string,
        orderingKey: item.orderingKey ?? item.externalId,
        maxAttempts: item.maxAttempts,
        runAt: item.runAt ?? at,
        priority: item.priority ?? PRIORITY_RANGE.default,
        ...(item.delivery !== undefined ? { delivery: item.delivery } : {}),
      },
      null,
    );
    if (!received) throw new Error('accept decided no event');
    const state = evolve(null, received);
    const candidate = { index, state, eventRecord: eventToRecord(state.id, 1, received) };
    firstByExternalId.set(item.externalId, candidate);
    candidates.push(candidate);
  });

  const inserted = await retryTransient(() => insertNew(db, candidates, options.announceOn));
  const missing = candidates.filter((c) => !inserted.has(c.state.id)).map((c) => c.state.externalId);
  const existing = missing.length > 0 ? await findByExternalIds(db, missing) : new Map<string, Holder>();

  return items.map((item, index) => {
    const candidate = firstByExternalId.get(item.externalId) as Candidate;
    const seq = inserted.get(candidate.state.id);
    const found = seq !== undefined ? { operation: { ...candidate.state, seq }, requestedRunAt: candidate.state.runAt } : existing.get(item.externalId);
    if (!found) throw new Error(`operation ${item.externalId} neither inserted nor found`);
    const holder = found.operation;
    const same = holder.type === item.type && holder.payloadHash === hashes[index];
    if (!same) return { outcome: 'conflict', operation: holder };
    const firstOfBatch = seq !== undefined && candidate.index === index;
    if (firstOfBatch) return { outcome: 'accepted', operation: holder };
    const fields = differingOptions(item, found);
    return fields.length > 0 ? { outcome: 'mismatch', operation: holder, fields } : { outcome: 'replayed', operation: holder };
  });
}

/** An operation found by external id, with the `run_at` its first submission asked for. */
interface Holder {
  operation: StoredOperation;
  requestedRunAt: string;
}

/**
 * The options of a resubmission that differ from the original's: `ordering_key` and
 * `max_attempts` and `priority` after defaults, `run_at` when the resubmission gives one.
 */
function differingOptions(item: NewOperation, found: Holder): string[] {
  const fields: string[] = [];
  if ((item.orderingKey ?? item.externalId) !== found.operation.orderingKey) fields.push('ordering_key');
  if (item.maxAttempts !== found.operation.maxAttempts) fields.push('max_attempts');
  if ((item.priority ?? PRIORITY_RANGE.default) !== found.operation.priority) fields.push('priority');
  if (item.runAt !== undefined && Date.parse(item.runAt) !== Date.parse(found.requestedRunAt)) fields.push('run_at');
  return fields;
}

async function retryTransient<T>(work: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await work();
    } catch (error) {
      if (attempt > TRANSIENT_RETRIES || !isTransientConflict(error)) throw error;
      await new Promise((resolve) => setTimeout(resolve, Math.random() * 20 * attempt));
    }
  }
}

async function insertNew(db: Db, candidates: Candidate[], announceOn: string | undefined): Promise<Map<string, number>> {
  const column = <T>(pick: (c: Candidate) => T) => candidates.map(pick);
  const shared = <T>(pick: (c: Candidate) => T) => {
    const value = pick(candidates[0] as Candidate);
    if (candidates.some((c) => pick(c) !== value)) throw new Error('accepted operations differ in a value the batch shares');
    return value;
  };
  // One statement, so one implicit transaction and one round trip: both rows or neither. Arrays
  // through unnest: PostgreSQL parses one value per cell instead of a JSON document per row. The
  // received events go as one JSON array, not as a text array: a JSON text in an array literal has
  // every quote escaped by the driver and unescaped by the server. The payload travels once, in its
  // event, and the operation's column is cut from it. What the domain gives every new operation
  // alike (its state, counters and times) goes once per batch, not once per row.
  const { rows } = await db.query<{ id: string; seq: string | number }>(
    announceOn === undefined ? INSERT_NEW : INSERT_NEW_ANNOUNCED,
    [
      column((c) => c.state.id),
      column((c) => c.state.externalId),
      column((c) => c.state.type),
      column((c) => c.state.payloadHash),
      column((c) => c.state.orderingKey),
      column((c) => c.state.maxAttempts),
      column((c) => c.state.runAt),
      column((c) => c.state.priority),
      firstOfTheirKeys(candidates),
      JSON.stringify(column((c) => c.eventRecord.data)),
      shared((c) => c.eventRecord.type as string),
      shared((c) => c.state.status),
      shared((c) => c.state.attempts),
      shared((c) => c.state.fencingToken),
      shared((c) => c.state.version),
      shared((c) => c.state.createdAt),
      shared((c) => c.state.updatedAt),
      ...(announceOn === undefined ? [] : [announceOn]),
    ],
  );
  return new Map(rows.map((row) => [row.id, Number(row.seq)]));
}

/** Per candidate, whether it is the first of its ordering key in the batch: only that one may be its key's head. */
function firstOfTheirKeys(candidates: readonly Candidate[]): boolean[] {
  const seen = new Set<string>();
  return candidates.map((c) => {
    if (seen.has(c.state.orderingKey)) return false;
    seen.add(c.state.orderingKey);
    return true;
  });
}

async function findByExternalIds(db: Db, externalIds: string[]): Promise<Map<string, Holder>> {
  const { rows } = await db.query<OperationRow & { requested_run_at: string }>(
    `SELECT o.*, e.data->>'runAt' AS requested_run_at
     FROM operations o JOIN operation_events e ON e.operation_id = o.id AND e.seq = 1
     WHERE o.external_id = ANY($1::text[])`,
    [externalIds],
  );
  return new Map(rows.map((row) => [row.external_id, { operation: rowToOperation(row), requestedRunAt: row.requested_run_at }]));
}

const INSERT_WITH = `WITH input AS (
         SELECT x.*, x.event_data->'payload' AS payload, shared.* FROM ROWS FROM (
             unnest($1::uuid[]), unnest($2::text[]), unnest($3::text[]), unnest($4::text[]), unnest($5::text[]),
             unnest($6::int[]), unnest($7::timestamptz[]), unnest($8::smallint[]), unnest($9::bool[]),
             jsonb_array_elements($10::jsonb))
           WITH ORDINALITY AS x(id, external_id, type, payload_hash, ordering_key, max_attempts, run_at, priority,
                                first_of_key, event_data, ord)
         CROSS JOIN (SELECT $11::text AS event_type, $12::text AS state, $13::int AS attempts, $14::bigint AS fencing_token,
                            $15::int AS version, $16::timestamptz AS created_at, $17::timestamptz AS updated_at) shared
       ), numbered AS (
         -- Acceptance order (seq) is submission order...
         SELECT input.*, nextval((SELECT pg_get_serial_sequence('operations', 'seq')::regclass)) AS seq
         FROM (SELECT * FROM input ORDER BY ord) AS input
       ), inserted AS (
         INSERT INTO operations (id, seq, external_id, type, payload, payload_hash, ordering_key, priority, state, attempts,
                                 max_attempts, run_at, fencing_token, version, created_at, updated_at, head)
         OVERRIDING SYSTEM VALUE
         SELECT id, seq, external_id, type, payload, payload_hash, ordering_key, priority, state, attempts,
                max_attempts, run_at, fencing_token, version, created_at, updated_at,
                -- The head of its key (headMarks.ts): the first of its key in the batch, with nothing
                -- active on its key. The look stays on the key: a new key costs a descent of the index.
                CASE WHEN first_of_key THEN NOT EXISTS (
                  SELECT 1 FROM operations p
                  WHERE p.ordering_key >= numbered.ordering_key AND p.ordering_key <= numbered.ordering_key
                    AND p.state IN ('PENDING', 'PROCESSING')) ELSE false END
         -- ...but rows go in by external_id: each locks its entry in the unique index as it goes in, and
         -- one canonical order keeps two overlapping batches from each holding what the other waits for.
         FROM numbered ORDER BY external_id
         ON CONFLICT (external_id) DO NOTHING
         RETURNING id, seq
       ), events AS (
         INSERT INTO operation_events (operation_id, seq, type, data, external_id, payload_hash, occurred_at)
         SELECT i.id, 1, i.event_type, i.event_data, i.external_id, i.payload_hash, i.created_at
         FROM input i JOIN inserted USING (id) ORDER BY i.external_id
       )`;

const INSERT_NEW = prepared(`${INSERT_WITH} SELECT id, seq FROM inserted`);

/**
 * The same, announcing the rows inserted on channel $18: one round trip and one transaction fewer
 * than a NOTIFY of its own. Notices break every 7,000 bytes of entries; an entry holds at most 128
 * characters of type, under 900 bytes escaped, so each notice stays under PostgreSQL's 8,000.
 * The filter makes the statement read `announced`, which it would otherwise leave out.
 */
const INSERT_NEW_ANNOUNCED = prepared(
  `${INSERT_WITH}, announced AS (
         SELECT pg_notify($18, '[' || string_agg(entry, ',' ORDER BY ord) || ']')
         FROM (
           SELECT entry, ord, sum(octet_length(entry) + 1) OVER (ORDER BY ord) AS upto
           FROM (SELECT json_build_array(i.id, i.type, i.version, i.run_at)::text AS entry, i.ord
                 FROM input i JOIN inserted USING (id)) entries
         ) sized
         GROUP BY (upto - 1) / 7000
       )
       SELECT id, seq FROM inserted WHERE (SELECT count(*) FROM announced) >= 0`,
);
