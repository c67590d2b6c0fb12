import type { Ajv } from 'ajv';
import type { FastifyInstance, FastifyReply } from 'fastify';
import type { Logger } from 'pino';
import { OpsdError } from '../domain/errors.js';
import type { OperationStatus } from '../domain/operation.js';
import type { Dispatcher } from '../dispatch/dispatcher.js';
import { applyCommands, type AddressedCommand } from '../store/applyCommands.js';
import type { Db } from '../store/db.js';
import type { StoredOperation } from '../store/operationRow.js';
import { getOperation, listEvents, listOperations } from '../store/readOperations.js';
import type { HandlerRegistry } from '../worker/handlerRegistry.js';
import type { BacklogGauge } from '../protect/backlogGauge.js';
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
import type { SubmittedOperation } from './submission.js';
import { createSubmissions, type SubmissionReply } from './submissions.js';
import { registerWebhookRoutes } from './webhookRoutes.js';
import { createWebhookReceiver } from '../webhooks/receiveWebhook.js';
import { isUuid } from '../domain/uuid.js';

interface RouteDeps {
  db: Db;
  registry: HandlerRegistry;
  dispatcher: Dispatcher;
  logger: Logger;
  now: () => Date;
  acceptTimeoutMs?: number | undefined;
  backlog?: BacklogGauge | undefined;
  onShed?: () => void;
  onOutcome?: (type: string, outcome: 'accepted' | 'replayed' | 'conflict' | 'mismatch' | 'shed') => void;
  validators: { strict: Ajv };
  /** Batch items the body parser refused, by index. */
  batchItemProblems(request: object): Map<number, OpsdError>;
}

export const BATCH_ROUTE = '/v1/operations/batch';

const errors = { '4xx': errorSchema, '5xx': errorSchema };

export function registerOperationRoutes(app: FastifyInstance, deps: RouteDeps): void {
  const { db, now } = deps;
  const submissions = createSubmissions({ ...deps, validateItem: deps.validators.strict.compile(newOperationSchema) });
  registerWebhookRoutes(app, createWebhookReceiver({ db, registry: deps.registry, submissions, now }));
  const send = (reply: FastifyReply, { status, headers, body }: SubmissionReply) => reply.code(status).headers(headers).send(body);

  app.post<{ Body: SubmittedOperation }>(
    '/v1/operations',
    { schema: { body: newOperationSchema, response: { 200: operationSchema, 202: operationSchema, ...errors } } },
    async (request, reply) => send(reply, await submissions.submitOne(request.body)),
  );

  app.post<{ Body: { operations: unknown[] } }>(
    BATCH_ROUTE,
    { schema: { body: batchSchema, response: { 200: batchResponseSchema, ...errors } } },
    async (request) => submissions.submitBatch(request.body.operations, deps.batchItemProblems(request)),
  );

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

async function findOrThrow(db: Db, id: string): Promise<StoredOperation> {
  const operation = isUuid(id) ? await getOperation(db, id) : null;
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
