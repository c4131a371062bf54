/**
 * The bucket format: head, manifest and journal documents, their keys, serialisation and parsing.
 * docs/bucket-format.md describes the same format for readers in other languages.
 * Pure: gzip and sha256 are computation, not I/O (inflation runs as a stream so that it can be bounded).
 */
import { createHash } from "node:crypto";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGunzip, createGzip } from "node:zlib";
import { IntegrityError } from "./errors.ts";
import { checkPathKeys, checkPathSet, compareUtf8, showPath } from "./paths.ts";
import { type HeadSignature, parseHeadSignature } from "./signing.ts";

/** Format tags written into every control object. */
export const HEAD_FORMAT = "fansync-head/1";
export const MANIFEST_FORMAT = "fansync-manifest/1";
export const JOURNAL_FORMAT = "fansync-journal/1";

/** One file of a generation. */
export interface Entry {
  readonly path: string;
  readonly size: number;
  /** Integer milliseconds since the epoch. */
  readonly mtimeMs: number;
  /** Permission bits (0o7777 mask). */
  readonly mode: number;
  /** Lowercase hex sha256 of the content. */
  readonly sha256: string;
  readonly etag: string;
  readonly versionId?: string | undefined;
}

/** `head.json`: the pointer to the current generation, written last. */
export interface Head {
  readonly format: typeof HEAD_FORMAT;
  readonly generation: number;
  readonly manifestKey: string;
  readonly manifestSha256: string;
  readonly files: number;
  readonly bytes: number;
  /** Oldest generation whose journal is still kept; journals exist for (oldestJournal..generation]. */
  readonly oldestJournal: number;
  readonly writer: string;
  /**
   * Which command wrote this generation (issue 27): a one-way uploader (`push`, `watch`) makes the
   * bucket equal its docroot, so it must know when it publishes over generations of two-way `sync`
   * writers (it would delete their uploads). Absent in heads written before it was recorded. Not
   * covered by the signature (it says who wrote, not what the site holds).
   */
  readonly writerKind?: WriterKind;
  readonly time: string;
  /**
   * Paths whose objects a commit that has not finished (or died) may have overwritten with other
   * bytes than this generation's (path-keyed objects in a bucket without versioning). A writer
   * verifies them before it publishes anything that names them; readers already refuse such an
   * object (If-Match). Absent when clean; `["*"]` when too many to list (verify every object).
   */
  readonly dirty?: readonly string[];
  /**
   * How many of this generation's deletions its writer approved (push --force past its own guard,
   * or --approve-deletes): a node's delete guard does not count them, so one decision on the master
   * goes for the whole fleet. Absent: none approved.
   */
  readonly approvedDeletes?: number;
  /** The writer's ed25519 signature (core/signing.ts); absent in an unsigned head. */
  readonly signature?: HeadSignature | undefined;
  /** Set when read: why the head's `signature` member is malformed (then `signature` is undefined). Never written. */
  readonly signatureProblem?: string | undefined;
}

/** The commands that write generations, as a head records them. */
export type WriterKind = "push" | "watch" | "sync" | "replicate" | "rollback";

/** Every {@link WriterKind}. */
export const WRITER_KINDS: readonly WriterKind[] = ["push", "watch", "sync", "replicate", "rollback"];

/** More dirty paths than this are recorded as `["*"]`. */
export const DIRTY_MAX = 10_000;
/** Dirty paths longer than this in all (bytes) are recorded as `["*"]`, so a head stays below {@link HEAD_MAX_BYTES}. */
export const DIRTY_MAX_BYTES = 256 * 1024;

/**
 * The most bytes of head.json a reader takes (issue 22): a head fansync writes is a few hundred
 * bytes, or about {@link DIRTY_MAX_BYTES} more with a long dirty list; a larger one is refused
 * unread, before it is parsed or verified (anyone who can write the bucket can put one).
 */
export const HEAD_MAX_BYTES = 1024 * 1024;
/** The most bytes of a journal: a writer writes none larger (readers fetch the manifest instead), a reader takes none larger. */
export const JOURNAL_MAX_BYTES = 16 * 1024 * 1024;
/** A manifest no head names (a retained one, read by log and rollback) has no declared count: this fixed cap. */
export const RETAINED_MANIFEST_MAX_BYTES = 1024 * 1024 * 1024;

