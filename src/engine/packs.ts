/**
 * Pack objects (issue 14), the I/O side of core/pack-format.ts: the writer that keeps packs and
 * their index in step with the generations (push/watch with `packs: true`), the puller's stage
 * that takes small files from a few large GETs, and the replicator's copy of packs to a region.
 *
 * Packs are an optimisation and never a source of truth: every byte taken from a pack is checked
 * against the (signed) manifest's size and sha256, and every file a pack cannot give (missing,
 * stale, corrupt, a refused index) comes from its path-keyed object as before. The pack writer
 * runs after a generation is committed, so the head, manifests and path-keyed objects are exactly
 * what they are without packs.
 */
import { readFile, unlink, writeFile } from "node:fs/promises";
import path from "node:path";
import type { Readable } from "node:stream";
import pMap from "p-map";
import { errorMessage, IntegrityError } from "../core/errors.ts";
import { type Location, metaPrefix } from "../core/location.ts";
import { type Entry, type FileMap, sha256Hex } from "../core/manifest.ts";
import { DEFAULT_PACK_FETCH, maxPackIndexBytes, type Pack, PACK_INDEX_FORMAT, type PackFetchTuning, type PackIndex, packKeys, type PackTuning, parsePackIndex, planPackFetch, planPacks, pullUsesPacks, serializePackIndex } from "../core/pack-format.ts";
import { withRetry } from "../adapters/retry.ts";
import type { ObjectStore } from "../adapters/object-store.ts";
import { ensureParentDirs, tempPathFor } from "../adapters/safe-write.ts";
import { readJson, writeJson } from "../adapters/state-files.ts";
import type { TransferEvents } from "../core/transfer-events.ts";
import type { JobDeps } from "./job-deps.ts";
import { writeStagedFile } from "./transfer.ts";
import { errorFields } from "../adapters/logger.ts";

/** A pack not named by the index is deleted only when older than this (another writer's, still on its way). */
export const ORPHAN_PACK_GRACE_MS = 15 * 60 * 1000;

const PACK_ATTRS = { contentType: "application/octet-stream" } as const;

/** A location and the store that reaches it. */
export interface PackSite {
  readonly loc: Location;
  readonly store: ObjectStore;
}

/** An index as read, with the ETag to poll it by. */
export interface ReadIndex {
  readonly index: PackIndex;
  readonly etag: string;
  readonly bytes: Buffer;
}

/**
 * Read and check a location's pack index; undefined when there is none. `files` (the generation's
 * count) bounds its inflated size. A malformed or hostile index throws an IntegrityError.
 */
export async function readPackIndex(site: PackSite, files: number, signal: AbortSignal, ifNoneMatch?: string): Promise<ReadIndex | "not-modified" | undefined> {
  const key = packKeys.index(metaPrefix(site.loc));
  const max = maxPackIndexBytes(files);
  if (!ifNoneMatch) {
    // Streamed and capped (a hostile object of gigabytes is not buffered); a puller without
    // s3:ListBucket gets 403 for a site that has no packs, which getStream calls not found.
    const res = await withRetry(async () => {
      const got = await site.store.getStream(key, { maxBytes: max, signal });
      return got.status === "ok" ? { etag: got.etag, body: await readCapped(got.body, max, false) } : undefined;
    }, { signal });
    if (!res) return undefined;
    if (!res.body) throw new IntegrityError(`pack index is larger than ${max} bytes (no index fansync wrote for this site)`);
    return { index: parsePackIndex(res.body, max), etag: res.etag, bytes: res.body };
  }
  const res = await withRetry(() => site.store.get(key, { maxBytes: max, ifNoneMatch, signal }), { signal });
  if (res.status === "not-modified") return "not-modified";
  if (res.status !== "ok") return undefined;
  return { index: parsePackIndex(res.body, max), etag: res.etag, bytes: res.body };
}

/** What one pack write did (the figures docs/packs.md's cost paragraph comes from). */
export interface PackWriteResult {
  readonly changed: boolean;
  readonly reason: string;
  readonly packsWritten: number;
  readonly bytesWritten: number;
  readonly filesPacked: number;
  readonly packs: number;
  readonly packedBytes: number;
  readonly deleted: number;
  /** Requests this write sent: GET index, PUT packs + index, LIST, DELETE batches. */
  readonly requests: number;
}

