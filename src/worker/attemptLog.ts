import type { Bindings, Level, Logger } from 'pino';

/** The log lines opsd itself writes about an attempt: a message, with fields or without. */
export interface AttemptLines {
  debug(fields: object, message: string): void;
  debug(message: string): void;
  info(fields: object, message: string): void;
  info(message: string): void;
  warn(fields: object, message: string): void;
  warn(message: string): void;
  error(fields: object, message: string): void;
  error(message: string): void;
}

/**
 * The logger of one attempt, bound to its operation, made only when a line is written through it
 * at a level that is on, or when the handler reads it. pino's `child` builds a logger object and
 * serializes its bindings: about 0.9 KB per attempt, a twentieth of what a worker allocated per
 * operation, for lines that at `warn` and above are never written.
 */
export class AttemptLog implements AttemptLines {
  readonly #parent: Logger;
  readonly #bindings: Bindings;
  #logger: Logger | null = null;

  constructor(parent: Logger, bindings: Bindings) {
    this.#parent = parent;
    this.#bindings = bindings;
  }

  /** The bound logger itself (what a handler is given). */
  get logger(): Logger {
    this.#logger ??= this.#parent.child(this.#bindings);
    return this.#logger;
  }

  debug(fieldsOrMessage: object | string, message?: string): void {
    this.#write('debug', fieldsOrMessage, message);
  }

  info(fieldsOrMessage: object | string, message?: string): void {
    this.#write('info', fieldsOrMessage, message);
  }

  warn(fieldsOrMessage: object | string, message?: string): void {
    this.#write('warn', fieldsOrMessage, message);
  }

  error(fieldsOrMessage: object | string, message?: string): void {
    this.#write('error', fieldsOrMessage, message);
  }

  #write(level: Level, fieldsOrMessage: object | string, message: string | undefined): void {
    if (!this.#parent.isLevelEnabled(level)) return;
    if (typeof fieldsOrMessage === 'string') this.logger[level](fieldsOrMessage);
    else this.logger[level](fieldsOrMessage, message);
  }
}
