import { performance } from 'node:perf_hooks';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { AttemptEndKind, WorkerObserver } from '../worker/workerObserver.js';

/** Latencies from a millisecond to a minute: HTTP answers, attempts, a claim. */
const SECONDS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
/** From received to done: milliseconds for a no-op, hours for a retried one. */
const LIFETIME = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14_400];

/**
 * Every metric a process exposes on `/metrics`, with the `opsd_` prefix. Label sets stay bounded:
 * operation type, route template, status class, reason; never an operation id or an external id.
 * Gauges whose values live elsewhere (a pool, a worker's slots, the store) are read when scraped,
 * through the collectors registered with {@link OpsdMetrics.onScrape}.
 */
export class OpsdMetrics {
  readonly registry = new Registry();
  readonly #scrapers: (() => void | Promise<void>)[] = [];

  readonly httpDuration = this.#histogram('opsd_http_request_duration_seconds', 'HTTP requests by route template, method and status class', ['route', 'method', 'status'], SECONDS);
  readonly httpInFlight = this.#gauge('opsd_http_requests_in_flight', 'HTTP requests being handled');
  readonly submissions = this.#counter('opsd_submissions_total', 'Submissions by type and outcome (accepted, replayed, conflict, mismatch, shed)', ['type', 'outcome']);
  readonly accepted = this.#counter('opsd_operations_accepted_total', 'Operations accepted (new), by type', ['type']);
  readonly replayed = this.#counter('opsd_operations_replayed_total', 'Identical resubmissions answered 200, by type', ['type']);
  readonly conflicts = this.#counter('opsd_operations_conflicts_total', 'Resubmissions refused with 409 (another payload or other options), by type', ['type']);
  readonly attemptsStarted = this.#counter('opsd_attempts_started_total', 'Attempts started, by type', ['type']);
  readonly completed = this.#counter('opsd_operations_completed_total', 'Operations that reached COMPLETED, by type', ['type']);
  readonly rejected = this.#counter('opsd_operations_rejected_total', 'Operations that reached REJECTED, by type', ['type']);
  readonly failed = this.#counter('opsd_operations_failed_total', 'Operations that reached FAILED (attempts exhausted), by type', ['type']);
  readonly retried = this.#counter('opsd_attempts_retried_total', 'Attempts that failed with a retry scheduled, by type', ['type']);
  readonly deferred = this.#counter('opsd_attempts_deferred_total', 'Attempts deferred because the upstream asked to wait (not counted as attempts), by type', ['type']);
  readonly released = this.#counter('opsd_attempts_released_total', 'Attempts given back at shutdown, by type', ['type']);
  readonly timedOut = this.#counter('opsd_attempts_timed_out_total', 'Attempts whose handler ran past its timeout, by type', ['type']);
  readonly leaseLost = this.#counter('opsd_attempts_lease_lost_total', 'Attempts that lost their lease, by type', ['type']);
  readonly attemptDuration = this.#histogram('opsd_attempt_duration_seconds', 'How long handlers ran, by type', ['type'], SECONDS);
  readonly lifetime = this.#histogram('opsd_operation_lifetime_seconds', 'Time from received to COMPLETED, REJECTED or FAILED, by type and outcome', ['type', 'outcome'], LIFETIME);
  readonly claims = this.#counter('opsd_worker_claims_total', 'Claims a worker made (each a call to the store)');
  readonly claimSize = this.#histogram('opsd_worker_claim_size', 'Operations a claim returned', [], [0, 1, 2, 5, 10, 20, 50, 100, 200, 500]);
  readonly leasesRenewed = this.#counter('opsd_worker_lease_renewals_total', 'Leases renewed by heartbeats');
  readonly repairs = this.#counter('opsd_repairs_total', 'What the leader repaired: operations the reconciler woke again, leases the rescuer took back, heads the head marker marked', ['duty']);

