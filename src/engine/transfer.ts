/**
 * Every content byte fansync moves goes through here: a local file up to the bucket (one PUT, or
 * multipart above the threshold), an object from one bucket to another, an object down to a temp
 * file. Each one hashes the bytes as they pass and checks them against what the manifest says
 * (or, for an upload, what the file held when it was opened), so a wrong byte is never published
 * or renamed into place. Retrying is the caller's, through {@link withRetry}: one policy.
 */
import { createHash } from "node:crypto";
import { type Stats, close, closeSync, createWriteStream, fchmod, fchmodSync, fstatSync, futimes, futimesSync, open as openCb, openSync, readSync, write, writeSync } from "node:fs";
import { chmod, open, unlink, utimes } from "node:fs/promises";
import type { FileHandle } from "node:fs/promises";
import type { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import pMap from "p-map";
import { FileChanging, ObjectMoved, RemoteError, TransferCorrupt } from "../core/errors.ts";
import { type Entry, type FileMap, sha256Hex } from "../core/manifest.ts";
import { BodyTooLarge } from "../adapters/bounded-io.ts";
import { SizedPools } from "../adapters/buffer-pool.ts";
import { hashingTap } from "../adapters/hashing-tap.ts";
import { toLocal } from "../adapters/safe-write.ts";
import { type ObjectAttrs, type PutResult, realVersion, type ObjectStore } from "../adapters/object-store.ts";

/** What a content object's entry records about its bytes and file. */
export interface FileFacts {
  readonly size: number;
  readonly mtimeMs: number;
  readonly mode: number;
  readonly sha256: string;
}

/** A file that was uploaded: its facts as sent, and where the bucket put them. */
export type Uploaded = FileFacts & PutResult;

/** How large objects are sent. */
export interface PartTuning {
  readonly multipartThreshold: number;
  readonly partSize: number;
}

/** Which stored object a manifest entry names: by version where the bucket has them, else by ETag. */
export function objectRef(e: { readonly versionId?: string | undefined; readonly etag: string }): { versionId: string } | { ifMatch: string } {
  // Manifests written before "null" was refused may still carry it: it is no version.
  const v = realVersion(e.versionId);
  return v ? { versionId: v } : { ifMatch: e.etag };
}

/**
 * Upload the local file `abs` as `key`, exactly as it is now. Small files are read once into
 * memory and the sha256 of those very bytes is published; large ones stream through multipart with
 * the sha256 the caller expects (`expect`, required then) checked as they pass. A file that changes
 * while it is read throws {@link FileChanging} (retryable); one that vanished gives undefined.
 * `facts` fixes the mtime and mode to record (a rollback restores the old ones); by default they
 * are the file's own. `instead`, for a small file, is asked once its bytes are hashed: it may put
 * them in place another way (a server-side copy of an object that holds them already) and return
 * that result, or undefined to have the bytes sent.
 */
export async function uploadFile(store: ObjectStore, key: string, abs: string, o: PartTuning & {
  readonly expect?: { readonly size: number; readonly sha256: string } | undefined;
  readonly facts?: { readonly mtimeMs: number; readonly mode: number } | undefined;
  readonly attrs: (f: FileFacts) => ObjectAttrs;
  readonly instead?: ((f: FileFacts) => Promise<PutResult | undefined>) | undefined;
  /** Told, right before a single PUT is sent, the ETag the stored object will have (the MD5 of its bytes). */
  readonly sending?: ((f: FileFacts, etag: string) => void) | undefined;
  /** The engine's read buffers for small files (see {@link transferBuffers}). */
  readonly buffers: SizedPools;
  readonly signal: AbortSignal;
}): Promise<Uploaded | undefined> {
  const small = hashIfSmall(abs, o.multipartThreshold, o.buffers, o.facts);
  if (small === "gone") return undefined;
  if (small !== "large") {
    // One read into a reused buffer, one hash: that sha256 is recorded, decides a copy, and is
    // the request's payload hash (the signer does not hash the bytes again).
    try {
      const { facts, md5 } = small;
      if (o.expect && o.expect.size !== facts.size) throw new FileChanging(`${abs} is ${facts.size} bytes, expected ${o.expect.size}`);
      if (o.expect && facts.sha256 !== o.expect.sha256) throw new FileChanging(`${abs} no longer holds the bytes it was hashed with`);
      const other = await o.instead?.(facts);
      if (other) return { ...facts, ...other };
      o.sending?.(facts, `"${md5}"`);
      return { ...facts, ...(await sendSmall(store, key, small, o.attrs(facts), o.signal)) };
    } finally {
      if (small.pooled) o.buffers.give(small.pooled);
    }
  }
  let fh: FileHandle;
  try {
    fh = await open(abs, "r");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw toLocal(err, abs);
  }
  try {
    const st1 = await fh.stat();
    const own = { mtimeMs: Math.floor(st1.mtimeMs), mode: st1.mode & 0o7777 };
    const { mtimeMs, mode } = o.facts ?? own;
    if (o.expect && o.expect.size !== st1.size) throw new FileChanging(`${abs} is ${st1.size} bytes, expected ${o.expect.size}`);
    if (!o.expect) throw new Error(`uploadFile: a multipart upload of ${abs} needs the expected sha256`);
    const facts: FileFacts = { size: st1.size, mtimeMs, mode, sha256: o.expect.sha256 };
    // Exactly st1.size bytes or an error: the upload declares that Content-Length, and a file
    // truncated mid-read (rewritten in place) otherwise sent a short body the server waited on
    // until the request timed out, attempt after attempt.
    const tap = hashingTap(st1.size);
    const stream = fh.createReadStream({ autoClose: false, start: 0, end: Math.max(0, st1.size - 1), highWaterMark: 1024 * 1024 });
    pipeline(stream, tap.stream).catch(() => undefined);
    let res: PutResult;
    try {
      res = await store.upload(key, tap.stream, o.attrs(facts), { size: st1.size, partSize: o.partSize, queueSize: 4, signal: o.signal });
    } catch (err) {
      if (tap.seen().short) throw new FileChanging(`${abs} shrank while being uploaded`);
      throw err;
    }
    const seen = tap.seen();
    const st2 = await fh.stat();
    if (seen.sha256 !== o.expect.sha256 || seen.bytes !== st1.size || st2.mtimeMs !== st1.mtimeMs) throw new FileChanging(`${abs} changed while being uploaded`);
    // A multipart ETag is no MD5 of the bytes; a weak or missing one names nothing readers can ask for.
    if (!isStrongEtag(res.etag)) res = await verifyStored(store, key, facts, res, o.signal);
    return { ...facts, ...res };
  } finally {
    await fh.close();
  }
}

/** A small file read whole and hashed (see {@link hashIfSmall}). */
export interface HashedFile {
  readonly buf: Buffer;
  /** The pool's buffer `buf` is a view of, to give back when the bytes are sent; undefined: not pooled. */
  readonly pooled: Buffer | undefined;
  readonly facts: FileFacts;
  /** Hex MD5 of the bytes: the ETag a single PUT of them gets. */
  readonly md5: string;
}

/**
 * A file under `threshold` bytes read whole and hashed (sha256 and MD5), with the mtime and mode
 * to record (`facts`, else its own); "large" at or above it, "gone" when it vanished. Blocking
 * calls: see {@link readIfSmall}. A file that changes while it is read throws {@link FileChanging}.
 */
export function hashIfSmall(abs: string, threshold: number, buffers: SizedPools, facts?: { readonly mtimeMs: number; readonly mode: number }): "gone" | "large" | HashedFile {
  const small = readIfSmall(abs, threshold, buffers);
  if (small === "gone" || small === "large") return small;
  const { buf, pooled, st } = small;
  const { mtimeMs, mode } = facts ?? { mtimeMs: Math.floor(st.mtimeMs), mode: st.mode & 0o7777 };
  return { buf, pooled, facts: { size: buf.length, mtimeMs, mode, sha256: sha256Hex(buf) }, md5: createHash("md5").update(buf).digest("hex") };
}

/**
 * PUT a hashed small file's bytes as `key`. The answer vouches for them only when its ETag is
 * their MD5; a weak one (a proxy rewrote it) or any other (a server that said 200 without storing)
 * is checked by reading the object back ({@link verifyStored}).
 */
export async function sendSmall(store: Pick<ObjectStore, "putContent" | "getStream">, key: string, h: Pick<HashedFile, "buf" | "facts" | "md5">, attrs: ObjectAttrs, signal: AbortSignal): Promise<PutResult> {
  const put = await store.putContent(key, h.buf, h.facts.sha256, attrs, signal);
  if (isStrongEtag(put.etag) && unquoteEtag(put.etag) === h.md5) return put;
  return verifyStored(store, key, h.facts, put, signal);
}

/** Whether an ETag answer can be sent back as If-Match: present, and not weak (`W/"…"`). */
export function isStrongEtag(etag: string): boolean {
  return etag !== "" && !etag.startsWith("W/");
}

function unquoteEtag(etag: string): string {
  return etag.replace(/^(W\/)?"|"$/g, "");
}

/**
 * Read back an object just written whose answer does not vouch for it (issue 27: a proxy that
 * weakens ETags, a server that answers 200 without storing): one GET (by the version the answer
 * named, if any), hashed. The object's own strong ETag is what the manifest then records; other
 * bytes, or none, fail the write (retryable: the next try sends it again).
 */
export async function verifyStored(store: Pick<ObjectStore, "getStream">, key: string, want: { readonly size: number; readonly sha256: string }, put: PutResult, signal: AbortSignal, mismatch?: (message: string) => Error): Promise<PutResult> {
  const v = realVersion(put.versionId);
  const got = await store.getStream(key, { ...(v ? { versionId: v } : {}), maxBytes: want.size, signal });
  const fail = (what: string) => {
    const message = `${key}: the server acknowledged the write (ETag ${put.etag || "none"}) but ${what}`;
    return mismatch?.(message) ?? new RemoteError(message, { retryable: true, hint: "a proxy or the server changed the answer; the write is tried again, and nothing unverified is published" });
  };
  if (got.status !== "ok") throw fail(`the object is ${got.status}`);
  const h = createHash("sha256");
  let bytes = 0;
  for await (const c of got.body) {
    h.update(c as Buffer);
    bytes += (c as Buffer).length;
  }
  const seen = { bytes, sha256: h.digest("hex") };
  if (seen.bytes !== want.size || seen.sha256 !== want.sha256) throw fail(`it holds ${seen.bytes} bytes with sha256 ${seen.sha256.slice(0, 12)}…, not the ${want.size} bytes sent`);
  const etag = got.etag.replace(/^W\//, "");
  if (etag === "") throw fail("the server names no ETag for it");
  return { etag, versionId: v };
}

/**
 * Bring object `e` from `src` (as the manifest names it: version or ETag) to `dstKey` in `dst`,
 * streamed GET → PUT (multipart when large) with the stored headers kept; the bytes must be the
 * manifest's. The source not being that object any more throws {@link ObjectMoved}.
 */
export async function copyAcross(src: ObjectStore, srcKey: string, dst: ObjectStore, dstKey: string, e: Entry, o: PartTuning & { readonly signal: AbortSignal }): Promise<PutResult> {
  // Never more than the manifest's size: a longer body fails at size + 1 bytes (bounded-io.ts).
  const got = await src.getStream(srcKey, { ...objectRef(e), maxBytes: e.size, signal: o.signal });
  if (got.status !== "ok") throw new ObjectMoved(`${e.path}: the source object is ${got.status}`, "the source published again during the copy; the next round converges");
  if (e.size < o.multipartThreshold) {
    // Small objects: verified in memory before they reach the destination.
    const buf = await readAll(got.body);
    if (buf.length !== e.size || sha256Hex(buf) !== e.sha256) throw corrupt(e, buf.length, sha256Hex(buf));
    return dst.putContent(dstKey, buf, e.sha256, got.attrs, o.signal);
  }
  // Large objects: hashed as they pass; a mismatch fails before any head names them.
  const tap = hashingTap();
  got.body.on("error", (err) => tap.stream.destroy(err));
  const res = await dst.upload(dstKey, got.body.pipe(tap.stream), got.attrs, { size: e.size, partSize: o.partSize, queueSize: 4, signal: o.signal });
  const seen = tap.seen();
  if (seen.bytes !== e.size || seen.sha256 !== e.sha256) throw corrupt(e, seen.bytes, seen.sha256);
  return res;
}

/**
 * Download object `e` into the temp file `tmp` (a new file, created with its final permission
 * bits), verify size and sha256, then set its mode and mtime: renaming it over the target is the
 * caller's commit. A small object is verified in memory and written with one open, write,
 * futimes (fchmod) and close; a large one streams to disk through a hash. `buffers`: the engine's
 * (see {@link transferBuffers}).
 */
export async function downloadTo(store: Pick<ObjectStore, "getStream">, key: string, e: Entry, tmp: string, signal: AbortSignal, buffers: SizedPools, o: { readonly syncWrites?: boolean } = {}): Promise<void> {
  // Never more than the manifest's size: an endless body fails at size + 1 bytes (bounded-io.ts),
  // so a large object's temp file never grows past it.
  const res = await store.getStream(key, { ...objectRef(e), maxBytes: e.size, signal });
  if (res.status !== "ok") throw new ObjectMoved(`${e.path}: ${res.status}`);
  if (e.size < buffers.largest) return downloadSmall(res.body, e, tmp, buffers, o.syncWrites === true);
  const tap = hashingTap();
  try {
    await pipeline(res.body, tap.stream, createWriteStream(tmp, { mode: e.mode & 0o777, flags: "wx" }), { signal });
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    const code = (err as NodeJS.ErrnoException).code;
    if (code && /^E[A-Z]+$/.test(code) && !["ECONNRESET", "EPIPE", "ETIMEDOUT"].includes(code)) throw toLocal(err, tmp);
    throw err;
  }
  const seen = tap.seen();
  if (seen.bytes !== e.size || seen.sha256 !== e.sha256) {
    await unlink(tmp).catch(() => undefined);
    throw corrupt(e, seen.bytes, seen.sha256);
  }
  if ((e.mode & 0o777 & ~UMASK) !== e.mode) await chmod(tmp, e.mode);
  await utimes(tmp, new Date(e.mtimeMs), new Date(e.mtimeMs));
}

/**
 * A small object: its body into a reused buffer, checked, then one write of a new file (`sync`: by
 * blocking calls, in a transfer thread, see {@link writeNewFileSync}).
 */
async function downloadSmall(body: Readable, e: Entry, tmp: string, buffers: SizedPools, sync: boolean): Promise<void> {
  const buf = buffers.take(e.size) as Buffer;
  try {
    let n = 0;
    for await (const chunk of body) {
      const c = chunk as Buffer;
      // More bytes than the manifest says: not these bytes, whatever follows.
      if (n + c.length > e.size) {
        body.destroy();
        throw corrupt(e, n + c.length, "(longer than expected)");
      }
      c.copy(buf, n);
      n += c.length;
    }
    const bytes = buf.subarray(0, n);
    const sha = sha256Hex(bytes);
    if (n !== e.size || sha !== e.sha256) throw corrupt(e, n, sha);
    try {
      if (sync) writeNewFileSync(tmp, bytes, e.mode, e.mtimeMs);
      else await writeStagedFile(tmp, bytes, e);
    } catch (err) {
      await unlink(tmp).catch(() => undefined);
      throw toLocal(err, tmp);
    }
  } finally {
    buffers.give(buf);
  }
}

/**
 * Write verified bytes as the temp file `tmp` with the entry's mode and mtime: what
 * {@link downloadTo} leaves behind (renaming it into place is the caller's commit). The pack stage
 * writes the files it takes from packs through here too.
 */
export function writeStagedFile(tmp: string, bytes: Buffer, e: Entry): Promise<void> {
  return writeNewFile(tmp, bytes, e.mode, e.mtimeMs);
}

/**
 * Create `file` (never an existing one: O_EXCL) holding `bytes`, with `mode` and `mtimeMs`: open,
 * write, fchmod when the umask took bits away, futimes, close, through callbacks (one promise per
 * file; the FileHandle API costs several times the CPU per small file).
 */
function writeNewFile(file: string, bytes: Buffer, mode: number, mtimeMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    openCb(file, "wx", mode & 0o777, (err, fd) => {
      if (err) return reject(err);
      const fail = (e: unknown): void => close(fd, () => reject(e));
      const times = (): void => futimes(fd, mtimeMs / 1000, mtimeMs / 1000, (e3) => (e3 ? fail(e3) : close(fd, (e4) => (e4 ? reject(e4) : resolve()))));
      const perms = (): void => ((mode & 0o777 & ~UMASK) !== mode ? fchmod(fd, mode, (e2) => (e2 ? fail(e2) : times())) : times());
      let off = 0;
      const more = (): void => {
        if (off >= bytes.length) return perms();
        write(fd, bytes, off, bytes.length - off, off, (e1, written) => {
          if (e1) return fail(e1);
          off += written;
          more();
        });
      };
      more();
    });
  });
}

