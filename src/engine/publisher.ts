/**
 * Publishing generations: the manifest and journal first, the head last with a conditional write
 * (If-Match on the previous ETag, If-None-Match: * for the first), so the chain never forks; the
 * head rewritten in place (its dirty list, an approval, a repaired manifest); and whether the
 * server enforces those conditions at all (probed once per endpoint and bucket, cached in the
 * location's state directory). The caller holds the write lease (`lease.ts`).
 */
import os from "node:os";
import { randomBytes } from "node:crypto";
import { ConditionFailed, IntegrityError, RaceError } from "../core/errors.ts";
import type { Location } from "../core/location.ts";
import { metaPrefix } from "../core/location.ts";
import {
  DIRTY_MAX, DIRTY_MAX_BYTES, type FileMap, JOURNAL_MAX_BYTES, manifestMaxBytes, type Head, HEAD_FORMAT, JOURNAL_FORMAT, type Entry, metaKeys,
  serializeHead, serializeJournal, serializeManifest, sha256Hex, type WriterKind,
} from "../core/manifest.ts";
import { errorFields, type Logger } from "../adapters/logger.ts";
import type { ObjectStore } from "../adapters/object-store.ts";
import { toRemoteError } from "../adapters/s3-errors.ts";
import type { StateDir } from "../adapters/state-dir.ts";
import { readJson, writeJson } from "../adapters/state-files.ts";
import { type GenerationSigning, type HeadSignature, signatureFor } from "../core/signing.ts";
import { changedPaths, type HeadState, JOURNAL_MAX_CHANGES, readHead, readJournal } from "./generation-reader.ts";

/** A unique id for this writer process, recorded in every head it writes. */
export function newWriterId(): string {
  return `${os.hostname()}:${process.pid}:${randomBytes(3).toString("hex")}`;
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
      log.warn({ ...errorFields(toRemoteError(err, "prune", store.endpoint)) }, "could not prune old generation");
      return [];
    });
    if (failed.length) log.warn({ failed }, "could not prune old generation");
  }
  return { head, etag, manifestBytes };
}

function capDirty(paths: readonly string[]): readonly string[] {
  if (paths.length > DIRTY_MAX || paths.includes("*")) return ["*"];
  const unique = [...new Set(paths)].sort();
  // A head readers refuse unread above HEAD_MAX_BYTES must not be made long by its dirty list.
  return unique.reduce((n, p) => n + Buffer.byteLength(p) + 4, 0) > DIRTY_MAX_BYTES ? ["*"] : unique;
}

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
async function probeConditionalWrites(store: ObjectStore, loc: Location): Promise<boolean> {
  const key = `${metaPrefix(loc)}probe/${randomBytes(6).toString("hex")}`;
  try {
    const s = await probeConditionalSupport(store, key);
    return s.ifNoneMatch && s.ifMatch;
  } finally {
    await store.deleteMany([key]);
  }
}

/**
 * Whether the server of `store` enforces conditional writes: probed once per endpoint and bucket
 * and cached in the location's `capabilities.json` (`shared`, the state every writer of the location
 * shares). The writers of one process handed the same `shared` take turns with the file. Every
 * writer, and `fansync sync` before it starts, asks here; none probes on its own.
 */
export function conditionalWrites(store: ObjectStore, loc: Location, shared: StateDir, log: Logger): Promise<boolean> {
  const file = shared.capabilities;
  const id = `${store.endpoint} ${store.bucket}`;
  return shared.inTurn(file, async () => {
    const known = (await readJson<Record<string, unknown>>(file)) ?? {};
    const hit = known[id];
    if (typeof hit === "boolean") return hit;
    const enforced = await probeConditionalWrites(store, loc);
    if (!enforced) {
      log.warn({ endpoint: store.endpoint, bucket: store.bucket }, "this S3 server ignores conditional writes: run exactly one writer per location (a read-back check detects, but cannot prevent, a second writer)");
    }
    await writeJson(file, { ...known, [id]: enforced });
    return enforced;
  });
}
