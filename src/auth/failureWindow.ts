/**
 * Bad keys per client address in fixed windows: past `max` failures in a window, the address is
 * refused until the window ends. Pure (time is passed in); bounded to `maxAddresses` entries, the
 * oldest forgotten first, so a flood of addresses cannot grow it without end.
 */
export class FailureWindow {
  readonly #byAddress = new Map<string, { since: number; failures: number }>();

  constructor(private readonly options: { max: number; windowMs: number; maxAddresses: number }) {}

  /** Milliseconds the address must wait, or 0 when it may try. */
  blockedForMs(address: string, nowMs: number): number {
    const entry = this.#byAddress.get(address);
    if (!entry) return 0;
    const endsAt = entry.since + this.options.windowMs;
    if (nowMs >= endsAt) {
      this.#byAddress.delete(address);
      return 0;
    }
    return entry.failures >= this.options.max ? endsAt - nowMs : 0;
  }

  fail(address: string, nowMs: number): void {
    const entry = this.#byAddress.get(address);
    if (entry && nowMs < entry.since + this.options.windowMs) {
      entry.failures += 1;
      return;
    }
    this.#byAddress.delete(address);
    this.#byAddress.set(address, { since: nowMs, failures: 1 });
    if (this.#byAddress.size > this.options.maxAddresses) {
      const oldest = this.#byAddress.keys().next().value as string;
      this.#byAddress.delete(oldest);
    }
  }
}
