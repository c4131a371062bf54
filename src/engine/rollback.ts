/**
 * Rollback: publish a NEW generation (head + 1, so pullers follow as usual) whose content is that of
 * a retained older generation. Order, as the uploader's: everything that can refuse (a missing
 * source, the delete guard, a held lease) refuses before any write; then objects, then manifest and
 * journal, then the head; removed objects are deleted after the head stopped naming them.
 */
import { stat } from "node:fs/promises";
import path from "node:path";
import pMap from "p-map";
import type { WriterTuning } from "../core/config.ts";
import { contentAttrs } from "./object-attrs.ts";
import { errorMessage, type FailedTransfer, FileChanging, IntegrityError, RaceError, TransferCorrupt, UntrustedHead, UsageError } from "../core/errors.ts";
import { compileFilter } from "../core/filters.ts";
import { checkDeleteGuard } from "../core/guard.ts";
import { ROLLBACK_WRITER } from "../core/history.ts";
import { formatLocation, type Location } from "../core/location.ts";
import type { Entry, FileMap, ParsedManifest } from "../core/manifest.ts";
import { prefixClashes } from "../core/paths.ts";
import { type SigningKey, type TrustPolicy, verifyGeneration } from "../core/signing.ts";
import { isNoopRollback, type LocalSource, planRollback, restoreCandidates, type RollbackPlan } from "../core/rollback-plan.ts";
import { hashFile, scanTree } from "../adapters/local-tree.ts";
import { errorFields, type Logger } from "../adapters/logger.ts";
import { withRetry } from "../adapters/retry.ts";
import { isRetryable } from "../adapters/s3-errors.ts";
import type { ObjectAttrs, PutResult, ObjectStore } from "../adapters/object-store.ts";
import type { StateDir } from "../adapters/state-dir.ts";
import { type HeadState, readHead, readManifest } from "./generation-reader.ts";
import { GenerationWriter } from "./generation-writer.ts";
import { listRetained, readGenerationManifest } from "./history.ts";
import type { JobDeps, PublishDeps } from "./job-deps.ts";
import type { SizedPools } from "../adapters/buffer-pool.ts";
import { objectRef, transferBuffers, uploadFile, verifyObject } from "./transfer.ts";

/** Everything a rollback needs to know, resolved. */
export interface RollbackOptions extends WriterTuning {
  readonly loc: Location;
  /** The retained generation whose content is published again. */
  readonly to: number;
  /** `--from`: a directory holding old files (a backup, the master's docroot), or undefined. */
  readonly fromDir: string | undefined;
  /** The rollback's own state directory (the writer's ledger, lease id, capabilities). */
  readonly state: StateDir;
  /** The location's state shared by every writer of it (ledger, capabilities). */
  readonly shared: StateDir;
  readonly cacheControl: (p: string) => string | undefined;
  /** Sign the new generation (signed generations): the uploader's key and site. */
  readonly signer?: { readonly key: SigningKey; readonly site: string } | undefined;
  /** How long the write lease lives without renewal (default 60 s; the CLI's FANSYNC_LEASE_TTL). */
  readonly leaseTtlMs?: number | undefined;
  /**
   * The keys a retained generation must be signed with to be restored (--trusted-key, and the
   * signer's own public key): undefined only when the rollback neither signs nor checks.
   */
  readonly trust?: TrustPolicy | undefined;
}

/** Injected collaborators. */
export interface RollbackDeps extends JobDeps, PublishDeps {
  readonly store: ObjectStore;
}

/** What the plan does, in counts. */
export interface RollbackSummary {
  readonly versionCopies: number;
  readonly copies: number;
  readonly uploads: number;
  readonly uploadBytes: number;
  readonly metaOnly: number;
  readonly unchanged: number;
  readonly deletes: number;
}

/** What a rollback did (or, with dryRun, would do). */
export interface RollbackResult {
  /** The generation that now holds the old content (the head's when nothing was published). */
  readonly generation: number;
  /** The generation the head was at before. */
  readonly previous: number;
  readonly to: number;
  readonly published: boolean;
  readonly summary: RollbackSummary;
}

/** The hint for a rollback that meets a live write lease. */
export const STOP_UPLOADER_HINT = "stop the uploader (systemctl stop fansync-watch, or the running fansync push/watch) first, then run the rollback again";

