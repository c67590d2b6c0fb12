import type { FastifyInstance } from 'fastify';
import { OpsdError } from '../domain/errors.js';
import { OPERATION_STATUSES } from '../domain/operation.js';
import type { Dispatcher } from '../dispatch/dispatcher.js';
import { cached } from '../lib/cached.js';
import { destinationOfStateName, destinationResource } from '../protect/destinations.js';
import type { ResourceDefinition } from '../protect/resourcePolicy.js';
import { describeState, INITIAL_RESOURCE_STATE, withOperatorPause, type ResourceState } from '../protect/resourceRules.js';
import { countPending } from '../store/countPending.js';
import type { Db } from '../store/db.js';
import { findClaimableHeads } from '../store/findClaimableHeads.js';
import { countInFlight, readResourceStates, updateResourceState } from '../store/resourceState.js';
import { pausedTypes, setTypePaused } from '../store/typeControls.js';
import { COUNT_KINDS, readTypeCounts, type Counts } from '../store/typeCounts.js';
import { countByTypeAndState, oldestPendingByType } from '../store/typeStats.js';
import type { HandlerRegistry } from '../worker/handlerRegistry.js';
import { errorSchema } from './schemas.js';

/** How long the whole-table counts of the stats view are reused. */
const STATS_CACHE_MS = 5000;

const errors = { '4xx': errorSchema, '5xx': errorSchema };
const typeParams = { type: 'object', required: ['type'], properties: { type: { type: 'string', minLength: 1, maxLength: 128 } } } as const;
const nameParams = { type: 'object', required: ['name'], properties: { name: { type: 'string', minLength: 1, maxLength: 128 } } } as const;
const typeState = { type: 'object', required: ['type', 'paused'], properties: { type: { type: 'string' }, paused: { type: 'boolean' } } } as const;
const resourceState = { type: 'object', required: ['resource', 'paused'], properties: { resource: { type: 'string' }, paused: { type: 'boolean' } } } as const;
const countsSchema = { type: 'object', properties: Object.fromEntries(COUNT_KINDS.map((k) => [k, { type: 'integer' }])) } as const;

/** Each destination a resource with per-destination limits has kept a state for, the most recently started first. */
function describeDestinations(resource: ResourceDefinition, states: ReadonlyMap<string, ResourceState>, now: number) {
  return [...states]
    .flatMap(([name, state]) => {
      const destination = destinationOfStateName(resource.name, name);
      return destination === null ? [] : [{ destination, last_start: state.starts.at(-1) ?? 0, ...describeState(destinationResource(resource, destination), state, now) }];
    })
    .sort((a, b) => b.last_start - a.last_start || a.destination.localeCompare(b.destination))
    .map(({ last_start: _lastStart, ...view }) => view);
}

/**
 * Operator routes: pause and resume a type or a resource (kept in the store, so every process and
 * every restart sees it; submissions are still accepted while paused), and what protection is doing.
 */