/**
 * The most bytes the manifest of a head declaring `files` entries can have: each line is at most
 * {@link MAX_MANIFEST_LINE} bytes inflated, and gzip never grows what it cannot compress by more
 * than a few bytes per 16 KiB block (1% and 64 KiB of slack cover that, and the header line).
 */
export function manifestMaxBytes(files: number): number {
  return Math.ceil((files + 1) * MAX_MANIFEST_LINE * 1.01) + 64 * 1024;
}

/** `journal/<generation>`: the delta from generation - 1. */
export interface Journal {
  readonly format: typeof JOURNAL_FORMAT;
  readonly generation: number;
  readonly puts: readonly Entry[];
  readonly deletes: readonly string[];
  readonly time: string;
  /** Who published the generation (the head's writer); absent in journals written before it was recorded. */
  readonly writer?: string | undefined;
  /** Deletions of this generation its writer approved (see {@link Head.approvedDeletes}). */
  readonly approvedDeletes?: number | undefined;
}

/** A manifest held in memory: entries keyed by path. */
export type FileMap = Map<string, Entry>;

/** Keys of the control objects below a meta prefix. */
export const metaKeys = {
  head: (meta: string) => `${meta}head.json`,
  manifest: (meta: string, gen: number) => `${meta}manifests/${pad(gen)}.ndjson.gz`,
  journal: (meta: string, gen: number) => `${meta}journal/${pad(gen)}.json`,
  lease: (meta: string) => `${meta}lease.json`,
};

function pad(gen: number): string {
  return String(gen).padStart(12, "0");
}

/** sha256 of bytes as lowercase hex. */
export function sha256Hex(data: Uint8Array | string): string {
  return createHash("sha256").update(data).digest("hex");
}

/**
 * Serialise a generation's entries to the stored manifest bytes (gzip NDJSON, sorted by UTF-8
 * path). The lines are compressed as they are made, a batch at a time: the whole text of a
 * 1M-entry manifest (~200 MB) is never held, only its compressed bytes.
 */
export async function serializeManifest(generation: number, files: FileMap, signature?: HeadSignature): Promise<Buffer> {
  const paths = [...files.keys()].sort(compareUtf8);
  const gz = createGzip({ level: 6 });
  const out: Buffer[] = [];
  gz.on("data", (c: Buffer) => out.push(c));
  const ended = new Promise<void>((resolve, reject) => {
    gz.once("end", resolve);
    gz.once("error", reject);
  });
  // The signature rides in the header too: a retained generation keeps it after its head moved on,
  // so rollback can verify what it restores (docs/bucket-format.md, docs/security.md).
  let batch = JSON.stringify({ format: MANIFEST_FORMAT, generation, files: paths.length, ...(signature ? { signature } : {}) }) + "\n";
  for (const p of paths) {
    batch += JSON.stringify(compactEntry(files.get(p) as Entry)) + "\n";
    if (batch.length >= 256 * 1024) {
      // Waiting for each batch to be compressed bounds what is queued to the batch size.
      await new Promise<void>((resolve, reject) => gz.write(batch, (err) => (err ? reject(err) : resolve())));
      batch = "";
    }
  }
  gz.end(batch);
  await ended;
  return Buffer.concat(out);
}

function compactEntry(e: Entry): Entry {
  const { path, size, mtimeMs, mode, sha256, etag, versionId } = e;
  return versionId && versionId !== "null" ? { path, size, mtimeMs, mode, sha256, etag, versionId } : { path, size, mtimeMs, mode, sha256, etag };
}

/**
 * Longest manifest line a reader accepts. A valid entry is at most about 3.2 KiB (a 960-byte path
 * with every byte escaped, a version id of 1 KiB, the numbers and hashes); a line beyond this is no
 * manifest fansync wrote.
 */
export const MAX_MANIFEST_LINE = 8192;
// The compressed bytes are fed to the inflater in slices of this size.
const INFLATE_SLICE = 64 * 1024;

/**
 * Parse and fully validate stored manifest bytes against the sha256 the head names. Inflation is
 * streamed and bounded (issue 18: a 1 MB gzip bomb made a puller peak at 3 GB): no more than
 * `declaredFiles` (the head's `files`; else the header's) entry lines of at most
 * {@link MAX_MANIFEST_LINE} bytes are read, an empty line or a duplicate path ends it at once, and
 * only one slice of inflated bytes is held at a time.
 */
export async function parseManifest(data: Uint8Array, expectSha256: string, expectGeneration: number, declaredFiles?: number): Promise<FileMap> {
  return (await parseSignedManifest(data, expectSha256, expectGeneration, declaredFiles)).files;
}