/** Roll `o.loc` back to the content of generation `o.to`. */
export async function rollback(o: RollbackOptions, d: RollbackDeps): Promise<RollbackResult> {
  const { store, log, signal } = d;
  const url = formatLocation(o.loc);
  if (o.fromDir !== undefined) await checkFromDir(o.fromDir);
  const hs = await readHead(store, o.loc, signal);
  if (!hs) throw new UsageError(`nothing is published at ${url} (no head.json): there is nothing to roll back`);
  const cur = hs.head.generation;
  const logHint = `fansync log ${url} lists the retained generations`;
  if (o.to === cur) throw new UsageError(`generation ${o.to} is the current generation of ${url}: nothing to roll back to`, { hint: logHint });
  if (o.to > cur) throw new UsageError(`generation ${o.to} does not exist at ${url} (the current generation is ${cur})`, { hint: logHint });
  const retained = await readGenerationManifest(store, o.loc, o.to, signal);
  if (!retained) {
    const kept = [...(await listRetained(store, o.loc, hs.head, signal)).manifests.keys()];
    throw new UsageError(`generation ${o.to} is not retained at ${url} (its manifest was pruned); retained: ${kept.length ? `${kept[0]}..${kept[kept.length - 1]}` : "none"}`, { hint: logHint });
  }
  const target = retained.files;
  // Nothing is signed that was not verified first (issue 22): the retained manifest against the
  // signature it was published with, before anything is planned from it.
  if (o.trust) verifyRetained(retained, o.to, o.trust, url);
  const { files: current } = await readManifest(store, hs.head, signal);

  const candidates = restoreCandidates(target, current);
  const versions = await checkVersions(store, o, candidates, d);
  let plan = planRollback(target, current, { versions, local: [] });
  // --from is read only for what the bucket cannot give back, and only files of a size some
  // missing path has are hashed: a whole backup is never read to restore three files.
  if (plan.missing.length > 0 && o.fromDir !== undefined) {
    const local = await hashLocal(o.fromDir, new Set(plan.missing.map((e) => e.size)), o, log);
    plan = planRollback(target, current, { versions, local });
  }
  if (plan.missing.length > 0) throw missingError(plan.missing, o, url);
  checkDeleteGuard({ deletes: plan.deletes.length, held: current.size, remaining: target.size, limit: o.maxDelete, force: o.force, what: `bucket ${url}` });
  // And every object a server-side copy would duplicate holds the bytes the manifest says: a
  // version id (or ETag) is not signed, so an edited one could name other bytes under a signed sha256.
  await verifyCopySources(plan, o, d);
  const summary = summarize(plan);
  if (isNoopRollback(plan)) {
    log.info({ generation: cur, to: o.to }, "the current generation already has that content: nothing to publish");
    return { generation: cur, previous: cur, to: o.to, published: false, summary };
  }
  if (o.dryRun) {
    logPlan(log, plan);
    log.info({ ...summary, generation: cur + 1, to: o.to, bytes: plan.uploadBytes }, "dry run: nothing changed");
    return { generation: cur + 1, previous: cur, to: o.to, published: false, summary };
  }
  return execute(o, d, hs, current, plan, summary);
}