export function registerAdminRoutes(app: FastifyInstance, deps: { db: Db; registry: HandlerRegistry; dispatcher: Dispatcher; now: () => Date }): void {
  const { db, registry } = deps;
  const knownType = (type: string) => {
    if (!registry.get(type)) throw new OpsdError('OPSD_ERR_UNKNOWN_TYPE', `no handler is registered for type "${type}"`, { type, known_types: registry.types() });
    return type;
  };
  const knownResource = (name: string): ResourceDefinition => {
    const resource = registry.resource(name);
    if (!resource) throw new OpsdError('OPSD_ERR_UNKNOWN_RESOURCE', `no resource "${name}" is defined`, { resource: name, known_resources: registry.resources().map((r) => r.name) });
    return resource;
  };
  const typesOf = (resource: ResourceDefinition) => registry.types().filter((t) => registry.resourceOf(t)?.name === resource.name);
  /**
   * Wakes workers for what may run again: the first 1,000 due heads of the types let go (a worker
   * that takes them claims again while it finds work; the rest wait for a poll at most).
   */
  const wake = async (types: readonly string[]) => {
    const heads = await findClaimableHeads(db, { dueBy: deps.now(), types, limit: 1000 });
    await deps.dispatcher.dispatch(heads).catch(() => {});
  };

  for (const paused of [true, false]) {
    app.post<{ Params: { type: string } }>(
      `/v1/admin/types/:type/${paused ? 'pause' : 'resume'}`,
      { schema: { params: typeParams, response: { 200: typeState, ...errors } } },
      async (request) => {
        const type = knownType(request.params.type);
        await setTypePaused(db, type, paused);
        request.log.warn({ type }, paused ? 'type paused by an operator' : 'type resumed by an operator');
        if (!paused) await wake([type]);
        return { type, paused };
      },
    );
    app.post<{ Params: { name: string } }>(
      `/v1/admin/resources/:name/${paused ? 'pause' : 'resume'}`,
      { schema: { params: nameParams, response: { 200: resourceState, ...errors } } },
      async (request) => {
        const resource = knownResource(request.params.name);
        await updateResourceState(db, resource.name, (state) => withOperatorPause(state, paused));
        request.log.warn({ resource: resource.name }, paused ? 'resource paused by an operator' : 'resource resumed by an operator');
        if (!paused) await wake(typesOf(resource));
        return { resource: resource.name, paused };
      },
    );
  }

  app.get('/v1/admin/resources', { schema: { response: { 200: { type: 'object', required: ['resources'], properties: { resources: { type: 'array', items: { type: 'object', additionalProperties: true } } } }, ...errors } } }, async () => {
    const resources = registry.resources();
    const allTypes = resources.flatMap(typesOf);
    const [states, inFlight, pending] = await Promise.all([readResourceStates(db), countInFlight(db, allTypes), countPending(db, allTypes)]);
    const now = deps.now().getTime();
    const sum = (counts: Map<string, number>, types: string[]) => types.reduce((total, t) => total + (counts.get(t) ?? 0), 0);
    return {
      resources: resources.map((resource) => {
        const types = typesOf(resource);
        return {
          name: resource.name,
          types,
          in_flight: sum(inFlight, types),
          waiting: sum(pending, types),
          ...describeState(resource, states.get(resource.name) ?? INITIAL_RESOURCE_STATE, now),
          ...(resource.perDestination ? { destinations: describeDestinations(resource, states, now) } : {}),
        };
      }),
    };
  });

  const tableCounts = cached(() => Promise.all([countByTypeAndState(db), oldestPendingByType(db)]), STATS_CACHE_MS);
  app.get(
    '/v1/admin/stats',
    {
      schema: {
        response: {
          200: {
            type: 'object',
            required: ['types', 'generated_at'],
            properties: {
              generated_at: { type: 'string' },
              types: {
                type: 'array',
                items: {
                  type: 'object',
                  required: ['type', 'paused', 'counts', 'last_1m', 'last_5m', 'oldest_pending_age_ms'],
                  properties: {
                    type: { type: 'string' },
                    resource: { type: ['string', 'null'] },
                    paused: { type: 'boolean' },
                    counts: { type: 'object', properties: Object.fromEntries(OPERATION_STATUSES.map((s) => [s, { type: 'integer' }])) },
                    last_1m: countsSchema,
                    last_5m: countsSchema,
                    oldest_pending_age_ms: { type: ['integer', 'null'] },
                  },
                },
              },
            },
          },
          ...errors,
        },
      },
    },
    async () => {
      const now = deps.now().getTime();
      const [[byState, oldest], recent, paused] = await Promise.all([tableCounts(), readTypeCounts(db, now - 5 * 60_000), pausedTypes(db)]);
      const types = [...new Set([...registry.types(), ...byState.keys()])].sort();
      const window = (type: string, ms: number): Counts => {
        const totals: Counts = { completed: 0, rejected: 0, failed: 0, retried: 0, deferred: 0 };
        for (const { bucket, counts } of recent.get(type) ?? []) {
          if (bucket < now - ms) continue;
          for (const kind of COUNT_KINDS) totals[kind] += counts[kind];
        }
        return totals;
      };
      return {
        generated_at: new Date(now).toISOString(),
        types: types.map((type) => {
          const counts = Object.fromEntries(OPERATION_STATUSES.map((s) => [s, byState.get(type)?.[s] ?? 0]));
          const oldestAt = oldest.get(type);
          return {
            type,
            resource: registry.resourceOf(type)?.name ?? null,
            paused: paused.has(type),
            counts,
            last_1m: window(type, 60_000),
            last_5m: window(type, 5 * 60_000),
            oldest_pending_age_ms: oldestAt ? Math.max(0, now - oldestAt.getTime()) : null,
          };
        }),
      };
    },
  );
}
