/**
 * The uploader engine shared by `push` and `watch`: scan (all or some paths), hash what changed,
 * plan against the bucket's current manifest, upload, publish the next generation, delete.
 */
import { randomBytes } from "node:crypto";
import { open, readFile, stat } from "node:fs/promises";
import os from "node:os";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import path from "node:path";
import pMap from "p-map";
import type { TransferEvents } from "./transfer-events.ts";
import { contentAttrs } from "./object-attrs.ts";
import pRetry, { AbortError } from "p-retry";
import { errorMessage, GuardError, LocalIoError, PartialFailureError } from "../core/errors.ts";
import type { WriterTuning } from "../core/config.ts";
import type { PathFilter } from "../core/filters.ts";
import { checkDeleteGuard } from "../core/guard.ts";
import type { Location } from "../core/location.ts";
import { type Entry, type FileMap, parseManifest, sha256Hex } from "../core/manifest.ts";
import { isEmptyPlan, type LocalFile, planPush, type PushPlan } from "../core/plan.ts";
import { formatBytes } from "../core/units.ts";
import { hashFile, scanTree, type ScannedFile } from "../adapters/local-tree.ts";
import type { Logger } from "../adapters/logger.ts";
import { isRetryable } from "../adapters/s3-errors.ts";
import { OrphanLedger } from "../adapters/orphan-ledger.ts";
import type { ObjectAttrs, S3Store } from "../adapters/s3-store.ts";
import { readJson, readNdjsonMap, writeFileAtomic, writeJson, writeNdjsonMap } from "../adapters/state-files.ts";
import type { JobDeps } from "./job-deps.ts";
import {
  checkLease, type HeadState, LEASE_TTL_MS, newWriterId, probeConditionalWrites, publishGeneration, readHead, readManifest, releaseLease, takeLease,
} from "./head-store.ts";

/** Everything the uploader needs to know, resolved (the tuning knobs exactly as the config has them). */
export interface UploaderOptions extends WriterTuning {
  readonly docroot: string;
  readonly loc: Location;
  /** This docroot+location's own state directory. */
  readonly stateDir: string;
  readonly filter: PathFilter;
  readonly cacheControl: (p: string) => string | undefined;
}

/** Injected collaborators. */
export interface UploaderDeps extends JobDeps {
  readonly store: S3Store;
  /** Observer of transfers (progress bar, metrics). */
  readonly events?: TransferEvents | undefined;
}

/** What one reconcile did. */
export interface ReconcileResult {
  readonly generation: number;
  readonly published: boolean;
  readonly uploads: number;
  readonly copies: number;
  readonly metaOnly: number;
  readonly deletes: number;
  readonly uploadBytes: number;
  readonly unchanged: number;
  readonly skipped: number;
  /** Paths that were still being written and were left for a later batch (watch). */
  readonly deferred: readonly string[];
}

/** Index entry: what a file looked like when it was last hashed. */
type IndexEntry = [size: number, mtimeMs: number, ino: number, sha256: string];

/** Thrown when a file changes while it is read: retried, then deferred. */
class FileChanging extends Error {
  override name = "FileChanging";
}

interface Remote {
  state: HeadState | undefined;
  files: FileMap;
}

/** The uploader: one instance per docroot → location, reused across watch batches. */
export class Uploader {
  private readonly o: UploaderOptions;
  private readonly d: UploaderDeps;
  private readonly writer = newWriterId();
  private remote: Remote | undefined;
  private index: Map<string, IndexEntry> | undefined;
  /** Whether the index changed since it was last written: a no-op push rewrites nothing. */
  private indexDirty = false;
  private conditional: boolean | undefined;
  private leaseId: string | undefined;
  private leaseHeld = false;
  private leaseTimer: NodeJS.Timeout | undefined;

  constructor(opts: UploaderOptions, deps: UploaderDeps) {
    this.o = opts;
    this.d = deps;
  }

  /** This uploader's state directory (its commands take their lock there). */
  get stateDir(): string {
    return this.o.stateDir;
  }

