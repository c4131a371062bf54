/** Parsing of human-written sizes, durations and delete limits (pure). */

const SIZE_UNITS: Record<string, number> = {
  "": 1, b: 1, k: 1e3, kb: 1e3, kib: 1024, m: 1e6, mb: 1e6, mib: 1024 ** 2, g: 1e9, gb: 1e9, gib: 1024 ** 3,
};
const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, min: 60_000, h: 3_600_000, d: 86_400_000 };

/** Parse "8MiB", "5mb", "1048576" into bytes; undefined when malformed. */
export function parseSize(v: unknown): number | undefined {
  if (typeof v === "number") return Number.isInteger(v) && v >= 0 ? v : undefined;
  if (typeof v !== "string") return undefined;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(v);
  if (!m) return undefined;
  const mult = SIZE_UNITS[(m[2] ?? "").toLowerCase()];
  if (mult === undefined) return undefined;
  return Math.round(Number(m[1]) * mult);
}

/** Parse "500ms", "2s", "5m", "1h" (a bare number is milliseconds) into milliseconds; undefined when malformed. */
export function parseDuration(v: unknown): number | undefined {
  if (typeof v === "number") return Number.isFinite(v) && v >= 0 ? v : undefined;
  if (typeof v !== "string") return undefined;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/.exec(v);
  if (!m) return undefined;
  const mult = DURATION_UNITS[m[2] || "ms"];
  if (mult === undefined) return undefined;
  return Math.round(Number(m[1]) * mult);
}

/** A delete limit: an absolute count or a share of the files held. */
export type DeleteLimit = { readonly kind: "count"; readonly value: number } | { readonly kind: "percent"; readonly value: number };

/** Parse "100" or "50%" into a {@link DeleteLimit}; undefined when malformed. */
export function parseDeleteLimit(v: unknown): DeleteLimit | undefined {
  if (typeof v === "number") return Number.isInteger(v) && v >= 0 ? { kind: "count", value: v } : undefined;
  if (typeof v !== "string") return undefined;
  const pct = /^\s*(\d+(?:\.\d+)?)\s*%\s*$/.exec(v);
  if (pct) {
    const value = Number(pct[1]);
    return value <= 100 ? { kind: "percent", value } : undefined;
  }
  return /^\s*\d+\s*$/.test(v) ? { kind: "count", value: Number(v) } : undefined;
}

/** Format a byte count for people: "1.5 MiB". */
export function formatBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}

/**
 * A duration for people, rounded to one unit: 42s, 7m, 3h, 2d (thresholds at 2 of the next unit).
 * `long` spells the units out for prose: 42 s, 7 min, 3 h, 2 days.
 */
export function formatAge(seconds: number, opts: { long?: boolean } = {}): string {
  const s = Math.max(0, Math.round(seconds));
  const [sec, min, hour, day] = opts.long ? [" s", " min", " h", " days"] : ["s", "m", "h", "d"];
  if (s < 120) return `${s}${sec}`;
  if (s < 7200) return `${Math.round(s / 60)}${min}`;
  if (s < 172_800) return `${Math.round(s / 3600)}${hour}`;
  return `${Math.round(s / 86_400)}${day}`;
}