/**
 * {@link writeNewFile} by blocking calls: for a transfer thread (engine/transfer-thread.ts), whose
 * only work is its downloads. Each asynchronous call is a hand-off to libuv's thread pool and back,
 * which on a VM costs the calling thread more than the system call (perf: 30–40 µs each, four per file).
 */
function writeNewFileSync(file: string, bytes: Buffer, mode: number, mtimeMs: number): void {
  const fd = openSync(file, "wx", mode & 0o777);
  try {
    let off = 0;
    while (off < bytes.length) off += writeSync(fd, bytes, off, bytes.length - off, off);
    if ((mode & 0o777 & ~UMASK) !== mode) fchmodSync(fd, mode);
    futimesSync(fd, mtimeMs / 1000, mtimeMs / 1000);
  } finally {
    closeSync(fd);
  }
}

// The process umask, read once: a file created with mode m gets m & ~umask.
const UMASK = process.umask();

/**
 * Which objects named by `files` no longer hold their entry's bytes: a HEAD with If-Match on the
 * entry's ETag each (an entry with a version id names bytes that cannot change). `paths`: the
 * head's dirty paths, or `["*"]` for every entry.
 */
export async function findMovedObjects(store: ObjectStore, prefix: string, files: FileMap, paths: readonly string[], o: { readonly concurrency: number; readonly signal: AbortSignal; readonly bytes?: boolean }): Promise<Set<string>> {
  const moved = new Set<string>();
  if (paths.length === 0) return moved;
  const check = paths.includes("*") ? [...files.values()] : paths.map((p) => files.get(p)).filter((e): e is Entry => e !== undefined);
  if (o.bytes) {
    // Bytes, not names: an ETag says nothing when a copy the server could not condition kept the
    // source's (multipart) ETag over other bytes (issue 27). One GET each, hashed as it passes.
    await pMap(check, async (e) => {
      if (!(await holdsBytes(store, prefix + e.path, e, o.signal))) moved.add(e.path);
    }, { concurrency: o.concurrency });
    return moved;
  }
  await pMap(check.filter((e) => !realVersion(e.versionId)), async (e) => {
    if (!(await store.headAttrs(prefix + e.path, { ifMatch: e.etag, signal: o.signal }))) moved.add(e.path);
  }, { concurrency: o.concurrency });
  return moved;
}