async function execute(o: RollbackOptions, d: RollbackDeps, hs: HeadState, current: FileMap, plan: RollbackPlan, summary: RollbackSummary): Promise<RollbackResult> {
  const { store, log, signal } = d;
  const url = formatLocation(o.loc);
  // The same write lease the uploader holds: a running uploader (or a second rollback) keeps this
  // one out, and this one keeps an uploader out until the new head is published.
  const writer = new GenerationWriter({ loc: o.loc, store, state: o.state, shared: o.shared, retain: o.retain, label: ROLLBACK_WRITER, kind: "rollback", signer: o.signer, leaseTtlMs: o.leaseTtlMs }, d);
  try {
    await writer.hold();
  } catch (err) {
    if (err instanceof RaceError) throw new RaceError(`cannot roll back ${url}: ${err.message}`, { cause: err, hint: STOP_UPLOADER_HINT });
    throw err;
  }
  try {
    const again = await readHead(store, o.loc, signal);
    if (again?.etag !== hs.etag) {
      throw new RaceError(`the head of ${url} moved to generation ${again?.head.generation ?? "?"} while the rollback was planned; nothing was changed`, { hint: `${STOP_UPLOADER_HINT}; the new plan is made from the new head` });
    }
    const key = (p: string) => o.loc.prefix + p;
    const written = [...plan.copyVersions, ...plan.copies.map((c) => c.entry), ...plan.uploads.map((u) => u.entry)];
    // The uploader's rule for a server that refuses dir/file prefix clashes (versitygw): deletions
    // that clash with the restores (d for d/x.html, d/x.html for d) go first, as their own
    // generation, so the restores can be written; a crash between leaves that generation valid and
    // the same rollback, run again, finishes. Not for an unversioned copy source (its bytes would go
    // with it), nor over a head this rollback cannot vouch for (it would sign the head's entries).
    let base = hs;
    let files = current;
    let deletes = plan.deletes;
    const sources = new Set(plan.copies.filter((c) => !c.from.versionId).map((c) => c.from.path));
    const clashing = prefixClashes(plan.deletes, written.map((e) => e.path)).filter((p) => !sources.has(p));
    if (clashing.length > 0 && vouchesFor(hs, current, o.trust, url)) {
      const first = await (await writer.begin(hs, { files: current, writes: [], deletes: clashing, keep: written.map((e) => e.path) })).finish([], []);
      if (first.published && first.head) {
        base = first.head;
        files = first.files;
        const gone = new Set(clashing);
        deletes = deletes.filter((p) => !gone.has(p));
        log.info({ generation: first.head.head.generation, deletes: clashing.length }, "deleted the paths that clash with the restores first, as their own generation");
      }
    }
    // Over the current generation (its journal is the small delta pullers apply); the objects the
    // restores overwrite are marked in the head first, so a later push verifies them.
    const commit = await writer.begin(base, { files, writes: written.map((e) => e.path), deletes, exact: true });

    const puts: Entry[] = [];
    const failed: FailedTransfer[] = [];
    const attempt = async (e: Entry, op: string, from: Record<string, unknown>, fn: () => Promise<PutResult>): Promise<void> => {
      try {
        const r = await withRetry(fn, { signal });
        puts.push({ path: e.path, size: e.size, mtimeMs: e.mtimeMs, mode: e.mode, sha256: e.sha256, etag: r.etag, versionId: r.versionId });
        log.info({ op, path: e.path, ...from, bytes: e.size }, "restored");
      } catch (err) {
        failed.push({ path: e.path, error: errorMessage(err), retryable: isRetryable(err) });
        log.error({ op, path: e.path, ...errorFields(err) }, "restore failed");
      }
    };
    type Job = { kind: "version"; e: Entry } | { kind: "copy"; e: Entry; from: Entry } | { kind: "upload"; e: Entry; local: string | undefined };
    const jobs: Job[] = [
      ...plan.copyVersions.map((e) => ({ kind: "version" as const, e })),
      ...plan.copies.map((c) => ({ kind: "copy" as const, e: c.entry, from: c.from })),
      ...plan.uploads.map((u) => ({ kind: "upload" as const, e: u.entry, local: u.local })),
    ];
    const buffers = transferBuffers();
    await pMap(jobs, (j) => {
      const k = key(j.e.path);
      if (j.kind === "version") {
        // The version's own stored headers are kept (MetadataDirective COPY): they are the ones the
        // uploader wrote for those bytes. Guarded by the ETag the old manifest recorded.
        return attempt(j.e, "copy-version", { versionId: j.e.versionId }, () => store.copy(k, { bucket: store.bucket, key: k, versionId: j.e.versionId, etag: j.e.etag }, undefined, signal));
      }
      if (j.kind === "copy") {
        const { from } = j;
        return attempt(j.e, "copy", { from: from.path }, () => store.copy(k, { bucket: store.bucket, key: key(from.path), versionId: from.versionId, etag: from.etag }, attrsFor(j.e, o), signal));
      }
      return attempt(j.e, j.local === undefined ? "put-empty" : "upload", j.local === undefined ? {} : { from: j.local }, () => upload(j.e, j.local, o, d, buffers));
    }, { concurrency: o.concurrency });
    signal.throwIfAborted();

    if (failed.length > 0) {
      // In a bucket without versioning some paths the head names may already hold the old bytes:
      // pullers refuse those (If-Match on the manifest's ETag) and skip the run until a head names
      // them. The head marks them dirty (begin did): a push verifies and repairs them, and the same
      // rollback run again rewrites them.
      const stale = puts.filter((e) => commit.overwrites.has(e.path)).length;
      if (stale > 0) log.warn({ objects: stale, generation: hs.head.generation }, "objects already hold the old bytes while the head still names the current ones: pullers skip those files until this rollback is run again and completes");
    }
    for (const { entry, from } of plan.metaOnly) puts.push({ ...from, mtimeMs: entry.mtimeMs, mode: entry.mode });
    const c = await commit.finish(puts, failed);
    const gen = c.head?.head.generation ?? hs.head.generation;
    log.info({ ...summary, generation: gen, to: o.to, previous: hs.head.generation }, "rolled back");
    return { generation: gen, previous: hs.head.generation, to: o.to, published: true, summary };
  } finally {
    await writer.release();
  }
}

