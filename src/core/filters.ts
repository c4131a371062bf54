/** Include/exclude filters for the uploader's scan (pure; globs via picomatch). */
import picomatch from "picomatch";

/** A compiled filter: `matches(path)` says whether a relative path is synced. */
export interface PathFilter {
  /** Whether a file path is included. */
  matches(path: string): boolean;
  /** Whether a directory can be skipped entirely (it is excluded and no include could match inside). */
  prunesDir(dir: string): boolean;
}

/**
 * Compile filters with rsync-like precedence: a path is synced when it matches no exclude, or
 * matches an include (includes re-admit excluded paths). A glob without a "/" matches the basename
 * at any depth, like rsync and .gitignore; "dir/" style patterns exclude a whole directory; a leading
 * "/" anchors the glob to the docroot ("/robots.txt" is the top one only), as rsync, rclone and
 * .gitignore do.
 */
export function compileFilter(opts: { exclude: readonly string[]; include: readonly string[] }): PathFilter {
  const excluded = compileGlobs(opts.exclude);
  const included = compileGlobs(opts.include);
  const hasInclude = opts.include.length > 0;
  return {
    matches: (p) => !excluded(p) || (hasInclude && included(p)),
    prunesDir: (d) => !hasInclude && excluded(d),
  };
}

/**
 * One glob of a filter rule, as a matcher of relative paths: a leading "/" anchors it to the root
 * (it is then matched against the whole path); otherwise a glob without "/" (a trailing one aside)
 * matches a name at any depth. Issue 27: the "/" used to be stripped first, so "/fileZ.txt" also
 * matched "sub/fileZ.txt".
 */
export function compileGlob(glob: string): (path: string) => boolean {
  const anchored = glob.startsWith("/");
  const pat = glob.replace(/^\/+/, "").replace(/\/$/, "");
  return picomatch(pat, { dot: true, basename: !anchored && !pat.includes("/") });
}

// A path matches when the glob matches it or any of its ancestor directories, so "cache" or
// "cache/" excludes a whole tree.
function compileGlobs(globs: readonly string[]): (path: string) => boolean {
  if (globs.length === 0) return () => false;
  const ms = globs.map(compileGlob);
  return (p) => {
    let i = p.indexOf("/");
    while (i !== -1) {
      const dir = p.slice(0, i);
      if (ms.some((m) => m(dir))) return true;
      i = p.indexOf("/", i + 1);
    }
    return ms.some((m) => m(p));
  };
}

/** Parse an --exclude-from file's text: one glob per line, blank lines and # comments ignored. */
export function parseFilterFile(text: string): string[] {
  return text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== "" && !l.startsWith("#"));
}

/** Cache-Control rules: the first glob that matches a path gives its header value. */
export function compileCacheControl(rules: readonly { glob: string; value: string }[]): (path: string) => string | undefined {
  const ms = rules.map((r) => ({ m: compileGlob(r.glob), value: r.value }));
  return (p) => ms.find((r) => r.m(p))?.value;
}