  /**
   * Take or renew the write lease: one uploader at a time prepares a generation, so a second one
   * never overwrites the objects, manifest or journal the first is about to publish (the head's
   * conditional write only detects that afterwards, and not at all where the server ignores
   * If-Match). Held until {@link releaseLease}, renewed meanwhile.
   */
  async holdLease(): Promise<void> {
    this.conditional ??= await this.loadConditional();
    // The lease id is stable per state directory, so a restarted uploader (after a crash) takes
    // its own lease back at once instead of waiting for it to expire.
    this.leaseId ??= await this.loadLeaseId();
    await takeLease(this.d.store, this.o.loc, this.leaseId, this.d.now, this.leaseHeld, this.conditional);
    this.leaseHeld = true;
    this.leaseTimer ??= setInterval(() => {
      takeLease(this.d.store, this.o.loc, this.leaseId as string, this.d.now, true, this.conditional ?? false).catch((err: unknown) => {
        // The check before the next head write refuses to publish if the lease is really gone.
        this.d.log.warn({ err: { message: errorMessage(err) } }, "could not renew the write lease");
      });
    }, LEASE_TTL_MS / 3).unref();
  }

  /** Give the write lease up, if held. */
  async releaseLease(): Promise<void> {
    if (this.leaseTimer) clearInterval(this.leaseTimer);
    this.leaseTimer = undefined;
    if (!this.leaseHeld || !this.leaseId) return;
    this.leaseHeld = false;
    await releaseLease(this.d.store, this.o.loc, this.leaseId).catch((err: unknown) => {
      this.d.log.warn({ err: { message: errorMessage(err) } }, "could not release the write lease (it expires by itself)");
    });
  }

  /**
   * Make the bucket equal the docroot. `scope` limits the scan to some relative paths (files or
   * directories, from watcher events); without it the whole docroot is reconciled.
   */
  async reconcile(scope?: readonly string[]): Promise<ReconcileResult> {
    const { log } = this.d;
    await this.checkDocroot();
    const remote = await this.loadRemote();
    const index = await this.loadIndex();
    const under = scope ? minimalScope(scope) : undefined;
    const scan = await scanTree(this.o.docroot, { filter: this.o.filter, ...(under ? { under } : {}), excludeAbs: [this.o.stateDir] });
    for (const s of scan.skipped) log.warn({ path: s.path, reason: s.reason }, "skipped");
    if (!scope && scan.files.length === 0 && !this.o.force) {
      throw new GuardError(`refusing to publish an empty docroot ${this.o.docroot} (a wrong path must never wipe a site)`, "check the docroot path; use --force to publish an empty site");
    }
    const local = await this.hashAll(scan.files, index);
    if (!scope && pruneIndex(index, local)) this.indexDirty = true;
    // Objects a crashed run wrote or meant to delete, outside the head's manifest: removed first.
    if (!this.o.dryRun) await this.cleanOrphans(remote.files, new Set());
    const scoped = under ? filterScope(remote.files, under) : remote.files;
    const plan = planPush(local, scoped);
    const added = [...plan.uploads, ...plan.copies.map((c) => c.file)].filter((f) => !remote.files.has(f.path)).length;
    const remaining = remote.files.size - plan.deletes.length + added;
    // The guard applies to watch batches too: an `rm -rf` on the master must not wipe every node.
    checkDeleteGuard({ deletes: plan.deletes.length, held: remote.files.size, remaining, limit: this.o.maxDelete, force: this.o.force, what: `bucket s3://${this.o.loc.bucket}/${this.o.loc.prefix}` });
    const gen = remote.state?.head.generation ?? 0;
    const summary = { uploads: plan.uploads.length, copies: plan.copies.length, metaOnly: plan.metaOnly.length, deletes: plan.deletes.length, uploadBytes: plan.uploadBytes, unchanged: plan.unchanged, skipped: scan.skipped.length };
    if (this.o.dryRun) {
      logPlan(log, plan);
      log.info({ ...summary, generation: gen, bytes: formatBytes(plan.uploadBytes) }, "dry run: nothing changed");
      await this.saveIndex(index);
      return { ...summary, generation: gen, published: false, deferred: [] };
    }
    if (isEmptyPlan(plan)) {
      await this.saveIndex(index);
      log.info({ generation: gen, files: remote.files.size }, "nothing changed: no new generation");
      return { ...summary, generation: gen, published: false, deferred: [] };
    }
    return this.execute(remote, plan, summary, index);
  }

