/**
 * A daemon's nap that an event can cut short, with bursts coalesced: any number of {@link Wake.fire}
 * calls while the daemon is busy leave one pending wake-up, so a flood of hints costs at most one
 * more run, never one run per hint, and never two runs at once (the daemon runs, then naps).
 */

/** Coalescing wake-up for one daemon loop. */
export class Wake {
  private pending = false;
  private waiter: (() => void) | undefined;

  /** Ask for a run now (or right after the one in progress). */
  fire(): void {
    this.pending = true;
    this.waiter?.();
  }

  /**
   * Nap up to `ms`, returning early when fired (a fire since the last nap counts: it came during
   * the run) or when `signal` aborts. Returns whether it was woken by a fire. Clears the pending fire.
   */
  async nap(ms: number, signal: AbortSignal): Promise<boolean> {
    if (!this.pending && !signal.aborted) {
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(t);
          signal.removeEventListener("abort", done);
          this.waiter = undefined;
          resolve();
        };
        const t = setTimeout(done, ms);
        this.waiter = done;
        signal.addEventListener("abort", done, { once: true });
      });
    }
    const fired = this.pending;
    this.pending = false;
    return fired;
  }
}
