import { Ajv, type ValidateFunction } from 'ajv';
import { DEFAULT_BACKOFF, type BackoffPolicy } from '../domain/backoff.js';
import type { Json } from '../domain/operation.js';
import type { OperationDefinition } from './defineOperation.js';

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

/** The operation types this process knows, by type. */
export class HandlerRegistry {
  readonly #byType = new Map<string, RegisteredOperation>();
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

  get(type: string): RegisteredOperation | undefined {
    return this.#byType.get(type);
  }

  /** Per-type limits the definitions declare. */
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
