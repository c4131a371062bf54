/**
 * The two-way daemon's loop: a round (engine/two-way.ts) when the docroot changed (chokidar events,
 * a quiet window plus a cap, as in `watch`: a rename or a burst of thousands of files is one round),
 * and every poll interval otherwise (one conditional GET of the head when nothing moved). The loop,
 * its backoff and what ends it are the daemon loop's (daemon-loop.ts), the batching the docroot
 * watcher's (adapters/docroot-watcher.ts), both shared with `watch`.
 * With an event queue (`sync --events`), a message about the head starts a round at once, as in
 * `pull --watch --events`: the same listener and coalescing wake-up (event-listener.ts, wake.ts),
 * the poll interval as the safety net, and the fallback interval while the queue cannot be read.
 */
import { ExitCode, FansyncError } from "../core/errors.ts";
import { watchDocroot } from "../adapters/docroot-watcher.ts";
import type { EventQueue } from "../adapters/event-queue.ts";
import { runDaemonLoop, type RunAsk, type RunContext } from "./daemon-loop.ts";
import { EventListener, type EventHealth } from "./event-listener.ts";
import type { JobDeps } from "./job-deps.ts";
import type { RoundResult } from "./two-way.ts";
import { Wake } from "./wake.ts";
import { errorFields } from "../adapters/logger.ts";

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

/**
 * Run until `signal` aborts; the round in flight finishes first. What ends the daemon is the daemon
 * loop's table (daemon-loop.ts; nodes share the location, so a lost race is retried: the next
 * round rebases): thrown, after its status was reported.
 */
export async function runSyncDaemon(o: SyncDaemonOptions, d: SyncDaemonDeps): Promise<void> {
  const { log } = d;
  // One wake-up for the docroot's quiet window and the queue's hints: any number of them during a
  // round leave one more round, never one each, and rounds never overlap.
  const wake = new Wake();
  // Whether the docroot may have changed since the last scan (the puller's own writes set it too:
  // the next round scans, finds the base, and publishes nothing).
  let changed = true;
  let lastScan = 0;
  const watcher = await watchDocroot({ docroot: o.docroot, ignoreDirs: o.ignoreDirs, delayMs: o.delayMs, maxDelayMs: o.maxDelayMs }, () => {
    changed = true;
    wake.fire();
  }, log);
  log.info({ docroot: o.docroot, delayMs: o.delayMs, intervalMs: o.intervalMs, ...(d.queue ? { events: d.queue.url } : {}) }, "syncing");
  // The listener stops with the daemon (its stop, or a fatal round): no hint is taken once stopping.
  const stopListening = new AbortController();
  const listener = d.queue ? new EventListener(d.queue, () => wake.fire(), d) : undefined;
  const listening = listener?.run(AbortSignal.any([d.signal, stopListening.signal]));
  const report = (r: { ok: true; result: RoundResult } | { ok: false; error: unknown }) => d.onRound?.(listener ? { ...r, events: listener.health } : r);
  let joining = true;
  const round = async (ctx: RunContext): Promise<RunAsk> => {
    // Woken much later than asked: what was edited meanwhile is not known to the watcher yet: scan.
    if (ctx.late || ctx.reason === "retry") changed = true;
    const scan = joining || changed || Date.now() - lastScan >= o.rescanIntervalMs;
    if (scan) {
      changed = false;
      lastScan = Date.now();
    }
    let r: RoundResult;
    try {
      r = await d.node.round({ joining, scan });
    } catch (err) {
      if (!d.signal.aborted) await report({ ok: false, error: err });
      throw err;
    }
    joining = false;
    if (r.published) log.info({ generation: r.generation, changes: r.localChanges, conflicts: r.conflicts.length }, "published");
    await report({ ok: true, result: r });
    // Something was left for later (still being written): come back after the quiet window.
    if (r.deferred > 0) {
      changed = true;
      return { againInMs: o.delayMs };
    }
    return {};
  };
  try {
    await runDaemonLoop({
      run: round,
      signal: d.signal,
      wake,
      // The poll interval, or the fallback while the queue cannot be read.
      pollMs: () => (listener?.failing ? Math.min(o.intervalMs, o.fallbackIntervalMs ?? o.intervalMs) : o.intervalMs),
      writers: "shared",
      onRetry: (err, retryInMs) => {
        // A bucket that holds what it should not (a generation no trusted key signed) is an error, as
        // in `pull --watch`; a transfer or a race that the next round may settle is a warning.
        const level = err instanceof FansyncError && err.exitCode === ExitCode.integrity ? "error" : "warn";
        log[level]({ ...errorFields(err), retryInMs }, "round failed; retrying");
      },
    });
  } finally {
    stopListening.abort();
    await watcher.close();
    await listening;
  }
  log.info("stopped");
}
