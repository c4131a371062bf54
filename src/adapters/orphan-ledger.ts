/**
 * A ledger of object keys that may exist outside the current manifest: new paths uploaded before
 * their head, and removed paths whose deletion comes after it. A run killed in between leaves
 * such objects in a bucket that may be a CDN origin; the next run deletes those the manifest does
 * not name. Used by the uploader (primary) and the replicator (each region).
 *
 * Beside the keys, what each object written by the unfinished run holds (sha256, size, mtime, mode,
 * and the ETag and version id the server answered; for a single PUT also noted just before it is
 * sent, with the MD5 ETag the object will have), appended as the writes go: the next run adopts an
 * object that still is that write and holds the bytes it wants, instead of deleting and sending it
 * again (issue 27: a push interrupted at 70% sent everything again).
 */
import { rm } from "node:fs/promises";
import { errorMessage } from "../core/errors.ts";
import type { FileMap } from "../core/manifest.ts";
import type { Logger } from "./logger.ts";
import type { ObjectStore } from "./object-store.ts";
import { NdjsonAppender, readJsonList, readNdjsonMap, writeJsonListAtomic } from "./state-files.ts";

/** What an object the unfinished run wrote holds, as the server acknowledged it. */
export interface WrittenObject {
  readonly sha256: string;
  readonly size: number;
  readonly mtimeMs: number;
  readonly mode: number;
  readonly etag: string;
  readonly versionId?: string | undefined;
}

/** Keys looked up one at a time (a Set, or a view over paths that makes no key strings). */
export interface KeySet {
  has(key: string): boolean;
}

/** The ledger kept in one state file for one bucket/prefix. */
export class OrphanLedger {
  private readonly file: string;
  private readonly objectsFile: string;
  // A run killed by SIGKILL loses at most the last batch of records: those objects are sent again.
  private readonly objects: NdjsonAppender<WrittenObject>;

  constructor(file: string) {
    this.file = file;
    this.objectsFile = file.replace(/\.json$/, "") + "-objects.ndjson";
    this.objects = new NdjsonAppender(this.objectsFile, { batch: 16, delayMs: 100 });
  }

  /** Remember what a write put at `key` (buffered; see {@link flush}). */
  note(key: string, o: WrittenObject): void {
    this.objects.add(key, o);
  }

  /** Append what {@link note} buffered. */
  flush(): void {
    this.objects.flush();
  }

  /** What the objects an unfinished run wrote hold, by key (the last record of a key wins). */
  async written(): Promise<Map<string, WrittenObject>> {
    this.flush();
    return readNdjsonMap<WrittenObject>(this.objectsFile, { tornTail: true });
  }

  /**
   * Add the keys of `paths` under `prefix` before the writes that could strand them. The keys are
   * made as they are written out, never held (a first push of 1M files records 1M keys).
   */
  async record(prefix: string, paths: Iterable<string>): Promise<void> {
    const fresh = new Set(paths);
    if (fresh.size === 0) return;
    const known = new Set<string>();
    if (!(await readJsonList(this.file, "keys", (k) => typeof k === "string" && known.add(k)))) known.clear();
    await writeJsonListAtomic(this.file, "keys", (function* () {
      yield* known;
      for (const p of fresh) {
        const key = prefix + p;
        if (!known.has(key)) yield key;
      }
    })());
  }

  /**
   * Delete recorded keys under `prefix` that `current` does not name (`done`: already deleted, or
   * written again by this run; `later`: failed just now, kept for the next commit), then forget the
   * rest; keys whose deletion fails stay recorded, and so does everything when the server cannot be
   * reached. `beforeDelete` runs first when something is to be deleted (the writer re-checks its
   * lease there). The keys are read one at a time: only those kept or deleted are held.
   */
  async clean(opts: { store: ObjectStore; prefix: string; current: FileMap; done?: KeySet; later?: KeySet; signal?: AbortSignal; log: Logger; beforeDelete?: () => Promise<void> }): Promise<void> {
    this.flush();
    const { prefix, current, done, later } = opts;
    const kept: string[] = [];
    const stale: string[] = [];
    const read = await readJsonList(this.file, "keys", (k) => {
      if (typeof k !== "string") return;
      const named = k.startsWith(prefix) && current.has(k.slice(prefix.length));
      if (named) return;
      if (later?.has(k)) kept.push(k);
      else if (k.startsWith(prefix) && !done?.has(k)) stale.push(k);
    });
    // What the objects held is worth keeping only while their keys are recorded (another run's records included).
    if (!read) {
      this.objects.close();
      await rm(this.objectsFile, { force: true });
      return;
    }
    if (stale.length > 0) {
      await opts.beforeDelete?.();
      const failed = await opts.store.deleteMany(stale, opts.signal).catch((err: unknown) => stale.map((key) => ({ key, error: errorMessage(err) })));
      kept.push(...failed.map((f) => f.key));
      if (failed.length > 0) opts.log.warn({ objects: failed.length, error: failed[0]?.error }, "could not delete objects left outside the manifest; the next commit tries again");
      if (failed.length < stale.length) opts.log.info({ objects: stale.length - failed.length }, "removed objects an interrupted run left outside the manifest");
    }
    if (kept.length > 0) await writeJsonListAtomic(this.file, "keys", kept);
    else await rm(this.file, { force: true });
    // Records of forgotten keys go with them (a key recorded again by a later run is noted again).
    this.objects.close();
    await rm(this.objectsFile, { force: true });
  }
}
