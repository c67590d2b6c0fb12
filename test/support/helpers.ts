import { randomBytes } from 'node:crypto';
import { createServer, type AddressInfo } from 'node:net';
import { pino, type Logger } from 'pino';
import { PRESSURE_DEFAULTS, type PressureOptions } from '../../src/protect/admission.js';

/** Quiet unless TEST_LOG_LEVEL asks otherwise. */
export function testLogger(): Logger {
  return pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });
}

/** A prefix that keeps each test's external ids apart inside a shared database. */
export function uniqueId(prefix = 't'): string {
  return `${prefix}-${randomBytes(6).toString('hex')}`;
}

/**
 * Waits until `probe` returns a truthy value, checking every `intervalMs`; fails with `what`
 * after `timeoutMs`. For waiting on a state, never for a fixed time.
 */
export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined | null | false> | T | undefined | null | false,
  { timeoutMs = 20_000, intervalMs = 25 } = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value) return value;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastError ? `: ${String(lastError)}` : ''}`);
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

/** A clock tests move by hand. */
export function manualClock(start = new Date('2030-01-01T00:00:00.000Z')) {
  let current = start.getTime();
  return {
    now: () => new Date(current),
    advance(ms: number) {
      current += ms;
    },
  };
}

/** A promise the test opens by hand: handlers or transactions wait on it to line up a race. */
export function gate() {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { opened, open };
}

/** A handler body that takes `ms` and records the most handlers that ran at once (`peak`). */
export function concurrencyProbe(ms: number) {
  let running = 0;
  const probe = {
    peak: 0,
    async run(): Promise<null> {
      running += 1;
      probe.peak = Math.max(probe.peak, running);
      try {
        await new Promise((resolve) => setTimeout(resolve, ms));
      } finally {
        running -= 1;
      }
      return null;
    },
  };
  return probe;
}

/** A port of 127.0.0.1 that was free a moment ago, for a child to listen on. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/**
 * Saturation thresholds for apps in tests of what a request gets from a process that is not
 * saturated: the event loop's delay is not checked. A test process that hosts the embedded store
 * holds its own loop through each statement, and on a loaded machine that can last past the
 * api's 1 s window of mean delay, which then answers 503 to every request for a second
 * (test/saturation tests that answer).
 */
export const LOOP_DELAY_UNCHECKED: PressureOptions = { ...PRESSURE_DEFAULTS, maxEventLoopDelayMs: 0 };