  private async execute(remote: Remote, plan: PushPlan, summary: Omit<ReconcileResult, "generation" | "published" | "deferred">, index: Map<string, IndexEntry>): Promise<ReconcileResult> {
    const { log, store, signal } = this.d;
    const puts: Entry[] = [];
    const failed: { path: string; error: string }[] = [];
    const deferred: string[] = [];
    const vanished: string[] = [];
    await this.holdLease();
    // Before any object is written: the keys that may exist outside a manifest if this run dies
    // (new paths before their head, removed paths between the head and their deletion).
    const newKeys = [...plan.uploads, ...plan.copies.map((c) => c.file)].filter((f) => !remote.files.has(f.path)).map((f) => this.key(f.path));
    await this.recordOrphans([...newKeys, ...plan.deletes.map((p) => this.key(p))]);
    const ev = this.d.events;
    const run = async (p: string, op: "upload" | "copy", size: number, fn: () => Promise<Entry | undefined>): Promise<void> => {
      try {
        const e = await pRetry(fn, {
          retries: 3,
          minTimeout: 200,
          signal,
          shouldRetry: ({ error }) => error instanceof FileChanging || isRetryable(error),
        });
        if (e) puts.push(e);
        else vanished.push(p);
        ev?.file?.({ role: "push", op, bytes: op === "upload" ? size : 0 });
      } catch (err) {
        if (err instanceof FileChanging) deferred.push(p);
        else {
          failed.push({ path: p, error: errorMessage(err) });
          ev?.failed?.({ role: "push", errorClass: (err as Error).name ?? "Error" });
          log.error({ path: p, err }, "upload failed");
        }
      }
    };
    // p-map starts each transfer only when a slot frees: no 100k pending promises at once.
    const jobs: ({ kind: "upload"; file: LocalFile } | { kind: "copy"; file: LocalFile; from: Entry })[] = [
      ...plan.uploads.map((file) => ({ kind: "upload" as const, file })),
      ...plan.copies.map(({ file, from }) => ({ kind: "copy" as const, file, from })),
    ];
    ev?.start?.({ role: "push", files: jobs.length, bytes: plan.uploadBytes });
    await pMap(jobs, (job) => {
      if (job.kind === "upload") return run(job.file.path, "upload", job.file.size, () => this.uploadFile(job.file));
      const { file, from } = job;
      return run(file.path, "copy", 0, async () => {
        try {
          const r = await store.copy(this.key(file.path), { bucket: store.bucket, key: this.key(from.path), versionId: from.versionId, etag: from.etag }, this.attrs(file), signal);
          return { ...fileEntry(file), etag: r.etag, versionId: r.versionId };
        } catch (err) {
          // The copy source changed under us: fall back to uploading the bytes.
          if ((err as Error).name === "ConditionFailed") return this.uploadFile(file);
          throw err;
        }
      });
    }, { concurrency: this.o.concurrency });
    ev?.end?.({ role: "push", ok: failed.length === 0 && !signal.aborted });
    signal.throwIfAborted();
    for (const { file, from } of plan.metaOnly) puts.push({ ...from, mtimeMs: file.mtimeMs, mode: file.mode });
    // A run with a failed transfer deletes nothing (rclone's rule): removals wait for a clean run.
    const deletes = failed.length === 0 ? [...plan.deletes, ...vanished.filter((p) => remote.files.has(p))] : [];
    const next: FileMap = new Map(remote.files);
    for (const p of deletes) next.delete(p);
    for (const e of puts) next.set(e.path, e);
    for (const e of puts) {
      const st = index.get(e.path);
      if (st && st[3] !== e.sha256) {
        index.set(e.path, [e.size, e.mtimeMs, st[2], e.sha256]);
        this.indexDirty = true;
      }
    }
    let result: ReconcileResult = { ...summary, generation: remote.state?.head.generation ?? 0, published: false, deferred };
    const deleted = new Set<string>();
    if (puts.length > 0 || deletes.length > 0) {
      this.conditional ??= await this.loadConditional();
      await this.recordOrphans(deletes.map((p) => this.key(p)));
      await checkLease(store, this.o.loc, this.leaseId as string);
      const pub = await publishGeneration(store, this.o.loc, { previous: remote.state, files: next, puts, deletes, writer: this.writer, retain: this.o.retain, now: this.d.now, conditional: this.conditional }, log);
      this.remote = { state: { head: pub.head, etag: pub.etag }, files: next };
      await this.saveRemoteCache(pub.head, pub.etag, pub.manifestBytes);
      result = { ...result, generation: pub.head.generation, published: true };
      if (deletes.length > 0) {
        // Objects go only after the head stopped naming them: readers of the old generation may
        // still fetch them a moment longer, and fail over to the next run if not.
        const notDeleted = await store.deleteMany(deletes.map((p) => this.key(p)), signal);
        for (const f of notDeleted) log.warn({ key: f.key, error: f.error }, "delete failed (object left behind, not in any manifest)");
        for (const p of deletes) deleted.add(this.key(p));
      }
    }
    await this.cleanOrphans(this.remote?.files ?? remote.files, deleted);
    await this.saveIndex(index);
    if (failed.length > 0) {
      throw new PartialFailureError(`${failed.length} of ${plan.uploads.length + plan.copies.length} transfers failed; nothing was deleted (first: ${failed[0]?.path}: ${failed[0]?.error})`, failed);
    }
    return result;
  }

