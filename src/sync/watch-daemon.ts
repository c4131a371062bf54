/**
 * The uploader daemon's engine: chokidar events become batches (a quiet window plus a cap, like
 * lsyncd), one generation per batch. A file modified within the quiet window is left for a later
 * batch (it is probably still being written); a failing batch backs off and keeps its paths; a
 * periodic full rescan catches what the watcher missed. `fansync watch` only wires it.
 */
import { lstat } from "node:fs/promises";
import path from "node:path";
import { GuardError, PartialFailureError, RaceError, UntrustedHead } from "../core/errors.ts";
import { TEMP_MARK } from "../core/paths.ts";
import { isRetryable } from "../adapters/s3-errors.ts";
import type { Drain } from "./drain.ts";
import type { JobDeps } from "./job-deps.ts";
import type { ReconcileResult } from "./uploader.ts";
import { errorFields } from "../adapters/logger.ts";

// Above this many changed paths a batch is cheaper as one full reconcile than as scoped scans.
const FULL_RECONCILE_ABOVE = 5000;
// The longest pause between attempts of a failing batch.
const MAX_BACKOFF_MS = 60_000;

/** What the daemon reconciles with (the uploader). */
export interface Reconciler {
  reconcile(scope?: readonly string[]): Promise<ReconcileResult>;
}

/** Timing and what to watch. */
export interface WatchDaemonOptions {
  readonly docroot: string;
  /** Never watched (the state directory, when it lies under the docroot's parent tree). */
  readonly ignoreDir: string;
  readonly delayMs: number;
  readonly maxDelayMs: number;
  readonly rescanIntervalMs: number;
}

/** Collaborators: `signal` is the stop (the uploader's requests follow the caller's drain deadline). */
export interface WatchDaemonDeps extends JobDeps {
  readonly uploader: Reconciler;
  /** After each published generation (replication kick). */
  readonly onPublished?: (generation: number) => Promise<void> | void;
  /** Each batch's outcome, for the status page. */
  readonly onBatch?: (r: { ok: true; generation: number } | { ok: false; generation: number; failingForMs: number; error: unknown }) => void;
}

/**
 * Run until `signal` aborts, then let the batch in flight finish (the caller's {@link Drain}
 * aborts its requests once the deadline passes). Lost races, configuration and local errors end
 * the daemon: thrown.
 */
