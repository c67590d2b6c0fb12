import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { FastifyInstance } from 'fastify';
import { ERROR_CATALOG } from '../domain/errors.js';

/**
 * The API described as OpenAPI 3.1 from the routes' own JSON schemas: `GET /openapi.json`, and a
 * browsable reference at `GET /docs`. Routes must be registered after this, in a plugin of their
 * own, so that the generator sees them (routes added to the root before it loads are not).
 */
export function registerOpenApi(app: FastifyInstance, version: string): void {
  void app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'opsd',
        version,
        description:
          'Submit operations, read them and their events, act on them, and run protection. Every error is ' +
          '`{"error":{"code","message","details"?}}` with a code from the catalog below; 429 and 503 carry Retry-After.\n\n' +
          Object.entries(ERROR_CATALOG)
            .map(([code, { status, title }]) => `- \`${code}\` (${status}): ${title}`)
            .join('\n'),
      },
    },
  });
  void app.register(swaggerUi, { routePrefix: '/docs' });
  void app.register(async (instance) => {
    instance.get('/openapi.json', { schema: { hide: true } }, async () => instance.swagger());
  });
}