/** Options of the pack writer. */
export interface PackWriterOptions extends PackSite {
  readonly docroot: string;
  readonly tuning: PackTuning;
  readonly multipartThreshold: number;
  readonly partSize: number;
  /** The uploader's state directory: the last index read is cached there (no index GET per push). */
  /** Where the pack index last read or written is kept, with its ETag (StateDir.packIndexCache). */
  readonly cacheFiles: { readonly bytes: string; readonly etag: string };
}

/**
 * Keeps a location's packs in step with its generations (the uploader calls it after each commit).
 * Packs are immutable and content-addressed; the index is rewritten only when the plan changes it.
 */
export class PackWriter {
  private readonly o: PackWriterOptions;
  private readonly d: JobDeps;
  private cached: ReadIndex | undefined;

  constructor(o: PackWriterOptions, d: JobDeps) {
    this.o = o;
    this.d = d;
  }

  /**
   * Bring the packs in step with `files` (the generation just published). `hold` is called before
   * anything is written (the uploader's write lease). Packs are read from the docroot, each file
   * checked against its manifest entry (one that changed since is left out: path-keyed only).
   */
  async write(files: FileMap, generation: number, hold: () => Promise<void>, repack = false): Promise<PackWriteResult> {
    const { store, loc, tuning } = this.o;
    const { log, signal } = this.d;
    const meta = metaPrefix(loc);
    let requests = 0;
    const prev = await this.readPrevious(files.size).finally(() => requests++);
    const plan = planPacks(prev?.index, files, tuning, repack);
    const unchanged = { changed: false, reason: "", packsWritten: 0, bytesWritten: 0, filesPacked: 0, packs: prev?.index.packs.length ?? 0, packedBytes: sumSizes(prev?.index.packs ?? []), deleted: 0, requests };
    if (!plan.changed) return unchanged;
    await hold();
    const built: Pack[] = [];
    let bytesWritten = 0;
    for (const group of plan.build) {
      const pack = await this.buildPack(group);
      if (!pack) continue;
      const key = packKeys.pack(meta, pack.pack.id);
      await withRetry(() => (pack.bytes.length < this.o.multipartThreshold
        ? store.put(key, pack.bytes, PACK_ATTRS, {}, signal)
        : store.upload(key, pack.bytes, PACK_ATTRS, { size: pack.bytes.length, partSize: this.o.partSize, queueSize: 4, signal })), { signal });
      requests++;
      built.push(pack.pack);
      bytesWritten += pack.bytes.length;
    }
    const ids = new Set([...plan.keep, ...built].map((p) => p.id));
    const index: PackIndex = { format: PACK_INDEX_FORMAT, generation, time: this.d.now().toISOString(), packs: [...plan.keep, ...built], retiring: plan.retire.filter((id) => !ids.has(id)) };
    const bytes = serializePackIndex(index);
    const put = await withRetry(() => store.put(packKeys.index(meta), bytes, { contentType: "application/gzip" }, {}, signal), { signal });
    requests++;
    this.cached = { index, etag: put.etag, bytes };
    await this.saveCache(this.cached);
    const gone = await deleteUnreferenced(this.o, index, this.d);
    requests += gone.requests;
    const res = { changed: true, reason: plan.reason, packsWritten: built.length, bytesWritten, filesPacked: built.reduce((n, p) => n + p.files.length, 0), packs: index.packs.length, packedBytes: sumSizes(index.packs), deleted: gone.deleted, requests };
    log.info({ generation, ...res }, "packs written");
    return res;
  }

  /** The current index: the cached one when the bucket still has it (a 304), else read. */
  private async readPrevious(files: number): Promise<ReadIndex | undefined> {
    this.cached ??= await this.loadCache();
    try {
      const got = await readPackIndex(this.o, files, this.d.signal, this.cached?.etag);
      if (got === "not-modified") return this.cached;
      this.cached = got;
      if (got) await this.saveCache(got);
      return got;
    } catch (err) {
      // An index the writer cannot read is rebuilt from scratch; its packs become orphans (deleted after the grace).
      this.d.log.warn(errorFields(err), "the pack index is unreadable: building new packs");
      return undefined;
    }
  }

