// The code-review walk-through: a recorded GitHub pull_request delivery, signed as GitHub signs it,
// becomes a review operation ordered per pull request; its outcome reaches a local receiver as a
// status webhook signed per Standard Webhooks. `node examples/code-review/run.mjs` (after `npm install`).
import { createHmac, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { fileURLToPath } from 'node:url';
import { Webhook } from 'standardwebhooks';
import { startOpsd } from '../startOpsd.mjs';

const here = (path) => fileURLToPath(new URL(path, import.meta.url));
const SECRET = 'dev-secret';

// The team's receiver of status webhooks: verifies each delivery, keeps each webhook-id once.
let signingSecret = '';
const received = new Map();
const receiver = createServer((request, response) => {
  let body = '';
  request.on('data', (chunk) => (body += chunk));
  request.on('end', () => {
    try {
      const event = new Webhook(signingSecret).verify(body, request.headers);
      if (!received.has(request.headers['webhook-id'])) received.set(request.headers['webhook-id'], event);
      response.writeHead(204).end();
    } catch (error) {
      console.error(`receiver refused a delivery: ${error.message}`);
      response.writeHead(400).end();
    }
  });
});
await new Promise((resolve) => receiver.listen(0, '127.0.0.1', resolve));
const receiverUrl = `http://127.0.0.1:${receiver.address().port}/opsd-events`;

// OPSD_HTTP_ALLOW: the receiver is on loopback, which deliveries may not reach unless allowed.
const { url, stop } = await startOpsd({ OPSD_HANDLERS: here('./handlers.mjs'), GITHUB_WEBHOOK_SECRET: SECRET, OPSD_HTTP_ALLOW: '127.0.0.1' });
console.log(`opsd on ${url}; status receiver on ${receiverUrl}`);

const subscription = await (
  await fetch(`${url}/v1/subscriptions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ url: receiverUrl, events: ['operation.completed', 'operation.rejected', 'operation.failed'], types: ['review.pull_request'] }),
  })
).json();
signingSecret = subscription.secret;
console.log(`POST /v1/subscriptions → ${subscription.id} (its signing secret is shown once)`);

/** Sends a delivery as GitHub would: the raw bytes, their HMAC in X-Hub-Signature-256, a delivery id. */
async function deliver(body, delivery, event = 'pull_request') {
  const signature = `sha256=${createHmac('sha256', SECRET).update(body).digest('hex')}`;
  const response = await fetch(`${url}/v1/webhooks/github`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-github-event': event, 'x-github-delivery': delivery, 'x-hub-signature-256': signature },
    body,
  });
  const answer = await response.json();
  console.log(`POST /v1/webhooks/github (${event}, delivery ${delivery.slice(0, 8)}) → ${response.status} ${answer.state ?? answer.status ?? answer.error?.code}`);
  return answer;
}

const opened = readFileSync(here('./pull_request.opened.json'), 'utf8');
const first = randomUUID();
await deliver(opened, first);
await deliver(opened, first); // GitHub redelivers: the same operation, answered 200
const pushed = JSON.stringify({ ...JSON.parse(opened), action: 'synchronize', pull_request: { ...JSON.parse(opened).pull_request, head: { sha: 'e5bd3914e2e596debea16f433f57875b5b90bcd6' } } });
await deliver(pushed, randomUUID()); // a new push to the same pull request: reviewed after the first
await deliver(JSON.stringify({ zen: 'Design for failure.' }), randomUUID(), 'ping'); // ignored
const forged = opened.replace('"number": 42', '"number": 43');
await fetch(`${url}/v1/webhooks/github`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-github-event': 'pull_request', 'x-github-delivery': randomUUID(), 'x-hub-signature-256': 'sha256=' + '0'.repeat(64) }, body: forged }).then(async (r) =>
  console.log(`POST /v1/webhooks/github (a forged signature) → ${r.status} ${(await r.json()).error.code}`),
);

const deadline = Date.now() + 30_000;
while (received.size < 2 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
console.log(`\nthe receiver got ${received.size} status webhooks, each verified:`);
for (const [id, event] of received) console.log(`  ${id}  ${event.type}  ${event.data.payload.repository}#${event.data.payload.number} @ ${event.data.payload.head_sha.slice(0, 7)}: ${event.data.result.verdict} ${JSON.stringify(event.data.result.comments)}`);
const deliveries = await (await fetch(`${url}/v1/subscriptions/${subscription.id}/deliveries`)).json();
console.log(`GET /v1/subscriptions/${subscription.id.slice(0, 8)}…/deliveries: ${deliveries.deliveries.map((d) => `${d.state} after ${d.attempts} attempt(s)`).join(', ')}`);

await stop();
receiver.close();
process.exitCode = received.size === 2 ? 0 : 1;
