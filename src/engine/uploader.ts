/**
 * The uploader engine shared by `push` and `watch`: scan (all or some paths), hash what changed,
 * plan against the bucket's current manifest, upload, publish the next generation, delete.
 */
import { readFile, stat } from "node:fs/promises";
import path from "node:path";
import pMap from "p-map";
import type { TransferEvents } from "../core/transfer-events.ts";
import { contentAttrs } from "./object-attrs.ts";
import { ConditionFailed, errorMessage, type FailedTransfer, FileChanging, GuardError, IntegrityError, Interrupted, LocalIoError, UntrustedHead } from "../core/errors.ts";
import type { WriterTuning } from "../core/config.ts";
import type { PathFilter } from "../core/filters.ts";
import { checkDeleteGuard, guardRefuses } from "../core/guard.ts";
import { formatLocation, type Location } from "../core/location.ts";
import { type Entry, type FileMap, type Head, parseManifest } from "../core/manifest.ts";
import { copySources, isEmptyPlan, type LocalFile, planPush, type PushPlan, UNHASHED } from "../core/plan.ts";
import { formatAge } from "../core/units.ts";
import { prefixClashes } from "../core/paths.ts";
import { type SigningKey, trustedKeyOf, type TrustPolicy, verifyGeneration } from "../core/signing.ts";
import { scanTree, type ScannedFile } from "../adapters/local-tree.ts";
import { type Hasher, HashIndex } from "../adapters/hash-index.ts";
import { errorFields, type Logger } from "../adapters/logger.ts";
import { withRetry } from "../adapters/retry.ts";
import { isRetryable } from "../adapters/s3-errors.ts";
import type { ObjectAttrs, PutResult, ObjectStore } from "../adapters/object-store.ts";
import type { StateDir } from "../adapters/state-dir.ts";
import { readJson, readNdjsonMap, writeFileAtomic, writeJson, writeNdjsonMap } from "../adapters/state-files.ts";
import type { JobDeps, PublishDeps } from "./job-deps.ts";
import { type HeadState, readHead, readJournal, readManifest } from "./generation-reader.ts";
import { type Commit, type CommitResult, GenerationWriter } from "./generation-writer.ts";
import type { WrittenObject } from "../adapters/orphan-ledger.ts";
import { TransferThreads } from "./transfer-threads.ts";
import { type FileFacts, findMovedObjects, transferBuffers, unreadableEntries, uploadFile } from "./transfer.ts";

/** Everything the uploader needs to know, resolved (the tuning knobs exactly as the config has them). */
export interface UploaderOptions extends WriterTuning {
  readonly docroot: string;
  readonly loc: Location;
  /** This docroot+location's own state directory. */
  readonly state: StateDir;
  /** The location's state shared by every writer of it (ledger, capabilities). */
  readonly shared: StateDir;
  readonly filter: PathFilter;
  /** Transfer threads for small uploads (transfer-threads.ts); 0 or absent: all on this thread. */
  readonly threads?: number | undefined;
  readonly cacheControl: (p: string) => string | undefined;
  /** Check every object the head names (not only the ones it marks dirty) and upload again those that moved. */
  readonly verify: boolean;
  /**
   * Approve this run's deletions for the whole fleet (recorded in the generation; nodes' guards do
   * not count them). Also implied when --force lets deletions past this uploader's own guard. With
   * nothing to publish, the head's generation gets the approval for its deletions after the fact.
   */
  readonly approveDeletes: boolean;
  /** Sign every generation with this key, for this site (signed generations). */
  readonly signer?: { readonly key: SigningKey; readonly site: string } | undefined;
  /** How long the write lease lives without renewal (default 60 s; the CLI's FANSYNC_LEASE_TTL). */
  readonly leaseTtlMs?: number | undefined;
  /**
   * Which command publishes (recorded in the head). A one-way uploader (`push`, `watch`) refuses to
   * publish over a generation of `sync` writers unless forced (see {@link checkOverSync}).
   */
  readonly writerKind?: "push" | "watch" | "sync" | undefined;
  /** With a signer: publish an unchanged generation when the head was signed longer ago than this. */
  readonly heartbeatMs?: number | undefined;
  /**
   * Build only on a generation these keys signed (`sync`, whose scoped publishes carry every path
   * it does not publish from the head): a head or manifest that does not verify is refused before
   * anything is planned, so it is never signed again under this writer's key (issue 22). Push and
   * watch leave it unset: they converge the whole bucket to their docroot, which they vouch for.
   */
  readonly trust?: TrustPolicy | undefined;
}

/** Injected collaborators. */
export interface UploaderDeps extends JobDeps, PublishDeps {
  readonly store: ObjectStore;
  /** How changed files are hashed (default: read and hash them; tests count the reads). */
  readonly hasher?: Hasher | undefined;
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
  /** Files or directories that could not be read: skipped, their published version kept. */
  readonly unreadable: readonly string[];
  /** Objects the head named that held other bytes, uploaded again. */
  readonly repaired: number;
}

