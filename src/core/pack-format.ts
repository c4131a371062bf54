/**
 * Pack objects (issue 14): a first pull that does not pay one GET per small file. Pure: the pack
 * index format, its bounded and hostile-proof parsing, and the two plans (which packs a writer keeps,
 * drops and builds; which packs a puller fetches). docs/bucket-format.md "Packs" describes the same.
 *
 * - A pack is the bytes of many small files back to back, stored at `<meta>packs/<sha256>.pack`:
 *   immutable and content-addressed, so a pack never changes under a reader and two writers that
 *   build the same pack write the same bytes.
 * - The pack index, `<meta>packs/index.json.gz`, says which file (path, sha256) is at which offset
 *   and length of which pack. It is advice, never authority: a puller takes a file from a pack only
 *   when the entry's path, size and sha256 are those of the (signed) manifest, and verifies the
 *   slice's sha256 before it stages it. Anything else falls back to the path-keyed object.
 * - The index is rewritten only when packs change (a batch of unpacked files grew big enough, a
 *   pack's live share fell below the threshold, or `--repack`): a small generation costs nothing.
 */
import { gunzipSync, gzipSync } from "node:zlib";
import { IntegrityError } from "./errors.ts";
import type { Entry, FileMap } from "./manifest.ts";
import { checkPathSet, compareUtf8, showPath } from "./paths.ts";

/** Format tag of the pack index. */
export const PACK_INDEX_FORMAT = "fansync-packs/1";

/** No pack a reader accepts is bigger than this (a hostile index cannot make a node buffer more). */
export const MAX_PACK_BYTES = 64 * 1024 * 1024;

/** One file inside a pack. */
export interface PackedFile {
  readonly path: string;
  readonly offset: number;
  readonly length: number;
  readonly sha256: string;
}

/** One pack object: its id is the sha256 of its bytes (and names its key). */
export interface Pack {
  readonly id: string;
  readonly size: number;
  /** Sorted by offset; ranges never overlap. */
  readonly files: readonly PackedFile[];
}

/** `<meta>packs/index.json.gz`. */
export interface PackIndex {
  readonly format: typeof PACK_INDEX_FORMAT;
  /** The generation the index was built against (advice for readers: entries are checked anyway). */
  readonly generation: number;
  readonly time: string;
  readonly packs: readonly Pack[];
  /**
   * Packs the previous index named and this one dropped: kept one more index long, so a reader
   * that fetched the previous index a moment ago still finds them. A writer deletes a pack only when
   * neither list names it (and it is older than a grace period: another writer's pack on its way).
   */
  readonly retiring: readonly string[];
}

/** How packs are cut (resolved; see {@link DEFAULT_PACK_TUNING}). */
export interface PackTuning {
  /** Only files at most this big are packed (larger ones gain nothing from it). */
  readonly maxFileSize: number;
  /** A new pack is cut at about this many bytes. */
  readonly packSize: number;
  /** A pack whose live bytes (files the generation still has, same content) fall below this share is rebuilt. */
  readonly minLive: number;
  /** Unpacked small files are packed once there are this many of them, or {@link packSize} bytes. */
  readonly minNewFiles: number;
}

/** The defaults (measured in bench/packs.ts): 8 MiB packs of files up to 256 KiB. */
export const DEFAULT_PACK_TUNING: PackTuning = Object.freeze({ maxFileSize: 256 * 1024, packSize: 8 * 1024 * 1024, minLive: 0.5, minNewFiles: 1000 });

/** Keys of pack objects below a meta prefix. */
export const packKeys = {
  index: (meta: string) => `${meta}packs/index.json.gz`,
  pack: (meta: string, id: string) => `${meta}packs/${id}.pack`,
  /** The folder a writer lists for orphaned packs. */
  dir: (meta: string) => `${meta}packs/`,
};

/** Serialise an index (gzip JSON; each file as `[path, offset, length, sha256]`). */
export function serializePackIndex(idx: PackIndex): Buffer {
  const doc = {
    format: PACK_INDEX_FORMAT,
    generation: idx.generation,
    time: idx.time,
    packs: idx.packs.map((p) => ({ id: p.id, size: p.size, files: p.files.map((f) => [f.path, f.offset, f.length, f.sha256]) })),
    retiring: idx.retiring,
  };
  return gzipSync(JSON.stringify(doc), { level: 6 });
}

/**
 * Upper bound of an index's inflated size for a site of `files` files: an entry is at most about
 * 6 KiB (a 960-byte path with every byte escaped as \uXXXX, the numbers, the hash); bombs stop there.
 */
export function maxPackIndexBytes(files: number): number {
  return 64 * 1024 + (files + 1) * 6 * 1024;
}

/**
 * Parse and check a stored index. Refused, with an {@link IntegrityError} that says what is wrong:
 * a gzip bomb (more than `maxInflated` bytes), an unknown format, a pack id that is not a sha256 or
 * comes twice, a pack size beyond {@link MAX_PACK_BYTES}, a file range outside its pack or
 * overlapping another, an invalid path (absolute, `..`, control characters, `.fansync`…), a path in
 * two packs. A refused index is ignored whole: the puller fetches path-keyed objects instead.
 */