/** Whether the object `key`, read as `e` names it (version or ETag), holds `e`'s bytes (see {@link verifyObject}). */
async function holdsBytes(store: ObjectStore, key: string, e: Entry, signal: AbortSignal): Promise<boolean> {
  try {
    await verifyObject(store, key, objectRef(e), e, signal);
    return true;
  } catch (err) {
    // Other bytes, or a body cut short: copied again either way (a repair of good bytes costs a copy).
    if (err instanceof ObjectMoved || err instanceof TransferCorrupt) return false;
    throw err;
  }
}

/**
 * Entries no reader can fetch: without a version id, and with an ETag that cannot be sent as
 * If-Match (weak, or none; written before writes were verified, issue 27). Pure: no request, so a
 * no-op push stays one request.
 */
export function unreadableEntries(files: FileMap): Set<string> {
  const out = new Set<string>();
  for (const e of files.values()) if (!realVersion(e.versionId) && !isStrongEtag(e.etag)) out.add(e.path);
  return out;
}

/** Bytes that are not the manifest's: a short body (network) or a whole one with other bytes. */
/**
 * Read object `e` of `store` (as `ref` names it: a version, or an ETag) and check that its bytes are
 * the entry's, keeping none of them: what a server-side copy is about to duplicate is verified
 * first (rollback, issue 22). Reads at most size + 1 bytes. A missing object throws
 * {@link ObjectMoved}; other bytes throw {@link TransferCorrupt}, naming the path.
 */
