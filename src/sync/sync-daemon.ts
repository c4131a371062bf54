/**
 * The two-way daemon's loop: a round (sync/two-way.ts) when the docroot changed (chokidar events,
 * a quiet window plus a cap, as in `watch`: a rename or a burst of thousands of files is one round),
 * and every poll interval otherwise (one conditional GET of the head when nothing moved). Rounds
 * never overlap; a failing round backs off; lost races and configuration errors end the daemon.
 * With an event queue (`sync --events`), a message about the head starts a round at once, as in
 * `pull --watch --events`: the same listener and coalescing wake-up (event-listener.ts, wake.ts),
 * the poll interval as the safety net, and the fallback interval while the queue cannot be read.
 */
import path from "node:path";
import { ConfigError, ExitCode, FansyncError, LockedError, UsageError } from "../core/errors.ts";
import { TEMP_MARK } from "../core/paths.ts";
import type { EventQueue } from "../adapters/event-queue.ts";
import { EventListener, type EventHealth } from "./event-listener.ts";
import type { JobDeps } from "./job-deps.ts";
import { sleep } from "./sleep.ts";
import type { RoundResult } from "./two-way.ts";
import { Wake } from "./wake.ts";
import { errorFields } from "../adapters/logger.ts";

// The longest pause between attempts of a failing round: short, since a node that cannot finish a
// round neither publishes its users' edits nor applies anyone else's (pull --watch waits up to 60 s).
const MAX_BACKOFF_MS = 10_000;

// A sleep that overran by this much means the watcher may be behind (see the loop).
const STALL_MS = 1000;

/** What the loop drives. */
export interface RoundRunner {
  round(opts: { joining: boolean; scan: boolean }): Promise<RoundResult>;
}

/** Timing and what to watch. */
export interface SyncDaemonOptions {
  readonly docroot: string;
  /** Never watched (the state and conflicts directories). */
  readonly ignoreDirs: readonly string[];
  readonly delayMs: number;
  readonly maxDelayMs: number;
  /** A round at least this often (the head is polled). */
  readonly intervalMs: number;
  /** A round scans the docroot when the watcher saw something, and at least this often (events the kernel dropped). */
  readonly rescanIntervalMs: number;
  /** With an event queue: the poll interval while the queue cannot be read. */
  readonly fallbackIntervalMs?: number | undefined;
}

/** One round's outcome, with the event queue's state when there is one. */
export type RoundOutcome = ({ ok: true; result: RoundResult } | { ok: false; error: unknown }) & { readonly events?: EventHealth | undefined };

/** Collaborators; `onRound` hears every round's outcome (status file, metrics). */
export interface SyncDaemonDeps extends JobDeps {
  readonly node: RoundRunner;
  readonly onRound?: (r: RoundOutcome) => Promise<void> | void;
  /** `--events`: a message in this queue starts a round at once (event-listener.ts). */
  readonly queue?: EventQueue | undefined;
}

