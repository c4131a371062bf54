/**
 * The overall deadline of one pull run. Every request has an inactivity timeout, but a body that
 * trickles a byte every few seconds never trips it: without a deadline such a run held its lock for
 * twenty minutes (issue 18). The deadline is a base (`--run-timeout`) plus time for the bytes the
 * run plans to download at a floor rate, so a large first pull is not cut short by it.
 */
import { RunTimeout } from "../core/errors.ts";
import { formatAge, formatBytes } from "../core/units.ts";

/** The slowest average rate a run is allowed for its planned bytes: 256 KiB/s, 4 s per MiB. */
export const DEADLINE_FLOOR_BYTES_PER_S = 256 * 1024;

/** One run's deadline: its `signal` aborts (with {@link RunTimeout}) when the time is up, or with the parent. */
export class RunDeadline {
  readonly signal: AbortSignal;
  private readonly ac = new AbortController();
  private readonly started = Date.now();
  private readonly baseMs: number;
  private allowedMs: number;
  private bytes = 0;
  private timer: NodeJS.Timeout | undefined;
  private readonly parent: AbortSignal;
  private readonly onParent = () => this.ac.abort(this.parent.reason);

  /** `baseMs` 0: no deadline (the signal follows `parent` only). */
  constructor(baseMs: number, parent: AbortSignal) {
    this.baseMs = baseMs;
    this.allowedMs = baseMs;
    this.parent = parent;
    this.signal = this.ac.signal;
    if (parent.aborted) this.ac.abort(parent.reason);
    else parent.addEventListener("abort", this.onParent, { once: true });
    this.arm();
  }

  /** Whether the run was stopped by the deadline (not by the parent signal). */
  get expired(): boolean {
    return this.ac.signal.reason instanceof RunTimeout;
  }

  /** The run plans to download `bytes`: allow it that much longer at the floor rate. */
  allow(bytes: number): void {
    if (this.baseMs === 0 || this.ac.signal.aborted) return;
    this.bytes = bytes;
    this.allowedMs = this.baseMs + Math.ceil((bytes / DEADLINE_FLOOR_BYTES_PER_S) * 1000);
    this.arm();
  }

  /** The error a run stopped by the deadline ends with. */
  error(): RunTimeout {
    return this.ac.signal.reason instanceof RunTimeout ? this.ac.signal.reason : this.timeout();
  }

  /** Stop the timer and forget the parent. */
  dispose(): void {
    if (this.timer) clearTimeout(this.timer);
    this.parent.removeEventListener("abort", this.onParent);
  }

  private arm(): void {
    if (this.timer) clearTimeout(this.timer);
    if (this.baseMs === 0) return;
    const left = this.started + this.allowedMs - Date.now();
    this.timer = setTimeout(() => this.ac.abort(this.timeout()), Math.max(0, left));
    this.timer.unref();
  }

  private timeout(): RunTimeout {
    const allowance = this.bytes > 0 ? ` (${formatAge(this.baseMs / 1000)} plus ${formatAge((this.allowedMs - this.baseMs) / 1000)} for ${formatBytes(this.bytes)})` : "";
    return new RunTimeout(`the run was stopped after ${formatAge(this.allowedMs / 1000)}${allowance}: a source is too slow or a body trickles (--run-timeout); the docroot was left as it was`);
  }
}