  /** Upload one file; returns its new entry, or undefined when it vanished. */
  private async uploadFile(f: LocalFile): Promise<Entry | undefined> {
    const abs = path.join(this.o.docroot, f.path);
    let fh;
    try {
      fh = await open(abs, "r");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw new AbortError(err as Error);
    }
    try {
      const st1 = await fh.stat();
      const mtimeMs = Math.floor(st1.mtimeMs);
      const mode = st1.mode & 0o7777;
      if (st1.size < this.o.multipartThreshold) {
        // Small files: one read into memory, hash those exact bytes, upload them. The published
        // sha256 always describes the bytes sent, even if the file changes meanwhile.
        const buf = await readExactly(fh, st1.size);
        const st2 = await fh.stat();
        if (!buf || st2.mtimeMs !== st1.mtimeMs || st2.size !== buf.length) throw new FileChanging(`${f.path} changed while being read`);
        const entry = { path: f.path, size: buf.length, mtimeMs, mode, sha256: sha256Hex(buf) };
        const r = await this.d.store.put(this.key(f.path), buf, this.attrs(entry), {}, this.d.signal);
        return { ...entry, etag: r.etag, versionId: r.versionId };
      }
      // Large files: multipart, streaming, hashing as we go; the metadata carries the scanned
      // sha256, so a file that changed mid-upload is detected and uploaded again.
      const { createHash } = await import("node:crypto");
      const h = createHash("sha256");
      // Exactly st1.size bytes or an error: the upload declares that Content-Length, and a file
      // truncated mid-read (rewritten in place) otherwise sent a short body the server waited on
      // until the request timed out, attempt after attempt (a push hung for minutes).
      const stream = fh.createReadStream({ autoClose: false, start: 0, end: Math.max(0, st1.size - 1), highWaterMark: 1024 * 1024 });
      let size = 0;
      let short = false;
      const body = new Transform({
        transform(c: Buffer, _enc, cb) {
          h.update(c);
          size += c.length;
          cb(null, c);
        },
        flush(cb) {
          short = size !== st1.size;
          cb(short ? new FileChanging(`${f.path} shrank while being uploaded`) : null);
        },
      });
      pipeline(stream, body).catch(() => undefined);
      const entry = { path: f.path, size: st1.size, mtimeMs, mode, sha256: f.sha256 };
      let r;
      try {
        r = await this.d.store.upload(this.key(f.path), body, this.attrs(entry), { size: st1.size, partSize: this.o.partSize, queueSize: 4, signal: this.d.signal });
      } catch (err) {
        if (short) throw new FileChanging(`${f.path} shrank while being uploaded`);
        throw err;
      }
      const st2 = await fh.stat();
      const sha = h.digest("hex");
      if (sha !== f.sha256 || size !== st1.size || st2.mtimeMs !== st1.mtimeMs) throw new FileChanging(`${f.path} changed while being uploaded`);
      return { ...entry, etag: r.etag, versionId: r.versionId };
    } finally {
      await fh.close();
    }
  }