/** Run until `signal` aborts; the round in flight finishes first. */
export async function runSyncDaemon(o: SyncDaemonOptions, d: SyncDaemonDeps): Promise<void> {
  const { log } = d;
  // One wake-up for the docroot's quiet window and the queue's hints: any number of them during a
  // round leave one more round, never one each, and rounds never overlap.
  const wake = new Wake();
  const listener = d.queue ? new EventListener(d.queue, () => wake.fire(), d) : undefined;
  let firstEvent = 0;
  let quiet: NodeJS.Timeout | undefined;
  const kick = () => wake.fire();
  const { watch: chokidarWatch } = await import("chokidar");
  const ignore = o.ignoreDirs.map((x) => path.resolve(x));
  const watcher = chokidarWatch(o.docroot, {
    ignoreInitial: true,
    persistent: true,
    atomic: true,
    ignored: (p: string) => ignore.some((x) => p === x || p.startsWith(x + path.sep)) || path.basename(p).startsWith(TEMP_MARK),
  });
  const ready = new Promise<void>((resolve) => watcher.once("ready", () => resolve()));
  // Whether the docroot may have changed since the last scan (the puller's own writes set it too:
  // the next round scans, finds the base, and publishes nothing).
  let changed = true;
  let lastScan = 0;
  watcher.on("all", () => {
    changed = true;
    const now = Date.now();
    if (!quiet) firstEvent = now;
    if (quiet) clearTimeout(quiet);
    // A quiet window after the last event, but never longer than maxDelay after the first.
    quiet = setTimeout(() => {
      quiet = undefined;
      kick();
    }, Math.max(0, Math.min(o.delayMs, o.maxDelayMs - (now - firstEvent))));
  });
  watcher.on("error", (err: unknown) => log.error(errorFields(err), "watcher error"));
  await ready;
  log.info({ docroot: o.docroot, delayMs: o.delayMs, intervalMs: o.intervalMs, ...(d.queue ? { events: d.queue.url } : {}) }, "syncing");
  // The listener stops with the daemon: no hint is taken once stopping.
  const listening = listener?.run(d.signal);
  const report = (r: { ok: true; result: RoundResult } | { ok: false; error: unknown }) => d.onRound?.(listener ? { ...r, events: listener.health } : r);
  let joining = true;
  let backoff = 0;
  let fatal: unknown;
  try {
    while (!d.signal.aborted) {
      try {
        const scan = joining || changed || Date.now() - lastScan >= o.rescanIntervalMs;
        if (scan) {
          changed = false;
          lastScan = Date.now();
        }
        const r = await d.node.round({ joining, scan });
        joining = false;
        backoff = 0;
        if (r.published) log.info({ generation: r.generation, changes: r.localChanges, conflicts: r.conflicts.length }, "published");
        await report({ ok: true, result: r });
        // Something was left for later (still being written): come back soon.
        if (r.deferred > 0) {
          backoff = o.delayMs;
          changed = true;
        }
      } catch (err) {
        if (d.signal.aborted) break;
        await report({ ok: false, error: err });
        changed = true; // the next round looks again
        if (!recoverable(err)) {
          fatal = err;
          break;
        }
        backoff = Math.min(MAX_BACKOFF_MS, Math.max(500, backoff * 2));
        // A bucket that holds what it should not (a generation no trusted key signed) is an error, as
        // in `pull --watch`; a transfer or a race that the next round may settle is a warning.
        const level = err instanceof FansyncError && err.exitCode === ExitCode.integrity ? "error" : "warn";
        log[level]({ ...errorFields(err), retryInMs: backoff }, "round failed; retrying");
      }
      if (d.signal.aborted) break;
      // Sleep until the poll interval, an event's quiet window, a hint from the queue, or the stop,
      // whichever is first. A failing round backs off first; a hint that came meanwhile still counts.
      const pollMs = listener?.failing ? Math.min(o.intervalMs, o.fallbackIntervalMs ?? o.intervalMs) : o.intervalMs;
      const wait = backoff || pollMs;
      const slept = Date.now();
      if (backoff) await sleep(backoff, d.signal);
      await wake.nap(backoff ? 0 : pollMs, d.signal);
      // Woken much later than asked: the process was frozen (SIGSTOP, a paused container, a
      // suspended VM) or its loop stalled, and the timer fires before the watcher's queued events
      // are read (issue 27). Whatever was edited meanwhile is not known yet: scan.
      if (Date.now() - slept > wait + STALL_MS) changed = true;
    }
  } finally {
    if (quiet) clearTimeout(quiet);
    await watcher.close();
    await listening;
  }
  if (fatal) throw fatal;
  log.info("stopped");
}

/**
 * What a later round may fix: everything but a wrong configuration or usage, and a lock another
 * process holds. Failed transfers, a delete guard's refusal (the docroot or the bucket may change),
 * a lost race (the next round rebases), a generation not all there yet, and local errors (a file or
 * directory someone removed while a round wrote next to it: sync shares its docroot with editors)
 * are retried with backoff, like `pull --watch`.
 */
function recoverable(err: unknown): boolean {
  return !(err instanceof UsageError || err instanceof ConfigError || err instanceof LockedError);
}
