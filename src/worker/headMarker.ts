import type { Logger } from 'pino';
import type { CountingDuty } from '../lib/periodic.js';
import type { Db } from '../store/db.js';
import { markUnmarkedHeads } from '../store/headMarks.js';

/**
 * The duty that marks heads whose mark is missing (src/store/headMarks.ts): an operation accepted
 * while the one before it on its key ended, each statement not seeing the other, is a head nobody
 * marked. Claims that cannot visit every active key would pass it over until the operations ahead
 * of it in claim order have gone. Each pass visits up to `pagesPerPass` pages of `keysPerPage`
 * active keys, one probe each, and goes on where the last pass stopped, starting over past the last
 * key: every active key is visited once every (active keys ÷ keys per pass) passes. A pass resolves
 * to the number of heads it marked.
 */
export function createHeadMarker(options: { db: Db; logger: Logger; keysPerPage?: number; pagesPerPass?: number }): CountingDuty {
  const keysPerPage = options.keysPerPage ?? 1000;
  const pagesPerPass = options.pagesPerPass ?? 4;
  let afterKey: string | undefined;
  return {
    name: 'head-marker',
    async runOnce() {
      const marked: string[] = [];
      for (let page = 0; page < pagesPerPass; page += 1) {
        const result = await markUnmarkedHeads(options.db, { afterKey, keys: keysPerPage });
        marked.push(...result.marked);
        afterKey = result.more && result.lastKey !== null ? result.lastKey : undefined;
        if (afterKey === undefined) break;
      }
      if (marked.length > 0) options.logger.info({ count: marked.length, operation_ids: marked.slice(0, 20) }, 'marked heads of their keys that no write had marked');
      return marked.length;
    },
  };
}
