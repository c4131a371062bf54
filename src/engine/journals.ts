/**
 * Catching up through journals: a reader (a puller, a region) a few generations behind applies the
 * deltas on top of the files it holds instead of fetching the whole manifest. One rule for both.
 */
import type { FileMap, Head, Journal } from "../core/manifest.ts";
import { applyJournals, canUseJournals } from "../core/replicate-plan.ts";
import type { Logger } from "../adapters/logger.ts";
import { JOURNAL_MAX_CHANGES } from "./generation-reader.ts";

/** Journals fetched at once while catching up. */
const JOURNAL_FETCH_CONCURRENCY = 8;

/**
 * `held` (generation `have`) moved to `head` through its journals, with the deletions their writers
 * approved, or undefined when the manifest is
 * needed instead: too far behind, a journal pruned or missing, or journals that do not add up to
 * the file count the head declares.
 */
export async function catchUpThroughJournals(held: FileMap, have: number, head: Head, maxJournals: number, fetch: (generation: number) => Promise<Journal | undefined>, log: Logger): Promise<{ files: FileMap; approvedDeletes: number } | undefined> {
  if (!canUseJournals(have, head.generation, head.oldestJournal, maxJournals)) return undefined;
  const gens = Array.from({ length: head.generation - have }, (_, i) => have + 1 + i);
  // A few journals at a time (each may be JOURNAL_MAX_BYTES), and no more changes in all than the
  // manifest would hold: past that the manifest, bounded by the head's count, is the cheaper read
  // (issue 22: what a reader holds is bounded by what the head declares).
  const budget = Math.max(head.files, JOURNAL_MAX_CHANGES);
  const docs: Journal[] = [];
  let changes = 0;
  for (let i = 0; i < gens.length; i += JOURNAL_FETCH_CONCURRENCY) {
    const batch = await Promise.all(gens.slice(i, i + JOURNAL_FETCH_CONCURRENCY).map(fetch));
    for (const j of batch) {
      if (j === undefined) return undefined;
      changes += j.puts.length + j.deletes.length;
      docs.push(j);
    }
    if (changes > budget) {
      log.debug({ changes, files: head.files }, "journals hold more changes than the manifest has files; reading the manifest");
      return undefined;
    }
  }
  const files = applyJournals(held, docs);
  if (files.size === head.files) {
    log.debug({ journals: gens.length }, "caught up through journals");
    // What the writers approved, generation by generation (the head's own may have come after the fact).
    const approvedDeletes = docs.reduce((n, j, i) => n + (i === docs.length - 1 ? Math.max(j.approvedDeletes ?? 0, head.approvedDeletes ?? 0) : (j.approvedDeletes ?? 0)), 0);
    return { files, approvedDeletes };
  }
  log.warn({ expected: head.files, got: files.size }, "journals do not add up to the head; reading the full manifest");
  return undefined;
}
