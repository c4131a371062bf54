/** `push --packs` / `watch --packs` (`packs: true`): pack objects written after each generation (engine/packs.ts). */
import path from "node:path";
import type { Config } from "../core/config.ts";
import { DEFAULT_PACK_TUNING } from "../core/pack-format.ts";
import { errorFields, type Logger } from "../adapters/logger.ts";
import { PackWriter } from "../engine/packs.ts";
import type { Reconciler } from "../engine/watch-daemon.ts";
import type { Uploader } from "../engine/uploader.ts";
import { storeFor } from "./wiring.ts";

/**
 * A function that brings the packs in step with the generation the uploader last published
 * (`repack`: rebuild all); undefined without packs or in a dry run. It never throws: packs are an
 * optimisation, a failure leaves nodes fetching path-keyed objects and is logged as a warning.
 */
export function packsAfter(cfg: Config, uploader: Uploader, log: Logger, signal: AbortSignal): ((repack?: boolean) => Promise<void>) | undefined {
  if (!cfg.packs || cfg.dryRun || !cfg.target || !cfg.docroot) return undefined;
  const writer = new PackWriter({
    loc: cfg.target,
    store: storeFor(cfg, cfg.target),
    docroot: path.resolve(cfg.docroot),
    tuning: DEFAULT_PACK_TUNING,
    multipartThreshold: cfg.multipartThreshold,
    partSize: cfg.partSize,
    cacheFiles: uploader.state.packIndexCache,
  }, { log: log.child({ component: "packs" }), signal, now: () => new Date() });
  return async (repack = false) => {
    const at = uploader.published;
    if (!at) return;
    try {
      await writer.write(at.files, at.generation, () => uploader.holdLease(), repack);
    } catch (err) {
      signal.throwIfAborted();
      log.warn({ ...errorFields(err), generation: at.generation }, "could not write packs: nodes fetch path-keyed objects meanwhile; the next generation tries again");
    }
  };
}

/**
 * The watch daemon's reconciler with packs written after each batch that published (and after the
 * first, which turns packs on for a site published without them); a quiet batch costs nothing.
 */
export function withPacks(uploader: Uploader, packs: ((repack?: boolean) => Promise<void>) | undefined): Reconciler {
  if (!packs) return uploader;
  let first = true;
  return {
    async reconcile(scope) {
      const res = await uploader.reconcile(scope);
      if (res.published || first) await packs();
      first = false;
      return res;
    },
  };
}
