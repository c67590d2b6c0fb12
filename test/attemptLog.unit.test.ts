import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import pino, { type Logger } from 'pino';
import { AttemptLog } from '../src/worker/attemptLog.js';

/** A logger at `level` writing to memory, and how many children were made of it. */
function counted(level: string) {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split('\n')) if (line.trim()) lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  const parent = pino({ level }, stream);
  let children = 0;
  const child = parent.child.bind(parent);
  parent.child = ((...args: Parameters<Logger['child']>) => {
    children += 1;
    return child(...args);
  }) as Logger['child'];
  return { parent, lines, children: () => children };
}

const bindings = { operation_id: 'op-1', external_id: 'ext\u0000\ud800', type: 'demo.echo', attempt: 2 };

describe('an attempt logger', () => {
  it('makes no child logger for lines below the level, and writes none', () => {
    const { parent, lines, children } = counted('warn');
    const log = new AttemptLog(parent, bindings);
    log.debug('attempt started');
    log.info('operation completed');
    log.info({ reason: { code: 'X' } }, 'operation rejected');
    assert.equal(children(), 0);
    assert.equal(lines.length, 0);
  });

  it('writes lines at the level, bound to the operation, through one child', () => {
    const { parent, lines, children } = counted('info');
    const log = new AttemptLog(parent, bindings);
    log.info('operation completed');
    log.warn({ code: 'OPSD_ERR_LEASE_LOST' }, 'outcome discarded');
    log.error({ err: new Error('boom') }, 'attempt could not be recorded');
    assert.equal(children(), 1);
    assert.deepEqual(lines.map((l) => [l.msg, l.operation_id, l.external_id, l.attempt]), [
      ['operation completed', 'op-1', bindings.external_id, 2],
      ['outcome discarded', 'op-1', bindings.external_id, 2],
      ['attempt could not be recorded', 'op-1', bindings.external_id, 2],
    ]);
    assert.equal(lines[1]?.code, 'OPSD_ERR_LEASE_LOST');
  });

  it('gives a handler the bound logger itself, made once, whatever the level', () => {
    const { parent, lines, children } = counted('warn');
    const log = new AttemptLog(parent, bindings);
    assert.equal(log.logger, log.logger);
    assert.equal(children(), 1);
    log.logger.warn('from the handler');
    assert.equal(lines[0]?.operation_id, 'op-1');
    assert.equal(lines[0]?.type, 'demo.echo');
  });
});
