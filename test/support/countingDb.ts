import { sqlText, type Db, type Queryable } from '../../src/store/db.js';

/** The store as it is, counting the statements whose SQL `counts` picks, on every path into it. */
export function countingStatements(db: Db, counts: (sql: string) => boolean): { db: Db; count: () => number } {
  let seen = 0;
  const counted = (q: Queryable): Queryable => ({
    query: (sql, params) => {
      if (counts(sqlText(sql))) seen += 1;
      return q.query(sql, params);
    },
    exec: (sql) => q.exec(sql),
  });
  const wrapped: Db = {
    ...counted(db),
    kind: db.kind,
    poolStats: () => db.poolStats(),
    transaction: (fn) => db.transaction((tx) => fn(counted(tx))),
    withSession: (fn) => db.withSession((session) => fn(counted(session))),
    close: () => db.close(),
  };
  return { db: wrapped, count: () => seen };
}
