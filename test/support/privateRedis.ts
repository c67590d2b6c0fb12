import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { toolsSkip } from './backends.js';
import { waitFor } from './helpers.js';

/** Why a private redis-server cannot be started here, or false. */
export function privateRedisSkip(): string | false {
  return toolsSkip(['redis-server'], 'the tests that flush a private Redis');
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/**
 * A redis-server of the test's own on a free port of 127.0.0.1, keeping nothing on disk: the
 * only Redis a test may flush, stop or restart. Never the server REDIS_URL names.
 */
export async function startPrivateRedis() {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'opsd-redis-'));
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir];
  let server = spawn('redis-server', args, { stdio: 'ignore' });
  const url = `redis://127.0.0.1:${port}`;
  // Ours, not whatever else may have taken the port meanwhile: only the server started here runs in `dir`.
  const isOurs = async (client: Redis) => {
    const [, runsIn] = (await client.config('GET', 'dir')) as [string, string];
    return runsIn === dir;
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
    /** Empties this server, after checking it is the one started here; never any other Redis. */
    async flushOwnServer() {
      const client = new Redis(url, { maxRetriesPerRequest: 1 });
      try {
        if (!(await isOurs(client))) throw new Error(`refusing to flush ${url}: it is not the redis-server this test started`);
        await client.flushall();
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