interface Remote {
  state: HeadState | undefined;
  files: FileMap;
  /** The head's manifest could not be used: `files` is empty, and the next generation is the docroot whole. */
  rebuilt?: boolean;
}

/** The uploader: one instance per docroot → location, reused across watch batches. */
export class Uploader {
  private readonly o: UploaderOptions;
  private readonly d: UploaderDeps;
  private readonly writer: GenerationWriter;
  private readonly warnedSkipped = new Set<string>();
  /** Read buffers for small files, this uploader's own. */
  private readonly buffers = transferBuffers();
  private remote: Remote | undefined;
  /** The docroot's hash index (a two-way node's scan shares it: see {@link hashes}). */
  private readonly index: HashIndex;
  /** The manifest (by sha256) of the last generation this signing writer verified or published itself. */
  private vouchedManifest: string | undefined;

  constructor(opts: UploaderOptions, deps: UploaderDeps) {
    this.o = opts;
    this.d = deps;
    this.index = new HashIndex(opts.state.index, deps.hasher);
    this.writer = new GenerationWriter({ loc: opts.loc, store: deps.store, state: opts.state, shared: opts.shared, retain: opts.retain, kind: opts.writerKind, signer: opts.signer, leaseTtlMs: opts.leaseTtlMs }, deps);
  }

  /** This uploader's state directory (its commands take their lock there). */
  get state(): StateDir {
    return this.o.state;
  }

  /** The docroot's hash index: whoever scans the same docroot in this process uses it too (a two-way node). */
  get hashes(): HashIndex {
    return this.index;
  }

  /** Take (or renew) the write lease: watch holds it for as long as it runs. */
  holdLease(): Promise<void> {
    return this.writer.hold();
  }

  /** Give the write lease up, if held. */
  releaseLease(): Promise<void> {
    return this.writer.release();
  }

  /** The generation this uploader last read or published and its files (the pack writer builds from them). */
  get published(): { readonly generation: number; readonly files: FileMap } | undefined {
    return this.remote?.state ? { generation: this.remote.state.head.generation, files: this.remote.files } : undefined;
  }

  /** The head this uploader would publish over (undefined before the first publish). */
  async currentHead(): Promise<HeadState["head"] | undefined> {
    return (await this.loadRemote()).state?.head;
  }

