// The operation the chaos run submits: sleeps a little and writes when each attempt starts and ends
// to a file that every process appends to, so the run can check real overlap of handlers on a key
// (not only what the event log says) after the fact.
import { appendFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { defineOperation } from '../../dist/index.js';

const log = process.env.CHAOS_RUN_LOG;

function note(entry) {
  if (log) appendFileSync(log, `${JSON.stringify({ ...entry, pid: process.pid, at: Date.now() })}\n`);
}

export default [
  defineOperation({
    type: 'chaos.step',
    timeoutMs: 10_000,
    async handle({ operation, payload }) {
      note({ id: operation.id, key: operation.orderingKey, attempt: operation.attempt, phase: 'start' });
      await sleep(payload.ms);
      note({ id: operation.id, key: operation.orderingKey, attempt: operation.attempt, phase: 'end' });
      return { pid: process.pid };
    },
  }),
];