/** A manifest as read, with the signature its header carries (absent in unsigned generations and older manifests). */
export interface ParsedManifest {
  readonly files: FileMap;
  readonly signature?: HeadSignature | undefined;
  /** Why the header's `signature` member is malformed (then `signature` is undefined). */
  readonly signatureProblem?: string | undefined;
}

/** {@link parseManifest}, also returning the signature in the manifest's header. */
export async function parseSignedManifest(data: Uint8Array, expectSha256: string, expectGeneration: number, declaredFiles?: number): Promise<ParsedManifest> {
  const got = sha256Hex(data);
  if (got !== expectSha256) {
    throw new IntegrityError(`manifest for generation ${expectGeneration} has sha256 ${got}, head says ${expectSha256} (corrupt or truncated)`);
  }
  const lines = new ManifestLines(expectGeneration, declaredFiles);
  const slices = function* () {
    for (let i = 0; i < data.length; i += INFLATE_SLICE) yield Buffer.from(data.buffer, data.byteOffset + i, Math.min(INFLATE_SLICE, data.length - i));
  };
  try {
    await pipeline(Readable.from(slices()), createGunzip(), async (inflated: AsyncIterable<Buffer>) => {
      for await (const chunk of inflated) lines.push(chunk);
    });
  } catch (err) {
    if (err instanceof IntegrityError) throw err;
    throw new IntegrityError(`manifest for generation ${expectGeneration} is not valid gzip`, { cause: err });
  }
  const files = lines.end();
  const sig = lines.signature;
  return { files, ...(typeof sig === "object" ? { signature: sig } : typeof sig === "string" ? { signatureProblem: sig } : {}) };
}

/** The manifest's lines as they are inflated: header first, then entries, each checked on arrival. */
class ManifestLines {
  private readonly generation: number;
  private readonly declared: number | undefined;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private line = 0;
  private announced: number | undefined;
  private readonly files: FileMap = new Map();
  /** The header's signature, parsed (a string: why it is malformed); undefined when there is none. */
  signature: HeadSignature | string | undefined;

  constructor(generation: number, declared: number | undefined) {
    this.generation = generation;
    this.declared = declared;
  }

  push(chunk: Buffer): void {
    let start = 0;
    for (let nl = chunk.indexOf(10, start); nl !== -1; nl = chunk.indexOf(10, start)) {
      this.take(chunk.subarray(start, nl));
      const whole = this.pending.length === 1 ? (this.pending[0] as Buffer) : Buffer.concat(this.pending, this.pendingBytes);
      this.pending = [];
      this.pendingBytes = 0;
      this.onLine(whole);
      start = nl + 1;
    }
    if (start < chunk.length) this.take(Buffer.from(chunk.subarray(start)));
  }

  /** The map once every byte arrived: the count must be the announced one, the path set valid. */
  end(): FileMap {
    if (this.pendingBytes > 0 || this.line === 0) this.onLine(Buffer.concat(this.pending, this.pendingBytes));
    const count = this.line - 1;
    if (this.announced !== count) throw new IntegrityError(`manifest header announces ${String(this.announced)} files, body has ${count}`);
    // Checked in place: the parsed map is the one returned (duplicates were refused line by line).
    throwOnPathProblems(checkPathKeys(this.files), "manifest");
    return this.files;
  }

  private take(part: Buffer): void {
    this.pendingBytes += part.length;
    if (this.pendingBytes > MAX_MANIFEST_LINE) throw new IntegrityError(`manifest line ${this.line + 1} is longer than ${MAX_MANIFEST_LINE} bytes (no manifest fansync wrote; a gzip bomb?)`);
    if (part.length > 0) this.pending.push(part);
  }

  private onLine(bytes: Buffer): void {
    const n = ++this.line;
    if (n === 1) {
      this.header(bytes);
      return;
    }
    if (bytes.length === 0) throw new IntegrityError(`manifest line ${n} is empty`);
    if (n - 1 > (this.announced as number)) throw new IntegrityError(`manifest has more than the ${String(this.announced)} entries its header announces`);
    const e = validateEntry(parseJsonObject(bytes.toString("utf8"), `manifest line ${n}`), `manifest line ${n}`);
    if (this.files.has(e.path)) throw new IntegrityError(`manifest has 1 invalid path(s): ${showPath(e.path)}: duplicate path`);
    this.files.set(e.path, e);
  }