export async function runWatchDaemon(o: WatchDaemonOptions, d: WatchDaemonDeps): Promise<void> {
  const { docroot } = o;
  const log = d.log;
  const pending = new Set<string>();
  let full = true; // the start is a full reconcile
  let batchStart = 0;
  let quietTimer: NodeJS.Timeout | undefined;
  let capTimer: NodeJS.Timeout | undefined;
  let busy: Promise<void> | undefined;
  let backoff = 0;
  let stopped = false;
  // For the status page: the uploader is "behind" from its first failed batch until one succeeds.
  let generation = 0;
  let failingSince: number | undefined;

  const schedule = (ms: number) => {
    if (stopped) return;
    if (quietTimer) clearTimeout(quietTimer);
    quietTimer = setTimeout(flush, ms);
    if (!capTimer) capTimer = setTimeout(flush, Math.max(ms, o.maxDelayMs - (Date.now() - batchStart)));
  };

  let fatal: unknown;
  let finish!: () => void;
  const done = new Promise<void>((resolve) => (finish = resolve));
  const startBatch = () => {
    if (busy || stopped) return;
    busy = runBatch()
      .catch((err: unknown) => {
        fatal = err;
        finish();
      })
      .finally(() => {
        busy = undefined;
        if ((pending.size > 0 || full) && !stopped && !fatal) {
          batchStart = Date.now();
          schedule(backoff || o.delayMs);
        }
      });
  };
  const flush = () => {
    if (quietTimer) clearTimeout(quietTimer);
    if (capTimer) clearTimeout(capTimer);
    quietTimer = capTimer = undefined;
    startBatch(); // a running batch reschedules when done
  };

  const runBatch = async () => {
    const doFull = full || pending.size > FULL_RECONCILE_ABOVE;
    const taken = doFull ? [] : [...pending];
    const scope: string[] = [];
    const now = Date.now();
    const young: string[] = [];
    if (!doFull) {
      await Promise.all(
        taken.map(async (p) => {
          const st = await lstat(path.join(docroot, p)).catch(() => undefined);
          if (st?.isFile() && now - st.mtimeMs < o.delayMs) young.push(p);
          else scope.push(p);
        }),
      );
    }
    for (const p of scope) pending.delete(p);
    if (doFull) {
      pending.clear();
      full = false;
    }
    if (!doFull && scope.length === 0) return;
    const started = Date.now();
    try {
      const res = doFull ? await d.uploader.reconcile() : await d.uploader.reconcile(scope);
      backoff = 0;
      generation = res.generation;
      failingSince = undefined;
      d.onBatch?.({ ok: true, generation });
      for (const p of res.deferred) pending.add(p);
      if (res.published) {
        log.info({ generation: res.generation, paths: doFull ? "all" : scope.length, durationMs: Date.now() - started }, "batch published");
        await d.onPublished?.(res.generation);
      }
    } catch (err) {
      if (err instanceof RaceError) throw err;
      failingSince ??= Date.now();
      d.onBatch?.({ ok: false, generation, failingForMs: Date.now() - failingSince, error: err });
      if (err instanceof GuardError) {
        log.error(errorFields(err), "batch refused by the delete guard; waiting for the docroot to change");
        return;
      }
      // A partly failed batch is tried again later whatever failed (a refusal may be fixed meanwhile);
      // so is one refused because it would sign paths it carries from a head it cannot vouch for
      // (unreadable or failed files: a later batch publishes the docroot whole once they are fixed).
      if (err instanceof PartialFailureError || err instanceof UntrustedHead || isRetryable(err)) {
        backoff = Math.min(MAX_BACKOFF_MS, Math.max(1000, backoff * 2));
        log.warn({ ...errorFields(err), retryInMs: backoff }, "batch failed; retrying");
        if (doFull) full = true;
        else for (const p of scope) pending.add(p);
        return;
      }
      throw err;
    } finally {
      for (const p of young) pending.add(p);
    }
  };

  const { watch: chokidarWatch } = await import("chokidar");
  const ignoreDir = path.resolve(o.ignoreDir);
  const watcher = chokidarWatch(docroot, {
    ignoreInitial: true,
    persistent: true,
    atomic: true,
    ignored: (p: string) => p.startsWith(ignoreDir + path.sep) || path.basename(p).startsWith(TEMP_MARK),
  });
  const ready = new Promise<void>((resolve) => watcher.once("ready", () => resolve()));
  watcher.on("all", (_event: string, abs: string) => {
    const rel = path.relative(docroot, abs).split(path.sep).join("/");
    if (rel === "" || rel.startsWith("..")) return;
    if (pending.size === 0 && !busy) batchStart = Date.now();
    pending.add(rel);
    schedule(o.delayMs);
  });
  watcher.on("error", (err: unknown) => log.error(errorFields(err), "watcher error"));
  await ready;
  log.info({ docroot, delayMs: o.delayMs, maxDelayMs: o.maxDelayMs }, "watching");

  const rescan = setInterval(() => {
    full = true;
    schedule(0);
  }, o.rescanIntervalMs);

  if (d.signal.aborted) finish();
  else d.signal.addEventListener("abort", () => finish(), { once: true });
  batchStart = Date.now();
  startBatch();
  await done;
  stopped = true;
  clearInterval(rescan);
  if (quietTimer) clearTimeout(quietTimer);
  if (capTimer) clearTimeout(capTimer);
  await watcher.close();
  await busy?.catch(() => undefined);
  if (fatal) throw fatal;
  log.info({ pending: pending.size }, "stopped");
}
