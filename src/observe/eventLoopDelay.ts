import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';

/** How often the window moves on. */
const TURN_MS = 1000;

function startedMonitor(): IntervalHistogram {
  const monitor = monitorEventLoopDelay({ resolution: 10 });
  monitor.enable();
  return monitor;
}

/**
 * The event loop's longest delay over the last `lookbackS` seconds (and up to one more), kept a
 * second at a time: a block is remembered for `lookbackS` to `lookbackS + 1` seconds after it began.
 *
 * A delay monitor records a block when its timer runs after it, measured from its timer's run
 * before; a monitor just started or reset has no run before, and records nothing for a block that
 * comes first. A block that starts in the same turn of the timers as a reset, or that ends in a
 * timer due just before the window's, so that the window's runs (and resets) before the monitor's,
 * was lost that way. So two monitors run, each started a second after the other and kept for two
 * seconds: whenever one has just started, the other has run for a second.
 */
export function trackEventLoopDelay(lookbackS = 10) {
  let older: IntervalHistogram | null = null;
  let newer = startedMonitor();
  /** Per turn, the longest delay the two monitors saw: of the second before it and the one before that. */
  const maxima: number[] = [];
  const current = () => Math.max(newer.max, older?.max ?? 0) / 1e6;
  const timer = setInterval(() => {
    maxima.push(current());
    // Each entry spans two seconds, and the two monitors running now span the time since the last
    // turn and the second before it: lookbackS - 1 entries and them, lookbackS to lookbackS + 1 seconds.
    if (maxima.length > lookbackS - 1) maxima.shift();
    older?.disable();
    older = newer;
    newer = startedMonitor();
  }, TURN_MS);
  timer.unref();
  return {
    /** The longest delay seen in the window, in ms. */
    maxMs(): number {
      return Math.max(current(), ...maxima);
    },
    stop(): void {
      clearInterval(timer);
      older?.disable();
      newer.disable();
    },
  };
}
