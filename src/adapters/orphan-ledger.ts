/**
 * A ledger of object keys that may exist outside the current manifest: new paths uploaded before
 * their head, and removed paths whose deletion comes after it. A run killed in between leaves
 * such objects in a bucket that may be a CDN origin; the next run deletes those the manifest does
 * not name. Used by the uploader (primary) and the replicator (each region).
 */
import { rm } from "node:fs/promises";
import type { FileMap } from "../core/manifest.ts";
import type { Logger } from "./logger.ts";
import type { S3Store } from "./s3-store.ts";
import { readJson, writeJson } from "./state-files.ts";

/** The ledger kept in one state file for one bucket/prefix. */
export class OrphanLedger {
  private readonly file: string;

  constructor(file: string) {
    this.file = file;
  }

  /** Add keys before the writes that could strand them. */
  async record(keys: readonly string[]): Promise<void> {
    if (keys.length === 0) return;
    const known = (await readJson<{ keys: string[] }>(this.file))?.keys ?? [];
    await writeJson(this.file, { keys: [...new Set([...known, ...keys])] });
  }

  /**
   * Delete recorded keys under `prefix` that `current` does not name (`done`: already deleted),
   * then forget the list; keys whose deletion failed stay recorded. `beforeDelete` runs first when
   * something is to be deleted (the uploader re-checks its write lease there).
   */
  async clean(opts: { store: S3Store; prefix: string; current: FileMap; done?: ReadonlySet<string>; signal?: AbortSignal; log: Logger; beforeDelete?: () => Promise<void> }): Promise<void> {
    const known = (await readJson<{ keys: unknown[] }>(this.file))?.keys;
    if (!known) return;
    const { prefix, current, done } = opts;
    const stale = known.filter((k): k is string => typeof k === "string" && k.startsWith(prefix) && !done?.has(k) && !current.has(k.slice(prefix.length)));
    if (stale.length > 0) {
      await opts.beforeDelete?.();
      const failed = await opts.store.deleteMany(stale, opts.signal);
      if (failed.length > 0) {
        await writeJson(this.file, { keys: failed.map((f) => f.key) });
        return;
      }
      opts.log.info({ objects: stale.length }, "removed objects an interrupted run left outside the manifest");
    }
    await rm(this.file, { force: true });
  }
}
