/**
 * Reading and publishing generations: head, manifest and journal objects under the meta prefix.
 * Publishing writes the manifest and journal first and the head last, with a conditional write.
 */
import os from "node:os";
import { randomBytes } from "node:crypto";
import { ConditionFailed, IntegrityError, RaceError } from "../core/errors.ts";
import { parseDuration } from "../core/units.ts";
import type { Location } from "../core/location.ts";
import { metaPrefix } from "../core/location.ts";
import {
  DIRTY_MAX, DIRTY_MAX_BYTES, type FileMap, HEAD_MAX_BYTES, JOURNAL_MAX_BYTES, manifestMaxBytes, type Head, HEAD_FORMAT, type Journal, JOURNAL_FORMAT, type Entry, metaKeys, parseHead, parseJournal, parseManifest,
  serializeHead, serializeJournal, serializeManifest, sha256Hex, type WriterKind,
} from "../core/manifest.ts";
import type { Logger } from "../adapters/logger.ts";
import type { ObjectStore } from "../adapters/object-store.ts";
import { toRemoteError } from "../adapters/s3-errors.ts";
import { type GenerationSigning, type HeadSignature, signatureFor } from "../core/signing.ts";

/** The head as read, with the ETag needed for the next conditional write. */
export interface HeadState {
  readonly head: Head;
  readonly etag: string;
}

/** A unique id for this writer process, recorded in every head it writes. */
export function newWriterId(): string {
  return `${os.hostname()}:${process.pid}:${randomBytes(3).toString("hex")}`;
}

/** Read the head; undefined when the location has never been published. */
export async function readHead(store: ObjectStore, loc: Location, signal?: AbortSignal): Promise<HeadState | undefined> {
  const res = await readHeadIfChanged(store, loc, undefined, signal);
  return res === "not-modified" ? undefined : res;
}

/**
 * Read the head unless its ETag is still `etag` (one conditional GET: the no-op path of every
 * reader): "not-modified", the head, or undefined when the location has never been published.
 */
export async function readHeadIfChanged(store: ObjectStore, loc: Location, etag: string | undefined, signal?: AbortSignal): Promise<HeadState | "not-modified" | undefined> {
  const meta = metaPrefix(loc);
  const res = await store.get(metaKeys.head(meta), { maxBytes: HEAD_MAX_BYTES, ...(etag ? { ifNoneMatch: etag } : {}), ...(signal ? { signal } : {}) });
  if (res.status === "not-modified" && etag) return "not-modified";
  if (res.status === "not-found") return undefined;
  if (res.status !== "ok") throw new IntegrityError(`unexpected answer reading head.json: ${res.status}`);
  return { head: parseHead(res.body, meta), etag: res.etag };
}

/** Read generation `gen`'s journal; undefined when it is not there (pruned, or never written). */
export async function readJournal(store: ObjectStore, loc: Location, gen: number, signal?: AbortSignal): Promise<Journal | undefined> {
  const res = await store.get(metaKeys.journal(metaPrefix(loc), gen), { maxBytes: JOURNAL_MAX_BYTES, ...(signal ? { signal } : {}) });
  return res.status === "ok" ? parseJournal(res.body, gen) : undefined;
}

/** Read and verify the manifest a head names. */
export async function readManifest(store: ObjectStore, head: Head, signal?: AbortSignal): Promise<{ files: FileMap; bytes: Buffer }> {
  // The head names no manifest size; its file count bounds it (a larger body is refused unread).
  const res = await store.get(head.manifestKey, { maxBytes: manifestMaxBytes(head.files), ...(signal ? { signal } : {}) });
  if (res.status === "not-found") {
    throw new IntegrityError(`head names manifest ${head.manifestKey} (generation ${head.generation}) but it does not exist`, {
      hint: "the bucket is incomplete (replication still arriving?) or damaged; the next run retries",
    });
  }
  if (res.status !== "ok") throw new IntegrityError(`unexpected answer reading ${head.manifestKey}: ${res.status}`);
  // The head's file count bounds what the manifest may inflate to (a gzip bomb stops early).
  return { files: await parseManifest(res.body, head.manifestSha256, head.generation, head.files), bytes: res.body };
}

