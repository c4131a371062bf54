/** Temp directories, generated trees and tree snapshots for integration tests. */
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { lstat, mkdir, readdir, readFile, utimes, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";

/** A fresh temp directory, removed by the returned cleanup. */
export function tempDir(tag: string): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(path.join(os.tmpdir(), `fansync-${tag}-`));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Write files: path → content (string or Buffer); parents are created. Optional fixed mtime. */
export async function writeTree(root: string, files: Record<string, string | Buffer>, mtime?: Date): Promise<void> {
  for (const [p, content] of Object.entries(files)) {
    const abs = path.join(root, p);
    await mkdir(path.dirname(abs), { recursive: true });
    await writeFile(abs, content);
    if (mtime) await utimes(abs, mtime, mtime);
  }
}

/** One file as a snapshot sees it. */
export interface FileSnap {
  readonly size: number;
  readonly sha256: string;
  readonly mode: number;
  readonly mtimeMs: number;
}

/** Snapshot a tree: relative path → size, sha256, mode, mtime (regular files only; skips `skip`). */
export async function snapshot(root: string, skip: (rel: string) => boolean = () => false): Promise<Map<string, FileSnap>> {
  const out = new Map<string, FileSnap>();
  const walk = async (rel: string) => {
    const entries = await readdir(path.join(root, rel), { withFileTypes: true });
    for (const e of entries) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (skip(r)) continue;
      if (e.isDirectory()) await walk(r);
      else if (e.isFile()) {
        const abs = path.join(root, r);
        const [buf, st] = await Promise.all([readFile(abs), lstat(abs)]);
        out.set(r, { size: buf.length, sha256: createHash("sha256").update(buf).digest("hex"), mode: st.mode & 0o7777, mtimeMs: Math.floor(st.mtimeMs) });
      }
    }
  };
  await walk("");
  return out;
}

/** Deterministic pseudo-random bytes (so a failing test can be rerun with the same data): the demo's generator. */
export { seededBytes } from "../../src/core/seeded-bytes.ts";
