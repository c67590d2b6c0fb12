import cluster, { type Worker as ClusterChild } from 'node:cluster';
import type { Logger } from 'pino';

export interface SupervisorOptions {
  /** Processes to keep running. */
  size: number;
  logger: Logger;
  /** Respawns allowed in any 60 s window before the supervisor gives up and exits 1. Default 10. */
  maxRestartsPerMinute?: number;
  /** How long children get to drain after SIGTERM before they are killed. */
  graceMs: number;
}

/**
 * Forks `size` children running the same command (node:cluster shares their HTTP port), respawns
 * one that dies, and gives up, exit 1, when they die faster than the restart limit. SIGTERM or
 * SIGINT drains every child (each runs its own graceful shutdown) and exits 0; a second signal
 * kills them at once.
 */
export function superviseCluster(options: SupervisorOptions): void {
  const maxRestarts = options.maxRestartsPerMinute ?? 10;
  const log = options.logger.child({ supervisor: process.pid });
  const restarts: number[] = [];
  let shuttingDown = false;
  let exitCode = 0;
  let respawned = 0;

  // Each child learns how many were respawned before it (its metrics expose it as opsd_cluster_restarts).
  const fork = () => {
    const child = cluster.fork({ OPSD_CLUSTER_RESTARTS: String(respawned) });
    log.info({ child: child.process.pid }, 'child started');
    return child;
  };
  const children = () => Object.values(cluster.workers ?? {}).filter((c): c is ClusterChild => c !== undefined);

  const shutDown = (code: number, reason: string) => {
    if (shuttingDown) return;
    shuttingDown = true;
    exitCode = code;
    log.info({ reason, children: children().length }, 'draining children');
    for (const child of children()) child.process.kill('SIGTERM');
    // A child that ignores SIGTERM past its grace period is killed; the supervisor always ends.
    setTimeout(() => {
      for (const child of children()) child.process.kill('SIGKILL');
    }, options.graceMs + 10_000).unref();
    if (children().length === 0) process.exit(exitCode);
  };

  cluster.on('exit', (child, code, signal) => {
    if (shuttingDown) {
      log.info({ child: child.process.pid, code, signal }, 'child exited');
      if (children().length === 0) {
        log.info({ exit_code: exitCode }, 'all children stopped');
        process.exit(exitCode);
      }
      return;
    }
    const now = Date.now();
    restarts.push(now);
    while (restarts.length > 0 && (restarts[0] as number) < now - 60_000) restarts.shift();
    if (restarts.length > maxRestarts) {
      log.fatal({ restarts: restarts.length, limit: maxRestarts }, 'children die faster than the restart limit; giving up');
      shutDown(1, 'restart limit reached');
      return;
    }
    log.warn({ child: child.process.pid, code, signal }, 'child died; respawning');
    respawned += 1;
    fork();
  });

  let signals = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    signals += 1;
    if (signals > 1) {
      log.warn({ signal }, 'second signal: killing children');
      for (const child of children()) child.process.kill('SIGKILL');
      process.exit(130);
    }
    shutDown(0, signal);
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);

  for (let i = 0; i < options.size; i += 1) fork();
}
