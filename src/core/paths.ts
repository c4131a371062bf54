/**
 * Validation of relative paths, the ones a manifest names and the ones the uploader finds on disk.
 * Pure: containment through symlinks is checked by the local adapter, which does I/O.
 */

/** Longest S3 key is 1024 bytes; leave room for a prefix. */
export const MAX_PATH_BYTES = 960;
/** Most filesystems cap one name at 255 bytes. */
export const MAX_SEGMENT_BYTES = 255;
/** The reserved top-level name: the meta prefix in the bucket, never a docroot file. */
export const RESERVED_TOP = ".fansync";
/** Temp files the puller writes start with this (a dotfile: web servers commonly refuse to serve those). */
export const TEMP_MARK = ".fansync-tmp-";

// C0 controls, DEL and C1 controls: never valid in a web path, and a classic log/terminal injection.
// eslint-disable-next-line no-control-regex
const CONTROL_RE = /[\u0000-\u001f\u007f-\u009f]/;

/** Why `p` is not an acceptable relative path, or undefined when it is. */
export function checkRelativePath(p: unknown): string | undefined {
  if (typeof p !== "string") return "path is not a string";
  if (p.length === 0) return "path is empty";
  if (!p.isWellFormed()) return "path is not valid Unicode (lone surrogate)";
  if (p.includes("\u0000")) return "path contains NUL";
  if (CONTROL_RE.test(p)) return "path contains a control character";
  if (p.startsWith("/")) return "path is absolute";
  if (p.includes("\\")) return "path contains a backslash";
  if (Buffer.byteLength(p, "utf8") > MAX_PATH_BYTES) return `path is longer than ${MAX_PATH_BYTES} bytes`;
  const segs = p.split("/");
  for (const s of segs) {
    if (s === "") return "path has an empty segment (// or trailing /)";
    if (s === "." || s === "..") return `path has a "${s}" segment`;
    if (Buffer.byteLength(s, "utf8") > MAX_SEGMENT_BYTES) return `a path segment is longer than ${MAX_SEGMENT_BYTES} bytes`;
  }
  if (segs[0] === RESERVED_TOP) return `path is under the reserved ${RESERVED_TOP}/ directory`;
  if (segs.some((s) => s.startsWith(TEMP_MARK))) return `path uses the reserved ${TEMP_MARK} temp-file name`;
  return undefined;
}

/** Render a path for messages: JSON-quoted so control characters and NULs are visible, and bounded. */
export function showPath(p: unknown): string {
  const s = JSON.stringify(typeof p === "string" ? p : String(p));
  return s.length > 120 ? `${s.slice(0, 117)}..."` : s;
}

/**
 * Check a set of paths as a whole: each must be valid, no duplicates, and no path may be both a
 * file and a directory (`a` and `a/b`). Returns every problem found.
 */
export function checkPathSet(paths: Iterable<string>): string[] {
  const problems: string[] = [];
  const seen = new Set<string>();
  for (const p of paths) {
    const why = checkRelativePath(p);
    if (why) {
      problems.push(`${showPath(p)}: ${why}`);
      continue;
    }
    if (seen.has(p)) problems.push(`${showPath(p)}: duplicate path`);
    seen.add(p);
  }
  problems.push(...fileDirClashes(seen));
  return problems;
}

/**
 * {@link checkPathSet} for paths that are already unique, the keys of a map: checked where they
 * are, with no copy of the set (a 1M-entry manifest was held twice while its paths were checked,
 * issue 25).
 */
export function checkPathKeys(paths: ReadonlyMap<string, unknown> | ReadonlySet<string>): string[] {
  const problems: string[] = [];
  const invalid = new Set<string>();
  for (const p of paths.keys()) {
    const why = checkRelativePath(p);
    if (why) {
      problems.push(`${showPath(p)}: ${why}`);
      invalid.add(p);
    }
  }
  problems.push(...fileDirClashes(paths, invalid));
  return problems;
}

/** Every path of `paths` (but those in `skip`) that is also a directory of another (`a` and `a/b`). */
function fileDirClashes(paths: ReadonlyMap<string, unknown> | ReadonlySet<string>, skip?: ReadonlySet<string>): string[] {
  const problems: string[] = [];
  for (const p of paths.keys()) {
    if (skip?.has(p)) continue;
    let i = p.indexOf("/");
    while (i !== -1) {
      const dir = p.slice(0, i);
      if (paths.has(dir)) problems.push(`${showPath(dir)}: is both a file and a directory (${showPath(p)})`);
      i = p.indexOf("/", i + 1);
    }
  }
  return problems;
}

/**
 * Byte-order comparison of two strings as UTF-8, the order S3 lists keys in. UTF-8 byte order is
 * code point order, which UTF-16 code unit order equals except that surrogates (U+D800–U+DFFF,
 * halves of code points above U+FFFF) sort below U+E000–U+FFFF: the first differing units are
 * compared with surrogates moved above them. Without encoding both strings per call (sorting 1M
 * paths made 40M buffers).
 */
export function compareUtf8(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x !== y) return codePointRank(x) - codePointRank(y);
  }
  return a.length - b.length;
}

// A code unit's place in code point order: surrogates after U+E000–U+FFFF.
function codePointRank(u: number): number {
  return u < 0xd800 ? u : u < 0xe000 ? u + 0x2000 : u - 0x800;
}

/**
 * The deletions a server that refuses dir/file prefix clashes (versitygw keeps keys as files of a
 * POSIX tree) must see done before `puts` can be written: a deleted path that is a directory of a
 * put (d for d/x.html) or lies under one (d/x.html for d).
 */
export function prefixClashes(deletes: readonly string[], puts: readonly string[]): string[] {
  const put = new Set(puts);
  const dirs = new Set<string>();
  for (const p of puts) for (let i = p.indexOf("/"); i > 0; i = p.indexOf("/", i + 1)) dirs.add(p.slice(0, i));
  return deletes.filter((d) => {
    if (dirs.has(d)) return true;
    for (let i = d.indexOf("/"); i > 0; i = d.indexOf("/", i + 1)) if (put.has(d.slice(0, i))) return true;
    return false;
  });
}
