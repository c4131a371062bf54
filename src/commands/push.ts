/** `fansync push <docroot> s3://bucket/prefix`: one-shot reconcile of a docroot into a bucket. */
import type { StateDir } from "../adapters/state-dir.ts";
import { type AfterGeneration, afterGenerationFor } from "./after-generation.ts";
import path from "node:path";
import type { ConfigFor } from "../core/config.ts";
import { PartialFailureError } from "../core/errors.ts";
import { formatLocation } from "../core/location.ts";
import type { Logger } from "../adapters/logger.ts";
import { progressBarFor } from "../adapters/progress-bar.ts";
import { statsLinesFor } from "../adapters/progress-stats.ts";
import { jobState, signerFor, storeFor } from "./wiring.ts";
import { docrootFilter, uploaderOptions } from "./job-options.ts";
import { fanOutEvents, type TransferEvents } from "../core/transfer-events.ts";
import { RunScope } from "../engine/run-deadline.ts";
import { type ReconcileResult, Uploader } from "../engine/uploader.ts";
import { packsAfter } from "./packs-hook.ts";

/**
 * Build the uploader for a resolved config (shared by push and watch, `kind`); `events` observe its
 * transfers, `after` is told of each generation. Its requests follow `runs`: run each reconcile
 * inside `runs.run` so that it ends by its deadline (--run-timeout plus time for the bytes it plans
 * to upload).
 */
export function createUploader(cfg: ConfigFor<"push" | "watch">, log: Logger, runs: RunScope, events?: TransferEvents, after?: AfterGeneration, kind: "push" | "watch" = "push"): Uploader {
  const state = pushState(cfg);
  return new Uploader(
    uploaderOptions(cfg, { state, loc: cfg.target, filter: docrootFilter(cfg, path.resolve(cfg.docroot)), kind, signer: signerFor(cfg, cfg.target) }),
    {
      store: storeFor(cfg, cfg.target),
      log: log.child({ component: "uploader" }),
      // Read at each use: the current run's deadline, or the base signal between runs (lease renewal).
      get signal() {
        return runs.signal;
      },
      now: () => new Date(),
      events: fanOutEvents(events, { start: (t) => runs.allow(t.bytes) }),
      afterGeneration: after && ((g) => after.notify(g)),
    },
  );
}

/** The push job's state directory (push and watch share it). */
export function pushState(cfg: ConfigFor<"push" | "watch">): StateDir {
  return jobState(cfg, "push", { docroot: path.resolve(cfg.docroot), url: formatLocation(cfg.target) });
}

/** Run one push: exit 4 when some paths could not be read or kept changing (the rest is published). */
export async function push(cfg: ConfigFor<"push">, log: Logger, signal: AbortSignal): Promise<ReconcileResult> {
  const state = pushState(cfg);
  const after = await afterGenerationFor(cfg, "publish", state, log, signal);
  const runs = new RunScope(cfg.runTimeout, signal);
  const uploader = createUploader(cfg, log, runs, fanOutEvents(progressBarFor(cfg, process.env), statsLinesFor(cfg, log)), after);
  // One run per state directory: its index, orphan list and write lease belong to one process.
  const lock = await uploader.state.lock("push");
  let res: ReconcileResult;
  try {
    res = await runs.run(async () => {
      const r = await uploader.reconcile();
      await packsAfter(cfg, uploader, log, runs.signal)?.(cfg.repack);
      return r;
    });
  } finally {
    await uploader.releaseLease();
    // The CDN and the hook are told before the command ends (the lock is held: never twice).
    await after?.flush();
    await lock.release();
  }
  const left = [
    ...res.unreadable.map((p) => ({ path: p, error: "could not be read" })),
    ...res.deferred.map((p) => ({ path: p, error: "changed while being uploaded" })),
  ];
  if (left.length > 0) {
    const shown = left.slice(0, 10).map((f) => `${f.path} (${f.error})`).join(", ");
    const what = res.published ? `the rest was published as generation ${res.generation}` : `nothing else changed (generation ${res.generation})`;
    throw new PartialFailureError(
      `${left.length} path(s) were left out and keep their published version; ${what}: ${shown}${left.length > 10 ? ", …" : ""}`,
      left,
      res.unreadable.length > 0 ? "make those files readable by the user fansync runs as (or exclude them), then push again" : "push again once the files stop changing",
    );
  }
  return res;
}