  private key(p: string): string {
    return this.o.loc.prefix + p;
  }

  private attrs(f: { path: string; mtimeMs: number; mode: number; sha256: string }): ObjectAttrs {
    return contentAttrs(f, this.o.cacheControl);
  }

  private async checkDocroot(): Promise<void> {
    let st;
    try {
      st = await stat(this.o.docroot);
    } catch (err) {
      throw new LocalIoError(`docroot ${this.o.docroot} does not exist or cannot be read (${(err as NodeJS.ErrnoException).code})`, { cause: err, hint: "check the path" });
    }
    if (!st.isDirectory()) throw new LocalIoError(`docroot ${this.o.docroot} is not a directory`);
  }

  private async loadRemote(): Promise<Remote> {
    const hs = await readHead(this.d.store, this.o.loc, this.d.signal);
    if (!hs) return (this.remote = { state: undefined, files: new Map() });
    if (this.remote?.state?.etag === hs.etag && this.remote.state.head.generation === hs.head.generation) return this.remote;
    const cached = await readJson<{ generation: number; manifestSha256: string }>(path.join(this.o.stateDir, "remote-head.json"));
    if (cached && cached.generation === hs.head.generation && cached.manifestSha256 === hs.head.manifestSha256) {
      try {
        const bytes = await readFile(path.join(this.o.stateDir, "remote-manifest.ndjson.gz"));
        return (this.remote = { state: hs, files: parseManifest(bytes, hs.head.manifestSha256, hs.head.generation) });
      } catch {
        // A damaged cache is simply ignored: fetch the manifest instead.
      }
    }
    const { files, bytes } = await readManifest(this.d.store, hs.head, this.d.signal);
    await this.saveRemoteCache(hs.head, hs.etag, bytes);
    return (this.remote = { state: hs, files });
  }

  private async saveRemoteCache(head: { generation: number; manifestSha256: string }, etag: string, bytes: Buffer): Promise<void> {
    await writeFileAtomic(path.join(this.o.stateDir, "remote-manifest.ndjson.gz"), bytes);
    await writeJson(path.join(this.o.stateDir, "remote-head.json"), { generation: head.generation, manifestSha256: head.manifestSha256, etag });
  }

  private async loadIndex(): Promise<Map<string, IndexEntry>> {
    this.index ??= await readNdjsonMap<IndexEntry>(path.join(this.o.stateDir, "index.ndjson"));
    return this.index;
  }

  private async saveIndex(index: Map<string, IndexEntry>): Promise<void> {
    if (!this.indexDirty) return;
    await writeNdjsonMap(path.join(this.o.stateDir, "index.ndjson"), index);
    this.indexDirty = false;
  }

  /** Keys that may exist outside the head's manifest (see {@link OrphanLedger}). */
  private get orphans(): OrphanLedger {
    return new OrphanLedger(path.join(this.o.stateDir, "orphans.json"));
  }

  private async recordOrphans(keys: readonly string[]): Promise<void> {
    await this.orphans.record(keys);
  }

  private async cleanOrphans(current: FileMap, done: ReadonlySet<string>): Promise<void> {
    await this.orphans.clean({ store: this.d.store, prefix: this.o.loc.prefix, current, done, signal: this.d.signal, log: this.d.log, beforeDelete: () => this.holdLease() });
  }

  private async loadLeaseId(): Promise<string> {
    const file = path.join(this.o.stateDir, "writer-id.json");
    const known = await readJson<{ id: string }>(file);
    if (typeof known?.id === "string" && known.id !== "") return known.id;
    const id = `${os.hostname()}:${randomBytes(4).toString("hex")}`;
    await writeJson(file, { id });
    return id;
  }

  private async loadConditional(): Promise<boolean> {
    const file = path.join(this.o.stateDir, "capabilities.json");
    const known = await readJson<{ conditionalWrites: boolean; bucket: string; endpoint: string }>(file);
    if (known && known.bucket === this.d.store.bucket && known.endpoint === this.d.store.endpoint) return known.conditionalWrites;
    const enforced = await probeConditionalWrites(this.d.store, this.o.loc);
    if (!enforced) {
      this.d.log.warn({ endpoint: this.d.store.endpoint, bucket: this.d.store.bucket }, "this S3 server ignores conditional writes: run exactly one uploader per prefix (a read-back check detects, but cannot prevent, a second writer)");
    }
    await writeJson(file, { conditionalWrites: enforced, bucket: this.d.store.bucket, endpoint: this.d.store.endpoint });
    return enforced;
  }

