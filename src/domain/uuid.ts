const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Whether `text` can be a uuid column's value: anything else makes PostgreSQL refuse the whole query. */
export function isUuid(text: string): boolean {
  return UUID.test(text);
}