/** What one publish changed. */
export interface PublishInput {
  readonly previous: HeadState | undefined;
  readonly files: FileMap;
  readonly puts: readonly Entry[];
  readonly deletes: readonly string[];
  readonly writer: string;
  /** Which command writes it (see {@link Head.writerKind}). */
  readonly writerKind?: WriterKind | undefined;
  readonly retain: number;
  /**
   * The generation to publish; default previous + 1. A regional replica passes the primary's number
   * (region generation N is primary generation N) and may jump several generations at once.
   */
  readonly generation?: number;
  readonly now: () => Date;
  /** Whether the server enforces conditional writes (else: read-back check). */
  readonly conditional: boolean;
  /** Paths the new head still cannot vouch for (see {@link Head.dirty}). */
  readonly dirty?: readonly string[];
  /** Deletions of this generation its writer approved (see {@link Head.approvedDeletes}). */
  readonly approvedDeletes?: number | undefined;
  /** Sign the head with the writer's key, or carry a signature made elsewhere (a region's copy of the primary's). */
  readonly signing?: GenerationSigning | undefined;
  /** The files were not planned from the previous generation (it was unreadable): no journal chains across. */
  readonly rebuilt?: boolean | undefined;
}

/** Deltas with more changes than this get no journal (readers fetch the manifest instead). */
export const JOURNAL_MAX_CHANGES = 10_000;
/** Control objects above this size are uploaded in parts. */
const SINGLE_PUT_MAX = 8 * 1024 * 1024;

/**
 * Publish the next generation: manifest, journal, then the head with If-Match on the previous ETag
 * (If-None-Match: * for the first). A lost race throws {@link RaceError}; the chain never forks.
 * Old manifests and journals beyond `retain` generations are pruned afterwards.
 */
export async function publishGeneration(store: ObjectStore, loc: Location, input: PublishInput, log: Logger): Promise<HeadState & { manifestBytes: Buffer }> {
  const meta = metaPrefix(loc);
  const prevGen = input.previous?.head.generation ?? 0;
  const gen = input.generation ?? prevGen + 1;
  if (!Number.isSafeInteger(gen) || gen <= prevGen) throw new IntegrityError(`cannot publish generation ${gen} over generation ${prevGen}`);
  const time = input.now().toISOString();
  // Signed (or the carried signature checked against the files) before anything is written; the
  // manifest keeps it for when the head has moved on (rollback verifies a retained generation).
  const signed = signatureFor(input.signing, gen, input.files, time, input.approvedDeletes ?? 0);
  const manifestBytes = await serializeManifest(gen, input.files, signed.signature);
  const ctl = { contentType: "application/json", cacheControl: "no-store" };
  await createOnce(store, loc, gen, metaKeys.manifest(meta, gen), manifestBytes, { contentType: "application/x-ndjson", cacheControl: "no-store" }, input.conditional, manifestMaxBytes(input.files.size));
  // A journal only pays off for small deltas; a huge one (a first publish of 100k files, a mass
  // change) would be bigger than the manifest a reader fetches instead, and can exceed what some
  // servers take in one PUT. It is not written, and the head says journals start after it.
  // Nor is one larger than readers take (JOURNAL_MAX_BYTES: long paths can make 10k changes big).
  const journalBytes = input.puts.length + input.deletes.length <= JOURNAL_MAX_CHANGES
    ? serializeJournal({ format: JOURNAL_FORMAT, generation: gen, puts: input.puts, deletes: input.deletes, time, writer: input.writer, ...(input.approvedDeletes ? { approvedDeletes: input.approvedDeletes } : {}) })
    : undefined;
  const journalWritten = journalBytes !== undefined && journalBytes.length <= JOURNAL_MAX_BYTES;
  if (journalWritten) {
    await createOnce(store, loc, gen, metaKeys.journal(meta, gen), journalBytes, ctl, input.conditional, JOURNAL_MAX_BYTES);
  }
  let bytes = 0;
  for (const e of input.files.values()) bytes += e.size;
  const head: Head = {
    format: HEAD_FORMAT,
    generation: gen,
    manifestKey: metaKeys.manifest(meta, gen),
    manifestSha256: sha256Hex(manifestBytes),
    files: input.files.size,
    bytes,
    // Journals exist for (oldestJournal..gen]. A jump writes one journal holding the net delta from
    // prevGen, which is not the delta from gen - 1: no reader may chain journals across it.
    oldestJournal: journalWritten && gen === prevGen + 1 && !input.rebuilt ? Math.max(0, input.previous?.head.oldestJournal ?? 0, gen - input.retain) : gen,
    writer: input.writer,
    ...(input.writerKind ? { writerKind: input.writerKind } : {}),
    time,
    ...(input.dirty && input.dirty.length > 0 ? { dirty: capDirty(input.dirty) } : {}),
    ...(input.approvedDeletes ? { approvedDeletes: input.approvedDeletes } : {}),
    ...signed,
  };
  let etag: string;
  try {
    const cond = input.previous ? { ifMatch: input.previous.etag } : { ifNoneMatch: "*" };
    etag = (await store.put(metaKeys.head(meta), serializeHead(head), ctl, cond)).etag;
  } catch (err) {
    // The answer to our own write can be lost (a reset after the server stored the head): the SDK
    // then retries with the same condition, which our own write now fails, or gives up with a
    // network error. A head that is ours, for this generation and manifest, is a success, not a
    // lost race nor a failed run: read it back and tell.
    const back = await readHead(store, loc).catch(() => undefined);
    if (back && back.head.writer === input.writer && back.head.generation === gen && back.head.manifestSha256 === head.manifestSha256) {
      log.info({ generation: gen }, "the answer to the head write was lost; reading it back shows it was stored");
      return finishPublish(store, loc, input, head, back.etag, manifestBytes, log);
    }
    if (err instanceof ConditionFailed) {
      throw new RaceError(`lost the race for generation ${gen}: another writer moved the head of s3://${loc.bucket}/${loc.prefix} first`, { cause: err });
    }
    throw err;
  }
  return finishPublish(store, loc, input, head, etag, manifestBytes, log);
}