  /** One pack's bytes from the docroot; files that no longer hold their entry's bytes are left out. */
  private async buildPack(group: readonly Entry[]): Promise<{ pack: Pack; bytes: Buffer } | undefined> {
    const parts: Buffer[] = [];
    const files: Pack["files"][number][] = [];
    let offset = 0;
    const read = await pMap(group, async (e) => readFile(path.join(this.o.docroot, e.path)).catch(() => undefined), { concurrency: 8 });
    for (const [i, e] of group.entries()) {
      const buf = read[i];
      if (!buf || buf.length !== e.size || sha256Hex(buf) !== e.sha256) {
        this.d.log.debug({ path: e.path }, "changed since it was published: not packed");
        continue;
      }
      parts.push(buf);
      files.push({ path: e.path, offset, length: buf.length, sha256: e.sha256 });
      offset += buf.length;
    }
    if (files.length === 0) return undefined;
    const bytes = Buffer.concat(parts, offset);
    return { pack: { id: sha256Hex(bytes), size: bytes.length, files }, bytes };
  }

  private async loadCache(): Promise<ReadIndex | undefined> {
    try {
      const [bytes, etag] = await Promise.all([readFile(this.o.cacheFiles.bytes), readFile(this.o.cacheFiles.etag, "utf8")]);
      return { index: parsePackIndex(bytes, maxPackIndexBytes(10_000_000)), etag, bytes };
    } catch {
      return undefined;
    }
  }

  private async saveCache(r: ReadIndex): Promise<void> {
    // Bytes first: an etag beside bytes of another index would only cost a 200 instead of a 304.
    await writeFile(this.o.cacheFiles.bytes, r.bytes);
    await writeFile(this.o.cacheFiles.etag, r.etag);
  }
}

/**
 * Delete packs under `<meta>packs/` that the index names neither as packs nor as retiring, once
 * older than {@link ORPHAN_PACK_GRACE_MS} (orphans of a writer that died before its index, packs
 * retired two indexes ago). A failed deletion is only logged: the next rewrite lists them again.
 */
async function deleteUnreferenced(site: PackSite, index: PackIndex, d: JobDeps): Promise<{ deleted: number; requests: number }> {
  const dir = packKeys.dir(metaPrefix(site.loc));
  const named = new Set([...index.packs.map((p) => p.id), ...index.retiring]);
  const cutoff = d.now().getTime() - ORPHAN_PACK_GRACE_MS;
  const { keys } = await site.store.list(dir, { signal: d.signal });
  const stale = keys.filter((k) => {
    const m = /^([0-9a-f]{64})\.pack$/.exec(k.key.slice(dir.length));
    return m && !named.has(m[1] as string) && (k.lastModified?.getTime() ?? 0) < cutoff;
  }).map((k) => k.key);
  let requests = 1 + Math.floor(keys.length / 1000);
  if (stale.length === 0) return { deleted: 0, requests };
  const failed = await site.store.deleteMany(stale, d.signal).catch((err: unknown) => stale.map((key) => ({ key, error: errorMessage(err) })));
  requests += Math.ceil(stale.length / 1000);
  if (failed.length > 0) d.log.warn({ objects: failed.length, error: failed[0]?.error }, "could not delete old packs; the next pack index rewrite tries again");
  return { deleted: stale.length - failed.length, requests };
}

function sumSizes(packs: readonly Pack[]): number {
  return packs.reduce((n, p) => n + p.size, 0);
}

/** What the puller's pack stage did. */
export interface PackStageResult {
  /** Files staged as verified temp files (rename is the caller's commit). */
  readonly staged: { entry: Entry; tmp: string }[];
  readonly packsFetched: number;
  /** Files a pack was meant to give that come path-keyed instead (pack missing, stale or corrupt). */
  readonly fellBack: number;
}

/** What the puller gives the pack stage. */
export interface PackStageContext {
  readonly root: string;
  readonly runId: string;
  /** The run's temp-file counter (shared with the puller's path-keyed downloads: names never collide). */
  readonly nextSeq: () => number;
  /** Paths the caller may remove on the way to a file (ensureParentDirs' rule). */
  readonly removable: (p: string) => boolean;
  readonly verifiedDirs: Set<string>;
  readonly concurrency: number;
  /** The generation's file count (bounds the index's inflated size). */
  readonly files: number;
  readonly events?: TransferEvents | undefined;
  readonly tuning?: PackFetchTuning;
}

