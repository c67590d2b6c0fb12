import type { FastifyInstance } from 'fastify';
import type { ReceiveWebhook } from '../webhooks/receiveWebhook.js';
import { errorSchema } from './schemas.js';

const sourceParams = {
  type: 'object',
  required: ['source'],
  properties: { source: { type: 'string', minLength: 1, maxLength: 64 } },
} as const;

/**
 * `POST /v1/webhooks/:source`, in a context of its own: its body stays the raw bytes the
 * signature covers (every other route parses JSON text).
 */
export function registerWebhookRoutes(app: FastifyInstance, receive: ReceiveWebhook): void {
  void app.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('application/json', { parseAs: 'buffer' }, (_request, body, done) => done(null, body));
    scope.post<{ Params: { source: string }; Body: Buffer }>(
      '/v1/webhooks/:source',
      {
        schema: {
          summary: 'Receive a signed webhook delivery as an operation',
          params: sourceParams,
          response: { '4xx': errorSchema, '5xx': errorSchema },
        },
      },
      async (request, reply) => {
        const { status, headers, body } = await receive(request.params.source, request.body ?? Buffer.alloc(0), request.headers);
        return reply.code(status).headers(headers).send(body);
      },
    );
  });
}
