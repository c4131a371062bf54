/**
 * `fansync rollback s3://bucket/prefix --to <generation> [--from <dir>] [--dry-run]`: publish a new
 * generation whose content is that of a retained older one. Meant with the uploader stopped: a
 * running uploader re-publishes the master's docroot on its next change or rescan.
 */
import { afterGenerationFor } from "./after-generation.ts";
import path from "node:path";
import type { ConfigFor } from "../core/config.ts";
import { UsageError } from "../core/errors.ts";
import { formatLocation } from "../core/location.ts";
import { formatBytes } from "../core/units.ts";
import type { Logger } from "../adapters/logger.ts";
import { jobState, signerFor, storeFor, trustFor } from "./wiring.ts";
import { publishTuning } from "./job-options.ts";
import { rollback, type RollbackResult, type RollbackSummary } from "../engine/rollback.ts";

/** Options of `fansync rollback` beyond the common ones, as given on the command line. */
export interface RollbackCommandOptions {
  readonly to: string | undefined;
  readonly from: string | undefined;
}

/** Run one rollback; prints a one-line summary (and the uploader warning after a real one). */
export async function rollbackCommand(cfg: ConfigFor<"rollback">, opts: RollbackCommandOptions, log: Logger, signal: AbortSignal): Promise<RollbackResult> {
  const loc = cfg.target;
  const hint = `fansync log ${formatLocation(loc)} lists the retained generations`;
  if (opts.to === undefined) throw new UsageError("no --to <generation> given: which generation's content to publish again", { hint });
  if (!/^\d+$/.test(opts.to) || Number(opts.to) < 1 || !Number.isSafeInteger(Number(opts.to))) {
    throw new UsageError(`--to ${JSON.stringify(opts.to)} is not a generation number`, { hint });
  }
  const to = Number(opts.to);
  const url = formatLocation(loc);
  // Its own state directory per location: the orphan ledger of a killed rollback is found again by
  // the next rollback of the same location (the uploader's state is keyed by its docroot too).
  const state = jobState(cfg, "rollback", { url });
  // A rollback publishes a new generation: signed like the uploader's, or nodes refuse it.
  const signer = signerFor(cfg, loc);
  // What it restores must verify first: against --trusted-key, and the signing key's own public half.
  const trust = trustFor(cfg, signer);
  const lock = await state.lock("rollback");
  const after = await afterGenerationFor(cfg, "publish", state, log, signal);
  let res: RollbackResult;
  try {
    res = await rollback(
      {
        loc,
        to,
        fromDir: opts.from === undefined ? undefined : path.resolve(opts.from),
        state,
        ...publishTuning(cfg, loc),
        signer,
        trust,
      },
      { store: storeFor(cfg, loc), log: log.child({ component: "rollback" }), signal, now: () => new Date(), afterGeneration: after && ((g) => after.notify(g)) },
    );
  } finally {
    await after?.flush();
    await lock.release();
  }
  const what = describe(res.summary);
  if (!res.published && !cfg.dryRun) {
    process.stdout.write(`${url} generation ${res.generation} already has the content of generation ${to}: nothing published\n`);
  } else if (!res.published) {
    process.stdout.write(`dry run: rolling ${url} back to generation ${to} would publish generation ${res.generation}: ${what}; nothing changed\n`);
  } else {
    process.stdout.write(`rolled ${url} back: generation ${res.generation} has the content of generation ${to} (was generation ${res.previous}): ${what}\n`);
    process.stderr.write(
      `fansync: warning: a running uploader (fansync watch) re-publishes the master's docroot on its next change or rescan, undoing this rollback: ` +
        `keep it stopped, or restore the master's docroot to generation ${to} before starting it again\n`,
    );
  }
  return res;
}

function describe(s: RollbackSummary): string {
  return [
    `${s.versionCopies} copied from old versions`,
    `${s.copies} copied from current objects`,
    `${s.uploads} uploaded (${formatBytes(s.uploadBytes)})`,
    `${s.metaOnly} metadata-only`,
    `${s.unchanged} unchanged`,
    `${s.deletes} deleted`,
  ].join(", ");
}