export function parsePackIndex(data: Uint8Array, maxInflated: number): PackIndex {
  let text: string;
  try {
    text = gunzipSync(data, { maxOutputLength: maxInflated }).toString("utf8");
  } catch (err) {
    const big = (err as NodeJS.ErrnoException).code === "ERR_BUFFER_TOO_LARGE" || err instanceof RangeError;
    throw new IntegrityError(big ? `pack index inflates to more than ${maxInflated} bytes (no index fansync wrote for this site; a gzip bomb?)` : "pack index is not valid gzip", { cause: err });
  }
  let o: unknown;
  try {
    o = JSON.parse(text);
  } catch (err) {
    throw new IntegrityError("pack index is not valid JSON", { cause: err });
  }
  const bad = (what: string): never => {
    throw new IntegrityError(`pack index: ${what}`);
  };
  if (typeof o !== "object" || o === null || Array.isArray(o)) return bad("not a JSON object");
  const doc = o as Record<string, unknown>;
  if (doc.format !== PACK_INDEX_FORMAT) bad(`unknown format ${showPath(doc.format)}`);
  if (!Number.isSafeInteger(doc.generation) || (doc.generation as number) < 0) bad("generation is not a non-negative integer");
  if (!Array.isArray(doc.packs)) bad("packs is not a list");
  const retiring = doc.retiring === undefined ? [] : doc.retiring;
  if (!Array.isArray(retiring) || !retiring.every(isSha256)) bad("retiring is not a list of pack ids");
  const ids = new Set<string>();
  const paths: string[] = [];
  const packs: Pack[] = [];
  for (const [i, raw] of (doc.packs as unknown[]).entries()) {
    const where = `pack ${i}`;
    if (typeof raw !== "object" || raw === null) bad(`${where} is not an object`);
    const p = raw as Record<string, unknown>;
    if (!isSha256(p.id)) bad(`${where}: id is not a sha256`);
    const id = p.id as string;
    if (ids.has(id)) bad(`pack ${id.slice(0, 12)}… is listed twice`);
    ids.add(id);
    if (!Number.isSafeInteger(p.size) || (p.size as number) < 0 || (p.size as number) > MAX_PACK_BYTES) bad(`pack ${id.slice(0, 12)}…: size ${String(p.size)} is not 0..${MAX_PACK_BYTES}`);
    const size = p.size as number;
    if (!Array.isArray(p.files)) bad(`pack ${id.slice(0, 12)}…: files is not a list`);
    const files: PackedFile[] = [];
    let end = 0;
    for (const f of p.files as unknown[]) {
      if (!Array.isArray(f) || f.length !== 4) return bad(`pack ${id.slice(0, 12)}…: a file is not [path, offset, length, sha256]`);
      const [fp, offset, length, sha] = f as [unknown, unknown, unknown, unknown];
      const at = `pack ${id.slice(0, 12)}… file ${showPath(fp)}`;
      if (typeof fp !== "string") bad(`${at}: path is not a string`);
      if (!Number.isSafeInteger(offset) || (offset as number) < 0) bad(`${at}: offset is not a non-negative integer`);
      if (!Number.isSafeInteger(length) || (length as number) < 0) bad(`${at}: length is not a non-negative integer`);
      if ((offset as number) + (length as number) > size) bad(`${at}: bytes ${String(offset)}+${String(length)} lie beyond the pack's ${size} bytes`);
      if ((offset as number) < end) bad(`${at}: its range overlaps the previous file's (or is out of order)`);
      if (!isSha256(sha)) bad(`${at}: sha256 is not 64 hex digits`);
      end = (offset as number) + (length as number);
      files.push({ path: fp as string, offset: offset as number, length: length as number, sha256: sha as string });
      paths.push(fp as string);
    }
    packs.push({ id, size, files });
  }
  const problems = checkPathSet(paths);
  if (problems.length > 0) bad(`${problems.length} invalid path(s): ${problems.slice(0, 3).join("; ")}`);
  return { format: PACK_INDEX_FORMAT, generation: doc.generation as number, time: typeof doc.time === "string" ? doc.time : "", packs, retiring: retiring as string[] };
}

function isSha256(v: unknown): boolean {
  return typeof v === "string" && /^[0-9a-f]{64}$/.test(v);
}

/** True when a packed file holds the bytes the manifest entry names (same size and sha256). */
export function packedMatches(f: PackedFile, e: Entry | undefined): e is Entry {
  return e !== undefined && e.size === f.length && e.sha256 === f.sha256;
}

/** What a writer does to the packs after a generation (see {@link planPacks}). */
export interface PackPlan {
  /** False: the index stays as it is (no PUT at all). */
  readonly changed: boolean;
  /** Packs kept, with only their live files listed. */
  readonly keep: readonly Pack[];
  /** Groups of files, each to become one new pack (in path order, about packSize bytes each). */
  readonly build: readonly (readonly Entry[])[];
  /** Packs the previous index named and the next does not: listed as retiring for one more index. */
  readonly retire: readonly string[];
  /** Why the index changes (for the log). */
  readonly reason: string;
}