/**
 * Write a generation's manifest or journal, which no one else may have written: with If-None-Match
 * where the server enforces it. Two writers preparing the same generation wrote the same keys, and
 * the loser's late write could replace the bytes the winner's head names (the head then pointed at
 * a manifest whose sha256 did not match: every node stopped with exit 8). An object already there
 * is ours when its bytes are (a lost answer, retried), or debris of a run that died before its head
 * when the head is still older (the caller holds the write lease, so no one else is preparing it).
 */
async function createOnce(store: ObjectStore, loc: Location, gen: number, key: string, body: Buffer, attrs: { contentType: string; cacheControl: string }, conditional: boolean, readCap: number): Promise<void> {
  if (body.length > SINGLE_PUT_MAX) {
    // A large manifest (hundreds of thousands of entries) goes multipart: some servers refuse a
    // single PUT above ~11 MiB. lib-storage sends no condition with the completion, so here the
    // conditional head write (and the lease) alone keep a second writer out.
    await store.upload(key, body, attrs, { size: body.length, partSize: SINGLE_PUT_MAX, queueSize: 4 });
    return;
  }
  if (!conditional) {
    await store.put(key, body, attrs);
    return;
  }
  try {
    await store.put(key, body, attrs, { ifNoneMatch: "*" });
    return;
  } catch (err) {
    if (!(err instanceof ConditionFailed)) throw err;
  }
  // What a dead writer left there may be longer than this body (another tree for the same
  // generation): read it under the cap readers use for its kind, not this body's length, or a
  // writer that died between the manifest and the head is refused for good (found by sim/).
  const there = await store.get(key, { maxBytes: Math.max(readCap, body.length) });
  if (there.status === "ok" && sha256Hex(there.body) === sha256Hex(body)) return;
  const hs = await readHead(store, loc);
  if ((hs?.head.generation ?? 0) >= gen || there.status !== "ok") {
    throw new RaceError(`lost the race for generation ${gen}: another writer published it first at s3://${loc.bucket}/${loc.prefix}`);
  }
  try {
    await store.put(key, body, attrs, { ifMatch: there.etag });
  } catch (err) {
    if (err instanceof ConditionFailed) throw new RaceError(`lost the race for generation ${gen}: another writer is writing ${key}`, { cause: err });
    throw err;
  }
}