  private header(bytes: Buffer): void {
    const header = parseJsonObject(bytes.toString("utf8"), "manifest header");
    if (header.format !== MANIFEST_FORMAT) throw new IntegrityError(`manifest has unknown format ${showPath(header.format)}`);
    if (header.generation !== this.generation) {
      throw new IntegrityError(`manifest says generation ${String(header.generation)}, head says ${this.generation}`);
    }
    const files = header.files;
    if (!Number.isSafeInteger(files) || (files as number) < 0) throw new IntegrityError(`manifest header announces ${String(files)} files`);
    if (this.declared !== undefined && files !== this.declared) throw new IntegrityError(`manifest header announces ${String(files)} files, the head ${this.declared}`);
    this.announced = files as number;
    if (header.signature !== undefined) this.signature = parseHeadSignature(header.signature);
  }
}

/** Refuse a path set with problems (hostile names, file/dir clashes), naming the first five. */
function throwOnPathProblems(problems: readonly string[], what: string): void {
  if (problems.length === 0) return;
  const shown = problems.slice(0, 5).join("; ");
  throw new IntegrityError(`${what} has ${problems.length} invalid path(s): ${shown}${problems.length > 5 ? "; ..." : ""}`);
}

/** Serialise a journal document. */
export function serializeJournal(j: Journal): Buffer {
  return Buffer.from(JSON.stringify({ ...j, puts: j.puts.map(compactEntry) }));
}

/** Parse and validate a journal document for an expected generation. */
export function parseJournal(data: Uint8Array, expectGeneration: number): Journal {
  const o = parseJsonObject(Buffer.from(data).toString("utf8"), `journal ${expectGeneration}`);
  if (o.format !== JOURNAL_FORMAT) throw new IntegrityError(`journal ${expectGeneration} has unknown format`);
  if (o.generation !== expectGeneration) throw new IntegrityError(`journal ${expectGeneration} says generation ${String(o.generation)}`);
  if (!Array.isArray(o.puts) || !Array.isArray(o.deletes)) throw new IntegrityError(`journal ${expectGeneration} lacks puts/deletes arrays`);
  const puts = o.puts.map((e: unknown, i: number) => validateEntry(e, `journal ${expectGeneration} put ${i}`));
  const deletes = o.deletes.map((p: unknown) => {
    if (typeof p !== "string") throw new IntegrityError(`journal ${expectGeneration} has a non-string delete`);
    return p;
  });
  // Puts and deletes are checked apart: a directory that became a file puts "d" and deletes "d/f",
  // which is no clash (the result of applying the journal is checked as a whole).
  const problems = [...checkPathSet(puts.map((e) => e.path)), ...checkPathSet(deletes)];
  if (problems.length > 0) throw new IntegrityError(`journal ${expectGeneration} has invalid paths: ${problems.slice(0, 5).join("; ")}`);
  return {
    format: JOURNAL_FORMAT, generation: expectGeneration, puts, deletes, time: typeof o.time === "string" ? o.time : "",
    ...(typeof o.writer === "string" ? { writer: o.writer } : {}),
    ...approval(o.approvedDeletes, deletes.length),
  };
}

/** Apply a journal to a file map, returning a new map (the input is not mutated). */
export function applyJournal(files: FileMap, j: Journal): FileMap {
  const next = new Map(files);
  for (const p of j.deletes) next.delete(p);
  for (const e of j.puts) next.set(e.path, e);
  // A journal applied on top of a valid map can still create a file/directory clash (checked in
  // place: one new map, not a second copy of it).
  throwOnPathProblems(checkPathKeys(next), `generation ${j.generation}`);
  return next;
}

/** Serialise a head document. */
export function serializeHead(h: Head): Buffer {
  const { signatureProblem: _p, signature, ...rest } = h;
  return Buffer.from(JSON.stringify(signature ? { ...rest, signature } : rest, null, 1));
}

