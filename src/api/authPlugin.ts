import type { FastifyInstance, FastifyReply } from 'fastify';
import { settleCheck, type AuthRefusal, type Authenticator } from '../auth/authenticator.js';
import { sendError } from './errorHandler.js';

/** Every request shows its key before anything else runs (see requiredScope for which need one). */
export function registerAuth(app: FastifyInstance, authenticator: Authenticator): void {
  if (authenticator.mode === 'off') return;
  // Callback style: a key already cached is judged without a promise, on every request.
  app.addHook('onRequest', (request, reply, done) => {
    settleCheck(
      authenticator.check({ method: request.method, path: request.url.split('?')[0] ?? '/', authorization: request.headers.authorization, address: request.ip }),
      done,
      (refusal) => refuse(reply, refusal),
      (error) => done(error as Error),
    );
  });
}

function refuse(reply: FastifyReply, refusal: AuthRefusal): void {
  reply.headers(refusal.headers);
  void sendError(reply, refusal.error.code, refusal.error.message, refusal.error.details);
}