/** Whether a rollback may publish the current head's entries again: it checks nothing, or the head verifies. */
function vouchesFor(hs: HeadState, current: FileMap, trust: TrustPolicy | undefined, url: string): boolean {
  if (!trust) return true;
  try {
    verifyGeneration(hs.head, current.values(), trust, url);
    return true;
  } catch (err) {
    if (err instanceof UntrustedHead) return false;
    throw err;
  }
}

/**
 * A retained generation restores only when it verifies: its manifest carries a signature (written
 * there when it was published) by a trusted key, for this generation, over these very files.
 */
function verifyRetained(m: ParsedManifest, generation: number, trust: TrustPolicy, url: string): void {
  if (!m.signature) {
    throw new UntrustedHead(m.signatureProblem
      ? `the manifest of retained generation ${generation} at ${url} has a malformed signature (${m.signatureProblem}): it cannot be verified, so it is not restored`
      : `the manifest of retained generation ${generation} at ${url} carries no signature (published unsigned, or by a fansync that kept signatures only in the head): it cannot be verified, so it is not restored`);
  }
  const what = `the manifest of retained generation ${generation} at ${url}`;
  verifyGeneration({ generation, files: m.files.size, signature: m.signature }, m.files.values(), trust, url, what, what);
}

/** Check the bytes of every copy source against the entry it restores; refuse, naming each that differs. */
async function verifyCopySources(plan: RollbackPlan, o: RollbackOptions, d: RollbackDeps): Promise<void> {
  const { store, signal } = d;
  const checks = [
    ...plan.copyVersions.map((e) => ({ e, key: o.loc.prefix + e.path, ref: objectRef(e), what: `its old version ${e.versionId}` })),
    ...plan.copies.map((c) => ({ e: c.entry, key: o.loc.prefix + c.from.path, ref: objectRef(c.from), what: `the current object ${c.from.path}` })),
  ];
  const differ: string[] = [];
  await pMap(checks, async (c) => {
    try {
      await withRetry(() => verifyObject(store, c.key, c.ref, c.e, signal), { signal, unless: (err) => err instanceof TransferCorrupt });
    } catch (err) {
      if (!(err instanceof TransferCorrupt)) throw err;
      differ.push(`${c.what} (${errorMessage(err)})`);
    }
  }, { concurrency: o.concurrency });
  if (differ.length > 0) {
    throw new IntegrityError(`cannot roll ${formatLocation(o.loc)} back to generation ${o.to}: ${differ.length} source object(s) hold other bytes than the retained manifest's sha256 says: ${differ.slice(0, 5).join("; ")}${differ.length > 5 ? ` and ${differ.length - 5} more` : ""}; nothing was changed`, {
      hint: "someone other than fansync wrote those objects or the retained manifest; restore them from a backup with --from, or roll back to another retained generation (fansync log lists them)",
    });
  }
}

/** Which old VersionIds still exist (and, where the metadata says, hold the old sha256). */
async function checkVersions(store: ObjectStore, o: RollbackOptions, candidates: readonly Entry[], d: RollbackDeps): Promise<Set<string>> {
  const found = new Set<string>();
  await pMap(candidates.filter((e) => e.versionId), async (e) => {
    const attrs = await store.headAttrs(o.loc.prefix + e.path, { versionId: e.versionId, signal: d.signal });
    if (!attrs) return;
    // A version's bytes never change; the uploader's sha256 metadata is a second check on the entry.
    const meta = attrs.metadata?.sha256;
    if (meta !== undefined && meta !== e.sha256) {
      d.log.warn({ path: e.path, versionId: e.versionId }, "the old version's sha256 metadata does not match the old manifest: not used");
      return;
    }
    found.add(e.path);
  }, { concurrency: o.concurrency });
  return found;
}