async function finishPublish(store: ObjectStore, loc: Location, input: PublishInput, head: Head, etag: string, manifestBytes: Buffer, log: Logger): Promise<HeadState & { manifestBytes: Buffer }> {
  const meta = metaPrefix(loc);
  const gen = head.generation;
  const prevGen = input.previous?.head.generation ?? 0;
  const bytes = head.bytes;
  if (!input.conditional) {
    // The server ignores conditions: read back to at least detect an interleaved writer.
    const back = await readHead(store, loc);
    if (!back || back.head.writer !== input.writer || back.head.generation !== gen) {
      throw new RaceError(`head of s3://${loc.bucket}/${loc.prefix} was overwritten by writer ${back?.head.writer ?? "?"} (server has no conditional writes)`);
    }
  }
  log.info({ generation: gen, files: head.files, bytes, puts: input.puts.length, deletes: input.deletes.length, changed: changedPaths(input.puts.map((e) => e.path), input.deletes) }, "published generation");
  // Prune what fell out of retention; a failure here only leaves garbage, never breaks the chain.
  // A jump drops every generation it skipped past (bounded: a huge gap leaves the rest as garbage).
  const oldKeys: string[] = [];
  for (let old = Math.max(1, prevGen - input.retain + 1, gen - input.retain - 999); old <= gen - input.retain; old++) {
    oldKeys.push(metaKeys.manifest(meta, old), metaKeys.journal(meta, old));
  }
  if (oldKeys.length > 0) {
    const failed = await store.deleteMany(oldKeys).catch((err: unknown) => {
      log.warn({ err: toRemoteError(err, "prune", store.endpoint) }, "could not prune old generation");
      return [];
    });
    if (failed.length) log.warn({ failed }, "could not prune old generation");
  }
  return { head, etag, manifestBytes };
}

/** What a small change changed, for the info line: up to 10 paths, "+N more" after. */
export function changedPaths(puts: readonly string[], deletes: readonly string[]): string[] {
  const all = [...puts, ...deletes.map((p) => `-${p}`)];
  return all.length <= 10 ? all : [...all.slice(0, 10), `+${all.length - 10} more`];
}

function capDirty(paths: readonly string[]): readonly string[] {
  if (paths.length > DIRTY_MAX || paths.includes("*")) return ["*"];
  const unique = [...new Set(paths)].sort();
  // A head readers refuse unread above HEAD_MAX_BYTES must not be made long by its dirty list.
  return unique.reduce((n, p) => n + Buffer.byteLength(p) + 4, 0) > DIRTY_MAX_BYTES ? ["*"] : unique;
}

/** A lease document is a few hundred bytes. */
const LEASE_MAX_BYTES = 64 * 1024;

/**
 * Rewrite the head with another `dirty` list (or approval) and nothing else changed (same
 * generation, same manifest), conditional on the ETag we read. Marks, before a commit overwrites
 * objects the head names, which ones it may overwrite, and clears them once they are verified or
 * republished; records a master's approval of the generation's deletions after the fact.
 */
export async function rewriteHead(store: ObjectStore, loc: Location, hs: HeadState, patch: { readonly dirty?: readonly string[]; readonly approvedDeletes?: number; readonly signature?: HeadSignature; readonly manifestSha256?: string }, conditional: boolean): Promise<HeadState> {
  const { dirty: oldDirty, approvedDeletes: oldApproval, signature: oldSignature, signatureProblem: _p, ...kept } = hs.head;
  const rest = patch.manifestSha256 ? { ...kept, manifestSha256: patch.manifestSha256 } : kept;
  const dirty = patch.dirty ?? oldDirty ?? [];
  const approvedDeletes = patch.approvedDeletes ?? oldApproval ?? 0;
  const signature = patch.signature ?? oldSignature;
  const head: Head = { ...rest, ...(dirty.length > 0 ? { dirty: capDirty(dirty) } : {}), ...(approvedDeletes > 0 ? { approvedDeletes } : {}), ...(signature ? { signature } : {}) };
  const meta = metaPrefix(loc);
  try {
    const etag = (await store.put(metaKeys.head(meta), serializeHead(head), { contentType: "application/json", cacheControl: "no-store" }, conditional ? { ifMatch: hs.etag } : {})).etag;
    return { head, etag };
  } catch (err) {
    // A lost answer to our own write (as in publishGeneration): the head read back tells.
    const back = await readHead(store, loc).catch(() => undefined);
    if (back && back.head.generation === head.generation && back.head.manifestSha256 === head.manifestSha256 && JSON.stringify(back.head.dirty ?? []) === JSON.stringify(head.dirty ?? []) && back.head.approvedDeletes === head.approvedDeletes) return back;
    if (err instanceof ConditionFailed) throw new RaceError(`the head of s3://${loc.bucket}/${loc.prefix} moved while this writer held the lease`, { cause: err });
    throw err;
  }
}

