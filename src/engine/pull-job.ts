/**
 * The puller as a job: one run over the ordered sources (regional first, fallback after), the
 * OK / STALE / ERROR rule, the status file a load balancer reads, and the daemon loop with its
 * backoff and drain. `fansync pull` only wires it from the config.
 */
import os from "node:os";
import { GuardError, ObjectMoved, PathsNotReplaced, RemoteError, StaleHead, errorLine } from "../core/errors.ts";
import { formatLocation } from "../core/location.ts";
import type { StateDir } from "../adapters/state-dir.ts";
import { readJson, writeFileAtomic } from "../adapters/state-files.ts";
import { runDaemonLoop } from "./daemon-loop.ts";
import { Drain } from "./drain.ts";
import type { JobDeps } from "./job-deps.ts";
import { pullOnce, type PullerDeps, type PullerOptions, type PullResult, type Source } from "./puller.ts";
import { RunDeadline } from "./run-deadline.ts";
import type { EventQueue } from "../adapters/event-queue.ts";
import { EventListener, type EventHealth } from "./event-listener.ts";
import { orderSources } from "./source-choice.ts";
import { Wake } from "./wake.ts";
import { errorFields } from "../adapters/logger.ts";

/** The status document written after every run (`--status-file`; `fansync status` reads it). */
export interface PullStatus {
  readonly status: "OK" | "STALE" | "ERROR";
  readonly line: string;
  readonly generation: number;
  readonly headGeneration: number;
  readonly lag: { readonly generations: number; readonly seconds: number };
  readonly source: string;
  readonly lastSuccess: string | null;
  readonly lastAttempt: string;
  readonly lastError: string | null;
  readonly host: string;
  /** With `--events`: the queue's state (a queue that fails means the node is polling). */
  readonly events?: EventHealth | undefined;
  /** Paths of the generation this node could not replace or delete (an immutable file): the rest is applied. */
  readonly unapplied?: readonly string[];
  /** The docroot this puller keeps (`fansync status` lists every puller of the machine). */
  readonly docroot?: string;
}

/** What the job needs beyond one pull's options. */
export interface PullJobOptions {
  readonly puller: Omit<PullerOptions, "state">;
  readonly state: StateDir;
  readonly sources: readonly Source[];
  /** `--status-file` (absolute), or undefined. */
  readonly statusFile: string | undefined;
  readonly staleAfterMs: number;
  readonly maxLag: number;
  readonly intervalMs: number;
  /** With an event queue: the poll interval while the queue cannot be read. */
  readonly fallbackIntervalMs?: number | undefined;
  /** Each run's deadline before time for its bytes is added (run-deadline.ts); 0: none. */
  readonly runTimeoutMs: number;
  /** How long a stopping daemon lets its run finish before aborting its requests (default 30 s). */
  readonly drainDeadlineMs?: number | undefined;
}

/** Collaborators: `signal` is the stop (SIGTERM); each settled run is told to `onSettled`. */
export interface PullJobDeps extends JobDeps {
  readonly events?: PullerDeps["events"];
  readonly onSettled?: ((st: PullStatus, err: unknown) => Promise<void> | void) | undefined;
  /** `--events`: the daemon also runs at once when this queue has a message (event-listener.ts). */
  readonly queue?: EventQueue | undefined;
  /** Told after each run that applied a generation (--on-apply); must not block or throw. */
  readonly afterApply?: ((r: PullResult) => void) | undefined;
}

// The other sources' heads are looked at about every this many poll intervals (not every run).
const LAG_CHECK_RUNS = 10;

/** Runs pulls for one docroot: once (cron) or as a daemon. */
export class PullJob {
  private readonly o: PullJobOptions;
  private readonly d: PullJobDeps;
  private last: PullStatus | undefined;
  private loaded = false;
  /** Signing on one side only was said (once per process). */
  private warnedUnchecked = false;
  private readonly wake = new Wake();
  private readonly listener: EventListener | undefined;

  constructor(opts: PullJobOptions, deps: PullJobDeps) {
    this.o = opts;
    this.d = deps;
    this.listener = deps.queue ? new EventListener(deps.queue, () => this.wake.fire(), deps) : undefined;
  }


