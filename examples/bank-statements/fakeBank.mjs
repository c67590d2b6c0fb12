// A local stand-in for a bank's statement API, for the example and the tests: it serves statements,
// allows `limit` requests per client in any second (answering 429 with Retry-After beyond that),
// and fails on demand. Every call is logged with its arrival time and answer.
import { createServer } from 'node:http';
import { pathToFileURL } from 'node:url';

/**
 * Starts the bank on 127.0.0.1. `limit`: requests per client per second (default 5). Returns its
 * URL, the log of calls, and controls: `fail(on)` answers 500 to every call while on,
 * `throttleNext(seconds)` answers the next call 429 with that Retry-After.
 */
export async function startFakeBank({ port = 0, limit = 5 } = {}) {
  const calls = [];
  const recent = new Map();
  let failing = false;
  let throttle = null;
  const server = createServer((request, response) => {
    const at = Date.now();
    const client = request.headers['x-client-id'] ?? request.socket.remoteAddress ?? 'anonymous';
    const account = /^\/statements\/([\w-]{1,64})$/.exec(request.url ?? '')?.[1];
    const answer = (status, body, headers = {}) => {
      calls.push({ at, client, account: account ?? null, status });
      response.writeHead(status, { 'content-type': 'application/json', ...headers }).end(JSON.stringify(body));
    };
    if (request.method !== 'GET' || !account) return answer(404, { error: 'no such statement' });
    const window = (recent.get(client) ?? []).filter((t) => t > at - 1000);
    recent.set(client, window);
    if (throttle !== null) {
      const seconds = throttle;
      throttle = null;
      return answer(429, { error: 'slow down' }, { 'retry-after': String(seconds) });
    }
    if (window.length >= limit) return answer(429, { error: `at most ${limit} requests per second` }, { 'retry-after': '1' });
    window.push(at);
    if (failing) return answer(500, { error: 'the statement service is down' });
    const lines = Array.from({ length: 3 + (account.length % 5) }, (_, i) => ({ date: `2026-11-${String(i + 1).padStart(2, '0')}`, amount: (i + 1) * 1250, label: `transfer ${i + 1}` }));
    answer(200, { account, period: '2026-11', currency: 'EUR', lines });
  });
  await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    calls,
    fail(on) {
      failing = on;
    },
    throttleNext(seconds) {
      throttle = seconds;
    },
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

// `node fakeBank.mjs [port]` runs it on its own.
if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const bank = await startFakeBank({ port: Number(process.argv[2] ?? 4010) });
  console.log(`fake bank on ${bank.url}: 5 requests per second per client, then 429`);
}
