export { defineOperation, type OperationContext, type OperationDefinition } from './worker/defineOperation.js';
export { RejectError, RetryError } from './worker/handlerErrors.js';
export type { Json, OperationStatus, OperationState, OperationProblem } from './domain/operation.js';
export type { OperationEvent } from './domain/events.js';
export { ERROR_CATALOG, OpsdError, type ErrorCode } from './domain/errors.js';
export { decide } from './domain/decide.js';
export { evolve, foldEvents } from './domain/evolve.js';
export { startService, type RunningService } from './service.js';
export { resolveConfig, type Config } from './config.js';
