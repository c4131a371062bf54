/**
 * The one daemon loop behind `watch`, `pull --watch`, `replicate --watch` (one per region) and `sync`:
 * run once; on failure decide from {@link daemonVerdict}'s table whether the daemon ends (thrown) or
 * backs off ({@link retryDelayMs}: one cap for every daemon) and runs again; after a good run nap on
 * the coalescing {@link Wake} until the poll interval, an event (the docroot watcher, an event queue,
 * a published generation) or the stop. Runs never overlap: a wake during a run leaves exactly one
 * more run. The run in flight when the stop comes finishes (its requests follow the caller's drain).
 *
 * Before this loop the four daemons each had their own (issue 26): backoff caps of 10, 30, 60 and
 * 60 s, and four rules for which failure ends the daemon (pull --watch never ended, sync ended on
 * configuration errors, watch on anything not known to be retryable, a replicator region never).
 */
import { ConfigError, CredentialsMissing, ExitCode, FansyncError, LockedError, RaceError, RegionMissing, UsageError } from "../core/errors.ts";
import { sleep } from "./sleep.ts";
import type { Wake } from "./wake.ts";

/** The first pause after a failed run; each further failure in a row doubles it. */
export const BACKOFF_FIRST_MS = 500;
/** The longest pause between attempts of a failing daemon, whichever daemon it is. */
export const BACKOFF_CAP_MS = 30_000;
// A nap that overran by this much means the process was frozen or its loop stalled (see below).
const STALL_MS = 1000;

/**
 * Whether the daemon is the location's only writer (`watch` holds the write lease for as long as it
 * runs) or shares it with other writers (`sync` nodes, a replicator's region, readers).
 */
export type Writers = "single" | "shared";

/** What a failed run means for the daemon. */
export type Verdict = "fatal" | "retry";

/** One row of the table: which errors, what the daemon does, and why. */
interface VerdictRow {
  readonly kind: string;
  readonly matches: (err: unknown) => boolean;
  readonly verdict: (writers: Writers) => Verdict;
}

const hasExitCode = (code: number) => (err: unknown) => err instanceof FansyncError && err.exitCode === code;

/**
 * The table, first match wins. Fatal is what waiting cannot fix; everything else is retried:
 * failed transfers, an unreachable server, a generation not all there yet, a delete guard's refusal
 * (the docroot or the bucket may change meanwhile), local errors (editors share a docroot), and a
 * head no trusted key signed: the node keeps serving its last good generation and says ERROR, since
 * a daemon that exited on it would let anyone who can write the bucket stop every node.
 */
const TABLE: readonly VerdictRow[] = [
  // A malformed flag, argument or key file (exit 2).
  { kind: "usage", matches: (e) => e instanceof UsageError || hasExitCode(ExitCode.usage)(e), verdict: () => "fatal" },
  // Configuration, credentials or region missing (exit 3): the operator must fix the setup.
  { kind: "config", matches: (e) => e instanceof ConfigError || e instanceof CredentialsMissing || e instanceof RegionMissing || hasExitCode(ExitCode.config)(e), verdict: () => "fatal" },
  // Another process runs this job (exit 75).
  { kind: "locked", matches: (e) => e instanceof LockedError, verdict: () => "fatal" },
  // A lost race (exit 6): where writers share a location the next run rebases on the new head; a
  // daemon that holds the lease and still lost means a second uploader on its prefix: it ends.
  { kind: "race", matches: (e) => e instanceof RaceError, verdict: (w) => (w === "single" ? "fatal" : "retry") },
];

/** Whether a failed run ends the daemon or is retried after a backoff (the table above). */
export function daemonVerdict(err: unknown, writers: Writers): Verdict {
  const row = TABLE.find((r) => r.matches(err));
  return row ? row.verdict(writers) : "retry";
}

/** The pause after the `failures`-th failed run in a row: doubling from {@link BACKOFF_FIRST_MS}, capped. */
export function retryDelayMs(failures: number): number {
  return Math.min(BACKOFF_CAP_MS, BACKOFF_FIRST_MS * 2 ** Math.max(0, Math.min(failures - 1, 30)));
}

/** Why a run starts: the first, a wake-up, the poll interval, or a retry after a failure. */
export type RunReason = "start" | "wake" | "poll" | "retry";

/** What the loop tells a run. */
export interface RunContext {
  readonly reason: RunReason;
  /**
   * The pause before this run overran by more than a second: the process was frozen (SIGSTOP, a
   * paused container, a suspended VM) or its loop stalled, and a timer fires before the watcher's
   * queued events are read (issue 27): whatever changed meanwhile may not be known yet.
   */
  readonly late: boolean;
}

/** What a good run may ask for: come back after `againInMs` instead of the poll interval (work left for later). */
export interface RunAsk {
  readonly againInMs?: number | undefined;
}

/** The loop's collaborators. */
export interface DaemonLoopOptions {
  /** One run; throws what failed. */
  readonly run: (ctx: RunContext) => Promise<RunAsk | void>;
  /** The stop (SIGTERM): no new run starts once it aborted. */
  readonly signal: AbortSignal;
  /** Cuts a healthy daemon's nap short (coalesced); never a failing daemon's backoff. */
  readonly wake: Wake;
  /** The nap between good runs, read before each nap (an event queue that fails polls faster). */
  readonly pollMs: () => number;
  /** The `race` row of the table. */
  readonly writers: Writers;
  /** A failed run that will be retried in `retryInMs` (the daemon's log line). Not told fatal errors: they are thrown. */
  readonly onRetry?: (err: unknown, retryInMs: number, failures: number) => void;
  /** The backoff's pause (the tests record it instead of waiting); cut short by `signal`. */
  readonly sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
}

/**
 * Run until `signal` aborts (resolves) or a run fails fatally (rejects with its error). A run that
 * fails after the stop came is not retried and not reported: it was cut short by the drain.
 */
export async function runDaemonLoop(o: DaemonLoopOptions): Promise<void> {
  let failures = 0;
  let ctx: RunContext = { reason: "start", late: false };
  while (!o.signal.aborted) {
    try {
      const ask = await o.run(ctx);
      failures = 0;
      if (o.signal.aborted) break;
      const asked = ask?.againInMs ?? o.pollMs();
      const napStart = Date.now();
      const woken = await o.wake.nap(asked, o.signal);
      ctx = { reason: woken ? "wake" : "poll", late: Date.now() - napStart > asked + STALL_MS };
    } catch (err) {
      if (o.signal.aborted) break;
      if (daemonVerdict(err, o.writers) === "fatal") throw err;
      failures++;
      const backoff = retryDelayMs(failures);
      o.onRetry?.(err, backoff, failures);
      const napStart = Date.now();
      await (o.sleep ?? sleep)(backoff, o.signal);
      // A wake that came during the failed run or its backoff is answered by the retry itself.
      await o.wake.nap(0, o.signal);
      ctx = { reason: "retry", late: Date.now() - napStart > backoff + STALL_MS };
    }
  }
}
