/**
 * `fansync watch <docroot> s3://bucket/prefix`: the uploader daemon. Reconciles once, then turns
 * chokidar events into batches (a quiet window plus a cap, like lsyncd), one generation per batch.
 */
import path from "node:path";
import type { ConfigFor } from "../core/config.ts";
import { RaceError } from "../core/errors.ts";
import type { Logger } from "../adapters/logger.ts";
import { progressBarFor } from "../adapters/progress-bar.ts";
import { statsLinesFor } from "../adapters/progress-stats.ts";
import { fanOutEvents } from "../core/transfer-events.ts";
import { Drain } from "../engine/drain.ts";
import { RunScope } from "../engine/run-deadline.ts";
import { runWatchDaemon } from "../engine/watch-daemon.ts";
import { ROLLBACK_WRITER } from "../core/history.ts";
import { createUploader, pushState } from "./push.ts";
import { afterGenerationFor } from "./after-generation.ts";
import { formatLocation } from "../core/location.ts";
import { startMonitor } from "./monitor-setup.ts";
import { packsAfter, withPacks } from "./packs-hook.ts";
import { drainDeadlineMs } from "./wiring.ts";

/** Run the uploader daemon until `signal` aborts; resolves after draining. */
export async function watch(cfg: ConfigFor<"watch">, log: Logger, signal: AbortSignal): Promise<void> {
  // The batch in flight when SIGTERM comes drains; its requests are aborted after the deadline.
  const drain = new Drain(signal, drainDeadlineMs());
  const target = formatLocation(cfg.target);
  const monitor = await startMonitor(cfg, log, signal, { role: "push", daemon: true, detail: `${path.resolve(cfg.docroot)} → ${[target, ...cfg.replicateTo.map(formatLocation)].join(", ")}`, fleet: [cfg.target, ...cfg.replicateTo] });
  // One bar per batch, and only while the daemon runs in the foreground of a terminal.
  const after = await afterGenerationFor(cfg, "publish", pushState(cfg), log, signal);
  // Each batch ends by its deadline (--run-timeout): a stuck one fails, is reported and retried.
  const runs = new RunScope(cfg.runTimeout, drain.hard);
  const uploader = createUploader(cfg, log, runs, fanOutEvents(progressBarFor(cfg, process.env), statsLinesFor(cfg, log), monitor?.events()), after, "watch");
  const lock = await uploader.state.lock("push").catch(async (err: unknown) => {
    await monitor?.stop();
    throw err;
  });
  const { replicateAfter } = await import("./replicate-hook.ts");
  // Each region's generations are told too (a distribution named s3://region/prefix=ID is invalidated for them).
  const afterPublish = replicateAfter(cfg, log, drain.hard, after);
  try {
    // The daemon holds the write lease for as long as it runs: a second uploader refuses to start
    // (exit 6) instead of interleaving generations.
    await uploader.holdLease().catch((err: unknown) => {
      // An unreachable server at start is retried by the batches (which take the lease too).
      if (err instanceof RaceError) throw err;
    });
    // A rollback published the head: this daemon is about to publish the docroot over it.
    const head = await uploader.currentHead().catch(() => undefined);
    if (head?.writer.startsWith(ROLLBACK_WRITER)) {
      log.warn({ generation: head.generation, writer: head.writer },
        `generation ${head.generation} was published by a rollback: this uploader publishes the docroot over it at its first change or rescan (now, if the docroot differs); stop it and restore the docroot first if the rollback must stay`);
    }
    await runWatchDaemon(
      // A heartbeat is published by a full rescan that finds nothing changed: rescan often enough.
      { docroot: path.resolve(cfg.docroot), ignoreDir: uploader.state.dir, delayMs: cfg.delay, maxDelayMs: cfg.maxDelay, rescanIntervalMs: cfg.signingKey && cfg.heartbeat ? Math.min(cfg.rescanInterval, cfg.heartbeat / 2) : cfg.rescanInterval },
      {
        uploader: runs.wrap(withPacks(uploader, packsAfter(cfg, uploader, log, drain.hard))),
        log: log.child({ component: "watch" }),
        signal,
        now: () => new Date(),
        onPublished: (generation) => afterPublish(generation),
        onBatch: (b) =>
          monitor?.record(b.ok
            ? { ok: true, generation: b.generation, headGeneration: b.generation, lagSeconds: 0 }
            : { ok: false, generation: b.generation, headGeneration: b.generation, lagSeconds: Math.round(b.failingForMs / 1000), error: b.error }),
      },
    );
  } finally {
    await afterPublish.drain();
    await after?.flush();
    drain.dispose();
    await monitor?.stop();
    await uploader.releaseLease();
    await lock.release();
  }
}