  /**
   * Make the bucket equal the docroot. `scope` limits the scan to some relative paths (files or
   * directories, from watcher events); without it the whole docroot is reconciled. `repair`: paths
   * whose objects hold other bytes than the head names (found by the caller): uploaded again.
   */
  async reconcile(scope?: readonly string[], o: { readonly repair?: readonly string[] } = {}): Promise<ReconcileResult> {
    const { log } = this.d;
    await this.checkDocroot();
    const remote = await this.loadRemote();
    const dirty = remote.state?.head.dirty ?? [];
    // A head with dirty paths is looked at whole: every path it names gets verified this time.
    if (dirty.length > 0) scope = undefined;
    // A scoped batch carries every other path from the head: a signing writer does that only from
    // a head it can vouch for, else it reconciles the whole docroot (issue 22: a generation a bucket
    // writer forged is never signed again with this key).
    if (scope && !this.vouchesFor(remote)) {
      log.warn({ generation: remote.state?.head.generation }, "the head does not verify under this writer's key: reconciling the whole docroot, so that nothing it did not verify is signed");
      scope = undefined;
    }
    const index = await this.index.load();
    // What objects an interrupted run wrote hold (issue 27): those still holding what this plan
    // wants are adopted, not sent again. Their files are hashed now, not by their transfer.
    const written = this.o.dryRun ? new Map<string, WrittenObject>() : await this.writer.interrupted();
    const under = scope ? minimalScope(scope) : undefined;
    const scan = await scanTree(this.o.docroot, { filter: this.o.filter, ...(under ? { under } : {}), excludeAbs: [this.o.state.dir] });
    // Once per name for the life of this uploader (a run of push; a watch or sync daemon would
    // otherwise repeat it at every batch whose scope holds it).
    for (const s of scan.skipped) {
      if (this.warnedSkipped.has(s.path)) continue;
      this.warnedSkipped.add(s.path);
      log.warn({ path: s.path, reason: s.reason }, "skipped");
    }
    if (!scope && scan.files.length === 0 && scan.unreadable.length === 0 && !this.o.force) {
      throw new GuardError(`refusing to publish an empty docroot ${this.o.docroot} (a wrong path must never wipe a site)`, "check the docroot path; use --force to publish an empty site");
    }
    // Small files new to the bucket are hashed by their transfer (one read): not in a dry run, which only plans.
    const { local, unreadable: unhashed, pending } = await this.hashAll(scan.files, index, remote.files, !this.o.dryRun, written);
    // The scan's list is not needed past this point: let it go before planning (1M entries).
    scan.files.length = 0;
    const unreadable = [...scan.unreadable, ...unhashed].sort();
    for (const p of unhashed) log.warn({ path: p, reason: "could not be read" }, "skipped");
    // What cannot be read keeps its published version, which a signing writer signs again: only
    // from a head it can vouch for (issue 22: a forged entry must not be laundered by a permission slip).
    if (unreadable.length > 0 && !this.vouchesFor(remote)) throw this.unvouched(remote, unreadable, "could not be read here");
    if (!scope && unreadable.length === 0) {
      const keep = new Set(local.map((f) => f.path));
      index.prune((p) => keep.has(p));
    }
    // What cannot be read keeps its published version: neither re-planned nor deleted.
    const scoped = withoutUnder(under ? filterScope(remote.files, under) : remote.files, unreadable);
    const moved = await this.findMoved(remote.files, this.o.verify ? ["*"] : dirty);
    // Objects a caller found holding other bytes than the head names (a two-way node's --verify).
    for (const p of o.repair ?? []) if (remote.files.has(p)) moved.add(p);
    const planned = planPush(local, scoped, { moved });
    const added = [...planned.uploads, ...planned.copies.map((c) => c.file)].filter((f) => !remote.files.has(f.path)).length;
    let plan = planned;
    const remaining = remote.files.size - plan.deletes.length + added;
    // The guard applies to watch batches too: an `rm -rf` on the master must not wipe every node.
    const guard = { deletes: plan.deletes.length, held: remote.files.size, remaining, limit: this.o.maxDelete };
    checkDeleteGuard({ ...guard, force: this.o.force || this.o.approveDeletes, what: `bucket s3://${this.o.loc.bucket}/${this.o.loc.prefix}` });
    // The master's decision travels with the generation: nodes accept what it approved.
    const approve = plan.deletes.length > 0 && (this.o.approveDeletes || (this.o.force && guardRefuses(guard)));
    const gen = remote.state?.head.generation ?? 0;
    const summary = { uploads: plan.uploads.length, copies: plan.copies.length, metaOnly: plan.metaOnly.length, deletes: plan.deletes.length, uploadBytes: plan.uploadBytes, unchanged: plan.unchanged, skipped: scan.skipped.length, unreadable, repaired: moved.size };
    if (!isEmptyPlan(plan)) this.checkOverSync(remote.state?.head);
    if (this.o.dryRun) {
      logPlan(log, plan);
      log.info({ ...summary, unreadable: unreadable.length, generation: gen, bytes: plan.uploadBytes }, "dry run: nothing changed");
      await index.save();
      return { ...summary, generation: gen, published: false, deferred: [] };
    }
    const adopted = written.size > 0 ? await this.adopt(plan.uploads, written) : new Map<string, Entry>();
    if (adopted.size > 0) {
      const uploads = plan.uploads.filter((f) => !adopted.has(f.path));
      let bytes = 0;
      for (const e of adopted.values()) bytes += e.size;
      plan = { ...plan, uploads, uploadBytes: plan.uploadBytes - bytes };
      summary.uploads = uploads.length;
      summary.uploadBytes = plan.uploadBytes;
      log.info({ objects: adopted.size, bytes }, "adopted objects an interrupted run had written (they hold the files' bytes): not sent again");
    }
    if (isEmptyPlan(plan) && adopted.size === 0) {
      // Objects a crashed run wrote or meant to delete, outside the head's manifest, go even when
      // there is nothing to publish (a commit sweeps them itself).
      await this.writer.sweep(remote.files);
      await index.save();
      if (this.o.approveDeletes && remote.state) await this.approveAfterTheFact(remote.state);
      else if (dirty.length > 0 && remote.state) {
        // Every object the head marked dirty holds its bytes after all (the interrupted commit
        // never reached it): the mark goes, so readers and the next writer need not look again.
        const hs = await this.writer.setDirty(remote.state, []);
        this.remote = { state: hs, files: remote.files };
        await this.saveRemoteCache(hs.head, hs.etag, undefined);
        log.info({ generation: gen, verified: dirty.length }, "objects an interrupted commit may have touched are intact");
      }
      // Nothing to upload, yet a signing writer may owe the nodes a new signature (see resignReason).
      const current = this.remote ?? remote;
      const why = scope ? undefined : this.resignReason(current);
      if (why) return { ...summary, ...(await this.resign(current, why)), deferred: [] };
      log.info({ generation: gen, files: remote.files.size }, "nothing changed: no new generation");
      return { ...summary, generation: gen, published: false, deferred: [] };
    }
    return this.execute(remote, plan, summary, index, approve, pending, moved, adopted);
  }