/**
 * Rewrite the manifest (and journal, if kept) of the head's own generation with `fixed` entries in
 * place of the ones it named, then the head with the new manifest's sha256 and `dirty`. Only for a
 * location whose manifests only this writer produces and only their ETags or version ids change
 * (a region's copy of a primary generation, repaired after `replicate --verify` found objects that
 * hold other bytes): the files and the signature stay, and nodes that applied the generation see
 * the same generation with another manifest and look again. The caller holds the lease.
 */
export async function amendGeneration(store: ObjectStore, loc: Location, hs: HeadState, files: FileMap, fixed: readonly Entry[], dirty: readonly string[], conditional: boolean, signal?: AbortSignal): Promise<{ head: HeadState; files: FileMap }> {
  const gen = hs.head.generation;
  const meta = metaPrefix(loc);
  const next: FileMap = new Map(files);
  for (const e of fixed) next.set(e.path, e);
  const ctl = { contentType: "application/json", cacheControl: "no-store" };
  const journal = await readJournal(store, loc, gen, signal);
  if (journal) {
    const byPath = new Map(fixed.map((e) => [e.path, e]));
    const puts = journal.puts.map((e) => byPath.get(e.path) ?? e);
    await store.put(metaKeys.journal(meta, gen), serializeJournal({ ...journal, puts }), ctl, {}, signal);
  }
  // The files are unchanged, so the head's signature still covers them and the header keeps it.
  const manifestBytes = await serializeManifest(gen, next, hs.head.signature);
  const attrs = { contentType: "application/x-ndjson", cacheControl: "no-store" };
  if (manifestBytes.length > SINGLE_PUT_MAX) await store.upload(hs.head.manifestKey, manifestBytes, attrs, { size: manifestBytes.length, partSize: SINGLE_PUT_MAX, queueSize: 4, ...(signal ? { signal } : {}) });
  else await store.put(hs.head.manifestKey, manifestBytes, attrs, {}, signal);
  const head = await rewriteHead(store, loc, hs, { dirty, manifestSha256: sha256Hex(manifestBytes) }, conditional);
  return { head, files: next };
}

/** What a server does with conditional PUTs, header by header (some servers honour only one). */
export interface ConditionalSupport {
  /** `If-None-Match: *` on an existing key is refused (412). */
  readonly ifNoneMatch: boolean;
  /** `If-Match` with an ETag the object does not have is refused (412). */
  readonly ifMatch: boolean;
}

// An ETag no object has: a server that honours If-Match must refuse a write guarded by it.
const WRONG_ETAG = '"00000000000000000000000000000000"';

/**
 * Probe how the server treats conditional PUTs at `key`, a fresh random key the caller deletes
 * afterwards: If-None-Match: * on the existing key, then If-Match with a wrong ETag, must be refused.
 */
export async function probeConditionalSupport(store: ObjectStore, key: string, signal?: AbortSignal): Promise<ConditionalSupport> {
  const attrs = { contentType: "text/plain" };
  const refused = async (body: string, cond: { ifMatch?: string; ifNoneMatch?: string }): Promise<boolean> => {
    try {
      await store.put(key, Buffer.from(body), attrs, cond, signal);
      return false;
    } catch (err) {
      if (err instanceof ConditionFailed) return true;
      throw err;
    }
  };
  // A lost answer retried by the SDK meets our own first write: only a server that enforces
  // If-None-Match refuses a fresh random key's first write, so that counts as enforced too.
  const ifNoneMatch = (await refused("probe", { ifNoneMatch: "*" })) || (await refused("probe2", { ifNoneMatch: "*" }));
  const ifMatch = await refused("probe3", { ifMatch: WRONG_ETAG });
  return { ifNoneMatch, ifMatch };
}

/**
 * Find out once whether the server enforces conditional writes. Both headers must be honoured:
 * the first head is written with If-None-Match, every later head and lease with If-Match, and a
 * server that ignores either one lets a second writer through unseen (the read-back check and the
 * settle pause of the lease are then what guard the head).
 */
