import type { Json, OperationProblem } from './operation.js';

interface CommandBase {
  /** The instant the command is decided at (injected, never read from a clock here). */
  now: string;
}

export interface AcceptOperation extends CommandBase {
  kind: 'accept';
  operationId: string;
  externalId: string;
  operationType: string;
  payload: Json;
  payloadHash: string;
  orderingKey: string;
  maxAttempts: number;
  runAt: string;
  priority: number;
  /** The webhook delivery the operation came from, kept with its `received` event. */
  delivery?: Json;
}

export interface StartAttempt extends CommandBase {
  kind: 'start';
  leaseOwner: string;
  leaseExpiresAt: string;
}

/** Outcome commands carry the fencing token the worker was given when it claimed. */
interface FencedCommand extends CommandBase {
  fencingToken: number;
}

export interface CompleteOperation extends FencedCommand {
  kind: 'complete';
  result: Json;
}

export interface RejectOperation extends FencedCommand {
  kind: 'reject';
  reason: OperationProblem;
}

export interface FailAttempt extends FencedCommand {
  kind: 'fail';
  error: OperationProblem;
  /** When to try again if attempts remain. */
  retryAt: string;
}

export interface ReleaseAttempt extends FencedCommand {
  kind: 'release';
}

/** The upstream asked to wait: back to PENDING until `retryAt`, the attempt not counted. */
export interface DeferAttempt extends FencedCommand {
  kind: 'defer';
  reason: OperationProblem;
  retryAt: string;
}

export interface ExpireLease extends CommandBase {
  kind: 'expire_lease';
  retryAt: string;
  /** The lease holder is known to be gone (its liveness lock is released): rescue before the lease runs out. */
  ownerGone?: boolean;
}

export interface CancelOperation extends CommandBase {
  kind: 'cancel';
}

export interface RedriveOperation extends CommandBase {
  kind: 'redrive';
}

export type OperationCommand =
  | AcceptOperation
  | StartAttempt
  | CompleteOperation
  | RejectOperation
  | FailAttempt
  | ReleaseAttempt
  | DeferAttempt
  | ExpireLease
  | CancelOperation
  | RedriveOperation;

/** Commands a worker sends about an attempt it holds. */
export type AttemptOutcome = CompleteOperation | RejectOperation | FailAttempt | ReleaseAttempt | DeferAttempt;