  /**
   * Which planned uploads an interrupted run already put in place: its record says the object
   * holds this file's bytes, mtime and mode, and a HEAD shows it is still that write (its version,
   * or its ETag) with this run's Cache-Control. Returns their entries by path.
   */
  private async adopt(uploads: readonly LocalFile[], written: ReadonlyMap<string, WrittenObject>): Promise<Map<string, Entry>> {
    const out = new Map<string, Entry>();
    const candidates = uploads.filter((f) => {
      const w = written.get(f.path);
      return w !== undefined && f.sha256 !== UNHASHED && w.sha256 === f.sha256 && w.size === f.size && w.mtimeMs === f.mtimeMs && w.mode === f.mode && w.etag !== "" && !w.etag.startsWith("W/");
    });
    await pMap(candidates, async (f) => {
      const w = written.get(f.path) as WrittenObject;
      const attrs = await this.d.store.headAttrs(this.key(f.path), { ...(w.versionId ? { versionId: w.versionId } : { ifMatch: w.etag }), signal: this.d.signal });
      if (!attrs || attrs.metadata?.sha256 !== f.sha256 || (attrs.cacheControl ?? "") !== (this.o.cacheControl(f.path) ?? "")) return;
      // A record made just before its PUT knows no version id yet: the HEAD's is that write's.
      out.set(f.path, { path: f.path, size: f.size, mtimeMs: f.mtimeMs, mode: f.mode, sha256: f.sha256, etag: w.etag, versionId: w.versionId ?? attrs.versionId });
    }, { concurrency: this.o.concurrency });
    return out;
  }

  /**
   * Issue 27: a one-way uploader makes the bucket equal its docroot, so publishing over a generation
   * that two-way `sync` nodes wrote deletes (within the delete guard) what they published and this
   * docroot lacks. Refused unless forced (then a warning); a dry run only warns.
   */
  private checkOverSync(head: Head | undefined): void {
    const kind = this.o.writerKind;
    if ((kind !== "push" && kind !== "watch") || head?.writerKind !== "sync") return;
    const what = `generation ${head.generation} of s3://${this.o.loc.bucket}/${this.o.loc.prefix} was published by a two-way \`fansync sync\` node (${head.writer}): ${kind} makes the bucket equal this docroot, and would delete what sync nodes published that this docroot lacks`;
    if (this.o.force || this.o.dryRun) {
      this.d.log.warn({ generation: head.generation, writer: head.writer, writerKind: head.writerKind }, this.o.force ? `${what} (--force: publishing anyway)` : what);
      return;
    }
    throw new GuardError(`refusing to publish: ${what}`, "run `fansync sync` on this docroot to publish alongside the sync nodes, or pass --force if this docroot is to replace the site");
  }

  /**
   * `push --approve-deletes` with nothing to publish: the deletions of the head's generation (its
   * journal says how many) are approved for every node, by rewriting the head with the approval.
   */
  private async approveAfterTheFact(hs: HeadState): Promise<void> {
    const journal = await readJournal(this.d.store, this.o.loc, hs.head.generation, this.d.signal);
    const count = journal?.deletes.length ?? 0;
    if (count === 0 || (hs.head.approvedDeletes ?? 0) >= count) {
      this.d.log.info({ generation: hs.head.generation, deletes: count }, count === 0 ? "nothing to approve: the head's generation deleted nothing (or its journal is gone)" : "the head's deletions are approved already");
      return;
    }
    const next = await this.writer.approveDeletes(hs, count, this.remote?.files ?? new Map());
    this.remote = { state: next, files: this.remote?.files ?? new Map() };
    await this.saveRemoteCache(next.head, next.etag, undefined);
    this.d.log.info({ generation: hs.head.generation, approvedDeletes: count }, "approved the head generation's deletions for every node");
  }

  /** Which objects the head names hold other bytes (`paths`: its dirty paths, or `["*"]`), logged. */
  private async findMoved(files: FileMap, paths: readonly string[]): Promise<Set<string>> {
    const moved = await findMovedObjects(this.d.store, this.o.loc.prefix, files, paths, { concurrency: this.o.concurrency, signal: this.d.signal });
    for (const p of unreadableEntries(files)) moved.add(p);
    if (moved.size > 0) this.d.log.warn({ objects: moved.size, paths: [...moved].slice(0, 10) }, "objects the head names hold other bytes (an interrupted commit): uploading them again");
    return moved;
  }

