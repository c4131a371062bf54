/**
 * `fansync pull s3://bucket/prefix <docroot>`: bring a web node's docroot to the current generation,
 * once (cron) or as a daemon (--watch). Sources are tried in order (regional first, primary as
 * fallback); the status file says what a load balancer needs to know.
 */
import os from "node:os";
import path from "node:path";
import type { Config } from "../core/config.ts";
import { errorMessage, FansyncError, RemoteError, UsageError, errorLine } from "../core/errors.ts";
import { formatLocation } from "../core/location.ts";
import type { Logger } from "../adapters/logger.ts";
import { progressBarFor } from "../adapters/progress-bar.ts";
import { fanOutEvents } from "../sync/transfer-events.ts";
import { acquireLock, readJson, writeFileAtomic } from "../adapters/state-files.ts";
import { jobStateDir } from "../cli/settings.ts";
import { storeFor } from "../cli/store.ts";
import { pullOnce, type PullResult, type Source } from "../sync/puller.ts";
import { orderSources } from "../sync/source-choice.ts";
import { sleep } from "../sync/sleep.ts";
import { writeNodeReport } from "../sync/node-reports.ts";
import { startMonitor } from "./monitor-setup.ts";
import { FANSYNC_VERSION } from "../adapters/version.ts";

/** The status document written after every run. */
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
}

const DRAIN_DEADLINE_MS = 30_000;
// The other sources' heads are looked at about every this many poll intervals (not every run).
const LAG_CHECK_RUNS = 10;

/** Run `pull` once (throws what failed) or as a daemon until `signal` aborts (then drains). */
export async function pull(cfg: Config, log: Logger, signal: AbortSignal): Promise<void> {
  if (cfg.sources.length === 0) throw new UsageError("no source location given", { hint: "fansync pull s3://bucket/prefix <docroot>" });
  if (!cfg.docroot) throw new UsageError("no docroot given", { hint: "fansync pull s3://bucket/prefix <docroot>" });
  const docroot = path.resolve(cfg.docroot);
  const stateDir = jobStateDir(cfg, "pull", docroot, "");
  const plog = log.child({ component: "puller" });
  const monitor = await startMonitor(cfg, log, signal, { role: "pull", daemon: cfg.watch, detail: `${docroot} ← ${cfg.sources.map(formatLocation).join(", ")}`, fleet: [...cfg.sources, ...(cfg.reportTo ? [cfg.reportTo] : [])], expectEveryMs: cfg.interval });
  const lock = await acquireLock(path.join(stateDir, "pull.lock")).catch(async (err: unknown) => {
    await monitor?.stop();
    throw err;
  });
  const hard = new AbortController();
  const sources: Source[] = cfg.sources.map((loc) => ({ loc, store: storeFor(cfg, loc) }));
  const statusFile = cfg.statusFile ? path.resolve(cfg.statusFile) : undefined;
  const opts = {
    docroot,
    stateDir,
    concurrency: cfg.concurrency,
    maxDelete: cfg.maxDelete,
    force: cfg.force,
    dryRun: cfg.dryRun,
    deleteExtraneous: cfg.deleteExtraneous,
    verify: cfg.verify,
    checksum: cfg.checksum,
    keep: statusFile ? [statusFile, textPath(statusFile)] : [],
    maxJournals: 20,
  };
  // With --watch, one bar per generation pulled, and only while in the foreground of a terminal.
  const deps = { log: plog, signal: hard.signal, now: () => new Date(), events: fanOutEvents(progressBarFor(cfg), monitor?.events()) };
  // The lag rule (src/sync/source-choice.ts) may put a fresher source first; see docs/replication.md.
  const lagRule = { stateDir, maxLag: cfg.maxLag, checkEveryMs: LAG_CHECK_RUNS * cfg.interval };
  const reporter = cfg.report ? nodeReporter(cfg, sources, stateDir, plog) : undefined;
  // A failed run repeats what the last good one knew (generation, source, last success). A daemon
  // keeps it in memory; across processes (cron) it comes from the status file, or with --report and
  // no status file from a copy in the state directory.
  const lastStatusFile = statusFile ?? (reporter ? path.join(stateDir, "last-status.json") : undefined);
  let last = lastStatusFile ? await readJson<PullStatus>(lastStatusFile) : undefined;
  const settle = async (st: PullStatus, err?: unknown) => {
    last = st;
    if (statusFile) await writeStatus(statusFile, st);
    else if (lastStatusFile) await writeFileAtomic(lastStatusFile, JSON.stringify(st) + "\n");
    await reporter?.(st);
    const lagSeconds = err === undefined ? st.lag.seconds : st.lastSuccess ? Math.round((Date.now() - Date.parse(st.lastSuccess)) / 1000) : 0;
    monitor?.record({ ok: err === undefined, status: err === undefined ? st.status : undefined, generation: st.generation, headGeneration: st.headGeneration, lagSeconds, error: err });
  };
  const once = async (): Promise<PullResult> => {
    let lastErr: unknown;
    const ordered = (await orderSources(sources, lagRule, deps)).sources;
    for (const [i, s] of ordered.entries()) {
      try {
        const r = await pullOnce(s, opts, deps);
        if (s !== sources[0]) plog.warn({ source: formatLocation(s.loc), preferred: formatLocation((sources[0] as Source).loc) }, "served by a fallback source");
        return r;
      } catch (err) {
        lastErr = err;
        // Only an unreachable or failing source is skipped; bad data or a local problem is not
        // something another source can fix, and the guard must never be bypassed by a fallback.
        if (!(err instanceof RemoteError) || i === ordered.length - 1) throw err;
        plog.warn({ source: formatLocation(s.loc), err: errorMessage(err) }, "source unavailable; trying the next one");
      }
    }
    throw lastErr;
  };
  try {
    if (!cfg.watch) {
      try {
        const r = await once();
        await settle(ok(r, cfg.staleAfter));
        if (r.noop) plog.info({ generation: r.generation, source: r.source }, "up to date");
      } catch (err) {
        await settle(failed(last, err, cfg.staleAfter), err);
        throw err;
      }
      return;
    }
    plog.info({ docroot, intervalMs: cfg.interval, sources: sources.map((s) => formatLocation(s.loc)) }, "watching the head");
    let backoff = 0;
    while (!signal.aborted) {
      const running = once().then(
        async (r) => {
          backoff = 0;
          await settle(ok(r, cfg.staleAfter));
        },
        async (err: unknown) => {
          backoff = Math.min(60_000, Math.max(cfg.interval, backoff * 2));
          plog.error({ err: { type: (err as Error).name, message: errorMessage(err) }, hint: err instanceof FansyncError ? err.hint : undefined, retryInMs: backoff }, "pull failed");
          await settle(failed(last, err, cfg.staleAfter), err);
        },
      );
      // SIGTERM drains the run in flight (bounded by a deadline), then the loop ends.
      const onAbort = () => setTimeout(() => hard.abort(new Error("drain deadline passed")), DRAIN_DEADLINE_MS).unref();
      signal.addEventListener("abort", onAbort, { once: true });
      await running;
      signal.removeEventListener("abort", onAbort);
      await sleep(backoff || cfg.interval, signal);
    }
    plog.info("stopped");
  } finally {
    await monitor?.stop();
    await lock.release();
  }
}

