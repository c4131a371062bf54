/**
 * Writing inside a docroot without ever leaving it: directories are created one component at a
 * time and a symlink on the way is refused; files land by temp file + rename.
 */
import { randomBytes } from "node:crypto";
import { lstat, mkdir, rmdir, unlink } from "node:fs/promises";
import path from "node:path";
import { IntegrityError, LocalIoError } from "../core/errors.ts";
import { TEMP_MARK } from "../core/paths.ts";

/**
 * Make sure the parent directories of `rel` exist under `root` as real directories. A symlink in
 * the way is refused (it could lead out of the docroot). `removable(rel)` says whether a regular
 * file standing where a directory must be may be removed (a file that became a directory);
 * `beforeRemove` is told right before it is (two-way sync keeps, or refuses, a file it did not plan with).
 */
export async function ensureParentDirs(root: string, rel: string, removable: (p: string) => boolean, verified?: Set<string>, beforeRemove?: (p: string) => Promise<void>): Promise<void> {
  const segs = rel.split("/");
  // Directories already checked in this run are not lstat-ed again (thousands of files share a few dirs).
  if (verified?.has(segs.slice(0, -1).join("/"))) return;
  let cur = root;
  for (let i = 0; i < segs.length - 1; i++) {
    cur = path.join(cur, segs[i] as string);
    const sub = segs.slice(0, i + 1).join("/");
    if (verified?.has(sub)) continue;
    let st;
    try {
      st = await lstat(cur);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw toLocal(err, cur);
      try {
        await mkdir(cur, { mode: 0o755 });
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw toLocal(e, cur);
        st = await lstat(cur);
      }
      if (!st) {
        verified?.add(sub);
        continue;
      }
    }
    if (st.isDirectory()) {
      verified?.add(sub);
      continue;
    }
    if (st.isSymbolicLink()) {
      throw new IntegrityError(`refusing to write ${JSON.stringify(rel)}: ${JSON.stringify(sub)} is a symlink in the docroot (it could lead outside)`, {
        hint: "replace the symlink with a real directory, or remove it",
      });
    }
    if (st.isFile() && removable(sub)) {
      await beforeRemove?.(sub);
      // Concurrent downloads under the same directory race here: whoever comes second finds the
      // file gone, or the directory already made.
      await unlink(cur).catch((e: unknown) => {
        if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw toLocal(e, cur);
      });
      await mkdir(cur, { mode: 0o755 }).catch((e: unknown) => {
        if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw toLocal(e, cur);
      });
      verified?.add(sub);
      continue;
    }
    throw new LocalIoError(`cannot create directory ${JSON.stringify(sub)}: a file that fansync did not write is in the way`, { hint: "remove it by hand or use --delete-extraneous" });
  }
}

/**
 * A temp file name next to the target: a dotfile, which web servers commonly refuse to serve.
 * `runId` is the run's own (random, see {@link newRunId}) and `seq` counts its temp files, so names
 * never collide within a run (no random bytes per file) nor between runs or processes; files are
 * created with O_EXCL besides, so a collision would fail rather than overwrite.
 */
export function tempPathFor(root: string, rel: string, runId: string, seq: number): string {
  const dir = path.dirname(path.join(root, rel));
  return path.join(dir, `${TEMP_MARK}${runId}-${seq.toString(36)}`);
}

/** A run's id for its temp file names: 48 random bits and the process id. */
export function newRunId(): string {
  return `${randomBytes(6).toString("hex")}${process.pid.toString(36)}`;
}

/** Remove empty directories from `rel`'s parent upwards, stopping at the root. */
export async function pruneEmptyDirs(root: string, rel: string): Promise<void> {
  let dir = path.dirname(rel);
  while (dir !== "." && dir !== "") {
    try {
      await rmdir(path.join(root, dir));
    } catch {
      return; // not empty (or gone): stop
    }
    dir = path.dirname(dir);
  }
}

/** Map a filesystem error to a LocalIoError that says what to do. */
export function toLocal(err: unknown, where: string): LocalIoError {
  const code = (err as NodeJS.ErrnoException).code;
  const hint =
    code === "ENOSPC" ? "the disk is full: free space; the next run resumes"
    : code === "EROFS" ? "the file system is read-only here; under systemd the unit must list the docroot in ReadWritePaths= (systemctl edit fansync-pull.service, or fansync-sync.service: see docs/operating.md, \"Another docroot\")"
    : code === "EACCES" || code === "EPERM" ? "the docroot is not writable by this user"
    : undefined;
  return new LocalIoError(`cannot write ${where}: ${code ?? (err as Error).message}`, { cause: err, ...(hint ? { hint } : {}) });
}