export async function probeConditionalWrites(store: ObjectStore, loc: Location): Promise<boolean> {
  const key = `${metaPrefix(loc)}probe/${randomBytes(6).toString("hex")}`;
  try {
    const s = await probeConditionalSupport(store, key);
    return s.ifNoneMatch && s.ifMatch;
  } finally {
    await store.deleteMany([key]);
  }
}

/** How long a write lease lives without renewal; its holder renews it every third of that. */
export const LEASE_TTL_MS = leaseTtlFromEnv();

/**
 * FANSYNC_LEASE_TTL (a duration, at least 1s) shortens the 60 s lease, for tests of writers that
 * stall past it; anything else keeps the default.
 */
function leaseTtlFromEnv(): number {
  const ms = parseDuration(process.env.FANSYNC_LEASE_TTL ?? "");
  return ms !== undefined && ms >= 1000 ? ms : 60_000;
}
// A new lease is read back after this pause: two writers that both saw no lease have then both
// written theirs, the last write won, and exactly one of them reads its own id back.
const LEASE_SETTLE_MS = 1000;
const LEASE_FORMAT = "fansync-lease/1";

/**
 * `lease.json`: who may publish to a location, and until when. It is never deleted: a writer that
 * is done overwrites it as `released` (expired at that moment, for readers that predate the field),
 * so the next writer takes it with If-Match. Deleting it left a delete marker on a versioned bucket,
 * and versitygw refuses `If-None-Match: *` over a delete marker (issue 13): every push after the
 * first failed there.
 */
export interface LeaseDoc {
  readonly format: typeof LEASE_FORMAT;
  readonly writer: string;
  readonly expires: string;
  readonly time: string;
  /** Given up by `writer`: free for anyone, whatever the clocks say. */
  readonly released?: boolean;
}

function parseLease(body: Uint8Array): LeaseDoc | undefined {
  try {
    const o = JSON.parse(Buffer.from(body).toString("utf8")) as Partial<LeaseDoc> | null;
    if (o?.format !== LEASE_FORMAT || typeof o.writer !== "string" || typeof o.expires !== "string" || !Number.isFinite(Date.parse(o.expires))) return undefined;
    return o as LeaseDoc;
  } catch {
    return undefined; // a damaged lease is treated as absent: the head's read-back still guards
  }
}

/** Read the write lease of a location; undefined when there is none, it is damaged or it was released. */
export async function readLease(store: ObjectStore, loc: Location): Promise<LeaseDoc | undefined> {
  const doc = (await readLeaseState(store, loc))?.doc;
  return doc?.released ? undefined : doc;
}

async function readLeaseState(store: ObjectStore, loc: Location): Promise<{ doc: LeaseDoc | undefined; etag: string } | undefined> {
  const res = await store.get(metaKeys.lease(metaPrefix(loc)), { maxBytes: LEASE_MAX_BYTES });
  return res.status === "ok" ? { doc: parseLease(res.body), etag: res.etag } : undefined;
}

function leaseRace(loc: Location, l: LeaseDoc, why: string, conditional: boolean): RaceError {
  const how = conditional ? "" : " (this server has no conditional writes, so one uploader at a time holds the lease)";
  return new RaceError(`${why}: uploader ${l.writer} holds the write lease of s3://${loc.bucket}/${loc.prefix} until ${l.expires}${how}`);
}

/**
 * Take or renew the single-writer lease. A live lease of another writer refuses with
 * {@link RaceError}; so does a lease we held and lost. Where the server enforces conditions the
 * lease is written with If-Match on the one there (If-None-Match: * only for a location's very
 * first lease), so two writers cannot both take it; elsewhere a fresh lease is read back after a
 * pause, so two writers starting together cannot both go on.
 */
