/**
 * Which source a puller reads first (pure). Sources are ordered by preference (regional first,
 * primary as fallback); generation numbers are comparable across them because a region's
 * generation N is the primary's generation N.
 */

/** What is known when choosing. */
export interface SourceView {
  /** Index of the source this node's docroot came from last time; -1 when none. */
  readonly current: number;
  /** The generation this node holds. */
  readonly have: number;
  /** Head generation of each source, where looked at; undefined when not looked at or unreachable. */
  readonly heads: readonly (number | undefined)[];
  /** A preferred source lagging the freshest by more than this many generations is passed over. */
  readonly maxLag: number;
}

/** The source to try first, and why (for the log). */
export interface SourceChoice {
  readonly first: number;
  readonly reason: "preferred" | "preferred-caught-up" | "preferred-lags" | "preferred-behind-node" | "preferred-unreachable";
}

/**
 * Decision table:
 * - on a fallback: go back to the preferred source once its head holds at least our generation
 *   (a lower one would look like a generation going backwards); else stay where we are;
 * - on the preferred source: pass it over for the freshest source when it lags that one by more
 *   than `maxLag` generations;
 * - anything unknown keeps the preferred order (an unreachable source is skipped on error anyway).
 */
export function chooseSource(v: SourceView): SourceChoice {
  const pref = v.heads[0];
  if (v.current > 0) {
    if (pref === undefined) return { first: v.current, reason: "preferred-unreachable" };
    return pref >= v.have ? { first: 0, reason: "preferred-caught-up" } : { first: v.current, reason: "preferred-behind-node" };
  }
  if (pref === undefined) return { first: 0, reason: "preferred" };
  let best = 0;
  v.heads.forEach((g, i) => {
    if (g !== undefined && g > (v.heads[best] ?? -1)) best = i;
  });
  const lag = (v.heads[best] ?? 0) - pref;
  return lag > v.maxLag ? { first: best, reason: "preferred-lags" } : { first: 0, reason: "preferred" };
}

/** The sources in the order to try them: the chosen one first, the others in preference order. */
export function orderFrom<T>(sources: readonly T[], first: number): T[] {
  const chosen = sources[first];
  return chosen === undefined ? [...sources] : [chosen, ...sources.filter((_, i) => i !== first)];
}
