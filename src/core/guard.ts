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
}): void {
  const { deletes, held, remaining, limit, force, what } = opts;
  if (force || deletes === 0) return;
  if (remaining === 0 && held > 0) {
    throw new GuardError(
      `refusing to delete all ${held} files of the ${what}: the source is empty (a wrong prefix or an empty docroot must never wipe a site)`,
    );
  }
  const allowed = allowedDeletes(limit, held);
  if (deletes > allowed) {
    const rule = limit.kind === "count" ? `--max-delete ${limit.value}` : `--max-delete ${limit.value}% of ${held} files = ${allowed}`;
    throw new GuardError(`refusing to delete ${deletes} of ${held} files of the ${what}: more than ${rule} allows`);
  }
}