  /** One run; records its status either way and throws what failed. */
  async runOnce(signal: AbortSignal = this.d.signal): Promise<PullResult> {
    if (!this.loaded) {
      // A failed run repeats what the last good one knew (generation, source, last success): kept
      // in the state directory (a status file alone, from before that, is read too).
      this.last = (await readJson<PullStatus>(this.o.state.lastStatus)) ?? (this.o.statusFile ? await readJson<PullStatus>(this.o.statusFile) : undefined);
      this.loaded = true;
    }
    const deadline = new RunDeadline(this.o.runTimeoutMs, signal);
    try {
      const r = await this.fromSources(deadline.signal, deadline);
      if (!r.noop) this.d.afterApply?.(r);
      await this.settle(statusOk(r, this.o.staleAfterMs, this.d.now()), undefined);
      return r;
    } catch (caught) {
      // Whatever a request cut short by the deadline threw, the run failed for the deadline.
      const err = deadline.expired ? deadline.error() : caught;
      await this.settle(statusFailed(this.last, err, this.o.staleAfterMs, this.d.now()), err);
      throw err;
    } finally {
      deadline.dispose();
    }
  }

  /**
   * The daemon: a run every interval (or at once on an event), backing off while runs fail, ended
   * only by what the daemon loop's table calls fatal (daemon-loop.ts). On stop, the run in flight
   * drains, with its requests aborted once the drain deadline passes.
   */
  async daemon(): Promise<void> {
    const { log } = this.d;
    // The listener stops with the daemon (its stop or a fatal run, not the drain): no new hint is taken once stopping.
    const stopListening = new AbortController();
    const listening = this.listener?.run(AbortSignal.any([this.d.signal, stopListening.signal]));
    try {
      await runDaemonLoop({
        run: async () => {
          const drain = new Drain(this.d.signal, this.o.drainDeadlineMs);
          try {
            await this.runOnce(drain.hard);
          } finally {
            drain.dispose();
          }
        },
        signal: this.d.signal,
        wake: this.wake,
        pollMs: () => this.pollIntervalMs,
        writers: "shared",
        onRetry: (err, retryInMs) => log.error({ ...errorFields(err), retryInMs }, "pull failed"),
      });
    } finally {
      stopListening.abort();
      await listening;
    }
  }

  /** The poll interval now: the fallback while the event queue cannot be read. */
  private get pollIntervalMs(): number {
    return this.listener?.failing ? Math.min(this.o.intervalMs, this.o.fallbackIntervalMs ?? this.o.intervalMs) : this.o.intervalMs;
  }

  private async fromSources(signal: AbortSignal, deadline: RunDeadline): Promise<PullResult> {
    const { sources } = this.o;
    const deps: PullerDeps = { log: this.d.log, signal, now: this.d.now, events: this.d.events, deadline };
    // The lag rule (src/engine/source-choice.ts) may put a fresher source first; see docs/replication.md.
    const lagRule = { state: this.o.state, maxLag: this.o.maxLag, checkEveryMs: LAG_CHECK_RUNS * this.o.intervalMs };
    const ordered = (await orderSources(sources, lagRule, deps)).sources;
    let lastErr: unknown;
    for (const [i, s] of ordered.entries()) {
      try {
        const r = await pullOnce(s, { ...this.o.puller, state: this.o.state }, deps);
        if (r.uncheckedSignature && !this.warnedUnchecked) {
          this.warnedUnchecked = true;
          this.d.log.warn({ source: formatLocation(s.loc), keyId: r.uncheckedSignature }, "the head is signed, but this node checks no signatures: anyone who can write the bucket can publish what it installs (give --trusted-key)");
        }
        if (s !== sources[0]) this.d.log.warn({ source: formatLocation(s.loc), preferred: formatLocation((sources[0] as Source).loc) }, "served by a fallback source");
        return r;
      } catch (err) {
        lastErr = err;
        // Only an unreachable or failing source is skipped; bad data or a local problem is not
        // something another source can fix, and the guard must never be bypassed by a fallback.
        if (!(err instanceof RemoteError) || i === ordered.length - 1) throw err;
        this.d.log.warn({ source: formatLocation(s.loc), ...errorFields(err) }, "source unavailable; trying the next one");
      }
    }
    throw lastErr;
  }

  private async settle(status: PullStatus, err: unknown): Promise<void> {
    const st: PullStatus = { ...status, docroot: this.o.puller.docroot, ...(this.listener ? { events: this.listener.health } : {}) };
    this.last = st;
    // Always in the state directory, where `fansync status` finds every puller of the machine;
    // also in --status-file for a load balancer or a monitoring check.
    await writeFileAtomic(this.o.state.lastStatus, JSON.stringify(st) + "\n");
    if (this.o.statusFile) await writeStatus(this.o.statusFile, st);
    await this.d.onSettled?.(st, err);
  }
}

