import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { toolsSkip } from './backends.js';
import { freePort, waitFor } from './helpers.js';

/** Why a private redis-server cannot be started here, or false. */
export function privateRedisSkip(): string | false {
  return toolsSkip(['redis-server'], 'the tests that empty, stop or restart a private Redis');
}

/**
 * A redis-server of the test's own on a free port of 127.0.0.1, keeping nothing on disk: the
 * only Redis a test may empty of its keys, stop or restart. Never the server REDIS_URL names.
 */
export async function startPrivateRedis() {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'opsd-redis-'));
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir];
  let server = spawn('redis-server', args, { stdio: 'ignore' });
  const url = `redis://127.0.0.1:${port}`;
  // Ours, not whatever else may have taken the port meanwhile: only the server started here runs
  // in `dir`, with the process id of the child spawned here.
  const isOurs = async (client: Redis) => {
    const [, runsIn] = (await client.config('GET', 'dir')) as [string, string];
    const processId = /^process_id:(\d+)/m.exec(await client.info('server'))?.[1];
    return runsIn === dir && Number(processId) === server.pid;
  };
  const ping = async () => {
    const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    client.on('error', () => {});
    try {
      await client.connect();
      return (await client.ping()) === 'PONG' && (await isOurs(client));
    } catch {
      return false;
    } finally {
      client.disconnect();
    }
  };
  await waitFor('the private redis-server to answer', ping);
  const stop = async () => {
    if (server.exitCode !== null || server.signalCode !== null) return;
    const exited = new Promise((resolve) => server.once('exit', resolve));
    server.kill('SIGKILL');
    await exited;
  };
  return {
    url,
    /**
     * Deletes every key under `prefix` (what a deployment with `OPSD_REDIS_PREFIX=prefix` keeps),
     * after checking this is the server started here: as if that Redis had lost its data. Returns
     * how many keys it deleted.
     */
    async flushOwnKeys(prefix: string): Promise<number> {
      const client = new Redis(url, { maxRetriesPerRequest: 1 });
      try {
        if (!(await isOurs(client))) throw new Error(`refusing to delete keys on ${url}: it is not the redis-server this test started`);
        const pattern = `${prefix.replace(/[*?[\]\\]/g, '\\$&')}:*`;
        let deleted = 0;
        let cursor = '0';
        do {
          const [next, keys] = await client.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
          if (keys.length > 0) deleted += await client.unlink(...keys);
          cursor = next;
        } while (cursor !== '0');
        return deleted;
      } finally {
        client.disconnect();
      }
    },
    stop,
    async restart() {
      await stop();
      server = spawn('redis-server', args, { stdio: 'ignore' });
      await waitFor('the private redis-server to answer again', ping);
    },
    async close() {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
