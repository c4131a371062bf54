/**
 * Shutdown for every daemon (watch, pull --watch, replicate --watch and watch's replication): SIGTERM
 * stops taking new work at once, lets the work in flight finish, and aborts its requests only when
 * a deadline passes. One helper, so the four daemons cannot drift apart.
 */

/**
 * How long a stopping daemon waits for work in flight before aborting its requests, unless told
 * otherwise (FANSYNC_DRAIN_DEADLINE, read by the CLI's wiring: a unit file whose TimeoutStopSec is
 * shorter, and the tests).
 */
export const DEFAULT_DRAIN_DEADLINE_MS = 30_000;

/** `hard` aborts `ms` after `stop` did (or at once with {@link Drain.abortNow}). */
export class Drain {
  private readonly ac = new AbortController();
  private timer: NodeJS.Timeout | undefined;
  private readonly stop: AbortSignal;
  private readonly onStop: () => void;

  constructor(stop: AbortSignal, ms = DEFAULT_DRAIN_DEADLINE_MS) {
    this.stop = stop;
    this.onStop = () => {
      this.timer = setTimeout(() => this.ac.abort(new Error("drain deadline passed")), ms);
      this.timer.unref();
    };
    if (stop.aborted) this.onStop();
    else stop.addEventListener("abort", this.onStop, { once: true });
  }

  /** The signal that aborts requests in flight: give it to the jobs. */
  get hard(): AbortSignal {
    return this.ac.signal;
  }

  /** Abort requests now (a fatal error elsewhere). */
  abortNow(reason: unknown): void {
    this.ac.abort(reason);
  }

  /** The work drained in time: no deadline any more. */
  dispose(): void {
    if (this.timer) clearTimeout(this.timer);
    this.stop.removeEventListener("abort", this.onStop);
  }
}
