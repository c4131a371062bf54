/**
 * The persisted hash index of a docroot (`index.ndjson` in a job's state directory): path → the
 * size, mtime and inode a file had when it was last hashed, and its sha256. A file that still has
 * that size, mtime and inode is not read again. One instance per state directory in a process: a
 * two-way node's scan and its uploader share it, so a file modified between rounds is hashed once
 * per round, not once by the node and again by the uploader (issue 26).
 */
import type { ScannedFile } from "./local-tree.ts";
import { hashFile } from "./local-tree.ts";
import { readNdjsonMap, writeNdjsonMap } from "./state-files.ts";

/** Index entry: what a file looked like when it was last hashed. */
export type IndexEntry = [size: number, mtimeMs: number, ino: number, sha256: string];

/** Reads a file and returns its sha256 (hex); `size` is the scan's, a hint for the read. */
export type Hasher = (abs: string, size: number) => Promise<string>;

/** See the module comment. Call {@link load} before anything else; {@link save} writes only what changed. */
export class HashIndex {
  private readonly file: string;
  private readonly hasher: Hasher;
  private entries = new Map<string, IndexEntry>();
  private loaded = false;
  /** Whether the entries changed since they were last written: a no-op run rewrites nothing. */
  private dirty = false;

  /** `file`: where the index persists; `hasher`: how a file is hashed (tests count the reads). */
  constructor(file: string, hasher: Hasher = hashFile) {
    this.file = file;
    this.hasher = hasher;
  }

  /** Read the persisted index once (later calls keep what this process learnt since). */
  async load(): Promise<this> {
    if (!this.loaded) {
      this.entries = await readNdjsonMap<IndexEntry>(this.file);
      this.loaded = true;
    }
    return this;
  }

  /** The entry of `f` when the file still has the size, mtime and inode it was hashed with. */
  known(f: ScannedFile): IndexEntry | undefined {
    const e = this.entries.get(f.path);
    return e && e[0] === f.size && e[1] === f.mtimeMs && e[2] === f.ino ? e : undefined;
  }

  /** Hash `f` (at `abs`) and remember it; errors of the read (ENOENT, EACCES) are the caller's. */
  async hash(abs: string, f: ScannedFile): Promise<string> {
    const sha = await this.hasher(abs, f.size);
    this.set(f.path, [f.size, f.mtimeMs, f.ino, sha]);
    return sha;
  }

  /** The entry of `p`, whatever the file looks like now. */
  get(p: string): IndexEntry | undefined {
    return this.entries.get(p);
  }

  /** Record what `p` held (a transfer that hashed it as it read it). */
  set(p: string, e: IndexEntry): void {
    this.entries.set(p, e);
    this.dirty = true;
  }

  /** After a full scan, forget the paths `exists` says are gone; true when any went. */
  prune(exists: (p: string) => boolean): boolean {
    let pruned = false;
    for (const p of this.entries.keys()) {
      if (exists(p)) continue;
      this.entries.delete(p);
      pruned = true;
    }
    if (pruned) this.dirty = true;
    return pruned;
  }

  /** Write the index if it changed. */
  async save(): Promise<void> {
    if (!this.dirty) return;
    await writeNdjsonMap(this.file, this.entries);
    this.dirty = false;
  }
}
