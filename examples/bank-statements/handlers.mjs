// The handlers module of the bank-statements example (OPSD_HANDLERS=examples/bank-statements/handlers.mjs):
// one resource for the bank, one operation type that fetches a statement and renders it.
import { createHash } from 'node:crypto';
import { defineOperation, defineResource, RejectError, RetryError } from 'opsd';

const BANK_URL = process.env.BANK_URL ?? 'http://127.0.0.1:4010';
const setting = (name, fallback) => Number(process.env[name] ?? fallback);

export const resources = [
  defineResource({
    name: 'bank-inter',
    rate: { limit: setting('BANK_RATE', 5), perMs: 1000 }, // what the bank allows, across every worker
    concurrency: setting('BANK_CONCURRENCY', 2), // statements fetched at once, cluster-wide
    breaker: { failures: setting('BANK_BREAKER_FAILURES', 10), windowMs: 30_000, cooldownMs: setting('BANK_BREAKER_COOLDOWN_MS', 30_000) },
  }),
];

export const statement = defineOperation({
  type: 'bank.statement',
  resource: 'bank-inter',
  payload: {
    type: 'object',
    required: ['account'],
    properties: { account: { type: 'string', pattern: '^[A-Za-z0-9_-]{1,64}$' } },
  },
  timeoutMs: 10_000,
  async handle({ payload, signal, log }) {
    const response = await fetch(`${BANK_URL}/statements/${payload.account}`, { signal, headers: { 'x-client-id': 'opsd' } });
    if (response.status === 429 || (response.status === 503 && response.headers.has('retry-after'))) {
      // The bank says wait: every worker pauses the resource, and this attempt does not count.
      const retryAfterMs = Number(response.headers.get('retry-after') ?? 1) * 1000;
      throw new RetryError(`the bank answered ${response.status}`, { code: 'BANK_THROTTLED', retryAfterMs, pauseResource: true });
    }
    if (response.status === 404) throw new RejectError('NO_SUCH_ACCOUNT', `the bank has no account ${payload.account}`);
    if (!response.ok) throw new RetryError(`the bank answered ${response.status}`, { code: 'BANK_ERROR' });
    const document = render(await response.json());
    log.info({ account: payload.account, bytes: document.length }, 'statement rendered');
    return { account: payload.account, bytes: document.length, sha256: createHash('sha256').update(document).digest('hex') };
  },
});

/** A small PDF-like document: one page of text with the statement's lines. */
function render(statement) {
  const lines = statement.lines.map((l) => `${l.date}  ${String(l.amount / 100).padStart(10)} ${statement.currency}  ${l.label}`);
  const text = [`Statement ${statement.account} ${statement.period}`, '', ...lines].join('\n');
  return `%PDF-1.4\n% bank statement\n1 0 obj << /Type /Page /Contents (${text.replace(/[()\\]/g, '\\$&')}) >> endobj\n%%EOF\n`;
}