/**
 * Stage small files of `downloads` from the source's packs: read the pack index, fetch the packs
 * worth it (whole, a few at a time), and write every slice whose sha256 is the manifest entry's as a
 * temp file next to its target, with the entry's mode and mtime (as transfer.downloadTo does). Never
 * throws for a pack problem: the files not staged are the caller's to fetch path-keyed. A refused
 * (hostile or corrupt) index is logged as an error and ignored whole.
 */
export async function stagePackedFiles(source: PackSite, downloads: readonly Entry[], c: PackStageContext, d: JobDeps): Promise<PackStageResult> {
  const { log, signal } = d;
  const none: PackStageResult = { staged: [], packsFetched: 0, fellBack: 0 };
  const t = c.tuning ?? DEFAULT_PACK_FETCH;
  if (!pullUsesPacks(downloads.length, c.files, t)) return none;
  let idx: PackIndex;
  try {
    const got = await readPackIndex(source, c.files, signal);
    if (!got || got === "not-modified") return none;
    idx = got.index;
  } catch (err) {
    signal.throwIfAborted();
    log.error(errorFields(err), "pack index refused: fetching every file path-keyed");
    return none;
  }
  const { fetches } = planPackFetch(idx, downloads, t);
  if (fetches.length === 0) return none;
  const staged: { entry: Entry; tmp: string }[] = [];
  let fellBack = 0;
  let packsFetched = 0;
  const meta = metaPrefix(source.loc);
  await pMap(fetches, async (f) => {
    if (signal.aborted) return;
    let bytes: Buffer | undefined;
    try {
      bytes = await withRetry(() => fetchPack(source.store, packKeys.pack(meta, f.pack.id), f.pack.size, signal), { signal });
    } catch (err) {
      log.warn({ pack: f.pack.id, ...errorFields(err) }, "pack could not be fetched: its files come path-keyed");
    }
    if (!bytes) {
      fellBack += f.files.length;
      return;
    }
    packsFetched++;
    await pMap(f.files, async ({ entry: e, offset }) => {
      const slice = bytes.subarray(offset, offset + e.size);
      if (slice.length !== e.size || sha256Hex(slice) !== e.sha256) {
        fellBack++;
        log.warn({ path: e.path, pack: f.pack.id }, "a pack's bytes are not the manifest's: fetching the file path-keyed");
        return;
      }
      const tmp = tempPathFor(c.root, e.path, c.runId, c.nextSeq());
      try {
        await ensureParentDirs(c.root, e.path, c.removable, c.verifiedDirs);
        await writeStagedFile(tmp, slice, e);
      } catch {
        // Whatever went wrong locally happens again on the path-keyed way, which reports it.
        await unlink(tmp).catch(() => undefined);
        fellBack++;
        return;
      }
      staged.push({ entry: e, tmp });
      c.events?.file?.({ role: "pull", op: "download", bytes: e.size });
    }, { concurrency: 16 });
  }, { concurrency: Math.max(1, Math.min(4, c.concurrency)) });
  if (fellBack > 0) log.warn({ files: fellBack }, "files that packs could not give come path-keyed");
  log.info({ packs: packsFetched, files: staged.length, bytes: staged.reduce((n, s) => n + s.entry.size, 0) }, "files taken from packs");
  return { staged, packsFetched, fellBack };
}

/** GET one whole pack; undefined when it is not there. More bytes than the index says is refused. */
async function fetchPack(store: ObjectStore, key: string, size: number, signal: AbortSignal): Promise<Buffer | undefined> {
  const res = await store.getStream(key, { maxBytes: size, signal });
  if (res.status !== "ok") return undefined;
  return readCapped(res.body, size);
}

/** A body of exactly `size` bytes (`exact`), or of at most that many; undefined otherwise (reading stops at once). */
async function readCapped(body: Readable, size: number, exact = true): Promise<Buffer | undefined> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of body) {
    n += (c as Buffer).length;
    if (n > size) {
      body.destroy();
      return undefined;
    }
    chunks.push(c as Buffer);
  }
  return n === size || !exact ? Buffer.concat(chunks, n) : undefined;
}

/** Per region, what the replicator knows of the packs it carried (the primary index's ETag, when it last looked). */
export interface PackCarryState {
  etag?: string | undefined;
  checkedAt?: number | undefined;
}