async function checkFromDir(dir: string): Promise<void> {
  const st = await stat(dir).catch(() => undefined);
  if (!st?.isDirectory()) throw new UsageError(`--from ${dir} is not a directory`, { hint: "give a directory holding the old files (a backup, or the master's docroot)" });
}

/** Hash the files under --from whose size some missing path has. */
async function hashLocal(dir: string, sizes: ReadonlySet<number>, o: RollbackOptions, log: Logger): Promise<LocalSource[]> {
  const scan = await scanTree(dir, { filter: compileFilter({ exclude: [], include: [] }), excludeAbs: [o.state.dir] });
  const out: LocalSource[] = [];
  const worth = scan.files.filter((f) => sizes.has(f.size));
  await pMap(worth, async (f) => {
    try {
      out.push({ path: f.path, size: f.size, sha256: await hashFile(path.join(dir, f.path), f.size) });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    }
  }, { concurrency: 4 });
  log.debug({ scanned: scan.files.length, hashed: worth.length }, "hashed candidate files under --from");
  return out;
}

/** Upload an old file's bytes, sent only when they are still the old entry's. */
async function upload(e: Entry, local: string | undefined, o: RollbackOptions, d: RollbackDeps, buffers: SizedPools): Promise<PutResult> {
  const key = o.loc.prefix + e.path;
  if (local === undefined) return d.store.put(key, Buffer.alloc(0), attrsFor(e, o), {}, d.signal);
  const up = await uploadFile(d.store, key, path.join(o.fromDir as string, local), {
    multipartThreshold: o.multipartThreshold,
    partSize: o.partSize,
    expect: { size: e.size, sha256: e.sha256 },
    facts: { mtimeMs: e.mtimeMs, mode: e.mode },
    attrs: () => attrsFor(e, o),
    buffers,
    signal: d.signal,
  });
  if (!up) throw new FileChanging(`${local} under --from vanished since it was hashed`);
  return up;
}

/** Headers of a restored object, as the uploader writes them. */
function attrsFor(e: Entry, o: RollbackOptions): ObjectAttrs {
  return contentAttrs(e, o.cacheControl);
}

function missingError(missing: readonly Entry[], o: RollbackOptions, url: string): UsageError {
  const shown = missing.slice(0, 5).map((e) => e.path).join(", ");
  const more = missing.length > 5 ? ` and ${missing.length - 5} more` : "";
  const where = o.fromDir === undefined ? "no old version in the bucket and no current object with the same content" : `neither in the bucket nor under --from ${o.fromDir}`;
  return new UsageError(
    `cannot roll ${url} back to generation ${o.to}: ${missing.length} file(s) have no source for their old bytes (${where}): ${shown}${more}; nothing was changed`,
    {
      hint: o.fromDir === undefined
        ? "pass --from <dir> holding those files (a backup, or the master's docroot if it still has them); enable versioning on the bucket so that later rollbacks need no backup"
        : "point --from at a directory (a backup) that holds those files with the old content; enable versioning on the bucket so that later rollbacks need no backup",
    },
  );
}

function summarize(p: RollbackPlan): RollbackSummary {
  return {
    versionCopies: p.copyVersions.length,
    copies: p.copies.length,
    uploads: p.uploads.length,
    uploadBytes: p.uploadBytes,
    metaOnly: p.metaOnly.length,
    unchanged: p.unchanged,
    deletes: p.deletes.length,
  };
}

function logPlan(log: Logger, p: RollbackPlan): void {
  for (const e of p.copyVersions) log.info({ op: "copy-version", path: e.path, versionId: e.versionId }, "would copy the old version server-side");
  for (const c of p.copies) log.info({ op: "copy", path: c.entry.path, from: c.from.path }, "would copy server-side");
  for (const u of p.uploads) log.info({ op: u.local === undefined ? "put-empty" : "upload", path: u.entry.path, ...(u.local === undefined ? {} : { from: u.local }), bytes: u.entry.size }, "would upload");
  for (const m of p.metaOnly) log.info({ op: "meta", path: m.entry.path }, "would update mtime/mode");
  for (const x of p.deletes) log.info({ op: "delete", path: x }, "would delete");
}
