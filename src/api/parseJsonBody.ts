import sjson from 'secure-json-parse';
import { OpsdError } from '../domain/errors.js';
import { checkJsonText, findJsonTextProblems } from '../domain/safeJsonText.js';
import { toStorableText } from '../domain/storableJson.js';

/**
 * A request body as JSON, on every HTTP server opsd runs. Refused with a 400 and a code when it is
 * not JSON, carries prototype-poisoning keys, or holds what opsd cannot keep faithfully (see
 * {@link checkJsonText}): checked here, where it enters, so a bad item can never fail the
 * submissions it would share an INSERT with.
 */
export function parseJsonBody(text: string): unknown {
  const parsed = parseJson(text);
  checkJsonText(text);
  return parsed;
}

/** A parsed batch body; items that hold what opsd refuses are set apart, by index, so they fail alone. */
export interface BatchBody {
  value: unknown;
  itemProblems: Map<number, OpsdError>;
}

/** Like {@link parseJsonBody}, but a problem inside `operations[i]` refuses that item only. */
export function parseBatchBody(text: string): BatchBody {
  const value = parseJson(text);
  const itemProblems = new Map<number, OpsdError>();
  for (const { path, error } of findJsonTextProblems(text)) {
    const [key, index] = path;
    if (key !== 'operations' || typeof index !== 'number') throw error;
    if (!itemProblems.has(index)) itemProblems.set(index, error);
  }
  return { value, itemProblems };
}

function parseJson(text: string): unknown {
  if (text.trim() === '') throw new OpsdError('OPSD_ERR_MALFORMED_JSON', 'the body is empty');
  try {
    return sjson.parse(text, null, { protoAction: 'error', constructorAction: 'error' });
  } catch (error) {
    throw new OpsdError('OPSD_ERR_MALFORMED_JSON', (error as Error).message);
  }
}

/** A query or path value PostgreSQL could not take (NUL, a lone surrogate) is refused, not sent to the store. */
export function checkStorableStrings(values: unknown, part: string): void {
  if (typeof values !== 'object' || values === null) return;
  for (const [name, value] of Object.entries(values)) {
    if (typeof value === 'string' && toStorableText(value) !== value) {
      throw new OpsdError('OPSD_ERR_UNSTORABLE_TEXT', `${part} parameter "${name}" holds NUL or a lone surrogate`, { path: `${part}/${name}` });
    }
  }
}
