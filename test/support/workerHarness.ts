import type { Db } from '../../src/store/db.js';
import { acceptOperations, type NewOperation } from '../../src/store/acceptOperations.js';
import { getOperation, listEvents } from '../../src/store/readOperations.js';
import type { StoredOperation } from '../../src/store/operationRow.js';
import { defineOperation, type OperationDefinition } from '../../src/worker/defineOperation.js';
import { HandlerRegistry } from '../../src/worker/handlerRegistry.js';
import { Worker, type WorkerOptions } from '../../src/worker/worker.js';
import { testLogger, uniqueId, waitFor } from './helpers.js';

/** An operation to accept; type defaults to the worker's first type, max attempts to 3. */
type Submission = Omit<NewOperation, 'maxAttempts' | 'type'> & { type?: string | undefined; maxAttempts?: number };

const TERMINAL = new Set(['COMPLETED', 'REJECTED', 'FAILED', 'CANCELLED']);

/**
 * A worker that only knows the types given here (renamed to be unique), so suites sharing one
 * database never run each other's operations.
 */
export function startWorker(
  db: Db,
  definitions: OperationDefinition<never, unknown>[],
  options: Partial<WorkerOptions> | ((types: string[]) => Partial<WorkerOptions>) = {},
) {
  const registry = new HandlerRegistry();
  const types: string[] = [];
  for (const definition of definitions) {
    const type = `${definition.type}-${uniqueId('x')}`;
    registry.register(defineOperation({ ...(definition as OperationDefinition), type }) as never);
    types.push(type);
  }
  const worker = new Worker({ db, registry, logger: testLogger(), pollIntervalMs: 50, ...(typeof options === 'function' ? options(types) : options) });
  worker.start();

  return {
    worker,
    types,
    async submit(items: Submission | Submission[]): Promise<StoredOperation[]> {
      const list = Array.isArray(items) ? items : [items];
      const results = await acceptOperations(
        db,
        list.map((item) => ({ maxAttempts: 3, ...item, type: item.type ?? (types[0] as string) })),
        new Date(),
      );
      worker.notify();
      return results.map((r) => r.operation);
    },
    async settled(id: string, timeoutMs = 20_000): Promise<StoredOperation> {
      return waitFor(`operation ${id} to reach a terminal state`, async () => {
        const op = await getOperation(db, id);
        return op && TERMINAL.has(op.status) ? op : null;
      }, { timeoutMs });
    },
    async eventTypes(id: string): Promise<string[]> {
      return (await listEvents(db, id)).map((e) => e.event.type);
    },
  };
}