export async function verifyObject(store: ObjectStore, key: string, ref: { versionId: string } | { ifMatch: string }, e: Pick<Entry, "path" | "size" | "sha256">, signal: AbortSignal): Promise<void> {
  // Capped at the entry's size (bounded-io.ts): a longer body is refused at size + 1 bytes.
  const got = await store.getStream(key, { ...ref, maxBytes: e.size, signal });
  if (got.status !== "ok") throw new ObjectMoved(`${e.path}: the object is ${got.status}`);
  const h = createHash("sha256");
  let n = 0;
  try {
    for await (const chunk of got.body) {
      const c = chunk as Buffer;
      n += c.length;
      h.update(c);
    }
  } catch (err) {
    if (err instanceof BodyTooLarge) throw corrupt(e, e.size + 1, "(longer than expected)");
    throw err;
  }
  const sha = h.digest("hex");
  if (n !== e.size || sha !== e.sha256) throw corrupt(e, n, sha);
}

function corrupt(e: Pick<Entry, "path" | "size" | "sha256">, got: number, sha: string): TransferCorrupt {
  return new TransferCorrupt(`${e.path}: got ${got} bytes with sha256 ${sha.slice(0, 12)}…, the manifest says ${e.size} bytes ${e.sha256.slice(0, 12)}…`, got !== e.size);
}

