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
  private readonly unchanged: string;

  /** `baseMs` 0: no deadline (the signal follows `parent` only). `unchanged`: what the message says was left alone. */
  constructor(baseMs: number, parent: AbortSignal, unchanged = "the docroot was left as it was") {
    this.baseMs = baseMs;
    this.unchanged = unchanged;
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
    return new RunTimeout(`the run was stopped after ${formatAge(this.allowedMs / 1000)}${allowance}: a source is too slow or a body trickles (--run-timeout); ${this.unchanged}`);
  }
}

/**
 * The signal of whichever run is current, for a long-lived engine (the uploader, its generation
 * writer) whose collaborators read `signal` when they use it: each {@link RunScope.run} gets its own
 * {@link RunDeadline} over the base signal, so a push and each watch batch end by their deadline
 * (issue 22: a PUT answered by a trickling 503 held a push for good), while the lease renewal
 * between runs follows the base signal only. A run stopped by its deadline throws {@link RunTimeout}.
 */
export class RunScope {
  private readonly base: AbortSignal;
  private readonly baseMs: number;
  private deadline: RunDeadline | undefined;

  constructor(baseMs: number, base: AbortSignal) {
    this.base = base;
    this.baseMs = baseMs;
  }

  /** The current run's signal (the base signal between runs). */
  get signal(): AbortSignal {
    return this.deadline?.signal ?? this.base;
  }

  /** The current run plans to move `bytes`: its deadline grows at the floor rate. */
  allow(bytes: number): void {
    this.deadline?.allow(bytes);
  }

  /** `r` with each reconcile run under a fresh deadline (the watch daemon's batches). */
  wrap<R extends { reconcile(scope?: readonly string[]): Promise<T> }, T>(r: R): { reconcile(scope?: readonly string[]): Promise<T> } {
    return { reconcile: (scope) => this.run(() => r.reconcile(scope)) };
  }

  /** Run `fn` under a fresh deadline. */
  async run<T>(fn: () => Promise<T>): Promise<T> {
    const dl = new RunDeadline(this.baseMs, this.base, "no generation was published by it");
    this.deadline = dl;
    try {
      return await fn();
    } catch (err) {
      if (dl.expired && !this.base.aborted) throw dl.error();
      throw err;
    } finally {
      dl.dispose();
      this.deadline = undefined;
    }
  }
}
