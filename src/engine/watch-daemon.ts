/**
 * The uploader daemon's engine: chokidar events become batches (a quiet window plus a cap, like
 * lsyncd), one generation per batch. A file modified within the quiet window is left for a later
 * batch (it is probably still being written); a failing batch backs off and keeps its paths; a
 * periodic full rescan catches what the watcher missed. `fansync watch` only wires it.
 */
import { lstat } from "node:fs/promises";
import path from "node:path";
import { GuardError, RaceError } from "../core/errors.ts";
import { errorFields } from "../adapters/logger.ts";
import { watchDocroot } from "../adapters/docroot-watcher.ts";
import { runDaemonLoop } from "./daemon-loop.ts";
import type { Drain } from "./drain.ts";
import type { JobDeps } from "./job-deps.ts";
import type { ReconcileResult } from "./uploader.ts";
import { Wake } from "./wake.ts";

// Above this many changed paths a batch is cheaper as one full reconcile than as scoped scans.
const FULL_RECONCILE_ABOVE = 5000;

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
 * aborts its requests once the deadline passes). What ends the daemon is the daemon loop's table
 * (daemon-loop.ts; this daemon holds the write lease, so a lost race ends it too): thrown.
 */
export async function runWatchDaemon(o: WatchDaemonOptions, d: WatchDaemonDeps): Promise<void> {
  const { docroot } = o;
  const log = d.log;
  const pending = new Set<string>();
  let full = true; // the start is a full reconcile
  let lastFull = Date.now();
  // For the status page: the uploader is "behind" from its first failed batch until one succeeds.
  let generation = 0;
  let failingSince: number | undefined;
  const wake = new Wake();

  const runBatch = async (): Promise<void> => {
    // A periodic full rescan catches what the watcher missed (and publishes the heartbeat).
    if (Date.now() - lastFull >= o.rescanIntervalMs) full = true;
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
      lastFull = Date.now();
    }
    if (!doFull && scope.length === 0) return;
    const started = Date.now();
    try {
      const res = doFull ? await d.uploader.reconcile() : await d.uploader.reconcile(scope);
      generation = res.generation;
      failingSince = undefined;
      d.onBatch?.({ ok: true, generation });
      for (const p of res.deferred) pending.add(p);
      if (res.published) {
        log.info({ generation: res.generation, paths: doFull ? "all" : scope.length, durationMs: Date.now() - started }, "batch published");
        await d.onPublished?.(res.generation);
      }
    } catch (err) {
      // Whatever failed, the batch keeps its paths: a retry (or a later batch, for a refusal the
      // docroot or the bucket may fix meanwhile) publishes them.
      if (doFull) full = true;
      else for (const p of scope) pending.add(p);
      if (!(err instanceof RaceError)) {
        failingSince ??= Date.now();
        d.onBatch?.({ ok: false, generation, failingForMs: Date.now() - failingSince, error: err });
      }
      throw err;
    } finally {
      for (const p of young) pending.add(p);
    }
  };

  const watcher = await watchDocroot({ docroot, ignoreDirs: [o.ignoreDir], delayMs: o.delayMs, maxDelayMs: o.maxDelayMs }, (paths) => {
    for (const p of paths) pending.add(p);
    wake.fire();
  }, log);
  log.info({ docroot, delayMs: o.delayMs, maxDelayMs: o.maxDelayMs }, "watching");
  try {
    await runDaemonLoop({
      // Paths left for later (still being written) come back after the quiet window.
      run: async () => {
        await runBatch();
        return pending.size > 0 ? { againInMs: o.delayMs } : {};
      },
      signal: d.signal,
      wake,
      pollMs: () => Math.max(0, lastFull + o.rescanIntervalMs - Date.now()),
      writers: "single",
      onRetry: (err, retryInMs) => {
        if (err instanceof GuardError) log.error({ ...errorFields(err), retryInMs }, "batch refused by the delete guard; retrying");
        else log.warn({ ...errorFields(err), retryInMs }, "batch failed; retrying");
      },
    });
  } finally {
    await watcher.close();
  }
  log.info({ pending: pending.size }, "stopped");
}