/** The status after a successful run: OK, or STALE when behind the head for longer than `staleAfterMs`. */
export function statusOk(r: PullResult, staleAfterMs: number, now: Date): PullStatus {
  const behind = r.headGeneration - r.generation;
  const lagSeconds = behind > 0 && r.headTime ? Math.max(0, (now.getTime() - Date.parse(r.headTime)) / 1000) : 0;
  const stale = behind > 0 && lagSeconds * 1000 > staleAfterMs;
  return {
    status: stale ? "STALE" : "OK",
    line: stale ? `STALE ${r.generation} behind ${r.headGeneration}` : `OK ${r.generation}`,
    generation: r.generation,
    headGeneration: r.headGeneration,
    lag: { generations: behind, seconds: Math.round(lagSeconds) },
    source: r.source,
    lastSuccess: now.toISOString(),
    lastAttempt: now.toISOString(),
    lastError: null,
    host: os.hostname(),
  };
}

/**
 * The status after a failed run. A node still serves its last generation: an object that moved
 * (the master published again, replication arriving) shortly after a success is STALE, not ERROR,
 * until `staleAfterMs` passes; a load balancer can choose which of the two words it accepts.
 */
export function statusFailed(prev: PullStatus | undefined, err: unknown, staleAfterMs: number, now: Date): PullStatus {
  // A node its guard stopped says in the status line itself what to run.
  const msg = err instanceof GuardError && err.hint ? `${errorLine(err)} -- ${err.hint}` : errorLine(err);
  const since = prev?.lastSuccess ? now.getTime() - Date.parse(prev.lastSuccess) : Infinity;
  // A head older than --max-age is STALE by definition: the node serves its last generation.
  const status: PullStatus["status"] = err instanceof StaleHead || (err instanceof ObjectMoved && since <= staleAfterMs) ? "STALE" : "ERROR";
  if (err instanceof PathsNotReplaced) {
    // The generation is in place but for these paths: the status says which generation, and which paths.
    const st = unsuccessful(prev, "ERROR", msg, now);
    return { ...st, line: `ERROR ${err.generation} ${msg}`.slice(0, 300), generation: err.generation, headGeneration: Math.max(err.generation, st.headGeneration), unapplied: err.paths.slice(0, 100) };
  }
  return unsuccessful(prev, status, msg, now);
}

/** A status that repeats what the last good run knew, with this attempt's word and reason. */
function unsuccessful(prev: PullStatus | undefined, status: "STALE" | "ERROR", reason: string, now: Date): PullStatus {
  return {
    status,
    line: `${status} ${prev?.generation ?? 0} ${reason}`.slice(0, 300),
    generation: prev?.generation ?? 0,
    headGeneration: prev?.headGeneration ?? 0,
    lag: prev?.lag ?? { generations: 0, seconds: 0 },
    source: prev?.source ?? "",
    lastSuccess: prev?.lastSuccess ?? null,
    lastAttempt: now.toISOString(),
    lastError: reason.slice(0, 300),
    host: os.hostname(),
  };
}

/**
 * A run that could not start because another holds the lock: when the status file's last attempt
 * is older than `staleAfterMs` (the holder is stuck, or something else holds the lock), it says so:
 * STALE, with the generation still served and why nothing runs. Never throws.
 */
export async function noteLocked(file: string, err: Error, staleAfterMs: number, log: JobDeps["log"], now = new Date()): Promise<void> {
  try {
    const prev = await readJson<PullStatus>(file);
    const last = prev?.lastAttempt ? Date.parse(prev.lastAttempt) : NaN;
    if (Number.isFinite(last) && now.getTime() - last <= staleAfterMs) return;
    await writeStatus(file, unsuccessful(prev, "STALE", `could not run: ${err.message}`, now));
  } catch (e) {
    log.warn(errorFields(e), "could not write the status file");
  }
}

/** The plain-text companion of the JSON status file (`status.json` → `status.txt`). */
export function textPath(statusFile: string): string {
  return statusFile.endsWith(".json") ? statusFile.slice(0, -5) + ".txt" : statusFile + ".txt";
}

async function writeStatus(file: string, s: PullStatus): Promise<void> {
  await writeFileAtomic(file, JSON.stringify(s, null, 1) + "\n");
  await writeFileAtomic(textPath(file), s.line + "\n");
}
