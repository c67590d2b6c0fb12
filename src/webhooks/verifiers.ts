import { createHmac, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { Webhook, WebhookVerificationError } from 'standardwebhooks';
import { OpsdError } from '../domain/errors.js';

/** What a signature proves about a delivery: who sent it, and the ids its headers carry. */
export interface VerifiedDelivery {
  /** The provider's delivery id from a header, when it sends one there (Stripe puts it in the body). */
  deliveryId: string | null;
  /** The provider's event name from a header, when it sends one there. */
  event: string | null;
}

/** Checks a delivery over its raw body bytes; throws OPSD_ERR_WEBHOOK_SIGNATURE (401) or OPSD_ERR_WEBHOOK_TIMESTAMP (400). */
export interface WebhookVerifier {
  readonly kind: 'github' | 'stripe' | 'standard-webhooks' | 'hmac';
  /** The request headers worth keeping with the delivery (besides content-type and user-agent). */
  readonly headers: readonly string[];
  verify(rawBody: Buffer, headers: IncomingHttpHeaders, nowMs: number): VerifiedDelivery;
}

const badSignature = (why: string) => new OpsdError('OPSD_ERR_WEBHOOK_SIGNATURE', why);

function header(headers: IncomingHttpHeaders, name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value[0] : value;
}

function requireSecrets(kind: string, secrets: readonly (string | undefined)[]): string[] {
  const present = secrets.filter((s): s is string => typeof s === 'string' && s.length > 0);
  if (present.length === 0) throw new Error(`a ${kind} webhook verifier needs at least one non-empty secret`);
  return present;
}

/** Constant-time equality of two hex (or other text) digests; unequal lengths are simply unequal. */
function digestsEqual(expected: Buffer, given: string, encoding: BufferEncoding): boolean {
  const candidate = Buffer.from(given, encoding);
  return candidate.length === expected.length && timingSafeEqual(candidate, expected);
}

function hmacSha256(secret: string, ...parts: (string | Buffer)[]): Buffer {
  const mac = createHmac('sha256', secret);
  for (const part of parts) mac.update(part);
  return mac.digest();
}

/** Whether `hex` is the HMAC-SHA256 of the body under one of the secrets. */
function bodySignedBy(secrets: readonly string[], rawBody: Buffer, hex: string | undefined): boolean {
  return hex !== undefined && secrets.some((secret) => digestsEqual(hmacSha256(secret, rawBody), hex.toLowerCase(), 'hex'));
}

/** The delay between a delivery's timestamp and now, refused past the tolerance either way. */
function checkTolerance(timestampS: number, nowMs: number, toleranceS: number): void {
  if (!Number.isSafeInteger(timestampS)) throw badSignature('the signature timestamp is not a number of seconds');
  if (Math.abs(nowMs / 1000 - timestampS) > toleranceS) {
    throw new OpsdError('OPSD_ERR_WEBHOOK_TIMESTAMP', `the delivery is timestamped ${timestampS}, more than ${toleranceS} s from now`);
  }
}

/** GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`; delivery id and event from `X-GitHub-Delivery` and `X-GitHub-Event`. */
export function githubSignature(options: { secrets: readonly (string | undefined)[] }): WebhookVerifier {
  const secrets = requireSecrets('GitHub', options.secrets);
  return {
    kind: 'github',
    headers: ['x-github-delivery', 'x-github-event', 'x-github-hook-id', 'x-hub-signature-256'],
    verify(rawBody, headers) {
      const signature = header(headers, 'x-hub-signature-256');
      if (!signature) throw badSignature('the X-Hub-Signature-256 header is missing');
      const hex = /^sha256=([0-9a-f]{64})$/i.exec(signature.trim())?.[1];
      if (!bodySignedBy(secrets, rawBody, hex)) {
        throw badSignature('the X-Hub-Signature-256 signature does not match the body');
      }
      return { deliveryId: header(headers, 'x-github-delivery') ?? null, event: header(headers, 'x-github-event') ?? null };
    },
  };
}

/** Stripe: `Stripe-Signature: t=<s>,v1=<hex HMAC-SHA256 of "t.body">` (several v1 while secrets roll); 300 s tolerance by default. */
export function stripeSignature(options: { secrets: readonly (string | undefined)[]; toleranceS?: number }): WebhookVerifier {
  const secrets = requireSecrets('Stripe', options.secrets);
  const toleranceS = options.toleranceS ?? 300;
  return {
    kind: 'stripe',
    headers: ['stripe-signature'],
    verify(rawBody, headers, nowMs) {
      const signature = header(headers, 'stripe-signature');
      if (!signature) throw badSignature('the Stripe-Signature header is missing');
      const parts = signature.split(',').map((p) => p.trim().split('='));
      const timestamp = parts.find(([k]) => k === 't')?.[1];
      const signatures = parts.filter(([k, v]) => k === 'v1' && v !== undefined && /^[0-9a-f]{64}$/i.test(v)).map(([, v]) => (v as string).toLowerCase());
      if (!timestamp || !/^\d+$/.test(timestamp) || signatures.length === 0) throw badSignature('the Stripe-Signature header has no t= and v1= parts');
      checkTolerance(Number(timestamp), nowMs, toleranceS);
      const matches = secrets.some((secret) => {
        const expected = hmacSha256(secret, `${timestamp}.`, rawBody);
        return signatures.some((given) => digestsEqual(expected, given, 'hex'));
      });
      if (!matches) throw badSignature('no Stripe-Signature v1 signature matches the body');
      return { deliveryId: null, event: null };
    },
  };
}

/**
 * Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`), verified by the
 * `standardwebhooks` library with each secret in turn (rotation); 5-minute tolerance.
 */
export function standardWebhooksSignature(options: { secrets: readonly (string | undefined)[] }): WebhookVerifier {
  const hooks = requireSecrets('Standard Webhooks', options.secrets).map((secret) => new Webhook(secret));
  return {
    kind: 'standard-webhooks',
    headers: ['webhook-id', 'webhook-timestamp', 'webhook-signature'],
    verify(rawBody, headers, nowMs) {
      const id = header(headers, 'webhook-id');
      const timestamp = header(headers, 'webhook-timestamp');
      const signature = header(headers, 'webhook-signature');
      if (!id || !timestamp || !signature) throw badSignature('a webhook-id, webhook-timestamp or webhook-signature header is missing');
      if (!/^\d+$/.test(timestamp)) throw badSignature('webhook-timestamp is not a number of seconds');
      checkTolerance(Number(timestamp), nowMs, 300);
      const wanted = { 'webhook-id': id, 'webhook-timestamp': timestamp, 'webhook-signature': signature };
      const verified = hooks.some((hook) => {
        try {
          hook.verify(rawBody, wanted, { jsonParse: false });
          return true;
        } catch (error) {
          if (error instanceof WebhookVerificationError) return false;
          throw error;
        }
      });
      if (!verified) throw badSignature('no webhook-signature matches the body');
      return { deliveryId: id, event: null };
    },
  };
}

/**
 * A plain shared-secret HMAC-SHA256 of the body, hex, in `header` (default `x-signature`, an
 * optional `sha256=` prefix allowed); the delivery id in `idHeader` (default `x-delivery-id`), the
 * event in `eventHeader` (default `x-event`).
 */
export function hmacSignature(options: { secrets: readonly (string | undefined)[]; header?: string; idHeader?: string; eventHeader?: string }): WebhookVerifier {
  const secrets = requireSecrets('HMAC', options.secrets);
  const signatureHeader = (options.header ?? 'x-signature').toLowerCase();
  const idHeader = (options.idHeader ?? 'x-delivery-id').toLowerCase();
  const eventHeader = (options.eventHeader ?? 'x-event').toLowerCase();
  return {
    kind: 'hmac',
    headers: [signatureHeader, idHeader, eventHeader],
    verify(rawBody, headers) {
      const signature = header(headers, signatureHeader);
      if (!signature) throw badSignature(`the ${signatureHeader} header is missing`);
      const hex = /^(?:sha256=)?([0-9a-f]{64})$/i.exec(signature.trim())?.[1];
      if (!bodySignedBy(secrets, rawBody, hex)) {
        throw badSignature(`the ${signatureHeader} signature does not match the body`);
      }
      return { deliveryId: header(headers, idHeader) ?? null, event: header(headers, eventHeader) ?? null };
    },
  };
}
