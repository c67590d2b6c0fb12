import type { Ajv } from 'ajv';
import type { FastifyInstance, FastifyReply } from 'fastify';
import type { Logger } from 'pino';
import { OpsdError } from '../domain/errors.js';
import type { OperationStatus } from '../domain/operation.js';
import type { Dispatcher } from '../dispatch/dispatcher.js';
import { createMicroBatcher } from '../lib/microBatcher.js';
import { acceptOperations, type AcceptResult, type NewOperation } from '../store/acceptOperations.js';
import { applyCommands, type AddressedCommand } from '../store/applyCommands.js';
import type { Db } from '../store/db.js';
import type { StoredOperation } from '../store/operationRow.js';
import { getOperation, listEvents, listOperations } from '../store/readOperations.js';
import type { HandlerRegistry } from '../worker/handlerRegistry.js';
import { sendError } from './errorHandler.js';
import {
  batchResponseSchema,
  batchSchema,
  errorSchema,
  eventsResponseSchema,
  idParamsSchema,
  listQuerySchema,
  listResponseSchema,
  newOperationSchema,
  operationSchema,
} from './schemas.js';
import { eventBody, operationBody, operationLocation } from './serialize.js';
import { toNewOperation, type SubmittedOperation } from './submission.js';

interface RouteDeps {
  db: Db;
  registry: HandlerRegistry;
  dispatcher: Dispatcher;
  logger: Logger;
  now: () => Date;
  validators: { strict: Ajv };
  /** Register reading and operator routes too (not on intake). */
  queries: boolean;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const errors = { '4xx': errorSchema, '5xx': errorSchema };

export function registerOperationRoutes(app: FastifyInstance, deps: RouteDeps): void {
  const { db, registry, now } = deps;
  // Concurrent single submissions in one tick share one multi-row INSERT.
  const acceptOne = createMicroBatcher((items: NewOperation[]) => acceptOperations(db, items, now()), { maxBatch: 1000 });
  const validateItem = deps.validators.strict.compile(newOperationSchema);

  // ...and share one dispatch (one Redis round trip through BullMQ) per tick too.
  const dispatchOne = createMicroBatcher(
    async (operations: StoredOperation[]) => {
      await deps.dispatcher.dispatch(operations);
      return operations.map(() => undefined);
    },
    { maxBatch: 1000 },
  );

  async function dispatchAccepted(results: AcceptResult[]): Promise<void> {
    const accepted = results.filter((r) => r.outcome === 'accepted').map((r) => r.operation);
    if (accepted.length === 0) return;
    for (const op of accepted) deps.logger.debug({ operation_id: op.id, type: op.type }, 'operation accepted');
    // The rows are committed: a failed wake-up only delays them (the reconciler re-dispatches).
    await Promise.all(accepted.map(dispatchOne)).catch((error: unknown) => {
      deps.logger.warn({ err: error, count: accepted.length }, 'dispatch failed; the reconciler will pick these up');
    });
  }

  app.post<{ Body: SubmittedOperation }>(
    '/v1/operations',
    { schema: { body: newOperationSchema, response: { 200: operationSchema, 202: operationSchema, ...errors } } },
    async (request, reply) => {
      const result = await acceptOne(toNewOperation(request.body, registry));
      await dispatchAccepted([result]);
      return sendAcceptResult(reply, result);
    },
  );

  app.post<{ Body: { operations: unknown[] } }>(
    '/v1/operations/batch',
    { schema: { body: batchSchema, response: { 200: batchResponseSchema, ...errors } } },
    async (request) => {
      const items = request.body.operations;
      const slots: ({ status: number; error: unknown } | { pending: number })[] = [];
      const valid: NewOperation[] = [];
      for (const item of items) {
        if (!validateItem(item)) {
          const details = (validateItem.errors ?? []).map((e) => ({ path: e.instancePath || '/', message: e.message ?? 'invalid' }));
          const message = details.map((d) => `${d.path} ${d.message}`).join('; ');
          slots.push(problem(new OpsdError('OPSD_ERR_VALIDATION', message, details)));
          continue;
        }
        try {
          valid.push(toNewOperation(item as SubmittedOperation, registry));
          slots.push({ pending: valid.length - 1 });
        } catch (error) {
          if (!(error instanceof OpsdError)) throw error;
          slots.push(problem(error));
        }
      }
      const accepted = valid.length > 0 ? await acceptOperations(db, valid, now()) : [];
      await dispatchAccepted(accepted);
      return {
        results: slots.map((slot) => {
          if (!('pending' in slot)) return slot;
          const result = accepted[slot.pending] as AcceptResult;
          if (result.outcome === 'conflict') return problem(conflict(result.operation));
          return {
            status: result.outcome === 'accepted' ? 202 : 200,
            ...(result.outcome === 'replayed' ? { replayed: true } : {}),
            operation: operationBody(result.operation),
          };
        }),
      };
    },
  );

  if (!deps.queries) return;

  app.get<{ Params: { id: string } }>(
    '/v1/operations/:id',
    { schema: { params: idParamsSchema, response: { 200: operationSchema, ...errors } } },
    async (request) => operationBody(await findOrThrow(db, request.params.id)),
  );

  app.get<{ Params: { id: string } }>(
    '/v1/operations/:id/events',
    { schema: { params: idParamsSchema, response: { 200: eventsResponseSchema, ...errors } } },
    async (request) => {
      const operation = await findOrThrow(db, request.params.id);
      return { events: (await listEvents(db, operation.id)).map(eventBody) };
    },
  );

  app.get<{ Querystring: { external_id?: string; state?: OperationStatus; type?: string; limit: number; cursor?: string } }>(
    '/v1/operations',
    { schema: { querystring: listQuerySchema, response: { 200: listResponseSchema, ...errors } } },
    async (request) => {
      const { external_id, state, type, limit, cursor } = request.query;
      const page = await listOperations(db, {
        externalId: external_id,
        state,
        type,
        limit,
        beforeSeq: cursor === undefined ? undefined : decodeCursor(cursor),
      });
      const last = page.operations.at(-1);
      return {
        operations: page.operations.map(operationBody),
        next_cursor: page.hasMore && last ? encodeCursor(last.seq) : null,
      };
    },
  );

  const commandRoute = (path: string, command: (at: string) => AddressedCommand['command']) =>
    app.post<{ Params: { id: string } }>(
      path,
      { schema: { params: idParamsSchema, response: { 202: operationSchema, ...errors } } },
      async (request, reply) => {
        const operation = await findOrThrow(db, request.params.id);
        const [result] = await applyCommands(db, [{ operationId: operation.id, command: command(now().toISOString()) }]);
        if (!result) throw new Error('command produced no result');
        if (!result.ok) throw result.error;
        if (result.operation.status === 'PENDING') await deps.dispatcher.dispatch([result.operation]).catch(() => {});
        return reply.code(202).header('location', operationLocation(operation.id)).send(operationBody(result.operation));
      },
    );
  commandRoute('/v1/operations/:id/cancel', (at) => ({ kind: 'cancel', now: at }));
  commandRoute('/v1/operations/:id/retry', (at) => ({ kind: 'redrive', now: at }));
}

function sendAcceptResult(reply: FastifyReply, result: AcceptResult) {
  if (result.outcome === 'conflict') {
    const error = conflict(result.operation);
    return sendError(reply, error.code, error.message, error.details);
  }
  reply.header('location', operationLocation(result.operation.id));
  if (result.outcome === 'replayed') return reply.code(200).header('idempotent-replayed', 'true').send(operationBody(result.operation));
  return reply.code(202).send(operationBody(result.operation));
}

function conflict(holder: StoredOperation): OpsdError {
  return new OpsdError(
    'OPSD_ERR_DUPLICATE_CONFLICT',
    `external_id "${holder.externalId}" is already used by an operation with a different type or payload`,
    { operation_id: holder.id, type: holder.type },
  );
}

function problem(error: OpsdError) {
  return { status: error.status, error: { code: error.code, message: error.message, ...(error.details !== undefined ? { details: error.details } : {}) } };
}

async function findOrThrow(db: Db, id: string): Promise<StoredOperation> {
  const operation = UUID.test(id) ? await getOperation(db, id) : null;
  if (!operation) throw new OpsdError('OPSD_ERR_NOT_FOUND', `no operation ${id}`);
  return operation;
}

function encodeCursor(seq: number): string {
  return Buffer.from(JSON.stringify({ s: seq })).toString('base64url');
}

function decodeCursor(cursor: string): number {
  try {
    const { s } = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as { s: unknown };
    if (typeof s === 'number' && Number.isSafeInteger(s) && s > 0) return s;
  } catch {
    // fall through to the published error
  }
  throw new OpsdError('OPSD_ERR_INVALID_CURSOR', 'cursor is not one opsd issued');
}
