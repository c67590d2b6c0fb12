import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { BACKENDS } from './support/backends.js';
import { uniqueId, waitFor } from './support/helpers.js';
import { http, startOpsd } from './support/opsdProcess.js';
import { redisPrefix } from './support/scaleout.js';
import { createServerDatabase } from './support/serverDatabase.js';

const TERMINAL_EVENTS = new Set(['completed', 'rejected', 'failed', 'cancelled']);

interface Op {
  id: string;
  state: string;
}

for (const backend of BACKENDS) {
  describe(`crash safety [${backend.name}]`, { skip: backend.skip }, () => {
    it('SIGKILL while handlers run: after a restart every accepted operation ends once', async () => {
      const dataDir = mkdtempSync(join(tmpdir(), 'opsd-crash-'));
      const server = backend.name === 'postgres' ? await createServerDatabase(process.env.DATABASE_URL as string) : null;
      const env = {
        DATABASE_URL: server?.url ?? '',
        // Through the queue where REDIS_URL names one, under a prefix of the test's own: never the
        // default one, where a user's deployment keeps its queues. Embedded: no server at all.
        ...(server && process.env.REDIS_URL ? { REDIS_URL: process.env.REDIS_URL, OPSD_REDIS_PREFIX: redisPrefix() } : { REDIS_URL: '' }),
        OPSD_DATA_DIR: dataDir,
        OPSD_LEASE_MS: '1000',
        OPSD_CONCURRENCY: '8',
      };
      try {
        const first = await startOpsd(env);
        const accepted: string[] = [];
        const keys = Array.from({ length: 6 }, () => uniqueId('key'));
        for (let i = 0; i < 60; i += 1) {
          const response = await http<Op>(`${first.url}/v1/operations`, {
            method: 'POST',
            body: { type: 'demo.sleep', external_id: uniqueId('crash'), payload: { ms: 150 }, ordering_key: keys[i % keys.length] },
          });
          assert.equal(response.status, 202);
          accepted.push(response.body.id);
        }
        await waitFor('some operations completed and some running', async () => {
          const running = await http<{ operations: Op[] }>(`${first.url}/v1/operations?state=PROCESSING&limit=1`);
          const done = await http<{ operations: Op[] }>(`${first.url}/v1/operations?state=COMPLETED&limit=1`);
          return running.body.operations.length > 0 && done.body.operations.length > 0;
        });
        first.child.kill('SIGKILL');
        assert.equal((await first.exited).signal, 'SIGKILL');

        const second = await startOpsd(env);
        try {
          for (const id of accepted) {
            await waitFor(`operation ${id} terminal after restart`, async () => {
              const { body } = await http<Op>(`${second.url}/v1/operations/${id}`);
              return body.state === 'COMPLETED';
            }, { timeoutMs: 60_000 });
          }
          let rescued = 0;
          for (const id of accepted) {
            const { body } = await http<{ events: { type: string }[] }>(`${second.url}/v1/operations/${id}/events`);
            const types = body.events.map((e) => e.type);
            assert.equal(types.filter((t) => TERMINAL_EVENTS.has(t)).length, 1, `operation ${id}: ${types.join(',')}`);
            assert.equal(types.at(-1), 'completed');
            if (types.includes('lease_expired')) rescued += 1;
          }
          assert.ok(rescued > 0, 'at least one operation was running at the kill and was rescued');
        } finally {
          second.child.kill('SIGTERM');
          const exit = await second.exited;
          assert.equal(exit.code, 0, `graceful shutdown exits 0:\n${second.output().slice(-2000)}`);
        }
      } finally {
        rmSync(dataDir, { recursive: true, force: true });
        await server?.drop();
      }
    });
  });
}
