/**
 * Which paths to invalidate in a CDN (CloudFront) after a generation: pure, no clock, no network.
 *
 * - A path is the viewer path of a changed or deleted file: "/" + the file's path under the
 *   location's prefix (the distribution's origin path is that prefix), percent-encoded as CloudFront
 *   asks: non-ASCII bytes and RFC 1738's unsafe characters encoded, nothing else (CloudFront matches
 *   the encoded form it caches; encoding a safe character would miss it).
 * - `dir/index.html` is also served as `dir/` (the default root object, S3 website hosting), so
 *   the directory path is invalidated with it.
 * - A file whose name holds `*` cannot be named exactly (`*` is CloudFront's wildcard): its
 *   directory's wildcard is used.
 * - More exact paths than `collapseAbove` (each costs money beyond the free tier, and CloudFront
 *   allows 3,000 paths in progress per distribution) are collapsed, the directory with the most
 *   paths first, into `dir/*` wildcards (15 in progress at most); past that, one `/*`.
 * - What is already in progress counts against the limits (`pathBudget`, `wildcardBudget`): when
 *   not even `/*` fits, the plan says to wait.
 */

/** CloudFront's limits per distribution (invalidations in progress). */
export const CLOUDFRONT_MAX_PATHS_IN_PROGRESS = 3000;
export const CLOUDFRONT_MAX_WILDCARDS_IN_PROGRESS = 15;
/** Exact paths per invalidation before directories are collapsed (CloudFront bills per path past 1,000 a month). */
export const DEFAULT_COLLAPSE_ABOVE = 100;

/** Planning options. */
export interface InvalidationOptions {
  /** At most this many paths (exact or wildcard) in one invalidation; more are collapsed. */
  readonly collapseAbove: number;
  /** Paths that may still go in progress (CloudFront's limit less those in progress). */
  readonly pathBudget: number;
  /** Wildcard paths that may still go in progress. */
  readonly wildcardBudget: number;
}

/** What to send: the paths (`wildcards` of them end in `*`), nothing, or wait for invalidations in progress. */
export type InvalidationPlan =
  | { readonly kind: "paths"; readonly paths: readonly string[]; readonly wildcards: number }
  | { readonly kind: "none" }
  | { readonly kind: "wait"; readonly reason: string };

// RFC 1738: alphanumerics, "safe" ($-_.+), "extra" (!*'(),) and reserved characters other than
// "?" (a query) stay as they are; "*" is handled apart (a wildcard); "~" is unsafe in RFC 1738.
const KEEP = /[A-Za-z0-9$\-_.+!'(),;:@&=/]/;

/** A relative path (POSIX, as in a manifest) as a CloudFront invalidation path. */
export function encodeCloudFrontPath(rel: string): string {
  let out = "/";
  for (const ch of rel) {
    if (KEEP.test(ch)) out += ch;
    else for (const b of Buffer.from(ch, "utf8")) out += `%${b.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}

/** The directory part of an encoded path, with its trailing slash ("/a/b.html" → "/a/", "/a/" → "/"). */
function parentOf(p: string): string {
  const body = p.endsWith("/") ? p.slice(0, -1) : p;
  return body.slice(0, body.lastIndexOf("/") + 1);
}

/** Plan the invalidation of one generation's changed and deleted paths. */
export function planInvalidation(changed: Iterable<string>, deleted: Iterable<string>, o: InvalidationOptions): InvalidationPlan {
  const exact = new Set<string>();
  // Wildcards as their directory ("/css/" stands for "/css/*").
  const wild = new Set<string>();
  for (const rel of [...changed, ...deleted]) {
    const slash = rel.lastIndexOf("/");
    const dir = slash < 0 ? "" : rel.slice(0, slash);
    const dirPath = dir === "" ? "/" : `${encodeCloudFrontPath(dir)}/`;
    if (rel.includes("*")) {
      wild.add(dirPath);
      continue;
    }
    exact.add(encodeCloudFrontPath(rel));
    if (rel.slice(slash + 1) === "index.html") exact.add(dirPath);
  }
  if (exact.size === 0 && wild.size === 0) return { kind: "none" };
  const everything = (): InvalidationPlan => (o.pathBudget >= 1 && o.wildcardBudget >= 1 ? { kind: "paths", paths: ["/*"], wildcards: 1 } : { kind: "wait", reason: "CloudFront's limit of invalidations in progress is reached" });
  const limit = Math.min(o.collapseAbove, o.pathBudget);
  // A wildcard covers what is under it: drop what another wildcard already covers.
  const tidy = () => {
    for (const w of wild) for (const v of wild) if (v !== w && v.startsWith(w)) wild.delete(v);
    for (const p of exact) for (const w of wild) if (p.startsWith(w)) exact.delete(p);
  };
  tidy();
  while (exact.size + wild.size > limit || wild.size > o.wildcardBudget) {
    if (wild.has("/") || wild.size > o.wildcardBudget) return everything();
    // The directory holding the most exact paths becomes one wildcard.
    const counts = new Map<string, number>();
    for (const p of exact) counts.set(parentOf(p), (counts.get(parentOf(p)) ?? 0) + 1);
    let best: [string, number] | undefined;
    for (const [d, n] of counts) if (!best || n > best[1] || (n === best[1] && d < best[0])) best = [d, n];
    // Nothing left to gain (one path per directory, or only wildcards left): everything at once.
    if (!best || best[1] < 2) return everything();
    wild.add(best[0]);
    tidy();
  }
  if (wild.has("/")) return everything();
  const paths = [...[...exact].sort(), ...[...wild].sort().map((d) => `${d}*`)];
  return { kind: "paths", paths, wildcards: wild.size };
}
