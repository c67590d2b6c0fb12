/**
 * Whether a submission is shed because its type's PENDING backlog is full: at `maxBacklog`, or at
 * half of it for priorities below 0, so that low-priority work is turned away first.
 */
export function shedsSubmission(backlog: number, maxBacklog: number, priority: number): boolean {
  return backlog >= (priority < 0 ? Math.floor(maxBacklog / 2) : maxBacklog);
}