  constructor(options: { role: string }) {
    this.registry.setDefaultLabels({ role: options.role });
    collectDefaultMetrics({ register: this.registry, prefix: 'opsd_', eventLoopMonitoringPrecision: 10 });
    // Gauges named like counters, which `promtool check metrics` refuses; handles and requests say
    // little that the event loop and memory metrics do not.
    for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) {
      this.registry.removeSingleMetric(`opsd_${name}`);
    }
    let last = performance.eventLoopUtilization();
    this.gauge('opsd_nodejs_eventloop_utilization', 'Share of time the event loop was busy since the last scrape (0 to 1)', [], (g) => {
      const now = performance.eventLoopUtilization();
      g.set(performance.eventLoopUtilization(now, last).utilization);
      last = now;
    });
  }

  /** A worker observer that counts into these metrics. */
  workerObserver(): WorkerObserver {
    const byOutcome: Record<AttemptEndKind, Counter<'type'> | null> = {
      completed: null,
      rejected: null,
      failed: null,
      retried: this.retried,
      deferred: this.deferred,
      released: this.released,
    };
    const ended = { completed: this.completed, rejected: this.rejected, failed: this.failed };
    return {
      claimed: (size) => {
        this.claims.inc();
        this.claimSize.observe(size);
      },
      attemptStarted: (type) => this.attemptsStarted.inc({ type }),
      attemptEnded: (type, outcome, seconds, timedOut) => {
        this.attemptDuration.observe({ type }, seconds);
        byOutcome[outcome]?.inc({ type });
        if (timedOut) this.timedOut.inc({ type });
      },
      operationEnded: (type, outcome, seconds) => {
        ended[outcome].inc({ type });
        this.lifetime.observe({ type, outcome }, seconds);
      },
      leaseLost: (type) => this.leaseLost.inc({ type }),
      leasesRenewed: (count) => this.leasesRenewed.inc(count),
    };
  }

  /** Counts a submission's outcome. */
  submission(type: string, outcome: 'accepted' | 'replayed' | 'conflict' | 'mismatch' | 'shed'): void {
    this.submissions.inc({ type, outcome });
    if (outcome === 'accepted') this.accepted.inc({ type });
    else if (outcome === 'replayed') this.replayed.inc({ type });
    else if (outcome === 'conflict' || outcome === 'mismatch') this.conflicts.inc({ type });
  }

  /** A gauge (with labels) whose values `read` sets when scraped. */
  gauge<L extends string>(name: string, help: string, labels: readonly L[], read: (gauge: Gauge<L>) => void | Promise<void>): Gauge<L> {
    const gauge = this.#gauge(name, help, labels);
    this.#scrapers.push(() => {
      gauge.reset();
      return read(gauge);
    });
    return gauge;
  }

  /** A counter whose value lives elsewhere (a total kept by its owner), read when scraped. */
  total<L extends string>(name: string, help: string, labels: readonly L[], read: () => Iterable<[Partial<Record<L, string>>, number]>): void {
    // Exposed as a counter: it only grows for as long as the process lives.
    const counter = this.#counter(name, help, labels);
    this.#scrapers.push(() => {
      counter.reset();
      for (const [values, value] of read()) if (value > 0) counter.inc(values as Record<L, string>, value);
    });
  }

  /** The text Prometheus scrapes. */
  async render(): Promise<string> {
    await Promise.all(this.#scrapers.map((scrape) => scrape()));
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  #counter<L extends string>(name: string, help: string, labels: readonly L[] = []): Counter<L> {
    return new Counter({ name, help, labelNames: labels, registers: [this.registry] });
  }

  #gauge<L extends string>(name: string, help: string, labels: readonly L[] = []): Gauge<L> {
    return new Gauge({ name, help, labelNames: labels, registers: [this.registry] });
  }

  #histogram<L extends string>(name: string, help: string, labels: readonly L[], buckets: number[]): Histogram<L> {
    return new Histogram({ name, help, labelNames: labels, buckets, registers: [this.registry] });
  }
}
