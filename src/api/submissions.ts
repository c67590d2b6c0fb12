import type { ValidateFunction } from 'ajv';
import type { Logger } from 'pino';
import { OpsdError } from '../domain/errors.js';
import { PRIORITY_RANGE, type Json } from '../domain/operation.js';
import type { BacklogGauge } from '../protect/backlogGauge.js';
import { shedsSubmission } from '../protect/backlogRule.js';
import type { Dispatcher } from '../dispatch/dispatcher.js';
import { createMicroBatcher } from '../lib/microBatcher.js';
import { withTimeout } from '../lib/withTimeout.js';
import { acceptOperations, type AcceptResult, type NewOperation } from '../store/acceptOperations.js';
import type { Db } from '../store/db.js';
import { isStoreUnavailable } from '../store/storeErrors.js';
import type { HandlerRegistry } from '../worker/handlerRegistry.js';
import { errorBody, validationError } from './httpErrors.js';
import { operationBody, operationLocation } from './serialize.js';
import { toNewOperation, type SubmittedOperation } from './submission.js';

/** A reply independent of the HTTP server that sends it (Fastify on `api`, node:http on `intake`). */
export interface SubmissionReply {
  status: number;
  headers: Record<string, string>;
  body: unknown;
}

export interface Submissions {
  /** One operation that already passed the body schema; `delivery`: the webhook delivery it came from. */
  submitOne(body: SubmittedOperation, delivery?: Json): Promise<SubmissionReply>;
  /** A batch whose items are checked one by one: a bad item fails alone. `refused`: items the body parser refused, by index. */
  submitBatch(items: unknown[], refused?: ReadonlyMap<number, OpsdError>): Promise<{ results: unknown[] }>;
}

/** Single submissions waiting for an INSERT, at most; past it they get 429 with Retry-After. */
export const MAX_QUEUED_SUBMISSIONS = 10_000;

/** How long a submission waits for the store by default, in ms, before it is answered 503. */
export const DEFAULT_ACCEPT_TIMEOUT_MS = 800;

/**
 * Accepting operations, whatever serves HTTP. Single submissions that arrive in the same tick
 * share one multi-row INSERT and one dispatch.
 */
