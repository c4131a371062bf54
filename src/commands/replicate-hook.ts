/** `watch --replicate-to`: replicate each published generation from inside the uploader. */
import type { Config } from "../core/config.ts";
import { errorFields, type Logger } from "../adapters/logger.ts";
import { Drain } from "../engine/drain.ts";
import type { AfterGeneration } from "./after-generation.ts";
import { drainDeadlineMs } from "./wiring.ts";

/** Called after each published generation; `drain` stops replication after the rounds in flight. */
export interface AfterPublish {
  (generation: number): Promise<void>;
  drain(): Promise<void>;
}

// Regions also poll on their own this often: a region that was down catches up without a new publish.
const SAFETY_INTERVAL_MS = 60_000;

/**
 * A callback run after each published generation; a no-op without --replicate-to. Replication runs
 * beside the uploader, never inside its batch: a slow or unreachable region must not delay the
 * next generation, and each region keeps its own backoff.
 */
export function replicateAfter(cfg: Config, log: Logger, signal: AbortSignal, afterRegion?: AfterGeneration): AfterPublish {
  if (cfg.replicateTo.length === 0 || !cfg.target) return Object.assign(async () => {}, { drain: async () => {} });
  const primary = cfg.target;
  const stop = new AbortController();
  // Requests are aborted by the uploader's hard stop, or by ours once the drain deadline passed.
  const drainer = new Drain(stop.signal, drainDeadlineMs());
  const requests = AbortSignal.any([signal, drainer.hard]);
  let kick: (() => void) | undefined;
  // The loops start with the uploader: a region left behind while it was down catches up at once.
  const running = import("./replicate.ts")
    .then(({ createReplicator }) => {
      const rep = createReplicator(cfg, primary, cfg.replicateTo, log, requests, undefined, undefined, afterRegion);
      kick = () => rep.kick();
      return rep.daemon(SAFETY_INTERVAL_MS, stop.signal);
    })
    .catch((err: unknown) => log.error(errorFields(err), "replication stopped"));
  // The generation number is not needed: a kick makes each region read the primary's head anew.
  const after = async (_generation: number) => {
    kick?.();
  };
  return Object.assign(after, {
    drain: async () => {
      stop.abort();
      await running;
      drainer.dispose();
    },
  });
}