/** Parse and validate `head.json`; `meta` is the meta prefix its keys must live under. */
export function parseHead(data: Uint8Array, meta: string): Head {
  const o = parseJsonObject(Buffer.from(data).toString("utf8"), "head.json");
  const bad = (what: string): never => {
    throw new IntegrityError(`head.json: ${what}`);
  };
  if (o.format !== HEAD_FORMAT) bad(`unknown format ${showPath(o.format)}`);
  const generation = o.generation;
  if (!Number.isSafeInteger(generation) || (generation as number) < 1) bad("generation is not a positive integer");
  const gen = generation as number;
  if (o.manifestKey !== metaKeys.manifest(meta, gen)) bad(`manifestKey ${showPath(o.manifestKey)} is not the manifest of generation ${gen}`);
  if (typeof o.manifestSha256 !== "string" || !/^[0-9a-f]{64}$/.test(o.manifestSha256)) bad("manifestSha256 is not a sha256");
  const oldest = o.oldestJournal;
  if (!Number.isSafeInteger(oldest) || (oldest as number) < 0 || (oldest as number) > gen) bad("oldestJournal is out of range");
  // A malformed signature does not make the head unreadable (a node without trusted keys ignores
  // it); a node that checks signatures refuses it, saying why.
  const sig = o.signature === undefined ? undefined : parseHeadSignature(o.signature);
  return {
    format: HEAD_FORMAT,
    generation: gen,
    manifestKey: o.manifestKey as string,
    manifestSha256: o.manifestSha256 as string,
    files: Number(o.files) || 0,
    bytes: Number(o.bytes) || 0,
    oldestJournal: oldest as number,
    writer: typeof o.writer === "string" ? o.writer : "",
    // An unknown kind (a newer version's) reads as not recorded.
    ...(WRITER_KINDS.includes(o.writerKind as WriterKind) ? { writerKind: o.writerKind as WriterKind } : {}),
    time: typeof o.time === "string" ? o.time : "",
    ...parseDirty(o.dirty, bad),
    ...approval(o.approvedDeletes, Number.MAX_SAFE_INTEGER),
    ...(typeof sig === "object" ? { signature: sig } : typeof sig === "string" ? { signatureProblem: sig } : {}),
  };
}

/** A count of approved deletions, at most `max` (the deletions there are); anything else is none. */
function approval(v: unknown, max: number): { approvedDeletes?: number } {
  return Number.isSafeInteger(v) && (v as number) > 0 ? { approvedDeletes: Math.min(v as number, max) } : {};
}

function parseDirty(v: unknown, bad: (what: string) => never): { dirty?: readonly string[] } {
  if (v === undefined) return {};
  if (!Array.isArray(v) || v.length > DIRTY_MAX || !v.every((p) => typeof p === "string")) return bad("dirty is not a list of paths");
  const paths = v as string[];
  if (paths.length === 0) return {};
  if (!(paths.length === 1 && paths[0] === "*")) {
    const why = checkPathSet(paths);
    if (why.length > 0) bad(`dirty: ${why[0]}`);
  }
  return { dirty: paths };
}

function parseJsonObject(text: string, what: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    throw new IntegrityError(`${what} is not valid JSON`, { cause: err });
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new IntegrityError(`${what} is not a JSON object`);
  return v as Record<string, unknown>;
}

/** Check an entry's fields (path validity is checked over the whole set by {@link checkPathKeys}). */
export function validateEntry(v: unknown, where: string): Entry {
  if (typeof v !== "object" || v === null) throw new IntegrityError(`${where}: entry is not an object`);
  const o = v as Record<string, unknown>;
  const bad = (what: string): never => {
    throw new IntegrityError(`${where} (${showPath(o.path)}): ${what}`);
  };
  if (typeof o.path !== "string") bad("path is not a string");
  if (!Number.isSafeInteger(o.size) || (o.size as number) < 0) bad("size is not a non-negative integer");
  if (!Number.isSafeInteger(o.mtimeMs)) bad("mtimeMs is not an integer");
  if (!Number.isSafeInteger(o.mode) || (o.mode as number) < 0 || (o.mode as number) > 0o7777) bad("mode is out of range");
  if (typeof o.sha256 !== "string" || !/^[0-9a-f]{64}$/.test(o.sha256)) bad("sha256 is not 64 hex digits");
  if (typeof o.etag !== "string") bad("etag is not a string");
  if (o.versionId !== undefined && typeof o.versionId !== "string") bad("versionId is not a string");
  return {
    path: o.path as string,
    size: o.size as number,
    mtimeMs: o.mtimeMs as number,
    mode: o.mode as number,
    sha256: o.sha256 as string,
    etag: o.etag as string,
    // "null" is what unversioned buckets answer: no version (older manifests recorded it).
    ...(typeof o.versionId === "string" && o.versionId !== "null" && o.versionId !== "" ? { versionId: o.versionId } : {}),
  };
}