  /** Hash files whose size/mtime/inode changed since the index saw them. */
  private async hashAll(files: readonly ScannedFile[], index: Map<string, IndexEntry>): Promise<LocalFile[]> {
    const out: LocalFile[] = [];
    const dirty: ScannedFile[] = [];
    // Files the index knows unchanged (size, mtime, inode) are not read at all: a no-op push hashes nothing.
    for (const f of files) {
      const known = index.get(f.path);
      if (known && known[0] === f.size && known[1] === f.mtimeMs && known[2] === f.ino) out.push({ path: f.path, size: f.size, mtimeMs: f.mtimeMs, mode: f.mode, sha256: known[3] });
      else dirty.push(f);
    }
    let hashed = 0;
    await pMap(dirty, async (f) => {
      let sha: string;
      try {
        sha = await hashFile(path.join(this.o.docroot, f.path), f.size);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
        throw err;
      }
      hashed++;
      this.indexDirty = true;
      index.set(f.path, [f.size, f.mtimeMs, f.ino, sha]);
      out.push({ path: f.path, size: f.size, mtimeMs: f.mtimeMs, mode: f.mode, sha256: sha });
    }, { concurrency: 4 });
    if (hashed > 0) this.d.log.debug({ hashed, files: files.length }, "hashed changed files");
    return out;
  }
}

/**
 * Read exactly `size` bytes from the start of a file (one read for a small file, no extra fstat as
 * FileHandle.readFile does); undefined when the file is shorter or longer than that now.
 */
async function readExactly(fh: import("node:fs/promises").FileHandle, size: number): Promise<Buffer | undefined> {
  const buf = Buffer.allocUnsafe(size + 1);
  let off = 0;
  for (;;) {
    const { bytesRead } = await fh.read(buf, off, buf.length - off, off);
    if (bytesRead === 0) break;
    off += bytesRead;
    if (off > size) return undefined;
  }
  return off === size ? buf.subarray(0, size) : undefined;
}

/** After a full scan, forget index entries of files that no longer exist; true when any went. */
function pruneIndex(index: Map<string, IndexEntry>, local: readonly LocalFile[]): boolean {
  const keep = new Set(local.map((f) => f.path));
  let pruned = false;
  for (const p of index.keys()) {
    if (!keep.has(p)) {
      index.delete(p);
      pruned = true;
    }
  }
  return pruned;
}

function fileEntry(f: LocalFile): Omit<Entry, "etag"> {
  return { path: f.path, size: f.size, mtimeMs: f.mtimeMs, mode: f.mode, sha256: f.sha256 };
}

function logPlan(log: Logger, plan: PushPlan): void {
  for (const f of plan.uploads) log.info({ op: "put", path: f.path, bytes: f.size }, "would upload");
  for (const c of plan.copies) log.info({ op: "copy", path: c.file.path, from: c.from.path }, "would copy server-side");
  for (const m of plan.metaOnly) log.info({ op: "meta", path: m.file.path }, "would update mtime/mode");
  for (const p of plan.deletes) log.info({ op: "delete", path: p }, "would delete");
}

/** Drop scope entries covered by an ancestor also in scope. */
function minimalScope(scope: readonly string[]): string[] {
  const sorted = [...new Set(scope)].sort();
  const out: string[] = [];
  for (const p of sorted) if (!out.some((a) => p.startsWith(a + "/"))) out.push(p);
  return out;
}

function filterScope(files: FileMap, under: readonly string[]): FileMap {
  const set = new Set(under);
  const out: FileMap = new Map();
  for (const [p, e] of files) {
    if (set.has(p)) {
      out.set(p, e);
      continue;
    }
    let i = p.indexOf("/");
    while (i !== -1) {
      if (set.has(p.slice(0, i))) {
        out.set(p, e);
        break;
      }
      i = p.indexOf("/", i + 1);
    }
  }
  return out;
}
