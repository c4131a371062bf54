/**
 * The persisted hash index of a docroot (`index.ndjson` in a job's state directory): path → the
 * size, mtime and inode a file had when it was last hashed, and its sha256. A file that still has
 * that size, mtime and inode is not read again. One instance per state directory in a process: a
 * two-way node's scan and its uploader share it, so a file modified between rounds is hashed once
 * per round, not once by the node and again by the uploader (issue 26).
 */
import type { ScannedFile } from "./local-tree.ts";
import { hashFile } from "./local-tree.ts";
import { readNdjsonLines, writeLinesAtomic } from "./state-files.ts";

/** Index entry: what a file looked like when it was last hashed (the persisted line's value). */
export type IndexEntry = [size: number, mtimeMs: number, ino: number, sha256: string];

/** Reads a file and returns its sha256 (hex); `size` is the scan's, a hint for the read. */
export type Hasher = (abs: string, size: number) => Promise<string>;

const SHA_BYTES = 32;
const HEX_SHA256 = /^[0-9a-f]{64}$/;

/**
 * The index's records, one slot per path (issue 25, memory): size, mtime and inode in typed arrays,
 * the sha256 as 32 bytes in one buffer. A record as a tuple of boxed numbers and a 64-character
 * hex string cost ~270 bytes a file (~250 MB of a 1M-file push's heap); a slot costs 56 bytes
 * outside the heap, plus the path's map entry. Tuples and hex strings are made only when asked for.
 */
export class IndexSlots {
  private readonly slots = new Map<string, number>();
  private free: number[] = [];
  private nums = new Float64Array(0);
  private shas = Buffer.alloc(0);

  get size(): number {
    return this.slots.size;
  }

  /** The record of `p` as a tuple (made now: hold it no longer than needed). */
  get(p: string): IndexEntry | undefined {
    const i = this.slots.get(p);
    if (i === undefined) return undefined;
    return [this.nums[i * 3] as number, this.nums[i * 3 + 1] as number, this.nums[i * 3 + 2] as number, this.shas.toString("hex", i * SHA_BYTES, (i + 1) * SHA_BYTES)];
  }

  /** Whether `p`'s record says this size, mtime and inode (nothing is made). */
  matches(p: string, size: number, mtimeMs: number, ino: number): boolean {
    const i = this.slots.get(p);
    return i !== undefined && this.nums[i * 3] === size && this.nums[i * 3 + 1] === mtimeMs && this.nums[i * 3 + 2] === ino;
  }

  /** Whether `p`'s sha256 is `hex` (lowercase hex), compared without making a string. */
  shaIs(p: string, hex: string): boolean {
    const i = this.slots.get(p);
    if (i === undefined || !HEX_SHA256.test(hex)) return false;
    for (let b = 0; b < SHA_BYTES; b++) {
      if (this.shas[i * SHA_BYTES + b] !== (nibble(hex.charCodeAt(b * 2)) << 4 | nibble(hex.charCodeAt(b * 2 + 1)))) return false;
    }
    return true;
  }

  /** Record `e` for `p`; a sha256 that is not 64 lowercase hex digits is refused (a TypeError). */
  set(p: string, e: readonly [number, number, number, string]): void {
    if (!HEX_SHA256.test(e[3])) throw new TypeError(`not a sha256: ${JSON.stringify(e[3])}`);
    let i = this.slots.get(p);
    if (i === undefined) {
      i = this.free.pop() ?? this.slots.size;
      this.grow(i + 1);
      this.slots.set(p, i);
    }
    this.nums[i * 3] = e[0];
    this.nums[i * 3 + 1] = e[1];
    this.nums[i * 3 + 2] = e[2];
    this.shas.write(e[3], i * SHA_BYTES, SHA_BYTES, "hex");
  }

  delete(p: string): void {
    const i = this.slots.get(p);
    if (i === undefined) return;
    this.slots.delete(p);
    this.free.push(i);
  }

  keys(): IterableIterator<string> {
    return this.slots.keys();
  }

  /** Every record as it is persisted (one tuple at a time). */
  *entries(): Generator<[string, IndexEntry]> {
    for (const p of this.slots.keys()) yield [p, this.get(p) as IndexEntry];
  }

  private grow(n: number): void {
    const cap = this.nums.length / 3;
    if (n <= cap) return;
    const next = Math.max(1024, cap * 2, n);
    const nums = new Float64Array(next * 3);
    nums.set(this.nums);
    const shas = Buffer.alloc(next * SHA_BYTES);
    this.shas.copy(shas);
    this.nums = nums;
    this.shas = shas;
  }
}

/** See the module comment. Call {@link load} before anything else; {@link save} writes only what changed. */
export class HashIndex {
  private readonly file: string;
  private readonly hasher: Hasher;
  private entries = new IndexSlots();
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
      const slots = new IndexSlots();
      // A line that is no record (a damaged file) drops the whole index, as a torn JSON line does: it is rebuilt by hashing.
      const ok = await readNdjsonLines<unknown>(this.file, (k, v) => {
        if (!isIndexEntry(v)) throw new TypeError(`index line for ${k} is no record`);
        slots.set(k, v);
      });
      this.entries = ok ? slots : new IndexSlots();
      this.loaded = true;
    }
    return this;
  }

  /** The entry of `f` when the file still has the size, mtime and inode it was hashed with. */
  known(f: ScannedFile): IndexEntry | undefined {
    return this.entries.matches(f.path, f.size, f.mtimeMs, f.ino) ? this.entries.get(f.path) : undefined;
  }

  /**
   * The sha256 of `f` when the file still has the size, mtime and inode it was hashed with: `same`
   * itself when it is that sha256 (the manifest's string is shared, not copied), else a new string.
   */
  knownSha(f: ScannedFile, same?: string): string | undefined {
    if (!this.entries.matches(f.path, f.size, f.mtimeMs, f.ino)) return undefined;
    if (same !== undefined && this.entries.shaIs(f.path, same)) return same;
    return this.entries.get(f.path)?.[3];
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

  /** Write the index if it changed (the same `[path, [size, mtimeMs, ino, sha256]]` lines as ever). */
  async save(): Promise<void> {
    if (!this.dirty) return;
    await writeLinesAtomic(this.file, (function* (entries: IndexSlots) {
      for (const [p, e] of entries.entries()) yield JSON.stringify([p, e]);
    })(this.entries));
    this.dirty = false;
  }
}

// The value of one lowercase hex digit (the caller checked the string).
function nibble(c: number): number {
  return c <= 57 ? c - 48 : c - 87;
}

function isIndexEntry(v: unknown): v is IndexEntry {
  return Array.isArray(v) && v.length === 4 && typeof v[0] === "number" && typeof v[1] === "number" && typeof v[2] === "number" && typeof v[3] === "string" && HEX_SHA256.test(v[3]);
}
