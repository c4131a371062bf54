/**
 * `fansync replicate s3://primary/prefix s3://region-a/prefix [...]`: bring regional locations to the
 * primary's generation, once (exit non-zero if any region failed) or as a daemon (--watch).
 */
import type { Config, ConfigFor } from "../core/config.ts";
import { settingsFor } from "../core/config.ts";
import { errorMessage, PartialFailureError, UsageError } from "../core/errors.ts";
import { formatLocation, type Location } from "../core/location.ts";
import type { Logger } from "../adapters/logger.ts";
import { drainDeadlineMs, eventQueueFor, jobState, leaseTtlMs, locationState, signerFor, storeFor, trustFor } from "./wiring.ts";
import { type RegionStatus, Replicator } from "../engine/replicator.ts";
import { startMonitor } from "./monitor-setup.ts";
import { Drain } from "../engine/drain.ts";
import type { EventQueue } from "../adapters/event-queue.ts";
import { type AfterGeneration, afterGenerationFor } from "./after-generation.ts";
import { FALLBACK_INTERVAL_MS } from "./job-options.ts";

/** Build the replicator for a primary and its regions from the resolved config. */
export function createReplicator(cfg: Config, primary: Location, regions: readonly Location[], log: Logger, signal: AbortSignal, onStatus?: (s: RegionStatus) => void, queue?: EventQueue, after?: AfterGeneration): Replicator {
  const p = settingsFor(cfg, primary);
  const primaryUrl = formatLocation(primary);
  for (const r of regions) {
    if (formatLocation(r) === primaryUrl) throw new UsageError(`region ${primaryUrl} is the primary itself`);
  }
  return new Replicator(
    {
      primary: { url: primaryUrl, loc: primary, store: storeFor(cfg, primary) },
      regions: regions.map((loc) => {
        const s = settingsFor(cfg, loc);
        // Server-side copy needs one server that holds both buckets and one identity that may read
        // the primary and write the region; otherwise the bytes pass through this process.
        return { url: formatLocation(loc), loc, store: storeFor(cfg, loc), serverSideCopy: s.endpointUrl === p.endpointUrl && s.profile === p.profile, shared: locationState(cfg, formatLocation(loc)) };
      }),
      stateDir: jobState(cfg, "replicate", { url: primaryUrl }).dir,
      concurrency: cfg.concurrency,
      multipartThreshold: cfg.multipartThreshold,
      partSize: cfg.partSize,
      retain: cfg.retain,
      leaseTtlMs: leaseTtlMs(),
      maxJournals: 20,
      verify: cfg.verify,
      // Copy only what verifies: --trusted-key, and a master replicating its own generations (watch
      // --replicate-to) trusts its own signing key.
      trust: trustFor(cfg, cfg.signingKey ? signerFor(cfg, primary) : undefined),
    },
    { log: log.child({ component: "replicator" }), signal, now: () => new Date(), onStatus, queue, afterGeneration: after && ((g) => after.notify(g)) },
  );
}

/** Run `replicate`, once or (with --watch) until `signal` aborts. */
export async function replicate(cfg: ConfigFor<"replicate">, log: Logger, signal: AbortSignal): Promise<void> {
  if (cfg.events && !cfg.watch) throw new UsageError("--events wakes the daemon: it needs --watch", { hint: "add --watch (a one-shot run reads the primary's head when it starts)" });
  // Rounds in flight when SIGTERM comes drain; their requests are aborted after the deadline.
  const drain = new Drain(signal, drainDeadlineMs());
  const monitor = await startMonitor(cfg, log, signal, {
    role: "replicate",
    daemon: cfg.watch,
    detail: `${formatLocation(cfg.source)} → ${cfg.targets.map(formatLocation).join(", ")}`,
    fleet: [cfg.source, ...cfg.targets],
    expectEveryMs: cfg.interval,
  });
  // The page shows the replicator as a whole: as far as its slowest region, failing if any fails.
  const regions = new Map<string, RegionStatus>();
  // Assigned below; the page's callback reads the event queue's state from it.
  let rep: Replicator | undefined = undefined;
  const onStatus = monitor
    ? (s: RegionStatus) => {
        regions.set(s.region, s);
        const all = [...regions.values()];
        const bad = all.find((x) => x.status === "ERROR");
        void monitor.record({
          ok: bad === undefined,
          generation: Math.min(...all.map((x) => x.generation)),
          headGeneration: Math.max(...all.map((x) => x.primaryGeneration)),
          lagSeconds: Math.max(...all.map((x) => x.lag.seconds)),
          error: bad ? new PartialFailureError(`region ${bad.region}: ${bad.lastError ?? "failed"}`, [{ path: bad.region, error: bad.lastError ?? "failed" }]) : undefined,
        });
        const ev = rep?.events;
        if (ev) monitor.recordEvents(ev);
      }
    : undefined;
  const after = await afterGenerationFor(cfg, "publish", jobState(cfg, "replicate", { url: formatLocation(cfg.source) }), log, signal);
  rep = createReplicator(cfg, cfg.source, cfg.targets, log, drain.hard, onStatus, cfg.watch ? await eventQueueFor(cfg) : undefined, after);
  const rlog = log.child({ component: "replicator" });
  if (!cfg.watch) {
    const outcome = await rep.runOnce().finally(() => drain.dispose());
    await after?.flush();
    const failed = outcome.filter((o) => o.error !== undefined);
    if (failed.length > 0) {
      throw new PartialFailureError(
        `${failed.length} of ${outcome.length} region(s) failed: ${failed.map((f) => `${f.region}: ${errorMessage(f.error)}`).join("; ")}`,
        failed.map((f) => ({ path: f.region, error: errorMessage(f.error) })),
      );
    }
    return;
  }
  rlog.info({ primary: formatLocation(cfg.source), regions: cfg.targets.map(formatLocation), intervalMs: cfg.interval, ...(cfg.events ? { events: cfg.events } : {}) }, "replicating");
  try {
    // A queue that cannot be read: poll as often as a replicator without events would.
    await rep.daemon(cfg.interval, signal, FALLBACK_INTERVAL_MS);
  } finally {
    drain.dispose();
    await after?.flush();
    await monitor?.stop();
  }
  rlog.info("stopped");
}
