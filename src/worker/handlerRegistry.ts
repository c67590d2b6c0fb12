import { Ajv, type ValidateFunction } from 'ajv';
import { DEFAULT_BACKOFF, type BackoffPolicy } from '../domain/backoff.js';
import type { Json } from '../domain/operation.js';
import type { ResourceDefinition } from '../protect/resourcePolicy.js';
import type { DestinationSource } from '../store/claimOnDestinations.js';
import type { OperationDefinition } from './defineOperation.js';
import type { WebhookSourceDefinition } from '../webhooks/webhookSource.js';

/** A definition with every default filled in. */
export interface RegisteredOperation {
  definition: OperationDefinition;
  timeoutMs: number;
  maxAttempts: number;
  backoff: BackoffPolicy;
  validatePayload: ValidateFunction | null;
}

export const DEFAULT_TIMEOUT_MS = 30_000;
export const DEFAULT_MAX_ATTEMPTS = 5;

/** The operation types this process knows, by type, and the resources they go through. */
export class HandlerRegistry {
  readonly #byType = new Map<string, RegisteredOperation>();
  readonly #resources = new Map<string, ResourceDefinition>();
  readonly #webhookSources = new Map<string, WebhookSourceDefinition>();
  readonly #internal = new Set<string>();
  readonly #destinations = new Map<string, DestinationSource>();
  readonly #ajv = new Ajv({ allErrors: true, strict: false });

  register(definition: OperationDefinition<never, unknown>): this {
    const def = definition as unknown as OperationDefinition;
    if (this.#byType.has(def.type)) throw new Error(`operation type "${def.type}" is defined twice`);
    this.#byType.set(def.type, {
      definition: def,
      timeoutMs: def.timeoutMs ?? DEFAULT_TIMEOUT_MS,
      maxAttempts: def.maxAttempts ?? DEFAULT_MAX_ATTEMPTS,
      backoff: { ...DEFAULT_BACKOFF, ...def.backoff },
      validatePayload: def.payload ? this.#ajv.compile(def.payload) : null,
    });
    return this;
  }

  /** A type opsd itself queues (webhook deliveries): run like any other, never accepted from a client. */
  registerInternal(definition: OperationDefinition): this {
    this.register(definition as never);
    this.#internal.add(definition.type);
    return this;
  }

  isInternal(type: string): boolean {
    return this.#internal.has(type);
  }

  get(type: string): RegisteredOperation | undefined {
    return this.#byType.get(type);
  }

  registerWebhookSource(source: WebhookSourceDefinition): this {
    if (this.#webhookSources.has(source.name)) throw new Error(`webhook source "${source.name}" is defined twice`);
    if (!source.map && !this.#byType.has(source.type)) throw new Error(`webhook source "${source.name}" makes operations of type "${source.type}", which is not defined`);
    this.#webhookSources.set(source.name, source);
    return this;
  }

  webhookSource(name: string): WebhookSourceDefinition | undefined {
    return this.#webhookSources.get(name);
  }

  webhookSources(): string[] {
    return [...this.#webhookSources.keys()];
  }

  registerResource(resource: ResourceDefinition): this {
    if (this.#resources.has(resource.name)) throw new Error(`resource "${resource.name}" is defined twice`);
    this.#resources.set(resource.name, resource);
    return this;
  }

  /** How the worker learns the destination of each operation of a resource with per-destination limits. */
  registerDestinations(resource: string, source: DestinationSource): this {
    this.#destinations.set(resource, source);
    return this;
  }

  destinationsOf(resource: string): DestinationSource | undefined {
    return this.#destinations.get(resource);
  }

  resources(): ResourceDefinition[] {
    return [...this.#resources.values()];
  }

  resource(name: string): ResourceDefinition | undefined {
    return this.#resources.get(name);
  }

  /** The resource a type's attempts go through: the one its definition names, or one that lists it. */
  resourceOf(type: string): ResourceDefinition | null {
    const named = this.#byType.get(type)?.definition.resource;
    if (named !== undefined) return this.#resources.get(named) ?? null;
    for (const resource of this.#resources.values()) if (resource.types?.includes(type)) return resource;
    return null;
  }

  /** Fails naming every reference to a resource nobody defined, and every type claimed by two resources. */
  checkResources(): void {
    const problems: string[] = [];
    for (const [type, registered] of this.#byType) {
      const named = registered.definition.resource;
      if (named !== undefined && !this.#resources.has(named)) problems.push(`operation type "${type}" names resource "${named}", which is not defined`);
      const listing = [...this.#resources.values()].filter((r) => r.types?.includes(type)).map((r) => r.name);
      if (listing.length + (named !== undefined ? 1 : 0) > 1) problems.push(`operation type "${type}" is governed by more than one resource (${[named, ...listing].filter(Boolean).join(', ')})`);
    }
    for (const resource of this.#resources.values()) {
      for (const type of resource.types ?? []) if (!this.#byType.has(type)) problems.push(`resource "${resource.name}" lists type "${type}", which is not defined`);
    }
    if (problems.length > 0) throw new Error(`OPSD_HANDLERS: ${problems.join('; ')}`);
  }

  /** The backlog cap of a type, if it has one. */
  maxBacklog(type: string): number | undefined {
    return this.#byType.get(type)?.definition.maxBacklog;
  }

  /** Cluster-wide per-type caps the definitions declare. */
  typeConcurrency(): Record<string, number> {
    const limits: Record<string, number> = {};
    for (const [type, registered] of this.#byType) {
      if (registered.definition.concurrency !== undefined) limits[type] = registered.definition.concurrency;
    }
    return limits;
  }

  types(): string[] {
    return [...this.#byType.keys()];
  }

  /** Schema errors of a payload for its type, or null when it is valid. */
  payloadErrors(type: string, payload: Json): { path: string; message: string }[] | null {
    const validate = this.#byType.get(type)?.validatePayload;
    if (!validate || validate(payload)) return null;
    return (validate.errors ?? []).map((e) => ({ path: e.instancePath || '/', message: e.message ?? 'invalid' }));
  }
}
