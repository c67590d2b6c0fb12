// Baseline: the cheapest useful answer on this machine, a Fastify route answering 202 with a small JSON body.
import Fastify from 'fastify';

const app = Fastify({ logger: false });
app.post('/v1/operations', async (_request, reply) => reply.code(202).send({ id: 'x', state: 'PENDING' }));
await app.listen({ port: Number(process.argv[3]), host: '127.0.0.1' });
process.on('SIGTERM', () => app.close().then(() => process.exit(0)));
