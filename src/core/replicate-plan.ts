/**
 * Replication planning (pure): what a regional bucket must do to hold the primary's generation.
 * The target is the primary's file map (its manifest, or the region's map with the primary's
 * journals applied); entries the region already holds keep the region's own ETag and VersionId.
 */
import { applyJournal, type Entry, type FileMap, type Journal } from "./manifest.ts";
import { compareUtf8 } from "./paths.ts";

/** What one replication round must do in one region. */
export interface ReplicatePlan {
  /** Content the region lacks: copied from the primary (server-side or streamed). One per distinct sha256. */
  readonly transfers: readonly Entry[];
  /** Content the region already holds under another key: copied inside the region, no bytes move between buckets. */
  readonly regionCopies: readonly { readonly entry: Entry; readonly from: Entry }[];
  /** Content also being transferred in this round under another path: copied inside the region once `of` has landed. */
  readonly twins: readonly { readonly entry: Entry; readonly of: string }[];
  /** Same bytes already at the path, new mtime or mode: only the manifest entry changes (region ETag kept). */
  readonly metaOnly: readonly Entry[];
  /** Paths the region holds that the target does not: deleted after the region's head moved. */
  readonly deletes: readonly string[];
  readonly unchanged: number;
  /** Bytes that cross from the primary to the region. */
  readonly transferBytes: number;
}

/** Plan a round: `target` is the primary's generation, `region` the region's current manifest. */
export function planReplicate(target: FileMap, region: FileMap, opts: { dedupMinSize?: number } = {}): ReplicatePlan {
  const dedupMinSize = opts.dedupMinSize ?? 1;
  const inRegion = new Map<string, Entry>();
  for (const e of region.values()) if (e.size >= dedupMinSize && !inRegion.has(e.sha256)) inRegion.set(e.sha256, e);
  const transferring = new Map<string, Entry>();
  const transfers: Entry[] = [];
  const regionCopies: { entry: Entry; from: Entry }[] = [];
  const twins: { entry: Entry; of: string }[] = [];
  const metaOnly: Entry[] = [];
  let unchanged = 0;
  let transferBytes = 0;
  for (const e of target.values()) {
    const r = region.get(e.path);
    if (r && r.sha256 === e.sha256 && r.size === e.size) {
      // The bytes are there: keep the region's ETag/VersionId, which readers of the region need.
      if (r.mtimeMs === e.mtimeMs && r.mode === e.mode) unchanged++;
      else metaOnly.push({ ...e, etag: r.etag, versionId: r.versionId });
      continue;
    }
    const twin = inRegion.get(e.sha256);
    if (twin && twin.size === e.size) {
      regionCopies.push({ entry: e, from: twin });
      continue;
    }
    const first = e.size >= dedupMinSize ? transferring.get(e.sha256) : undefined;
    if (first && first.size === e.size) {
      twins.push({ entry: e, of: first.path });
      continue;
    }
    transfers.push(e);
    transferBytes += e.size;
    if (e.size >= dedupMinSize) transferring.set(e.sha256, e);
  }
  const deletes = [...region.keys()].filter((p) => !target.has(p)).sort(compareUtf8);
  // Smaller objects first, as the puller does: a page's many small assets land before one huge file.
  transfers.sort((a, b) => a.size - b.size || compareUtf8(a.path, b.path));
  return { transfers, regionCopies, twins, metaOnly, deletes, unchanged, transferBytes };
}

/**
 * The primary's generation as seen from a region that is a few generations behind: the region's
 * map with the primary's journals applied in order (journal entries carry the primary's ETags).
 */
export function applyJournals(region: FileMap, journals: readonly Journal[]): FileMap {
  return journals.reduce<FileMap>((files, j) => applyJournal(files, j), region);
}

/** Whether journals can take a region from `have` to `want`: close enough, and all of them kept. */
export function canUseJournals(have: number, want: number, oldestJournal: number, maxJournals: number): boolean {
  return have > 0 && want > have && want - have <= maxJournals && oldestJournal <= have;
}
