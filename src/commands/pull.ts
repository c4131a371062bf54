/**
 * `fansync pull s3://bucket/prefix <docroot>`: bring a web node's docroot to the current generation,
 * once (cron) or as a daemon (--watch). Sources are tried in order (regional first, primary as
 * fallback); the status file says what a load balancer needs to know.
 */
import os from "node:os";
import path from "node:path";
import type { Config, ConfigFor } from "../core/config.ts";
import { formatLocation } from "../core/location.ts";
import type { Logger } from "../adapters/logger.ts";
import { progressBarFor } from "../adapters/progress-bar.ts";
import { statsLinesFor } from "../adapters/progress-stats.ts";
import type { StateDir } from "../adapters/state-dir.ts";
import { fanOutEvents } from "../core/transfer-events.ts";
import { readServedGeneration, type Source } from "../engine/puller.ts";
import { noteLocked, PullJob, type PullStatus } from "../engine/pull-job.ts";
import { LockedError, UsageError } from "../core/errors.ts";
import { writeNodeReport } from "../engine/node-reports.ts";
import { startMonitor } from "./monitor-setup.ts";
import { drainDeadlineMs, eventQueueFor, jobState, storeFor, trustFor } from "./wiring.ts";
import { FALLBACK_INTERVAL_MS, nodeName, pullerOptions, statusFiles } from "./job-options.ts";
import { afterGenerationFor } from "./after-generation.ts";
import { FANSYNC_VERSION } from "../adapters/version.ts";

export type { PullStatus } from "../engine/pull-job.ts";

/** Run `pull` once (throws what failed) or as a daemon until `signal` aborts (then drains). */
export async function pull(cfg: ConfigFor<"pull">, log: Logger, signal: AbortSignal): Promise<void> {
  const docroot = path.resolve(cfg.docroot);
  if (cfg.events && !cfg.watch) throw new UsageError("--events wakes a daemon: it needs --watch", { hint: "add --watch (a cron run reads the head when cron starts it)" });
  // Signed generations: read the trusted keys before anything runs (a bad key is a usage error).
  const trust = trustFor(cfg, undefined);
  const state = jobState(cfg, "pull", { docroot });
  const plog = log.child({ component: "puller" });
  const monitor = await startMonitor(cfg, log, signal, { role: "pull", daemon: cfg.watch, detail: `${docroot} ← ${cfg.sources.map(formatLocation).join(", ")}`, fleet: [...cfg.sources, ...(cfg.reportTo ? [cfg.reportTo] : [])], expectEveryMs: cfg.interval, serving: () => readServedGeneration(state) });
  const statusFile = statusFiles(cfg)?.file;
  const lock = await state.lock("pull").catch(async (err: unknown) => {
    await monitor?.stop();
    // A run that cannot even start says so where the load balancer looks, once the last word there
    // is older than --stale-after (the holder is not getting anywhere); a cron overlap stays quiet.
    if (err instanceof LockedError && statusFile) await noteLocked(statusFile, err, cfg.staleAfter, plog);
    throw err;
  });
  const sources: Source[] = cfg.sources.map((loc) => ({ loc, store: storeFor(cfg, loc) }));
  const reporter = cfg.report ? nodeReporter(cfg, sources, state, plog) : undefined;
  // --on-apply: after each generation applied, on its own queue (the lock is held until it ran).
  const after = await afterGenerationFor(cfg, "apply", state, log, signal);
  const job = new PullJob(
    {
      puller: await pullerOptions(cfg, "pull", trust),
      state,
      sources,
      statusFile,
      staleAfterMs: cfg.staleAfter,
      maxLag: cfg.maxLag,
      intervalMs: cfg.interval,
      // A queue that cannot be read: poll as often as a node without events would.
      fallbackIntervalMs: FALLBACK_INTERVAL_MS,
      runTimeoutMs: cfg.runTimeout,
      drainDeadlineMs: drainDeadlineMs(),
    },
    {
      log: plog,
      signal,
      now: () => new Date(),
      // With --watch, one bar per generation pulled, and only while in the foreground of a terminal.
      events: fanOutEvents(progressBarFor(cfg, process.env), statsLinesFor(cfg, plog), monitor?.events()),
      onSettled: async (st, err) => {
        await reporter?.(st);
        const lagSeconds = err === undefined ? st.lag.seconds : st.lastSuccess ? Math.round((Date.now() - Date.parse(st.lastSuccess)) / 1000) : 0;
        await monitor?.record({ ok: err === undefined, status: err === undefined ? st.status : undefined, generation: st.generation, headGeneration: st.headGeneration, lagSeconds, error: err, unapplied: st.unapplied?.length ?? 0 });
        if (st.events) monitor?.recordEvents(st.events);
      },
      queue: cfg.watch ? await eventQueueFor(cfg) : undefined,
      afterApply: after && ((r) => after.notify({ location: r.source, generation: r.generation, changed: r.changedPaths ?? [], deleted: r.deletedPaths ?? [] })),
    },
  );
  try {
    if (!cfg.watch) {
      const r = await job.runOnce();
      if (r.noop) plog.info({ generation: r.generation, source: r.source }, "up to date");
      return;
    }
    plog.info({ docroot, intervalMs: cfg.interval, ...(cfg.events ? { events: cfg.events } : {}), sources: sources.map((s) => formatLocation(s.loc)) }, "watching the head");
    await job.daemon();
    plog.info("stopped");
  } finally {
    await after?.flush();
    await monitor?.stop();
    await lock.release();
  }
}

/**
 * `--report`: after each run, tell the fleet view how this node is doing, in the location that
 * served it (a regional node writes to its regional bucket, the one its policy allows) or in
 * `--report-to`. Daemons refresh an unchanged report every minute, cron runs every five.
 */
function nodeReporter(cfg: Config, sources: readonly Source[], state: StateDir, log: Logger): (st: PullStatus) => Promise<void> {
  // The host name, made a valid key segment (a name that is only symbols becomes "node").
  const node = nodeName(cfg);
  const fixed = cfg.reportTo ? { loc: cfg.reportTo, store: storeFor(cfg, cfg.reportTo) } : undefined;
  const everyMs = cfg.watch ? 60_000 : 300_000;
  return async (st) => {
    const dest = fixed ?? sources.find((s) => formatLocation(s.loc) === st.source) ?? (sources[0] as Source);
    await writeNodeReport(dest.store, dest.loc, {
      node,
      host: os.hostname(),
      status: st.status,
      generation: st.generation,
      headGeneration: st.headGeneration,
      lagSeconds: st.lag.seconds,
      source: st.source,
      lastSuccess: st.lastSuccess,
      lastError: st.lastError,
      time: st.lastAttempt,
      everyMs,
      version: FANSYNC_VERSION,
    }, { state, log });
  };
}