async function readAll(body: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of body) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/**
 * Read buffers for files under 1 MiB (most of a website), one per transfer in flight: each engine
 * (an uploader, a two-way node, a pull or rollback run) makes its own and hands it to every
 * {@link uploadFile} and {@link downloadTo} of its own, so two engines in one process share none.
 */
export function transferBuffers(): SizedPools {
  return new SizedPools([64 * 1024, 1024 * 1024], 64);
}

/**
 * A file under `threshold` bytes read whole (its bytes, the buffer to give back to the pool, its
 * stat), "large" for one at or above it, "gone" for one that vanished. Synchronous: for a small,
 * usually cached file, open/fstat/read/fstat/close on this thread cost a fifth of the CPU of the
 * same calls through the thread pool's promises (measured on 10k files), and that CPU is what
 * bounds a push. A file that changes while it is read throws {@link FileChanging}.
 */
function readIfSmall(abs: string, threshold: number, buffers: SizedPools): "gone" | "large" | { buf: Buffer; pooled: Buffer | undefined; st: Stats } {
  let fd: number;
  try {
    fd = openSync(abs, "r");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return "gone";
    throw toLocal(err, abs);
  }
  try {
    const st = fstatSync(fd);
    if (st.size >= threshold) return "large";
    const pooled = buffers.take(st.size + 1);
    const buf = readExactlySync(fd, st.size, pooled ?? Buffer.allocUnsafe(st.size + 1));
    const st2 = fstatSync(fd);
    if (!buf || st2.mtimeMs !== st.mtimeMs || st2.size !== buf.length) {
      if (pooled) buffers.give(pooled);
      throw new FileChanging(`${abs} changed while being read`);
    }
    return { buf, pooled, st };
  } catch (err) {
    if (err instanceof FileChanging) throw err;
    throw toLocal(err, abs);
  } finally {
    closeSync(fd);
  }
}

/**
 * Read exactly `size` bytes from the start of a file into `buf` (at least size + 1 bytes, so a file
 * that grew is seen); undefined when the file is shorter or longer than that now.
 */
function readExactlySync(fd: number, size: number, buf: Buffer): Buffer | undefined {
  let off = 0;
  for (;;) {
    const n = readSync(fd, buf, off, buf.length - off, off);
    if (n === 0) break;
    off += n;
    if (off > size) return undefined;
  }
  return off === size ? buf.subarray(0, size) : undefined;
}