export function createSubmissions(deps: {
  db: Db;
  registry: HandlerRegistry;
  dispatcher: Dispatcher;
  logger: Logger;
  now: () => Date;
  validateItem: ValidateFunction;
  /**
   * Longest a submission waits for the store, in ms; then it is answered 503 with Retry-After.
   * The write may still land after that, which is why resubmitting the same external_id is the
   * client's way on. Default 800.
   */
  acceptTimeoutMs?: number;
  /** Backlogs of the types that cap theirs (`maxBacklog`); without it no type is shed. */
  backlog?: BacklogGauge;
  /** Counts the submissions shed. */
  onShed?: () => void;
  /** Told what became of each submission (the metrics). */
  onOutcome?: (type: string, outcome: AcceptResult['outcome'] | 'shed') => void;
}): Submissions {
  const { db, registry, now, validateItem } = deps;
  const acceptTimeoutMs = deps.acceptTimeoutMs ?? DEFAULT_ACCEPT_TIMEOUT_MS;

  /**
   * Wakes workers for what was just committed, whoever still waits for the answer (a submission
   * past its deadline no longer does, but its row is in): the rows are safe, and a wake-up that is
   * slow or lost (Redis away) only delays them until a worker's poll or the reconciler finds them.
   */
  function dispatchAccepted(results: readonly (AcceptResult | Error)[]): void {
    if (deps.onOutcome) for (const r of results) if (!(r instanceof Error)) deps.onOutcome(r.operation.type, r.outcome);
    const accepted = results.flatMap((r) => (!(r instanceof Error) && r.outcome === 'accepted' ? [r.operation] : []));
    if (accepted.length === 0) return;
    for (const op of accepted) deps.backlog?.accepted(op.type, 1);
    for (const op of accepted) deps.logger.debug({ operation_id: op.id, external_id: op.externalId, type: op.type }, 'operation accepted');
    (deps.dispatcher.notices?.rest ?? deps.dispatcher).dispatch(accepted).catch((error: unknown) => {
      deps.logger.warn({ err: error, count: accepted.length }, 'dispatch failed; the reconciler will pick these up');
    });
  }

  /** Accepts and wakes workers for what it accepted; by NOTIFY, in the accepting statement itself. */
  async function acceptAndDispatch(items: NewOperation[]): Promise<AcceptResult[]> {
    const results = await acceptOperations(db, items, now(), { announceOn: deps.dispatcher.notices?.channel });
    dispatchAccepted(results);
    return results;
  }

  // One INSERT under way at a time: submissions that arrive meanwhile join the next one, so the
  // statements grow with the load and PostgreSQL pays less per submission. Against two under way
  // (64 connections, PostgreSQL 15 on 2 cores): 22-45 submissions a statement instead of 18-26,
  // PostgreSQL 44 → 35 µs of CPU per submission, 12,466 → 13,184 req/s (medians of 9), and no
  // change at 2,000 req/s or end to end. Two under way had beaten one per tick (5,573 vs 5,275
  // req/s, p99 at 2,000 req/s 24 vs 38 ms).
  // A batch the store refuses is tried item by item, so one bad submission fails alone; past
  // MAX_QUEUED_SUBMISSIONS waiting for the store, new ones are refused with 429 rather than queued.
  const acceptOne = createMicroBatcher(acceptAndDispatch, {
    maxBatch: 1000,
    maxInFlight: 1,
    maxQueued: MAX_QUEUED_SUBMISSIONS,
    overloaded: (queued) => new OpsdError('OPSD_ERR_OVERLOADED', `${queued} submissions are waiting for the store; retry shortly`),
    isolate: (error) => !isStoreUnavailable(error),
  });

  /** One INSERT for the batch; if the store refuses it, each item alone, so a bad item fails by itself. */
  async function acceptEachAloneOnRefusal(items: NewOperation[]): Promise<(AcceptResult | Error)[]> {
    if (items.length === 0) return [];
    try {
      return await acceptAndDispatch(items);
    } catch (error) {
      if (items.length === 1 || isStoreUnavailable(error)) throw error;
      const results: (AcceptResult | Error)[] = [];
      for (const item of items) {
        try {
          results.push(...(await acceptAndDispatch([item])));
        } catch (itemError) {
          if (isStoreUnavailable(itemError)) throw itemError;
          results.push(itemError as Error);
        }
      }
      return results;
    }
  }

  /** Refuses a submission whose type's backlog is full (see shedsSubmission), before it costs a write. */
  function checkBacklog(item: NewOperation): void {
    const max = registry.maxBacklog(item.type);
    if (max === undefined || !deps.backlog) return;
    const backlog = deps.backlog.estimate(item.type);
    if (!shedsSubmission(backlog, max, item.priority ?? PRIORITY_RANGE.default)) return;
    deps.onShed?.();
    deps.onOutcome?.(item.type, 'shed');
    throw new OpsdError('OPSD_ERR_BACKLOG_FULL', `${backlog} operations of type "${item.type}" are waiting (at most ${max}, half of it for priorities below 0); retry later`, {
      type: item.type,
      backlog,
      max_backlog: max,
    });
  }

  /** The answer to a submission whose store did not answer in time. */
  const storeTooSlow = () =>
    new OpsdError(
      'OPSD_ERR_UNAVAILABLE',
      `the store did not answer within ${acceptTimeoutMs} ms; the submission may or may not have been recorded: send it again with the same external_id`,
    );

  return {
    async submitOne(body, delivery) {
      const item = toNewOperation(body, registry, delivery);
      checkBacklog(item);
      const result = await acceptOne(item, { deadline: { at: Date.now() + acceptTimeoutMs, error: storeTooSlow } });
      if (result.outcome === 'conflict' || result.outcome === 'mismatch') return errorReply(refusal(result));
      const headers = { location: operationLocation(result.operation.id) };
      if (result.outcome === 'replayed') {
        return { status: 200, headers: { ...headers, 'idempotent-replayed': 'true' }, body: operationBody(result.operation) };
      }
      return { status: 202, headers, body: operationBody(result.operation) };
    },

    async submitBatch(items, refused = new Map()) {
      const slots: ({ status: number; error: unknown } | { pending: number })[] = [];
      const valid: NewOperation[] = [];
      for (const [index, item] of items.entries()) {
        const problemOfItem = refused.get(index);
        if (problemOfItem) {
          slots.push(problem(problemOfItem));
          continue;
        }
        if (!validateItem(item)) {
          slots.push(problem(validationError(validateItem)));
          continue;
        }
        try {
          const operation = toNewOperation(item as SubmittedOperation, registry);
          checkBacklog(operation);
          valid.push(operation);
          slots.push({ pending: valid.length - 1 });
        } catch (error) {
          if (!(error instanceof OpsdError)) throw error;
          slots.push(problem(error));
        }
      }
      const accepted = await withTimeout(acceptEachAloneOnRefusal(valid), acceptTimeoutMs, storeTooSlow);
      return {
        results: slots.map((slot) => {
          if (!('pending' in slot)) return slot;
          const result = accepted[slot.pending] as AcceptResult | Error;
          if (result instanceof Error) {
            deps.logger.error({ err: result }, 'a batch item was refused by the store');
            return problem(new OpsdError('OPSD_ERR_INTERNAL', 'this item could not be stored'));
          }
          if (result.outcome === 'conflict' || result.outcome === 'mismatch') return problem(refusal(result));
          return {
            status: result.outcome === 'accepted' ? 202 : 200,
            ...(result.outcome === 'replayed' ? { replayed: true } : {}),
            operation: operationBody(result.operation),
          };
        }),
      };
    },
  };
}

function errorReply(error: OpsdError): SubmissionReply {
  return { status: error.status, headers: {}, body: errorBody(error) };
}

function refusal(result: Extract<AcceptResult, { outcome: 'conflict' | 'mismatch' }>): OpsdError {
  const holder = result.operation;
  if (result.outcome === 'mismatch') {
    return new OpsdError(
      'OPSD_ERR_IDEMPOTENCY_MISMATCH',
      `external_id "${holder.externalId}" was submitted before with a different ${result.fields.join(', ')}`,
      { operation_id: holder.id, fields: result.fields },
    );
  }
  return new OpsdError(
    'OPSD_ERR_DUPLICATE_CONFLICT',
    `external_id "${holder.externalId}" is already used by an operation with a different type or payload`,
    { operation_id: holder.id, type: holder.type },
  );
}

function problem(error: OpsdError) {
  return { status: error.status, ...errorBody(error) };
}