export async function takeLease(store: ObjectStore, loc: Location, writer: string, now: () => Date, held: boolean, conditional: boolean, renew = false): Promise<void> {
  const st = await readLeaseState(store, loc);
  const cur = st?.doc?.released ? undefined : st?.doc;
  // A renewal only extends a lease that is still ours: one released or gone meanwhile was taken
  // over (and given up) by another writer while this one was stalled; writing it again would hide that.
  if (renew && cur?.writer !== writer) {
    throw cur ? leaseRace(loc, cur, "lost the write lease", conditional) : new RaceError(`lost the write lease of s3://${loc.bucket}/${loc.prefix}: it was released or removed while this writer held it`);
  }
  if (cur && cur.writer !== writer && (held || Date.parse(cur.expires) > now().getTime())) {
    throw leaseRace(loc, cur, held ? "lost the write lease" : "another uploader is publishing here", conditional);
  }
  const t = now();
  const doc: LeaseDoc = { format: LEASE_FORMAT, writer, expires: new Date(t.getTime() + LEASE_TTL_MS).toISOString(), time: t.toISOString() };
  const key = metaKeys.lease(metaPrefix(loc));
  const attrs = { contentType: "application/json", cacheControl: "no-store" };
  let settle = !conditional;
  try {
    await store.put(key, Buffer.from(JSON.stringify(doc)), attrs, !conditional ? {} : st ? { ifMatch: st.etag } : { ifNoneMatch: "*" });
  } catch (err) {
    if (!(err instanceof ConditionFailed)) throw err;
    // Ours anyway when the answer to our own write was lost and the SDK's retry hit the condition.
    const back = await readLeaseState(store, loc);
    if (back?.doc?.writer === writer && !back.doc.released) return;
    if (back) {
      const other = back.doc && !back.doc.released ? back.doc : undefined;
      if (other) throw leaseRace(loc, other, "another uploader took the write lease at the same moment", conditional);
      throw new RaceError(`another uploader took and released the write lease of s3://${loc.bucket}/${loc.prefix} while this one was taking it`, { hint: "run again; if it keeps happening, another uploader writes to this location: run a single uploader per prefix" });
    }
    // Refused although there is no lease at all: the key's current version is a delete marker (a
    // lease.json deleted by an older fansync, or by hand) and the server refuses If-None-Match: *
    // over it (versitygw does; AWS does not). Write it unconditionally and settle as on a server
    // without conditional writes: of two writers doing this, exactly one reads its own id back.
    // From then on lease.json exists, and is taken with If-Match.
    await store.put(key, Buffer.from(JSON.stringify(doc)), attrs);
    settle = true;
  }
  if (!settle || (held && cur?.writer === writer)) return;
  await new Promise((r) => setTimeout(r, LEASE_SETTLE_MS));
  const back = await readLease(store, loc);
  if (back?.writer !== writer) {
    if (back) throw leaseRace(loc, back, "another uploader took the write lease at the same moment", conditional);
    throw new RaceError(`the write lease of s3://${loc.bucket}/${loc.prefix} was written but is not there when read back (lease.json ${(await readLeaseState(store, loc)) ? "was released" : "is gone"})`, { hint: "another uploader may be starting at the same moment: run again; run a single uploader per prefix" });
  }
}

/** Before a head is written: the lease must still name us (whoever took it over publishes instead). */
export async function checkLease(store: ObjectStore, loc: Location, writer: string): Promise<void> {
  const cur = await readLease(store, loc);
  if (cur?.writer !== writer) {
    throw cur
      ? leaseRace(loc, cur, "lost the write lease before publishing", true)
      : new RaceError(`lost the write lease of s3://${loc.bucket}/${loc.prefix} before publishing (lease.json is gone or was released)`);
  }
}

/**
 * Give the lease up (end of a push, watch stopping): overwrite ours as released, with If-Match, so
 * a writer that took it over in the meantime keeps it. Never a delete (see {@link LeaseDoc}).
 */
export async function releaseLease(store: ObjectStore, loc: Location, writer: string, now: () => Date = () => new Date()): Promise<void> {
  const st = await readLeaseState(store, loc);
  if (!st?.doc || st.doc.writer !== writer || st.doc.released) return;
  const t = now().toISOString();
  const doc: LeaseDoc = { format: LEASE_FORMAT, writer, expires: t, time: t, released: true };
  try {
    await store.put(metaKeys.lease(metaPrefix(loc)), Buffer.from(JSON.stringify(doc)), { contentType: "application/json", cacheControl: "no-store" }, { ifMatch: st.etag });
  } catch (err) {
    if (!(err instanceof ConditionFailed)) throw err;
    // Someone else holds it now: nothing of ours to give up.
  }
}