/**
 * Plan the packs for the generation `files` given the previous index. A pack is kept while at least
 * `minLive` of its bytes are files the generation still has with the same content; otherwise (or
 * with `repack`) it is dropped and its live files are packed again. Small files no kept pack holds
 * are packed once there are `minNewFiles` of them or `packSize` bytes, or whenever the index
 * changes anyway; until then pullers take them path-keyed (as they take every incremental change).
 */
export function planPacks(prev: PackIndex | undefined, files: FileMap, t: PackTuning, repack = false): PackPlan {
  const keep: Pack[] = [];
  const retire: string[] = [];
  const covered = new Set<string>();
  for (const p of prev?.packs ?? []) {
    const live = p.files.filter((f) => f.length <= t.maxFileSize && packedMatches(f, files.get(f.path)) && !covered.has(f.path));
    const liveBytes = live.reduce((n, f) => n + f.length, 0);
    // An empty pack has nothing to offer; one whose files all went is dropped as well.
    if (!repack && live.length > 0 && liveBytes >= t.minLive * p.size) {
      keep.push({ id: p.id, size: p.size, files: live });
      for (const f of live) covered.add(f.path);
    } else retire.push(p.id);
  }
  const loose = [...files.values()].filter((e) => e.size <= t.maxFileSize && !covered.has(e.path)).sort((a, b) => compareUtf8(a.path, b.path));
  const looseBytes = loose.reduce((n, e) => n + e.size, 0);
  const reason = repack ? "repack" : !prev ? "no pack index yet" : retire.length > 0 ? `${retire.length} pack(s) fell below ${t.minLive * 100}% live` : loose.length >= t.minNewFiles || looseBytes >= t.packSize ? `${loose.length} small files (${looseBytes} bytes) are in no pack` : "";
  const changed = reason !== "" && (loose.length > 0 || retire.length > 0);
  const build: Entry[][] = [];
  if (changed) {
    let cur: Entry[] = [];
    let bytes = 0;
    for (const e of loose) {
      if (cur.length > 0 && bytes + e.size > t.packSize) {
        build.push(cur);
        cur = [];
        bytes = 0;
      }
      cur.push(e);
      bytes += e.size;
    }
    if (cur.length > 0) build.push(cur);
  }
  return { changed, keep: changed ? keep : (prev?.packs ?? []), build, retire: changed ? retire : (prev?.retiring ?? []), reason };
}

/** One pack a puller fetches, and the files it takes from it. */
export interface PackFetch {
  readonly pack: Pack;
  readonly files: readonly { readonly entry: Entry; readonly offset: number }[];
  /** The bytes of those files (the rest of the pack is fetched but not used). */
  readonly wantedBytes: number;
}

/** When a puller uses packs (tuned so that a pack never costs more than fetching its files one by one would). */
export interface PackFetchTuning {
  /** Fewer downloads than this, or than this share of the generation's files, and no pack index is read at all (an incremental pull). */
  readonly minDownloads: number;
  readonly minDownloadShare: number;
  /** A pack is fetched only for at least this many of its files… */
  readonly minFilesPerPack: number;
  /** …and when they are at least this share of its bytes (otherwise the files come path-keyed). */
  readonly minWantedShare: number;
}

/** The puller's defaults. */
export const DEFAULT_PACK_FETCH: PackFetchTuning = Object.freeze({ minDownloads: 64, minDownloadShare: 0.01, minFilesPerPack: 8, minWantedShare: 0.25 });

/**
 * Whether a pull of `downloads` files of a generation of `files` reads the pack index at all. The
 * index costs about 50 bytes per file of the site: read it when the plan is big enough for packs to
 * pay (a new node, one far behind), not for an everyday change of a large site.
 */
export function pullUsesPacks(downloads: number, files: number, t: PackFetchTuning = DEFAULT_PACK_FETCH): boolean {
  return downloads >= Math.max(t.minDownloads, files * t.minDownloadShare);
}

/**
 * Which packs to fetch for `downloads` (the entries the plan downloads, from the signed manifest):
 * a file is taken from a pack only when the index's entry has the manifest's size and sha256, and
 * each path from one pack at most. What no chosen pack covers is fetched path-keyed.
 */
export function planPackFetch(idx: PackIndex, downloads: readonly Entry[], t: PackFetchTuning = DEFAULT_PACK_FETCH): { fetches: PackFetch[]; covered: Set<string> } {
  const want = new Map(downloads.map((e) => [e.path, e]));
  const covered = new Set<string>();
  const fetches: PackFetch[] = [];
  for (const pack of idx.packs) {
    const files: { entry: Entry; offset: number }[] = [];
    let wantedBytes = 0;
    for (const f of pack.files) {
      const e = want.get(f.path);
      if (!packedMatches(f, e) || covered.has(f.path)) continue;
      files.push({ entry: e, offset: f.offset });
      wantedBytes += f.length;
    }
    if (files.length < t.minFilesPerPack || wantedBytes < t.minWantedShare * pack.size) continue;
    for (const f of files) covered.add(f.entry.path);
    fetches.push({ pack, files, wantedBytes });
  }
  return { fetches, covered };
}
