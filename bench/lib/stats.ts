// Pure statistics for benchmark figures: no clock, no I/O.

/** A set of repeated measurements reduced to what the report prints. */
export type Summary = { n: number; median: number; min: number; max: number };

/** Sorted copy, so callers' arrays are never reordered. */
function sortedCopy(xs: readonly number[]): number[] {
  return [...xs].sort((a, b) => a - b);
}

/**
 * Percentile with linear interpolation between closest ranks (numpy's default), p in [0, 100].
 * Interpolation rather than nearest-rank so p50 of an even count equals the usual median.
 */
export function percentile(xs: readonly number[], p: number): number {
  if (xs.length === 0) throw new RangeError("percentile of an empty list");
  if (!(p >= 0 && p <= 100)) throw new RangeError(`percentile p must be in [0, 100], got ${p}`);
  const s = sortedCopy(xs);
  const rank = (p / 100) * (s.length - 1);
  const lo = Math.floor(rank);
  const hi = Math.ceil(rank);
  const a = s[lo] as number;
  const b = s[hi] as number;
  return a + (b - a) * (rank - lo);
}

/** Median (the 50th percentile). */
export function median(xs: readonly number[]): number {
  return percentile(xs, 50);
}

/** Median, min and max of a non-empty list. */
export function summarize(xs: readonly number[]): Summary {
  if (xs.length === 0) throw new RangeError("summary of an empty list");
  const s = sortedCopy(xs);
  return { n: s.length, median: median(s), min: s[0] as number, max: s[s.length - 1] as number };
}

/** Ratio a/b, or undefined when either side is missing or b is zero (a ratio of nothing is not 0). */
export function ratio(a: number | undefined, b: number | undefined): number | undefined {
  if (a === undefined || b === undefined || b === 0) return undefined;
  return a / b;
}