function ok(r: PullResult, staleAfterMs: number): PullStatus {
  const now = new Date();
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

function failed(prev: PullStatus | undefined, err: unknown, staleAfterMs: number): PullStatus {
  const now = new Date();
  const msg = errorLine(err);
  const since = prev?.lastSuccess ? now.getTime() - Date.parse(prev.lastSuccess) : Infinity;
  // A transient failure shortly after a success still serves the last generation: STALE, not ERROR,
  // until staleAfter passes; a load balancer can choose which of the two words it accepts.
  const moved = (err as Error).name === "ObjectMoved";
  const status: PullStatus["status"] = moved && since <= staleAfterMs ? "STALE" : "ERROR";
  return {
    status,
    line: `${status} ${prev?.generation ?? 0} ${msg}`,
    generation: prev?.generation ?? 0,
    headGeneration: prev?.headGeneration ?? 0,
    lag: prev?.lag ?? { generations: 0, seconds: 0 },
    source: prev?.source ?? "",
    lastSuccess: prev?.lastSuccess ?? null,
    lastAttempt: now.toISOString(),
    lastError: msg,
    host: os.hostname(),
  };
}

/**
 * `--report`: after each run, tell the fleet view how this node is doing, in the location that
 * served it (a regional node writes to its regional bucket, the one its policy allows) or in
 * `--report-to`. Daemons refresh an unchanged report every minute, cron runs every five.
 */
function nodeReporter(cfg: Config, sources: readonly Source[], stateDir: string, log: Logger): (st: PullStatus) => Promise<void> {
  // The host name, made a valid key segment (a name that is only symbols becomes "node").
  const node = cfg.nodeId ?? (os.hostname().replace(/[^A-Za-z0-9._-]/g, "-").replace(/^[^A-Za-z0-9]+/, "").slice(0, 64) || "node");
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
    }, { stateDir, log });
  };
}

/** The plain-text companion of the JSON status file (`status.json` → `status.txt`). */
export function textPath(statusFile: string): string {
  return statusFile.endsWith(".json") ? statusFile.slice(0, -5) + ".txt" : statusFile + ".txt";
}

async function writeStatus(file: string, s: PullStatus): Promise<void> {
  await writeFileAtomic(file, JSON.stringify(s, null, 1) + "\n");
  await writeFileAtomic(textPath(file), s.line + "\n");
}
