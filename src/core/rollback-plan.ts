/**
 * Rollback planning (pure): how to make the bucket hold the content of a retained generation again,
 * path by path, and where each path's old bytes come from. The executor (src/engine/rollback.ts)
 * finds out which sources exist (a HEAD per old VersionId, a hashed scan of `--from`) and carries
 * the plan out; nothing here touches the clock, the disk or the network.
 *
 * Source preference for a path whose current bytes differ from the old entry's:
 *
 * | source                                          | how                         | when                                   |
 * | ----------------------------------------------- | --------------------------- | -------------------------------------- |
 * | zero bytes                                      | PUT of an empty body        | the old entry is an empty file         |
 * | the old entry's own VersionId                   | server-side copy of it      | it still exists (versioned bucket)     |
 * | a current object with the same sha256 and size  | server-side copy            | it is not overwritten by this rollback |
 * | a file under `--from` with the same sha256/size | read, hash, upload          | same path there first, else any path   |
 * | none                                            | `missing`: refuse the whole rollback                                 |
 */
import type { Entry, FileMap } from "./manifest.ts";
import { compareUtf8 } from "./paths.ts";

/** sha256 of zero bytes: an empty file is restored from nothing. */
export const EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/** A file found under `--from`, hashed; `path` is relative to that directory. */
export interface LocalSource {
  readonly path: string;
  readonly size: number;
  readonly sha256: string;
}

/** What the executor found out about the sources before planning. */
export interface RollbackSources {
  /** Paths whose old entry's VersionId was checked to still exist in the bucket. */
  readonly versions: ReadonlySet<string>;
  /** Files under `--from`, hashed (only those worth hashing: see {@link restoreCandidates}). */
  readonly local: readonly LocalSource[];
}

/** What a rollback must do; `entry` is always the old generation's entry (the content to restore). */
export interface RollbackPlan {
  /** Paths whose current entry already equals the old one: nothing to do. */
  readonly unchanged: number;
  /** Same bytes, other mtime or mode: only the manifest entry changes (`from`: the current entry). */
  readonly metaOnly: readonly { readonly entry: Entry; readonly from: Entry }[];
  /** Server-side copies of the old entry's own version. */
  readonly copyVersions: readonly Entry[];
  /** Server-side copies of a current object holding the same bytes (`from`: its current entry). */
  readonly copies: readonly { readonly entry: Entry; readonly from: Entry }[];
  /** Uploads: `local` is the file under `--from`; undefined for an empty file, written from nothing. */
  readonly uploads: readonly { readonly entry: Entry; readonly local: string | undefined }[];
  /** Current paths the old generation did not have (removed after the new head is published). */
  readonly deletes: readonly string[];
  /** Paths no source can restore: a non-empty list means the rollback must not start. */
  readonly missing: readonly Entry[];
  /** Bytes the uploads send. */
  readonly uploadBytes: number;
}

/** True when the old and the current content are the same (a rollback would publish nothing). */
export function isNoopRollback(p: RollbackPlan): boolean {
  return p.metaOnly.length + p.copyVersions.length + p.copies.length + p.uploads.length + p.deletes.length + p.missing.length === 0;
}

/** Old entries whose bytes differ from the current object at their path (or that have none): they must be written. */
export function restoreCandidates(target: FileMap, current: FileMap): Entry[] {
  const out: Entry[] = [];
  for (const e of target.values()) if (!sameBytes(e, current.get(e.path))) out.push(e);
  return out.sort((a, b) => compareUtf8(a.path, b.path));
}

/** Plan a rollback from the `current` manifest to the retained `target` manifest. Inputs are not mutated. */
export function planRollback(target: FileMap, current: FileMap, sources: RollbackSources): RollbackPlan {
  const rewritten = new Set(restoreCandidates(target, current).map((e) => e.path));
  // Copy sources by content. A current object that this rollback overwrites cannot serve as a
  // source by its path: in a bucket without versioning, another copy could read it after it was
  // replaced (two files swapped between generations), and the copy's If-Match would then fail
  // half-way through the run. It still serves when its entry names a VersionId (read by version).
  // Stable sources are preferred; among equals, the first path in UTF-8 order (deterministic).
  const bySha = new Map<string, Entry>();
  const ordered = [...current.values()].sort((a, b) => compareUtf8(a.path, b.path));
  for (const e of ordered) if (e.size > 0 && !rewritten.has(e.path)) setOnce(bySha, contentKey(e), e);
  for (const e of ordered) if (e.size > 0 && rewritten.has(e.path) && e.versionId) setOnce(bySha, contentKey(e), e);
  const localByPath = new Map(sources.local.map((l) => [l.path, l]));
  const localBySha = new Map<string, LocalSource>();
  for (const l of [...sources.local].sort((a, b) => compareUtf8(a.path, b.path))) setOnce(localBySha, contentKey(l), l);

  let unchanged = 0;
  let uploadBytes = 0;
  const metaOnly: { entry: Entry; from: Entry }[] = [];
  const copyVersions: Entry[] = [];
  const copies: { entry: Entry; from: Entry }[] = [];
  const uploads: { entry: Entry; local: string | undefined }[] = [];
  const missing: Entry[] = [];
  for (const e of [...target.values()].sort((a, b) => compareUtf8(a.path, b.path))) {
    const cur = current.get(e.path);
    if (cur && sameBytes(e, cur)) {
      if (cur.mtimeMs === e.mtimeMs && cur.mode === e.mode) unchanged++;
      else metaOnly.push({ entry: e, from: cur });
      continue;
    }
    if (e.size === 0 && e.sha256 === EMPTY_SHA256) {
      uploads.push({ entry: e, local: undefined });
      continue;
    }
    if (e.versionId && sources.versions.has(e.path)) {
      copyVersions.push(e);
      continue;
    }
    const twin = bySha.get(contentKey(e));
    if (twin) {
      copies.push({ entry: e, from: twin });
      continue;
    }
    const same = localByPath.get(e.path);
    const local = same && contentKey(same) === contentKey(e) ? same : localBySha.get(contentKey(e));
    if (local) {
      uploads.push({ entry: e, local: local.path });
      uploadBytes += e.size;
      continue;
    }
    missing.push(e);
  }
  const deletes = [...current.keys()].filter((p) => !target.has(p)).sort(compareUtf8);
  return { unchanged, metaOnly, copyVersions, copies, uploads, deletes, missing, uploadBytes };
}

function sameBytes(a: Entry, b: Entry | undefined): boolean {
  return b !== undefined && a.sha256 === b.sha256 && a.size === b.size;
}

// Size is part of the key: a sha256 match with another size would be a corrupt entry, never a source.
function contentKey(e: { sha256: string; size: number }): string {
  return `${e.sha256}:${e.size}`;
}

function setOnce<V>(m: Map<string, V>, k: string, v: V): void {
  if (!m.has(k)) m.set(k, v);
}