/** A region at the primary's generation looks at the primary's pack index at most this often. */
export const PACK_CARRY_RECHECK_MS = 60_000;

/**
 * Carry the primary's packs and index to a region: packs the region lacks are copied (GET, sha256
 * checked against the id, PUT), then the index (verbatim: it names no bucket), then the region's
 * packs neither list names are deleted after the grace. One conditional GET when nothing changed.
 * Failures throw; the region's generation is published already and pullers fall back meanwhile.
 */
export async function carryPacks(primary: PackSite, region: PackSite, files: number, o: { readonly multipartThreshold: number; readonly partSize: number }, st: PackCarryState, d: JobDeps): Promise<{ copied: number; deleted: number } | undefined> {
  const { signal, log } = d;
  const got = await readPackIndex(primary, files, signal, st.etag);
  if (got === "not-modified" || !got) return undefined;
  const rmeta = metaPrefix(region.loc);
  const dir = packKeys.dir(rmeta);
  const { keys } = await region.store.list(dir, { signal });
  const have = new Set(keys.map((k) => k.key.slice(dir.length)));
  const missing = got.index.packs.filter((p) => !have.has(`${p.id}.pack`));
  await pMap(missing, async (p) => {
    const bytes = await withRetry(() => fetchPack(primary.store, packKeys.pack(metaPrefix(primary.loc), p.id), p.size, signal), { signal });
    if (!bytes || sha256Hex(bytes) !== p.id) throw new Error(`pack ${p.id.slice(0, 12)}… of the primary is missing or not its id's bytes`);
    const key = packKeys.pack(rmeta, p.id);
    await withRetry(() => (bytes.length < o.multipartThreshold ? region.store.put(key, bytes, PACK_ATTRS, {}, signal) : region.store.upload(key, bytes, PACK_ATTRS, { size: bytes.length, partSize: o.partSize, queueSize: 4, signal })), { signal });
  }, { concurrency: 4 });
  await withRetry(() => region.store.put(packKeys.index(rmeta), got.bytes, { contentType: "application/gzip" }, {}, signal), { signal });
  const gone = await deleteUnreferenced(region, got.index, d);
  st.etag = got.etag;
  log.info({ copied: missing.length, packs: got.index.packs.length, deleted: gone.deleted }, "region's packs follow the primary's");
  return { copied: missing.length, deleted: gone.deleted };
}

/**
 * The replicator's side: carries the primary's packs to each region after the region's generation
 * and, at the primary's generation, looks again at most every {@link PACK_CARRY_RECHECK_MS} (the
 * index is written just after the head). The primary index's ETag last carried is kept beside the
 * region's status file, so a one-shot run that finds nothing new sends one conditional GET. A
 * failure is only logged: the region's nodes fetch path-keyed objects meanwhile.
 */
export class PackCarrier {
  private readonly primary: PackSite;
  private readonly o: { readonly multipartThreshold: number; readonly partSize: number };
  private readonly carryFile: (regionUrl: string) => string;
  private readonly d: JobDeps;
  private readonly states = new Map<string, PackCarryState>();

  constructor(primary: PackSite, o: { readonly multipartThreshold: number; readonly partSize: number }, carryFile: (regionUrl: string) => string, d: JobDeps) {
    this.primary = primary;
    this.o = o;
    this.carryFile = carryFile;
    this.d = d;
  }

  /** Bring `region`'s packs in step (`replicated`: a generation was just published there). Never throws but for an abort. */
  async carry(region: PackSite & { readonly url: string }, files: number, replicated: boolean, log: JobDeps["log"]): Promise<void> {
    const file = this.carryFile(region.url);
    let st = this.states.get(region.url);
    if (!st) this.states.set(region.url, (st = { etag: (await readJson<PackCarryState>(file))?.etag }));
    const now = this.d.now().getTime();
    if (!replicated && st.checkedAt !== undefined && now - st.checkedAt < PACK_CARRY_RECHECK_MS) return;
    st.checkedAt = now;
    const before = st.etag;
    await carryPacks(this.primary, region, files, this.o, st, { ...this.d, log }).catch((err: unknown) => {
      this.d.signal.throwIfAborted();
      log.warn(errorFields(err), "could not carry packs to the region: its nodes fetch path-keyed objects meanwhile");
    });
    if (st.etag !== before) await writeJson(file, { etag: st.etag });
  }
}
