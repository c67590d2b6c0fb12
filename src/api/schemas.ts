import { OPERATION_STATUSES, PRIORITY_RANGE } from '../domain/operation.js';

const nullableString = { type: ['string', 'null'] } as const;

export const errorSchema = {
  type: 'object',
  required: ['error'],
  properties: {
    error: {
      type: 'object',
      required: ['code', 'message'],
      properties: { code: { type: 'string' }, message: { type: 'string' }, details: {} },
    },
  },
} as const;

const problemSchema = {
  type: ['object', 'null'],
  properties: { code: { type: 'string' }, message: { type: 'string' }, details: {} },
} as const;

export const operationSchema = {
  type: 'object',
  required: ['id', 'external_id', 'type', 'state', 'attempts', 'created_at', 'updated_at'],
  properties: {
    id: { type: 'string' },
    external_id: { type: 'string' },
    type: { type: 'string' },
    state: { type: 'string', enum: OPERATION_STATUSES },
    ordering_key: { type: 'string' },
    priority: { type: 'integer' },
    attempts: { type: 'integer' },
    max_attempts: { type: 'integer' },
    payload: {},
    result: {},
    error: problemSchema,
    run_at: { type: 'string' },
    created_at: { type: 'string' },
    updated_at: { type: 'string' },
    progress: {
      type: ['object', 'null'],
      description: 'The latest progress the handler reported (reads only): not an event, only the latest is kept.',
      properties: { value: {}, at: { type: 'string' }, attempt: { type: 'integer' } },
    },
  },
} as const;

/** What a client submits; validated without type coercion, so `"5"` is not a number. */
export const newOperationSchema = {
  type: 'object',
  required: ['type', 'external_id', 'payload'],
  additionalProperties: false,
  properties: {
    type: { type: 'string', minLength: 1, maxLength: 128 },
    external_id: { type: 'string', minLength: 1, maxLength: 256 },
    payload: {},
    ordering_key: { type: 'string', minLength: 1, maxLength: 256 },
    max_attempts: { type: 'integer', minimum: 1, maximum: 100 },
    run_at: { type: 'string', minLength: 1, maxLength: 64 },
    /** Higher is claimed first, never ahead of an earlier operation on its key. */
    priority: { type: 'integer', minimum: PRIORITY_RANGE.min, maximum: PRIORITY_RANGE.max },
  },
} as const;

export const MAX_BATCH = 1000;

export const batchSchema = {
  type: 'object',
  required: ['operations'],
  additionalProperties: false,
  // Items are checked one by one in the handler so that a bad item fails alone.
  properties: { operations: { type: 'array', minItems: 1, maxItems: MAX_BATCH, items: {} } },
} as const;

export const batchResponseSchema = {
  type: 'object',
  required: ['results'],
  properties: {
    results: {
      type: 'array',
      items: {
        type: 'object',
        required: ['status'],
        properties: { status: { type: 'integer' }, replayed: { type: 'boolean' }, operation: operationSchema, error: errorSchema.properties.error },
      },
    },
  },
} as const;

export const idParamsSchema = {
  type: 'object',
  required: ['id'],
  properties: { id: { type: 'string', maxLength: 64 } },
} as const;

export const listQuerySchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    external_id: { type: 'string', maxLength: 256 },
    state: { type: 'string', enum: OPERATION_STATUSES },
    type: { type: 'string', maxLength: 128 },
    limit: { type: 'integer', minimum: 1, maximum: 500, default: 50 },
    cursor: { type: 'string', maxLength: 128 },
  },
} as const;

export const listResponseSchema = {
  type: 'object',
  required: ['operations', 'next_cursor'],
  properties: { operations: { type: 'array', items: operationSchema }, next_cursor: nullableString },
} as const;

export const eventsResponseSchema = {
  type: 'object',
  required: ['events'],
  properties: {
    events: {
      type: 'array',
      items: {
        type: 'object',
        required: ['seq', 'type', 'at'],
        properties: { seq: { type: 'integer' }, type: { type: 'string' }, at: { type: 'string' }, data: {} },
      },
    },
  },
} as const;