  /**
   * Why the current head needs a new signed generation although nothing changed: it is unsigned or
   * signed with another key or site (signing was just turned on, or the key rotated: nodes that
   * trust only the new key would refuse it), or older than the heartbeat (nodes with --max-age
   * would call a quiet site frozen). Undefined when it does not, or when this writer does not sign.
   */
  private resignReason(remote: Remote): string | undefined {
    const signs = this.writer.signs;
    const head = remote.state?.head;
    if (!signs || !head) return undefined;
    const sig = head.signature;
    if (!sig) return "the head is not signed";
    if (sig.keyId !== signs.keyId) return `the head is signed with another key (${sig.keyId})`;
    if (sig.site !== signs.site) return `the head is signed for another site (${sig.site})`;
    const age = this.d.now().getTime() - Date.parse(sig.time);
    if (this.o.heartbeatMs !== undefined && age >= this.o.heartbeatMs) return `heartbeat: the head was signed ${formatAge(age / 1000)} ago`;
    return undefined;
  }

  /** Publish the current files again as the next generation, signed with this writer's key. */
  private async resign(remote: Remote, why: string): Promise<{ generation: number; published: boolean }> {
    const base = remote.state as HeadState;
    const commit = await this.writer.begin(base, { files: remote.files, writes: [], deletes: [], generation: base.head.generation + 1 });
    const c = await commit.finish([], []);
    await this.remember(c);
    this.d.log.info({ generation: c.head?.head.generation, reason: why }, "nothing changed: published an unchanged, signed generation");
    return { generation: c.head?.head.generation ?? 0, published: c.published };
  }

