/** Starts a daemon's `--http` status server from the resolved config (or nothing without --http). */
import type { Config } from "../core/config.ts";
import { UsageError } from "../core/errors.ts";
import { formatLocation, type Location } from "../core/location.ts";
import type { Logger } from "../adapters/logger.ts";
import { requestsOf, sampleEveryMs, storeFor } from "./wiring.ts";
import { Monitor, type MonitorOptions } from "../engine/monitor.ts";

/** The monitor for a daemon, listening; undefined when `--http` is not set. */
export async function startMonitor(cfg: Config, log: Logger, signal: AbortSignal, o: { role: MonitorOptions["role"]; daemon: boolean; detail: string; fleet: readonly Location[]; expectEveryMs?: number; serving?: () => Promise<number> }): Promise<Monitor | undefined> {
  if (!cfg.http) return undefined;
  if (!o.daemon) throw new UsageError("--http serves a daemon's status: it needs --watch", { hint: "add --watch, or use `fansync status` for a one-shot look" });
  const m = new Monitor(
    {
      role: o.role,
      detail: o.detail,
      listen: cfg.http,
      // The job's own locations first (the first is the reference), then --fleet, each once.
      fleet: [...new Map([...o.fleet, ...cfg.fleet].map((loc) => [formatLocation(loc), loc])).values()].map((loc) => ({ loc, store: storeFor(cfg, loc) })),
      silentAfterMs: cfg.staleAfter,
      healthMaxLagMs: cfg.healthMaxLag,
      expectEveryMs: o.expectEveryMs,
      serving: o.serving,
      sampleEveryMs: sampleEveryMs(),
      requests: requestsOf(cfg),
    },
    { log: log.child({ component: "http" }), now: () => new Date(), signal },
  );
  await m.start();
  return m;
}
