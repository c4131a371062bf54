/** Reading the docroot: a scan that lists regular files with their stat data, and hashing. */
import { createHash } from "node:crypto";
import { closeSync, createReadStream, openSync, readSync } from "node:fs";
import { lstat, opendir, realpath, stat } from "node:fs/promises";
import path from "node:path";
import type { PathFilter } from "../core/filters.ts";
import { checkRelativePath, TEMP_MARK } from "../core/paths.ts";

/** A regular file found by a scan (not yet hashed). */
export interface ScannedFile {
  readonly path: string;
  readonly size: number;
  readonly mtimeMs: number;
  readonly mode: number;
  readonly ino: number;
}

/** What a scan skipped and why (reported, never silently dropped). */
export interface Skipped {
  readonly path: string;
  readonly reason: string;
}

/**
 * Walk `root` (or only the subtrees `under`, relative paths) and list regular files that pass the
 * filter. Symlink policy: a symlink to a regular file inside the docroot is synced as a copy of its
 * target; a symlink to a directory, or one leading out of the docroot, is skipped and reported.
 */
export async function scanTree(root: string, opts: { filter: PathFilter; under?: readonly string[]; excludeAbs?: readonly string[] }): Promise<{ files: ScannedFile[]; skipped: Skipped[]; unreadable: string[] }> {
  const files: ScannedFile[] = [];
  const skipped: Skipped[] = [];
  // Directories (or files) this process may not read: skipped and reported, never taken for deleted.
  const unreadable: string[] = [];
  const realRoot = await realpath(root);
  const excludeAbs = (opts.excludeAbs ?? []).map((p) => path.resolve(p));

  const visitEntry = async (rel: string, isDirHint: boolean | undefined): Promise<void> => {
    const abs = path.join(root, rel);
    if (excludeAbs.some((x) => abs === x || abs.startsWith(x + path.sep))) return;
    // Names are checked before they are used: one that is not valid UTF-8 came back from readdir
    // with U+FFFD in it, a name that does not exist on disk (so lstat would say ENOENT).
    if (rel !== "") {
      if (rel.includes("\uFFFD")) {
        skipped.push({ path: rel, reason: "name is not valid UTF-8 and cannot be an S3 key" });
        return;
      }
      if (rel.split("/").some((s) => s.startsWith(TEMP_MARK))) {
        skipped.push({ path: rel, reason: `uses the reserved ${TEMP_MARK} temp-file name` });
        return;
      }
    }
    let st;
    try {
      st = await lstat(abs);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      // Vanished during the scan, or a scoped path whose parent is now a file (a directory became a file).
      if (code === "ENOENT" || code === "ENOTDIR") return;
      if (code === "EACCES" || code === "EPERM") {
        unreadable.push(rel);
        skipped.push({ path: rel, reason: `could not be read (${code})` });
        return;
      }
      throw err;
    }
    if (st.isDirectory() || isDirHint === true) {
      if (!st.isDirectory()) return;
      if (rel !== "" && opts.filter.prunesDir(rel)) return;
      await walkDir(rel);
      return;
    }
    const why = checkRelativePath(rel);
    if (why) {
      skipped.push({ path: rel, reason: why });
      return;
    }
    if (!opts.filter.matches(rel)) return;
    if (st.isSymbolicLink()) {
      let target: string;
      try {
        target = await realpath(abs);
      } catch {
        skipped.push({ path: rel, reason: "dangling symlink" });
        return;
      }
      if (target !== realRoot && !target.startsWith(realRoot + path.sep)) {
        skipped.push({ path: rel, reason: "symlink leads out of the docroot" });
        return;
      }
      const tst = await stat(abs);
      if (!tst.isFile()) {
        skipped.push({ path: rel, reason: "symlink to a directory or special file (not followed)" });
        return;
      }
      st = tst;
    }
    if (!st.isFile()) {
      skipped.push({ path: rel, reason: "not a regular file" });
      return;
    }
    files.push({ path: rel, size: st.size, mtimeMs: Math.floor(st.mtimeMs), mode: st.mode & 0o7777, ino: st.ino });
  };

  const walkDir = async (rel: string): Promise<void> => {
    let dir;
    try {
      dir = await opendir(path.join(root, rel), { bufferSize: 256 });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (rel === "" || (code !== "EACCES" && code !== "EPERM")) throw err;
      unreadable.push(rel);
      skipped.push({ path: rel, reason: `directory could not be read (${code})` });
      return;
    }
    const children: { rel: string; isDir: boolean }[] = [];
    for await (const d of dir) children.push({ rel: rel === "" ? d.name : `${rel}/${d.name}`, isDir: d.isDirectory() });
    // Stat files of one directory concurrently; recurse into directories one at a time.
    const CHUNK = 64;
    const fileKids = children.filter((c) => !c.isDir);
    for (let i = 0; i < fileKids.length; i += CHUNK) await Promise.all(fileKids.slice(i, i + CHUNK).map((c) => visitEntry(c.rel, false)));
    for (const c of children) if (c.isDir) await visitEntry(c.rel, true);
  };

  for (const u of opts.under ?? [""]) await visitEntry(u, undefined);
  return { files, skipped, unreadable };
}

// One buffer serves every synchronous read: nothing else runs while one is in progress.
const HASH_BUF = Buffer.allocUnsafeSlow(1024 * 1024);

/** sha256 of a (probably small) file read synchronously through {@link HASH_BUF}, whatever its size now. */
function hashSmallSync(abs: string): string {
  const h = createHash("sha256");
  const fd = openSync(abs, "r");
  try {
    for (;;) {
      const n = readSync(fd, HASH_BUF, 0, HASH_BUF.length, null);
      if (n === 0) break;
      h.update(HASH_BUF.subarray(0, n));
    }
  } finally {
    closeSync(fd);
  }
  return h.digest("hex");
}

/** sha256 of a file, streamed. */
export async function hashFile(abs: string, sizeHint?: number): Promise<string> {
  // Small files (most of a website): read synchronously into one reused buffer (no stream, no
  // fresh Buffer per file; a fifth of the CPU of promise reads, see engine/transfer.ts readIfSmall).
  if (sizeHint !== undefined && sizeHint < HASH_BUF.length) return hashSmallSync(abs);
  const h = createHash("sha256");
  for await (const chunk of createReadStream(abs, { highWaterMark: 1024 * 1024 })) h.update(chunk as Buffer);
  return h.digest("hex");
}