  private async execute(remote: Remote, plan: PushPlan, summary: Omit<ReconcileResult, "generation" | "published" | "deferred">, index: HashIndex, approve: boolean, pending: ReadonlyMap<string, number>, moved: ReadonlySet<string>, adopted: ReadonlyMap<string, Entry>): Promise<ReconcileResult> {
    const { log, store, signal } = this.d;
    const unreadable: string[] = [];
    let copiedInstead = 0;
    let bytesNotSent = 0;
    const puts: Entry[] = [];
    const failed: FailedTransfer[] = [];
    const deferred: string[] = [];
    const vanished: string[] = [];
    // The lease spans the run's generations (a clash-first one and the rest); push releases it at its end, watch and sync hold it on.
    await this.writer.hold();
    const writes = [...plan.uploads, ...plan.copies.map((c) => c.file)].map((f) => f.path);
    // A server that keeps objects as files of a POSIX tree (versitygw) refuses a key under an
    // object (d/x.html while d exists) and an object over keys (d while d/… exist). Such deletions
    // go first, as their own generation (the head stops naming them, then they are deleted), so
    // the puts that clash with them can be written; a crash between leaves that generation valid.
    let publishedFirst = false;
    const clashing = prefixClashes(plan.deletes, [...writes, ...adopted.keys()]);
    if (clashing.length > 0 && remote.state && !remote.rebuilt && this.vouchesFor(remote)) {
      const commit = await this.writer.begin(remote.state, { files: remote.files, writes: [], deletes: clashing, keep: [...writes, ...adopted.keys()], approvedDeletes: approve ? clashing.length : undefined });
      const first = await commit.finish([], []);
      const published = await this.remember(first);
      if (published) {
        publishedFirst = true;
        remote = published;
        const gone = new Set(clashing);
        plan = { ...plan, deletes: plan.deletes.filter((p) => !gone.has(p)) };
      }
    }
    const commit = await this.writer.begin(remote.state, {
      files: remote.files,
      writes,
      deletes: plan.deletes,
      adopted: [...adopted.values()],
      approvedDeletes: approve && plan.deletes.length > 0 ? plan.deletes.length : undefined,
      rebuilt: remote.rebuilt,
    });
    // Unhashed files: what the bucket holds by content, so one whose bytes are there already is
    // copied server-side as planPush would have planned it, by the same rule (built only when
    // there are any); never from an object this run overwrites.
    // (None when the bucket names nothing yet: no file is asked about a twin that cannot exist.)
    const bySha = pending.size > 0 && remote.files.size > 0 ? copySources(remote.files, 1, (p) => moved.has(p) || commit.overwrites.has(p)) : undefined;
    const ev = this.d.events;
    const run = async (p: string, op: "upload" | "copy", size: number, fn: () => Promise<Entry | undefined>): Promise<void> => {
      try {
        const e = await withRetry(fn, { signal });
        if (e) {
          puts.push(e);
          commit.note(e);
        } else vanished.push(p);
        ev?.file?.({ role: "push", op, bytes: op === "upload" ? size : 0 });
      } catch (err) {
        // A transfer the stop cut short is not a failure: the run ends as interrupted, below.
        if (signal.aborted) return;
        if (err instanceof FileChanging) deferred.push(p);
        else if (pending.has(p) && unreadableCode(err)) {
          // As the hashing pass does: a file the uploader may not read is skipped, never fatal.
          unreadable.push(p);
          log.warn({ path: p, reason: "could not be read" }, "skipped");
        } else {
          failed.push({ path: p, error: errorMessage(err), retryable: isRetryable(err) });
          ev?.failed?.({ role: "push", errorClass: (err as Error).name ?? "Error" });
          log.error({ path: p, ...errorFields(err) }, "upload failed");
        }
      }
    };
    // p-map starts each transfer only when a slot frees: no 100k pending promises at once.
    const jobs: ({ kind: "upload"; file: LocalFile } | { kind: "copy"; file: LocalFile; from: Entry })[] = [
      ...plan.uploads.map((file) => ({ kind: "upload" as const, file })),
      ...plan.copies.map(({ file, from }) => ({ kind: "copy" as const, file, from })),
    ];
    ev?.start?.({ role: "push", files: jobs.length, bytes: plan.uploadBytes });
    // Many small files: transfer threads read, hash and send them beside this thread (transfer-threads.ts).
    const small = plan.uploads.reduce((n, f) => (f.size < this.o.multipartThreshold ? n + 1 : n), 0);
    const threads = await TransferThreads.start(store, { threads: this.o.threads ?? 0, small }, log);
    try {
      await pMap(jobs, (job) => {
        if (job.kind === "upload") {
          const f = job.file;
          if (f.sha256 !== UNHASHED || !bySha) return run(f.path, "upload", f.size, () => this.uploadFile(f, commit, threads));
          return run(f.path, "upload", f.size, () => this.uploadFile(f, commit, threads, async (facts) => {
            const twin = bySha.get(facts.sha256);
            if (!twin || twin.size !== facts.size) return undefined;
            try {
              const r = await store.copy(this.key(f.path), { bucket: store.bucket, key: this.key(twin.path), versionId: twin.versionId, etag: twin.etag }, this.attrs({ path: f.path, ...facts }), signal);
              copiedInstead++;
              bytesNotSent += facts.size;
              return r;
            } catch (err) {
              if (err instanceof ConditionFailed) return undefined;
              throw err;
            }
          }));
        }
        const { file, from } = job;
        return run(file.path, "copy", 0, async () => {
          try {
            const r = await store.copy(this.key(file.path), { bucket: store.bucket, key: this.key(from.path), versionId: from.versionId, etag: from.etag }, this.attrs(file), signal);
            return { ...fileEntry(file), etag: r.etag, versionId: r.versionId };
          } catch (err) {
            // The copy source changed under us: fall back to uploading the bytes.
            if (err instanceof ConditionFailed) return this.uploadFile(file, commit, threads);
            throw err;
          }
        });
      }, { concurrency: this.o.concurrency });
    } finally {
      await threads?.close();
    }
    ev?.end?.({ role: "push", ok: failed.length === 0 && !signal.aborted });
    // An interrupted run (SIGINT, SIGTERM) leaves the record of what it wrote for the next one.
    if (signal.aborted) {
      await commit.abort();
      throw new Interrupted(`interrupted: ${puts.length} of ${jobs.length} files sent, the next run continues`);
    }
    for (const { file, from } of plan.metaOnly) puts.push({ ...from, mtimeMs: file.mtimeMs, mode: file.mode });
    for (const e of puts) {
      const ino = pending.get(e.path);
      if (ino !== undefined) {
        // Hashed by its transfer: the index learns it now.
        index.set(e.path, [e.size, e.mtimeMs, ino, e.sha256]);
        continue;
      }
      const st = index.get(e.path);
      if (st && st[3] !== e.sha256) {
        index.set(e.path, [e.size, e.mtimeMs, st[2], e.sha256]);
      }
    }
    // A failed path keeps its previous entry, signed again: from a head this writer cannot vouch
    // for, nothing is published (the exact rule) and the run says why.
    if (failed.length > 0 && !this.vouchesFor(remote)) {
      await commit.abort();
      throw this.unvouched(remote, failed.map((f) => f.path), "failed to upload");
    }
    try {
      const c = await commit.finish(puts, failed, vanished);
      if (!(await this.remember(c)) && c.head && c.head !== remote.state) {
        // Nothing published, but the head was rewritten with this run's dirty marks.
        this.remote = { state: c.head, files: remote.files };
      }
      const counts = { uploads: summary.uploads - copiedInstead - unreadable.length, copies: summary.copies + copiedInstead, uploadBytes: summary.uploadBytes - bytesNotSent, unreadable: [...summary.unreadable, ...unreadable].sort() };
      return { ...summary, ...counts, generation: c.head?.head.generation ?? 0, published: c.published || publishedFirst, deferred };
    } finally {
      await index.save();
    }
  }

