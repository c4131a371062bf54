/** `fansync push <docroot> s3://bucket/prefix`: one-shot reconcile of a docroot into a bucket. */
import { readFileSync } from "node:fs";
import path from "node:path";
import { type Config, writerTuning } from "../core/config.ts";
import { UsageError } from "../core/errors.ts";
import { compileCacheControl, compileFilter, parseFilterFile } from "../core/filters.ts";
import { formatLocation } from "../core/location.ts";
import type { Logger } from "../adapters/logger.ts";
import { progressBarFor } from "../adapters/progress-bar.ts";
import { jobState, locationState, storeFor } from "./wiring.ts";
import type { TransferEvents } from "../core/transfer-events.ts";
import { type ReconcileResult, Uploader } from "../sync/uploader.ts";

/** Build the uploader for a resolved config (shared by push and watch); `events` observe its transfers. */
export function createUploader(cfg: Config, log: Logger, signal: AbortSignal, events?: TransferEvents): Uploader {
  if (!cfg.docroot) throw new UsageError("no docroot given", { hint: "fansync push <docroot> s3://bucket/prefix" });
  if (!cfg.target) throw new UsageError("no target location given", { hint: "fansync push <docroot> s3://bucket/prefix" });
  const docroot = path.resolve(cfg.docroot);
  let exclude = [...cfg.exclude];
  if (cfg.excludeFrom) {
    let text: string;
    try {
      text = readFileSync(cfg.excludeFrom, "utf8");
    } catch (err) {
      throw new UsageError(`cannot read --exclude-from ${cfg.excludeFrom}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
    }
    exclude = [...exclude, ...parseFilterFile(text)];
  }
  const state = jobState(cfg, "push", { docroot, url: formatLocation(cfg.target) });
  return new Uploader(
    {
      docroot,
      loc: cfg.target,
      state,
      shared: locationState(cfg, formatLocation(cfg.target)),
      ...writerTuning(cfg),
      filter: compileFilter({ exclude, include: cfg.include }),
      cacheControl: compileCacheControl(cfg.cacheControl),
    },
    { store: storeFor(cfg, cfg.target), log: log.child({ component: "uploader" }), signal, now: () => new Date(), events },
  );
}

/** Run one push. */
export async function push(cfg: Config, log: Logger, signal: AbortSignal): Promise<ReconcileResult> {
  const uploader = createUploader(cfg, log, signal, progressBarFor(cfg));
  // One run per state directory: its index, orphan list and write lease belong to one process.
  const lock = await uploader.state.lock("push");
  try {
    return await uploader.reconcile();
  } finally {
    await uploader.releaseLease();
    await lock.release();
  }
}
