// Deterministic docroot trees: planTree is pure (seed → listing), writeTree does the disk I/O.
import { createHash } from "node:crypto";
import { mkdirSync, openSync, writeSync, closeSync, utimesSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";

/** Shape of a generated tree. Sizes are in bytes, inclusive. */
export type TreeSpec = {
  /** Label used in reports and directory names, e.g. "10k". */
  name: string;
  /** Total number of files, big ones included. */
  files: number;
  /** Number of directories (root included); files are spread uniformly over them. */
  dirs: number;
  minSize: number;
  maxSize: number;
  /** Number of big files (placed in their own `media/` directory). */
  bigFiles: number;
  bigMinSize: number;
  bigMaxSize: number;
  /** Add NFC/NFD twin names (`café` written both ways), as real sites have. */
  unicode: boolean;
};

/** One file of a planned tree: POSIX path relative to the root, and its size. */
export type TreeEntry = { path: string; size: number };

/** Fixed mtime for every generated file: tools that compare mtimes see the same tree on every run. */
export const TREE_MTIME = new Date("2024-01-01T00:00:00Z");

/** FNV-1a 32-bit hash: seeds the PRNG from a string without pulling in a dependency. */
export function hash32(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** mulberry32: small, fast, good enough to spread sizes and names; returns floats in [0, 1). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const DIR_WORDS = ["assets", "css", "js", "img", "blog", "news", "docs", "shop", "fr", "de", "2024", "api"];
const EXTS = [".html", ".html", ".html", ".css", ".js", ".png", ".json", ".txt", ".svg", ".webp"];
// Twin names: each is created once in NFC and once in NFD; on Linux they are two distinct entries.
const TWIN_WORDS = ["café", "résumé", "naïve", "über", "mañana"];
const MAX_DEPTH = 4;

/** Byte-order comparison of UTF-8 strings (what S3 sorts by), not localeCompare. */
export function compareUtf8(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8"));
}

/**
 * Plans a tree: the same spec and seed always give the same listing, sorted in UTF-8 byte order.
 * Directories nest up to MAX_DEPTH levels; with `unicode`, about one directory in 40 and one file
 * in 200 get an NFC/NFD twin.
 */
export function planTree(spec: TreeSpec, seed: number): TreeEntry[] {
  if (spec.files < spec.bigFiles) throw new RangeError("bigFiles exceeds files");
  const rnd = prng(hash32(`${seed}/${spec.name}/${spec.files}`));
  const int = (lo: number, hi: number): number => lo + Math.floor(rnd() * (hi - lo + 1));

  const dirs: { path: string; depth: number }[] = [{ path: "", depth: 0 }];
  for (let i = 1; dirs.length < Math.max(1, spec.dirs); i++) {
    const parents = dirs.filter((d) => d.depth < MAX_DEPTH);
    const parent = parents[int(0, parents.length - 1)] as { path: string; depth: number };
    const prefix = parent.path === "" ? "" : `${parent.path}/`;
    if (spec.unicode && i % 40 === 7 && dirs.length + 2 <= spec.dirs) {
      const word = TWIN_WORDS[i % TWIN_WORDS.length] as string;
      dirs.push({ path: `${prefix}${word.normalize("NFC")}-${i}`, depth: parent.depth + 1 });
      dirs.push({ path: `${prefix}${word.normalize("NFD")}-${i}`, depth: parent.depth + 1 });
    } else {
      const word = DIR_WORDS[int(0, DIR_WORDS.length - 1)] as string;
      dirs.push({ path: `${prefix}${word}-${i}`, depth: parent.depth + 1 });
    }
  }

  const entries: TreeEntry[] = [];
  for (let j = 0; j < spec.bigFiles; j++) {
    entries.push({ path: `media/video-${j}.mp4`, size: int(spec.bigMinSize, spec.bigMaxSize) });
  }
  let j = 0;
  while (entries.length < spec.files) {
    const dir = dirs[int(0, dirs.length - 1)] as { path: string };
    const prefix = dir.path === "" ? "" : `${dir.path}/`;
    const size = int(spec.minSize, spec.maxSize);
    if (spec.unicode && j % 200 === 13 && entries.length + 2 <= spec.files) {
      const word = TWIN_WORDS[j % TWIN_WORDS.length] as string;
      entries.push({ path: `${prefix}${word.normalize("NFC")}-${j}.html`, size });
      entries.push({ path: `${prefix}${word.normalize("NFD")}-${j}.html`, size: int(spec.minSize, spec.maxSize) });
    } else {
      const ext = EXTS[int(0, EXTS.length - 1)] as string;
      entries.push({ path: `${prefix}page-${j}${ext}`, size });
    }
    j++;
  }
  return entries.sort((a, b) => compareUtf8(a.path, b.path));
}

/** Digest of a listing, to recognise a tree already on disk. */
export function listingDigest(entries: readonly TreeEntry[]): string {
  const h = createHash("sha256");
  for (const e of entries) h.update(`${e.path}\0${e.size}\n`);
  return h.digest("hex");
}

const POOL_SIZE = 1 << 20;
const poolCache = new Map<number, Buffer>();

/** 1 MiB of seeded pseudo-random bytes; file bodies are windows into it. */
function pool(seed: number): Buffer {
  let p = poolCache.get(seed);
  if (p === undefined) {
    const rnd = prng(hash32(`pool/${seed}`));
    const words = new Uint32Array(POOL_SIZE / 4);
    for (let i = 0; i < words.length; i++) words[i] = Math.floor(rnd() * 4294967296);
    p = Buffer.from(words.buffer);
    poolCache.set(seed, p);
  }
  return p;
}

/**
 * Bytes of a file body from `offset`, `length` long. A header naming the path and version makes
 * every file distinct (so content hashes differ), the rest is a window into the seeded pool.
 */
export function contentSlice(path: string, seed: number, version: number, offset: number, length: number): Buffer {
  const header = Buffer.from(`${path} v${version}\n`, "utf8");
  const out = Buffer.allocUnsafe(length);
  const p = pool(seed);
  const start = hash32(`${path}#${version}`) % POOL_SIZE;
  for (let i = 0; i < length; ) {
    const at = offset + i;
    if (at < header.length) {
      out[i] = header[at] as number;
      i++;
      continue;
    }
    const from = (start + at) % POOL_SIZE;
    const n = Math.min(length - i, POOL_SIZE - from);
    p.copy(out, i, from, from + n);
    i += n;
  }
  return out;
}

/** Whole body of a (small) file. */
export function contentFor(path: string, size: number, seed: number, version = 0): Buffer {
  return contentSlice(path, seed, version, 0, size);
}

const CHUNK = 8 << 20;

/** Writes one file of the tree (streaming big ones in 8 MiB chunks) and sets the fixed mtime. */
export function writeTreeFile(root: string, entry: TreeEntry, seed: number, version = 0, mtime: Date = TREE_MTIME, mkdir = true): void {
  const full = join(root, entry.path);
  if (mkdir) mkdirSync(dirname(full), { recursive: true });
  if (entry.size <= CHUNK) {
    writeFileSync(full, contentFor(entry.path, entry.size, seed, version));
  } else {
    const fd = openSync(full, "w");
    try {
      for (let off = 0; off < entry.size; off += CHUNK) {
        writeSync(fd, contentSlice(entry.path, seed, version, off, Math.min(CHUNK, entry.size - off)));
      }
    } finally {
      closeSync(fd);
    }
  }
  utimesSync(full, mtime, mtime);
}

/** Writes a whole planned tree under `root` (which should be empty). */
export function writeTree(root: string, entries: readonly TreeEntry[], seed: number): void {
  const made = new Set<string>();
  for (const e of entries) {
    const d = dirname(join(root, e.path));
    // mkdir once per directory: 1M files would otherwise cost 1M extra syscalls.
    if (!made.has(d)) {
      mkdirSync(d, { recursive: true });
      made.add(d);
    }
    writeTreeFile(root, e, seed, 0, TREE_MTIME, false);
  }
}