  /**
   * Upload one file with its own bytes; returns its new entry, or undefined when it vanished.
   * `threads`: the run's transfer threads, if it has any; `instead`: see transfer.ts uploadFile (a server-side copy of bytes the bucket holds already).
   */
  private async uploadFile(f: LocalFile, commit: Commit, threads: TransferThreads | undefined, instead?: (facts: FileFacts) => Promise<PutResult | undefined>): Promise<Entry | undefined> {
    const key = this.key(f.path);
    const abs = path.join(this.o.docroot, f.path);
    const attrs = (facts: FileFacts) => this.attrs({ path: f.path, ...facts });
    // Recorded before the PUT: a run killed while it was in flight (the server stored it, the
    // answer never came) lets the next run find the object by that ETag and adopt it.
    const sending = (facts: FileFacts, etag: string) => commit.note({ path: f.path, ...facts, etag });
    const here = () => uploadFile(this.d.store, key, abs, {
      multipartThreshold: this.o.multipartThreshold,
      partSize: this.o.partSize,
      // Large files stream with the sha256 the scan found: a file that changed since is caught.
      expect: f.size >= this.o.multipartThreshold ? { size: f.size, sha256: f.sha256 } : undefined,
      attrs,
      instead,
      sending,
      buffers: this.buffers,
      signal: this.d.signal,
    });
    const threaded = { threshold: this.o.multipartThreshold, path: f.path, cacheControl: this.o.cacheControl(f.path), instead, sending };
    let up = threads && f.size < this.o.multipartThreshold ? await threads.upload(key, abs, threaded, this.d.signal, here) : await here();
    // Grown past the threshold since the scan: this thread's path says what that means.
    if (up === "large") up = await here();
    return up && { path: f.path, size: up.size, mtimeMs: up.mtimeMs, mode: up.mode, sha256: up.sha256, etag: up.etag, versionId: up.versionId };
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
    const cached = await readJson<{ generation: number; manifestSha256: string }>(this.o.state.remoteHead);
    // Generation numbers only go forward, and a signature binds the number: a head older than one
    // this writer published or read is an old head.json put back (a replay by someone with bucket
    // write access, or a restored backup). Publishing over it would give a used number other content.
    const known = Math.max(cached?.generation ?? 0, this.remote?.state?.head.generation ?? 0);
    if (hs.head.generation < known && !this.o.force) {
      throw new IntegrityError(`the head at ${formatLocation(this.o.loc)} went backwards: generation ${hs.head.generation}, this writer already published or read generation ${known}; nothing was published over it`, {
        hint: "someone put an old head.json back (check who can write to the bucket); if the location was deliberately reset, rerun with --force",
      });
    }
    if (cached && cached.generation === hs.head.generation && cached.manifestSha256 === hs.head.manifestSha256) {
      try {
        const bytes = await readFile(this.o.state.remoteManifest);
        const files = await parseManifest(bytes, hs.head.manifestSha256, hs.head.generation, hs.head.files);
        this.verifyBase(hs, files);
        return (this.remote = { state: hs, files });
      } catch (err) {
        if (err instanceof UntrustedHead) throw err;
        // A damaged cache is simply ignored: fetch the manifest instead.
      }
    }
    let manifest;
    try {
      manifest = await readManifest(this.d.store, hs.head, this.d.signal);
    } catch (err) {
      if (!(err instanceof IntegrityError) || this.o.trust) throw err;
      // The head names a manifest that is not there or does not match it (two writers raced on a
      // server without conditional writes, or the bucket was damaged): nodes stop at it (exit 8)
      // until a writer repairs it. The master's docroot is the truth: it is published whole as
      // the next generation (objects it does not name are left as garbage, never deleted blindly).
      this.d.log.error({ generation: hs.head.generation, ...errorFields(err) }, "the head names a manifest that does not match it: publishing the docroot whole as the next generation");
      return (this.remote = { state: hs, files: new Map(), rebuilt: true });
    }
    this.verifyBase(hs, manifest.files);
    await this.saveRemoteCache(hs.head, hs.etag, manifest.bytes);
    return (this.remote = { state: hs, files: manifest.files });
  }

  /**
   * Whether a signing writer may carry paths from this head unchecked: it verifies under the
   * writer's own key (or its trust, which {@link loadRemote} already enforced). A writer that does
   * not sign vouches for nothing, and nodes that check refuse what it publishes anyway.
   */
  private vouchesFor(remote: Remote): boolean {
    const s = this.o.signer;
    if (!s || this.o.trust || !remote.state || remote.state.head.manifestSha256 === this.vouchedManifest) return true;
    try {
      verifyGeneration(remote.state.head, remote.files.values(), { keys: [trustedKeyOf(s.key)], site: s.site }, formatLocation(this.o.loc));
      this.vouchedManifest = remote.state.head.manifestSha256;
      return true;
    } catch (err) {
      if (err instanceof UntrustedHead) return false;
      throw err;
    }
  }

