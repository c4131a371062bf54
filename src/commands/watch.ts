/**
 * `fansync watch <docroot> s3://bucket/prefix`: the uploader daemon. Reconciles once, then turns
 * chokidar events into batches (a quiet window plus a cap, like lsyncd), one generation per batch.
 */
import { lstat } from "node:fs/promises";
import path from "node:path";
import type { Config } from "../core/config.ts";
import { FansyncError, GuardError, PartialFailureError, RaceError, errorMessage } from "../core/errors.ts";
import type { Logger } from "../adapters/logger.ts";
import { progressBarFor } from "../adapters/progress-bar.ts";
import { fanOutEvents } from "../sync/transfer-events.ts";
import { isRetryable } from "../adapters/s3-errors.ts";
import type { Uploader } from "../sync/uploader.ts";
import { createUploader } from "./push.ts";
import { formatLocation } from "../core/location.ts";
import type { Monitor } from "../sync/monitor.ts";
import { startMonitor } from "./monitor-setup.ts";

// Above this many changed paths a batch is cheaper as one full reconcile than as scoped scans.
const FULL_RECONCILE_ABOVE = 5000;
// How long SIGTERM waits for an in-flight batch before aborting its requests.
const DRAIN_DEADLINE_MS = 30_000;

/** Run the uploader daemon until `signal` aborts; resolves after draining. */
export async function watch(cfg: Config, log: Logger, signal: AbortSignal): Promise<void> {
  const hard = new AbortController();
  const target = cfg.target ? formatLocation(cfg.target) : "";
  const monitor = cfg.target ? await startMonitor(cfg, log, signal, { role: "push", daemon: true, detail: `${path.resolve(cfg.docroot ?? ".")} → ${[target, ...cfg.replicateTo.map(formatLocation)].join(", ")}`, fleet: [cfg.target, ...cfg.replicateTo] }) : undefined;
  // One bar per batch, and only while the daemon runs in the foreground of a terminal.
  const uploader = createUploader(cfg, log, hard.signal, fanOutEvents(progressBarFor(cfg), monitor?.events()));
  const lock = await uploader.state.lock("push").catch(async (err: unknown) => {
    await monitor?.stop();
    throw err;
  });
  try {
    // The daemon holds the write lease for as long as it runs: a second uploader refuses to start
    // (exit 6) instead of interleaving generations.
    await uploader.holdLease().catch((err: unknown) => {
      // An unreachable server at start is retried by the batches (which take the lease too).
      if (err instanceof RaceError) throw err;
    });
    await run(cfg, log, uploader, hard, signal, monitor);
  } finally {
    await monitor?.stop();
    await uploader.releaseLease();
    await lock.release();
  }
}

async function run(cfg: Config, log: Logger, uploader: Uploader, hard: AbortController, signal: AbortSignal, monitor: Monitor | undefined): Promise<void> {
  const docroot = path.resolve(cfg.docroot as string);
  const wlog = log.child({ component: "watch" });
  const { replicateAfter } = await import("./replicate-hook.ts");
  const afterPublish = replicateAfter(cfg, log, hard.signal);

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
  const recordFailure = (err: unknown) => {
    failingSince ??= Date.now();
    monitor?.record({ ok: false, generation, headGeneration: generation, lagSeconds: Math.round((Date.now() - failingSince) / 1000), error: err });
  };

  const schedule = (ms: number) => {
    if (stopped) return;
    if (quietTimer) clearTimeout(quietTimer);
    quietTimer = setTimeout(flush, ms);
    if (!capTimer) capTimer = setTimeout(flush, Math.max(ms, cfg.maxDelay - (Date.now() - batchStart)));
  };

  let fatal: unknown;
  let finish!: () => void;
  const done = new Promise<void>((resolve) => (finish = resolve));
  const startBatch = () => {
    if (busy || stopped) return;
    busy = runBatch()
      .catch((err: unknown) => {
        // Lost race, config or local errors end the daemon with their exit code.
        fatal = err;
        finish();
      })
      .finally(() => {
        busy = undefined;
        if ((pending.size > 0 || full) && !stopped && !fatal) {
          batchStart = Date.now();
          schedule(backoff || cfg.delay);
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
    // A file modified within the quiet window is probably still being written: leave it for later.
    const young: string[] = [];
    if (!doFull) {
      await Promise.all(
        taken.map(async (p) => {
          const st = await lstat(path.join(docroot, p)).catch(() => undefined);
          if (st?.isFile() && now - st.mtimeMs < cfg.delay) young.push(p);
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
      const res = doFull ? await uploader.reconcile() : await uploader.reconcile(scope);
      backoff = 0;
      generation = res.generation;
      failingSince = undefined;
      monitor?.record({ ok: true, generation, headGeneration: generation, lagSeconds: 0 });
      for (const p of res.deferred) pending.add(p);
      if (res.published) {
        wlog.info({ generation: res.generation, paths: doFull ? "all" : scope.length, durationMs: Date.now() - started }, "batch published");
        await afterPublish(res.generation);
      }
    } catch (err) {
      if (err instanceof RaceError) throw err;
      recordFailure(err);
      if (err instanceof GuardError) {
        wlog.error({ err: { message: err.message }, hint: err.hint }, "batch refused by the delete guard; waiting for the docroot to change");
        return;
      }
      if (err instanceof PartialFailureError || isRetryable(err) || (err instanceof FansyncError && "retryable" in err && err.retryable)) {
        backoff = Math.min(60_000, Math.max(1000, backoff * 2));
        wlog.warn({ err: { message: errorMessage(err) }, retryInMs: backoff }, "batch failed; retrying");
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
  const stateDir = uploader.state.dir;
  const watcher = chokidarWatch(docroot, {
    ignoreInitial: true,
    persistent: true,
    atomic: true,
    ignored: (p: string) => p.startsWith(stateDir + path.sep) || path.basename(p).startsWith(".fansync-tmp-"),
  });
  const ready = new Promise<void>((resolve) => watcher.once("ready", () => resolve()));
  watcher.on("all", (_event: string, abs: string) => {
    const rel = path.relative(docroot, abs).split(path.sep).join("/");
    if (rel === "" || rel.startsWith("..")) return;
    if (pending.size === 0 && !busy) batchStart = Date.now();
    pending.add(rel);
    schedule(cfg.delay);
  });
  watcher.on("error", (err: unknown) => wlog.error({ err }, "watcher error"));
  await ready;
  wlog.info({ docroot, delayMs: cfg.delay, maxDelayMs: cfg.maxDelay }, "watching");

  const rescan = setInterval(() => {
    full = true;
    schedule(0);
  }, cfg.rescanInterval);

  if (signal.aborted) finish();
  else signal.addEventListener("abort", () => finish(), { once: true });
  batchStart = Date.now();
  startBatch();
  await done;
  stopped = true;
  clearInterval(rescan);
  if (quietTimer) clearTimeout(quietTimer);
  if (capTimer) clearTimeout(capTimer);
  await watcher.close();
  if (busy) {
    const deadline = setTimeout(() => hard.abort(new Error("drain deadline passed")), DRAIN_DEADLINE_MS);
    await busy.catch(() => undefined);
    clearTimeout(deadline);
  }
  await afterPublish.drain();
  if (fatal) throw fatal;
  wlog.info({ pending: pending.size }, "stopped");
}
