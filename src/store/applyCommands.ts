import type { OperationCommand } from '../domain/commands.js';
import { decide } from '../domain/decide.js';
import { OpsdError } from '../domain/errors.js';
import type { Db } from './db.js';
import { rowToOperation, type OperationRow, type StoredOperation } from './operationRow.js';
import { saveTransitions, stateAfter, type Transition } from './saveTransitions.js';

/** A command addressed to one existing operation. */
export interface AddressedCommand {
  operationId: string;
  command: Exclude<OperationCommand, { kind: 'accept' }>;
}

/** Per command: the new state, or the published reason it was refused (nothing written for it). */
export type CommandResult = { ok: true; operation: StoredOperation } | { ok: false; error: OpsdError };

/**
 * Applies a batch of commands in one short transaction: lock the rows (in id order, so two batches
 * never deadlock), decide each command on the locked state, write all events and projection rows.
 * A refused command fails alone; the others still apply. Commands for one operation apply in order.
 */
export async function applyCommands(db: Db, commands: readonly AddressedCommand[]): Promise<CommandResult[]> {
  if (commands.length === 0) return [];
  const ids = [...new Set(commands.map((c) => c.operationId))];
  return db.transaction(async (tx) => {
    const { rows } = await tx.query<OperationRow>(
      `SELECT * FROM operations WHERE id = ANY($1::uuid[])
       ORDER BY id FOR UPDATE`,
      [ids],
    );
    const current = new Map(rows.map((row) => [row.id, rowToOperation(row)]));
    const original = new Map(current);
    const eventsById = new Map<string, Transition<StoredOperation>['events']>();

    const results: CommandResult[] = commands.map(({ operationId, command }) => {
      const state = current.get(operationId);
      if (!state) return { ok: false, error: new OpsdError('OPSD_ERR_NOT_FOUND') };
      try {
        const events = decide(command, state);
        const pending = eventsById.get(operationId) ?? [];
        pending.push(...events);
        eventsById.set(operationId, pending);
        const next = stateAfter({ before: state, events });
        current.set(operationId, next);
        return { ok: true, operation: next };
      } catch (error) {
        if (error instanceof OpsdError) return { ok: false, error };
        throw error;
      }
    });

    const transitions = [...eventsById].map(([id, events]) => ({ before: original.get(id) as StoredOperation, events }));
    await saveTransitions(tx, transitions);
    return results;
  });
}
