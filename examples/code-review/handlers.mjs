// The handlers module of the code-review example (OPSD_HANDLERS=examples/code-review/handlers.mjs):
// GitHub pull_request deliveries become `review.pull_request` operations, ordered per pull request.
import { defineOperation, defineWebhookSource, githubSignature } from 'opsd';

/** The deliveries worth a review; every other event and action is answered 200 and kept as ignored. */
const REVIEWED_ACTIONS = new Set(['opened', 'synchronize', 'reopened']);

export const sources = [
  defineWebhookSource({
    name: 'github', // POST /v1/webhooks/github
    verifier: githubSignature({ secrets: [process.env.GITHUB_WEBHOOK_SECRET ?? 'dev-secret'] }),
    type: 'review.pull_request',
    map(delivery) {
      if (delivery.event !== 'pull_request' || !REVIEWED_ACTIONS.has(delivery.body.action)) return null;
      const { repository, pull_request: pr, action } = delivery.body;
      return {
        type: 'review.pull_request',
        // The events of one pull request run one at a time, in the order they arrived.
        orderingKey: `${repository.full_name}#${pr.number}`,
        payload: { repository: repository.full_name, number: pr.number, action, head_sha: pr.head.sha, title: pr.title, body: pr.body ?? '', additions: pr.additions, deletions: pr.deletions, changed_files: pr.changed_files },
      };
    },
  }),
];

/** A small, deterministic review: what a real one would ask a model or a linter for. */
export const review = defineOperation({
  type: 'review.pull_request',
  timeoutMs: 60_000,
  payload: {
    type: 'object',
    required: ['repository', 'number', 'head_sha', 'title'],
    properties: { repository: { type: 'string' }, number: { type: 'integer' }, head_sha: { type: 'string' }, title: { type: 'string' } },
  },
  async handle({ payload, log }) {
    const comments = [];
    if (payload.additions + payload.deletions > 400) comments.push(`large change (${payload.additions + payload.deletions} lines in ${payload.changed_files} files): consider splitting it`);
    if (/\bTODO\b/.test(payload.body)) comments.push('the description leaves a TODO open');
    if (payload.title.length > 72) comments.push('the title is longer than 72 characters');
    const verdict = comments.length === 0 ? 'approve' : 'comment';
    log.info({ repository: payload.repository, number: payload.number, verdict }, 'pull request reviewed');
    return { repository: payload.repository, number: payload.number, head_sha: payload.head_sha, verdict, comments };
  },
});
