import type { AttemptOutcome } from '../domain/commands.js';
import type { ResourceDefinition } from '../protect/resourcePolicy.js';
import type { AttemptReport } from '../protect/resourceRules.js';
import type { StoredOperation } from '../store/operationRow.js';
import type { GroupClaims } from './groupClaims.js';
import type { createResourceReports } from './resourceReports.js';
import type { AttemptEnd } from './runAttempt.js';

/**
 * What an outcome says about the upstream, for a resource's breaker: it answered (yes, or a business
 * no), it failed, or the attempt says nothing (given back at shutdown, or deferred at its request).
 */
const VERDICTS: Record<AttemptOutcome['kind'], AttemptReport['verdict']> = {
  complete: 'success',
  reject: 'success',
  fail: 'failure',
  release: 'neutral',
  defer: 'neutral',
};

/**
 * Tells a resource what an attempt's end says about its upstream: a pause it asked for (this worker
 * holds back at once, the others once the store has it), a failure for the breaker, or the answer of
 * the breaker's probe. Resolves once the store has it (see createResourceReports), and holds this
 * worker's claims back for the cool-down if the breaker opened.
 */
export async function reportAttemptEnd(
  groups: GroupClaims,
  reports: ReturnType<typeof createResourceReports>,
  resource: ResourceDefinition,
  operation: StoredOperation,
  end: AttemptEnd,
): Promise<void> {
  const verdict = end.kind === 'record' ? VERDICTS[end.outcome.kind] : 'neutral';
  const probe = groups.takeProbe(operation.id) !== null;
  const pauseUntil = end.kind === 'record' && end.pauseResourceUntil ? Date.parse(end.pauseResourceUntil) : undefined;
  if (pauseUntil !== undefined) groups.pauseLocally(resource.name, pauseUntil);
  const attempt = resource.breaker && (probe || verdict === 'failure') ? { operationId: operation.id, verdict } : undefined;
  if (!attempt && pauseUntil === undefined) return;
  const state = await reports.report(resource, { ...(attempt ? { attempt } : {}), ...(pauseUntil !== undefined ? { pauseUntil } : {}) });
  if (state && resource.breaker && state.breaker.phase === 'open' && state.breaker.since !== null) {
    groups.pauseLocally(resource.name, state.breaker.since + resource.breaker.cooldownMs);
  }
}
