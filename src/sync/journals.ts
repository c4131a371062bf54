/**
 * Catching up through journals: a reader (a puller, a region) a few generations behind applies the
 * deltas on top of the files it holds instead of fetching the whole manifest. One rule for both.
 */
import type { FileMap, Head, Journal } from "../core/manifest.ts";
import { applyJournals, canUseJournals } from "../core/replicate-plan.ts";
import type { Logger } from "../adapters/logger.ts";

/**
 * `held` (generation `have`) moved to `head` through its journals, with the deletions their writers
 * approved, or undefined when the manifest is
 * needed instead: too far behind, a journal pruned or missing, or journals that do not add up to
 * the file count the head declares.
 */
export async function catchUpThroughJournals(held: FileMap, have: number, head: Head, maxJournals: number, fetch: (generation: number) => Promise<Journal | undefined>, log: Logger): Promise<{ files: FileMap; approvedDeletes: number } | undefined> {
  if (!canUseJournals(have, head.generation, head.oldestJournal, maxJournals)) return undefined;
  const gens = Array.from({ length: head.generation - have }, (_, i) => have + 1 + i);
  const docs = await Promise.all(gens.map(fetch));
  if (!docs.every((j): j is Journal => j !== undefined)) return undefined;
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
