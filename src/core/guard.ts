/** The delete guard: the rule that keeps an empty or wrong source from wiping a site (pure). */
import { GuardError } from "./errors.ts";
import type { DeleteLimit } from "./units.ts";

/** Default limit: half of the files held. */
export const DEFAULT_DELETE_LIMIT: DeleteLimit = { kind: "percent", value: 50 };

/** The largest number of deletions the limit allows out of `held` files. */
export function allowedDeletes(limit: DeleteLimit, held: number): number {
  return limit.kind === "count" ? limit.value : Math.floor((held * limit.value) / 100);
}

/**
 * Throw a {@link GuardError} when a plan deletes more than allowed, or would empty a non-empty set,
 * unless forced. `what` names the side ("bucket", "docroot") for the message.
 */
export function checkDeleteGuard(opts: {
  deletes: number;
  held: number;
  remaining: number;
  limit: DeleteLimit;
  force: boolean;
  what: string;
  /**
   * Deletions the writer of the generation approved (push --force / --approve-deletes on the
   * master): they do not count against the limit; only those beyond them are judged here.
   */
  approved?: number | undefined;
  /** What to run when refused (default: check the source, then --force). */
  hint?: string | undefined;
}): void {
  const { deletes, held, remaining, limit, force, what } = opts;
  const approved = Math.min(deletes, opts.approved ?? 0);
  if (force || deletes === approved) return;
  if (remaining === 0 && held > 0) {
    throw new GuardError(
      `refusing to delete all ${held} files of the ${what}: the source is empty (a wrong prefix or an empty docroot must never wipe a site)`,
      opts.hint,
    );
  }
  const allowed = allowedDeletes(limit, held);
  if (deletes - approved > allowed) {
    const rule = limit.kind === "count" ? `--max-delete ${limit.value}` : `--max-delete ${limit.value}% of ${held} files = ${allowed}`;
    const of = approved > 0 ? ` (${approved} of them approved by the master)` : "";
    throw new GuardError(`refusing to delete ${deletes} of ${held} files of the ${what}${of}: more than ${rule} allows`, opts.hint);
  }
}

/** Whether the guard refuses these deletions (without --force): the master records its approval then. */
export function guardRefuses(opts: { deletes: number; held: number; remaining: number; limit: DeleteLimit }): boolean {
  try {
    checkDeleteGuard({ ...opts, force: false, what: "" });
    return false;
  } catch {
    return true;
  }
}
