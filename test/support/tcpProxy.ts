import { createServer, connect, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';

/**
 * A TCP proxy on 127.0.0.1 in front of a real server, for forcing network faults on one client
 * while every other client keeps its direct connection:
 * - `cut()`: every open connection is closed, and new ones are accepted and closed at once
 *   (each such refusal is counted, so a test can wait for a client to have tried N times);
 * - `freeze()`: connections stay open but nothing is forwarded either way (a partition);
 * - `terminateAtStartup()`: new PostgreSQL connections are ended by the server right as they
 *   become ready: a FATAL `57P01` (what `pg_terminate_backend` sends) arrives in the same chunk as
 *   the ReadyForQuery that completes the connect, so the client sees both in one read;
 * - `restore()`: back to forwarding.
 */
export async function startTcpProxy(target: { host: string; port: number }) {
  let mode: 'forward' | 'cut' | 'freeze' | 'terminate-at-startup' = 'forward';
  let refused = 0;
  const pairs = new Set<[Socket, Socket]>();
  const server: Server = createServer((client) => {
    if (mode === 'cut') {
      refused += 1;
      client.destroy();
      return;
    }
    const upstream = connect(target.port, target.host);
    const pair: [Socket, Socket] = [client, upstream];
    pairs.add(pair);
    const forward = (from: Socket, to: Socket) =>
      from.on('data', (chunk) => {
        if (mode === 'forward' || mode === 'terminate-at-startup') to.write(chunk);
      });
    forward(client, upstream);
    if (mode === 'terminate-at-startup') terminateAtStartup(upstream, client);
    else forward(upstream, client);
    const close = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', close).on('close', close);
    upstream.on('error', close).on('close', close);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    get refused() {
      return refused;
    },
    cut() {
      mode = 'cut';
      for (const [a, b] of pairs) {
        a.destroy();
        b.destroy();
      }
      pairs.clear();
    },
    freeze() {
      mode = 'freeze';
    },
    terminateAtStartup() {
      mode = 'terminate-at-startup';
    },
    restore() {
      mode = 'forward';
    },
    async close() {
      this.cut();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** `url` with its host and port replaced by the proxy's. */
export function throughProxy(url: string, port: number): string {
  const parsed = new URL(url);
  parsed.hostname = '127.0.0.1';
  parsed.port = String(port);
  return parsed.toString();
}

/** ErrorResponse: severity FATAL, code 57P01, the message `pg_terminate_backend` produces. */
const TERMINATED = (() => {
  const fields = Buffer.from('SFATAL\0VFATAL\0C57P01\0Mterminating connection due to administrator command\0\0', 'utf8');
  const header = Buffer.alloc(5);
  header.write('E', 0);
  header.writeInt32BE(fields.length + 4, 1);
  return Buffer.concat([header, fields]);
})();

/**
 * Forwards the server's startup replies up to the first ReadyForQuery, then sends the FATAL in the
 * same write and closes both sides.
 */
function terminateAtStartup(server: Socket, client: Socket): void {
  let pending = Buffer.alloc(0);
  server.on('data', (chunk: Buffer) => {
    pending = Buffer.concat([pending, chunk]);
    let offset = 0;
    while (offset + 5 <= pending.length) {
      const type = String.fromCharCode(pending[offset] as number);
      const length = pending.readInt32BE(offset + 1);
      if (offset + 1 + length > pending.length) break;
      offset += 1 + length;
      if (type === 'Z') {
        client.write(Buffer.concat([pending.subarray(0, offset), TERMINATED]));
        setImmediate(() => {
          client.destroy();
          server.destroy();
        });
        return;
      }
    }
  });
}