  /** Why a signing writer publishes nothing: `paths` would carry their entries from a head it cannot vouch for. */
  private unvouched(remote: Remote, paths: readonly string[], why: string): UntrustedHead {
    return new UntrustedHead(
      `refusing to sign generation ${(remote.state?.head.generation ?? 0) + 1}: the head of ${formatLocation(this.o.loc)} does not verify under this writer's key, and ${paths.length} path(s) ${why} (first: ${paths[0]}): their published entries would be signed unverified. Make them readable (or fix what failed) and run again: the next run publishes the docroot whole`,
    );
  }

  /** With trust: the generation this uploader is about to build on verifies (see {@link UploaderOptions.trust}). */
  private verifyBase(hs: HeadState, files: FileMap): void {
    const t = this.o.trust;
    if (t) verifyGeneration(hs.head, files.values(), t, formatLocation(this.o.loc));
  }

  /**
   * A generation this uploader published becomes what it builds on next (cached on disk). Published
   * from a head it vouched for (or the whole docroot): its own generation needs no check.
   */
  private async remember(c: CommitResult): Promise<Remote | undefined> {
    if (!c.published || !c.head || !c.manifestBytes) return undefined;
    this.remote = { state: c.head, files: c.files };
    this.vouchedManifest = c.head.head.manifestSha256;
    await this.saveRemoteCache(c.head.head, c.head.etag, c.manifestBytes);
    return this.remote;
  }

  /** Remember the head (and, when it changed, its manifest) so the next run needs no manifest GET. */
  private async saveRemoteCache(head: { generation: number; manifestSha256: string }, etag: string, bytes: Buffer | undefined): Promise<void> {
    if (bytes) await writeFileAtomic(this.o.state.remoteManifest, bytes);
    await writeJson(this.o.state.remoteHead, { generation: head.generation, manifestSha256: head.manifestSha256, etag });
  }

  /**
   * Hash files whose size/mtime/inode changed since the index saw them. With `deferNew`, a small
   * file whose path the bucket (`remote`) does not hold is left {@link UNHASHED} (its inode in
   * `pending`): its transfer reads and hashes it once, instead of a hashing pass here and a second
   * read there.
   */
  private async hashAll(files: readonly ScannedFile[], index: HashIndex, remote: FileMap, deferNew: boolean, written: ReadonlyMap<string, unknown>): Promise<{ local: LocalFile[]; unreadable: string[]; pending: Map<string, number> }> {
    const out: LocalFile[] = [];
    const unreadable: string[] = [];
    const dirty: ScannedFile[] = [];
    const pending = new Map<string, number>();
    // Files the index knows unchanged (size, mtime, inode) are not read at all: a no-op push hashes nothing.
    for (const f of files) {
      const r = remote.get(f.path);
      // The file shares the manifest's sha256 and path strings instead of equal copies (the index
      // keeps its sha256 as bytes; the scan's list is let go once hashed).
      const known = index.knownSha(f, r?.sha256);
      if (known !== undefined) {
        out.push({ path: r?.path ?? f.path, size: f.size, mtimeMs: f.mtimeMs, mode: f.mode, sha256: known });
      } else if (deferNew && f.size < this.o.multipartThreshold && r === undefined && !written.has(f.path)) {
        pending.set(f.path, f.ino);
        out.push({ path: f.path, size: f.size, mtimeMs: f.mtimeMs, mode: f.mode, sha256: UNHASHED });
      } else dirty.push(f);
    }
    let hashed = 0;
    await pMap(dirty, async (f) => {
      let sha: string;
      try {
        sha = await index.hash(path.join(this.o.docroot, f.path), f);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === "ENOENT") return;
        // One file the uploader may not read must not stop the site from being published.
        if (code === "EACCES" || code === "EPERM") {
          unreadable.push(f.path);
          return;
        }
        throw err;
      }
      hashed++;
      out.push({ path: f.path, size: f.size, mtimeMs: f.mtimeMs, mode: f.mode, sha256: sha });
    }, { concurrency: 4 });
    if (hashed > 0) this.d.log.debug({ hashed, files: files.length }, "hashed changed files");
    return { local: out, unreadable, pending };
  }
}

/** Whether a transfer failed because the file may not be read (EACCES, EPERM). */
function unreadableCode(err: unknown): boolean {
  const code = ((err as { cause?: NodeJS.ErrnoException } | null)?.cause ?? (err as NodeJS.ErrnoException | null))?.code;
  return code === "EACCES" || code === "EPERM";
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

/** `files` without the paths at or under any of `paths`. */
function withoutUnder(files: FileMap, paths: readonly string[]): FileMap {
  if (paths.length === 0) return files;
  const drop = filterScope(files, paths);
  const out: FileMap = new Map();
  for (const [p, e] of files) if (!drop.has(p)) out.set(p, e);
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
