/**
 * The one place a generation is committed. Every writer (the uploader, the replicator in each
 * region, rollback, and through the uploader the two-way node) plans its transfers, then:
 *
 *   const commit = await writer.begin(base, { files, writes, deletes, … })
 *       hold      take the write lease if not held (renewed in the background until released)
 *       sweep     delete what an interrupted commit left outside `files` (orphan ledger)
 *       prepare   record the keys this commit may strand (new paths, deletions) before writing them
 *       mark      record in the head itself the paths whose objects the writes overwrite (dirty)
 *   …the engine's transfers (objects only; nothing names them yet; `commit.note` records them)
 *   await commit.finish(puts, failed)
 *       settle    the partial-failure rule → next file map → what stays dirty
 *       publish   lease check → manifest, journal, head (conditional, signed) → afterGeneration
 *       delete    deletions → ledger clean-up → release the lease if begin took it
 *
 * (`commit.abort()` instead, when the transfers themselves throw: the records stay for the next run.)
 * The rules, written once:
 * - Partial failure. An `exact` commit (a replica of generation N, a rollback to generation N: its
 *   content is defined elsewhere) publishes nothing when any transfer failed. Otherwise the puts
 *   that succeeded are published, each failed path keeps its previous entry, and nothing is deleted
 *   nor approved (rclone's rule: a run with errors deletes nothing). Either way the run ends in
 *   {@link PartialFailureError} (exit 4) and the next commit retries.
 * - Dirty paths. The new head still marks every path the base marked or the writes overwrote,
 *   except those it publishes anew or no longer names (a deletion the failure rule held back is
 *   not settled: the old object is still named and may hold other bytes).
 * - Deletions run only after the head stopped naming the objects. A deletion that fails stays in
 *   the ledger, and the next commit of any writer of the location (or its sweep) deletes it.
 * - The lease must still be ours right before the head is written; the head's own condition
 *   (If-Match / If-None-Match) then makes a lost race an error, never a fork.
 */
import { errorMessage, type FailedTransfer, PartialFailureError, RaceError } from "../core/errors.ts";
import type { Location } from "../core/location.ts";
import type { Entry, FileMap, WriterKind } from "../core/manifest.ts";
import { type GenerationSigning, type HeadSignature, signGeneration, type SigningKey } from "../core/signing.ts";
import { type KeySet, OrphanLedger, type WrittenObject } from "../adapters/orphan-ledger.ts";
import type { ObjectStore } from "../adapters/object-store.ts";
import type { StateDir } from "../adapters/state-dir.ts";
import { type HeadState, readHead } from "./generation-reader.ts";
import { checkLease, DEFAULT_LEASE_TTL_MS, loadLeaseId, readLease, releaseLease, takeLease } from "./lease.ts";
import { amendGeneration, conditionalWrites, newWriterId, publishGeneration, rewriteHead } from "./publisher.ts";
import type { JobDeps, PublishDeps } from "./job-deps.ts";
import { formatLocation } from "../core/location.ts";
import { errorFields } from "../adapters/logger.ts";

/** What the writer is given. */
export interface GenerationWriterOptions {
  readonly loc: Location;
  readonly store: ObjectStore;
  /** The writing job's own directory (its lease id). */
  readonly state: StateDir;
  /** The location's directory every writer of it shares (ledger, capability cache). */
  readonly shared: StateDir;
  /** Manifests and journals of this many generations are kept. */
  readonly retain: number;
  /** Prefix of the writer id recorded in heads ("rollback:" lets readers tell a rollback). */
  readonly label?: string;
  /** Which command this writer serves, recorded in every head it writes (see Head.writerKind). */
  readonly kind?: WriterKind | undefined;
  /** Sign every head this writer publishes with this key, for this site (core/signing.ts). */
  readonly signer?: { readonly key: SigningKey; readonly site: string } | undefined;
  /** How long the write lease lives without renewal (default 60 s; the CLI's FANSYNC_LEASE_TTL). */
  readonly leaseTtlMs?: number | undefined;
}

/** What a commit is to do, given to {@link GenerationWriter.begin} (plain facts; the writer words its own errors). */
export interface CommitInput {
  /** The base generation's files (empty when nothing is published yet, or when its manifest was unreadable: see `rebuilt`). */
  readonly files: FileMap;
  /** Paths whose objects the transfers write (uploads, copies, restores): the count a failure is told against. */
  readonly writes: readonly string[];
  /** Paths the next generation no longer names. */
  readonly deletes: readonly string[];
  /**
   * Objects an unfinished commit wrote that already hold what this one publishes (the uploader's
   * adoption, issue 27): recorded again before any transfer, and published with the puts.
   */
  readonly adopted?: readonly Entry[] | undefined;
  /** Paths a later commit of this run writes or adopts: this commit's sweep and clean-up leave their objects and records. */
  readonly keep?: readonly string[] | undefined;
  /** All or nothing (see the module comment). */
  readonly exact?: boolean | undefined;
  /**
   * The generation to publish; default base + 1 (a replica passes the primary's). Given, the commit
   * publishes even with nothing changed (a signing writer's heartbeat).
   */
  readonly generation?: number | undefined;
  /**
   * Deletions of this generation approved for every node (they do not count against a node's
   * guard): the uploader's own approval, or one carried from the generation a replica copies.
   * A commit with a failed transfer deletes nothing, and so approves nothing.
   */
  readonly approvedDeletes?: number | undefined;
  /** `files` are not the base generation's files (its manifest was unreadable): journals do not chain across this one. */
  readonly rebuilt?: boolean | undefined;
  /**
   * A signature made by another writer, carried unchanged (a region's copy of a primary generation:
   * the replicator holds no key). It must fit the published files; it wins over this writer's signer.
   */
  readonly signature?: HeadSignature | undefined;
}

/** One generation being committed: {@link GenerationWriter.begin} made it, `finish` (or `abort`) ends it. */
export interface Commit {
  /** Written paths whose objects the base names without a version: they may hold other bytes until the commit publishes. */
  readonly overwrites: ReadonlySet<string>;
  /** Record what a transfer wrote at `entry.path` (an interrupted run's next commit adopts it). */
  note(entry: Entry): void;
  /**
   * The rest of the protocol (see the module comment): `puts`, the entries of the objects written
   * (or metadata-only changes); `failed`, the transfers that failed after their retries; `gone`,
   * paths the transfers found removed from the source (deleted too, where the base names them).
   */
  finish(puts: readonly Entry[], failed: readonly FailedTransfer[], gone?: readonly string[]): Promise<CommitResult>;
  /** Give up before finishing (the transfers threw): the records stay for the next run; the lease goes if begin took it. */
  abort(): Promise<void>;
}

/** What a commit did. */
export interface CommitResult {
  readonly published: boolean;
  /** The head now: the one published, else the base (with this commit's dirty marks, if it set any). */
  readonly head: HeadState | undefined;
  readonly files: FileMap;
  /** The manifest as published (the uploader caches it). */
  readonly manifestBytes: Buffer | undefined;
  /** Objects deleted after the head moved. */
  readonly deleted: number;
}

/** Commits generations to one location; one instance per location and process. */
export class GenerationWriter {
  /** Recorded as `writer` in every head this process publishes. */
  readonly id: string;
  private readonly o: GenerationWriterOptions;
  private readonly d: JobDeps & PublishDeps;
  private conditional: boolean | undefined;
  private leaseId: string | undefined;
  private leaseHeld = false;
  private leaseTimer: NodeJS.Timeout | undefined;

  constructor(opts: GenerationWriterOptions, deps: JobDeps & PublishDeps) {
    this.o = opts;
    this.d = deps;
    this.id = `${opts.label ?? ""}${newWriterId()}`;
  }

  private ledgerOnce: OrphanLedger | undefined;

  // One instance per writer: it buffers the records of what this run writes.
  private get ledger(): OrphanLedger {
    this.ledgerOnce ??= new OrphanLedger(this.o.shared.ledger);
    return this.ledgerOnce;
  }

  /**
   * What the objects an unfinished commit of this location wrote hold, by path: the next commit
   * adopts those that still hold what it wants instead of sending them again.
   */
  async interrupted(): Promise<Map<string, WrittenObject>> {
    const out = new Map<string, WrittenObject>();
    const { prefix } = this.o.loc;
    for (const [k, o] of await this.ledger.written()) if (k.startsWith(prefix)) out.set(k.slice(prefix.length), o);
    return out;
  }

  // What a transfer of a commit wrote at `entry.path` (kept until the commit's clean-up).
  private noteWritten(entry: Entry): void {
    this.ledger.note(this.o.loc.prefix + entry.path, { sha256: entry.sha256, size: entry.size, mtimeMs: entry.mtimeMs, mode: entry.mode, etag: entry.etag, ...(entry.versionId ? { versionId: entry.versionId } : {}) });
  }

  /**
   * Take or renew the write lease: one writer at a time prepares a generation, so a second one
   * never overwrites the objects, manifest or journal the first is about to publish (the head's
   * conditional write only detects that afterwards, and not at all where the server ignores
   * If-Match). Held until {@link release}, renewed meanwhile.
   */
  async hold(): Promise<void> {
    const conditional = await this.conditionalWrites();
    // The lease id is stable per state directory, so a restarted writer (after a crash) takes its
    // own lease back at once instead of waiting for it to expire.
    this.leaseId ??= await loadLeaseId(this.o.state, this.o.label);
    const ttlMs = this.o.leaseTtlMs ?? DEFAULT_LEASE_TTL_MS;
    await takeLease(this.o.store, this.o.loc, this.leaseId, this.d.now, this.leaseHeld, conditional, ttlMs);
    this.leaseHeld = true;
    this.leaseTimer ??= setInterval(() => {
      takeLease(this.o.store, this.o.loc, this.leaseId as string, this.d.now, true, conditional, ttlMs, true).catch((err: unknown) => {
        // The check before the next head write refuses to publish if the lease is really gone.
        this.d.log.warn(errorFields(err), "could not renew the write lease");
      });
    }, ttlMs / 3).unref();
  }

  /** Give the write lease up, if held; never throws (an unreleased lease expires by itself). */
  async release(): Promise<void> {
    if (this.leaseTimer) clearInterval(this.leaseTimer);
    this.leaseTimer = undefined;
    if (!this.leaseHeld || !this.leaseId) return;
    this.leaseHeld = false;
    await releaseLease(this.o.store, this.o.loc, this.leaseId).catch((err: unknown) => {
      this.d.log.warn(errorFields(err), "could not release the write lease (it expires by itself)");
    });
  }

  /**
   * Delete objects an interrupted commit left outside `current` (new paths written before their
   * head, removed ones whose deletion never came); `except`: keys about to be written again.
   */
  async sweep(current: FileMap, except?: KeySet): Promise<void> {
    await this.ledger.clean({ store: this.o.store, prefix: this.o.loc.prefix, current, ...(except ? { done: except } : {}), signal: this.d.signal, log: this.d.log, beforeDelete: () => this.hold() });
  }

  // Record, before writing them, the paths whose objects may exist outside any manifest if this run dies.
  private async prepare(paths: Iterable<string>): Promise<void> {
    await this.ledger.record(this.o.loc.prefix, paths);
  }

  /**
   * Record in the head (same generation, nothing else changed) which of the objects it names may
   * hold other bytes: before a commit overwrites them in a bucket without versioning, so that any
   * later writer, on any machine and from any state, verifies them before it publishes; and to
   * clear them once verified. Needs the lease.
   */
  async setDirty(base: HeadState, paths: readonly string[]): Promise<HeadState> {
    if (!this.leaseHeld) await this.hold();
    return this.rewrite(base, { dirty: paths });
  }

  /** Record, after the fact, that the writer approves `count` deletions of the head's generation. Needs the lease. */
  async approveDeletes(base: HeadState, count: number, files: FileMap): Promise<HeadState> {
    if (!this.leaseHeld) await this.hold();
    // A signing writer signs its approval too (nodes that check signatures take it from there).
    const s = this.o.signer;
    const signature = s ? signGeneration(s.key, s.site, base.head.generation, files.values(), this.d.now().toISOString(), count) : undefined;
    return this.rewrite(base, { approvedDeletes: count, ...(signature ? { signature } : {}) });
  }

  /**
   * Carry, into this location's head (same generation), an approval and a signature made by the
   * writer of the generation it copies (a region following the primary's rewritten head). Needs the lease.
   */
  async carry(base: HeadState, fields: { readonly approvedDeletes: number; readonly signature?: HeadSignature }): Promise<HeadState> {
    if (!this.leaseHeld) await this.hold();
    return this.rewrite(base, fields);
  }

  /**
   * Correct the ETags or version ids that the head's own generation names for `fixed` paths (its
   * objects were written again with the same bytes) and set its dirty list; see amendGeneration.
   * Needs the lease.
   */
  async amend(base: HeadState, files: FileMap, fixed: readonly Entry[], dirty: readonly string[]): Promise<{ head: HeadState; files: FileMap }> {
    if (!this.leaseHeld) await this.hold();
    const conditional = await this.conditionalWrites();
    if (!conditional) {
      await checkLease(this.o.store, this.o.loc, this.leaseId as string);
      const now = await readHead(this.o.store, this.o.loc, this.d.signal);
      if (now?.etag !== base.etag) throw new RaceError(`the head of s3://${this.o.loc.bucket}/${this.o.loc.prefix} moved while this writer held the lease (generation ${now?.head.generation ?? "?"})`);
    }
    return amendGeneration(this.o.store, this.o.loc, base, files, fixed, dirty, conditional, this.d.signal);
  }

  /**
   * Rewrite the head in place. Where the server ignores conditions, the lease and the head are
   * checked right before (a writer that stalled must not put back a head older than the one there).
   */
  private async rewrite(base: HeadState, patch: Parameters<typeof rewriteHead>[3]): Promise<HeadState> {
    const conditional = await this.conditionalWrites();
    if (!conditional) {
      await checkLease(this.o.store, this.o.loc, this.leaseId as string);
      const now = await readHead(this.o.store, this.o.loc, this.d.signal);
      if (now?.etag !== base.etag) throw new RaceError(`the head of s3://${this.o.loc.bucket}/${this.o.loc.prefix} moved while this writer held the lease (generation ${now?.head.generation ?? "?"})`);
    }
    return rewriteHead(this.o.store, this.o.loc, base, patch, conditional);
  }

  /**
   * Start committing a generation over `base` (undefined: nothing published yet): hold, sweep,
   * prepare and mark (see the module comment). The engine then runs its transfers and calls
   * `finish` on what it gets back; a lease this takes is released when the commit ends.
   */
  async begin(base: HeadState | undefined, c: CommitInput): Promise<Commit> {
    const { prefix } = this.o.loc;
    const took = !this.leaseHeld;
    if (took) await this.hold();
    const adopted = c.adopted ?? [];
    const overwrites = new Set(c.writes.filter((p) => c.files.has(p) && !c.files.get(p)?.versionId));
    // What the base marked stays marked until this commit settles it; what the writes overwrite joins it.
    const marked = [...new Set([...(base?.head.dirty ?? []), ...overwrites])];
    let head = base;
    try {
      // Objects a killed commit wrote before its head, or meant to delete after it, go first,
      // except those this run writes (or adopts) again.
      await this.sweep(c.files, ourKeys(prefix, () => [c.writes, adopted.map((e) => e.path), c.keep ?? []]));
      // New paths land before the head names them and removed ones go after it: a kill in between
      // would strand them (in a bucket that may be a CDN origin), so they are recorded first, with
      // what the adopted objects hold, so that a run interrupted again still finds them.
      await this.prepare((function* () {
        for (const p of c.writes) if (!c.files.has(p)) yield p;
        for (const e of adopted) if (!c.files.has(e.path)) yield e.path;
        yield* c.deletes;
      })());
      for (const e of adopted) this.noteWritten(e);
      // And, in the head itself, the objects it names that the writes overwrite (path-keyed, no
      // version to fall back on): whoever writes next, from wherever, verifies them first.
      if (head && overwrites.size > 0) head = await this.setDirty(head, marked);
    } catch (err) {
      if (took) await this.release();
      throw err;
    }
    let ended = false;
    const end = (): void => {
      if (ended) throw new Error("a commit ends once: finish or abort, not both");
      ended = true;
      this.ledger.flush();
    };
    return {
      overwrites,
      note: (e) => this.noteWritten(e),
      finish: async (puts, failed, gone = []) => {
        end();
        try {
          return await this.finish(head, c, marked, [...adopted, ...puts], failed, gone);
        } finally {
          if (took) await this.release();
        }
      },
      abort: async () => {
        end();
        if (took) await this.release();
      },
    };
  }

  // The rest of a commit begun over `base` (see the module comment for the order and the rules).
  private async finish(base: HeadState | undefined, c: CommitInput, marked: readonly string[], puts: readonly Entry[], failures: readonly FailedTransfer[], gone: readonly string[]): Promise<CommitResult> {
    const { store, loc } = this.o;
    const { log, signal } = this.d;
    const failed = failures.length > 0;
    const total = c.writes.length;
    const rerun = this.o.kind === "rollback" ? "run the same rollback again" : undefined;
    const partial = () => new PartialFailureError(
      `${failures.length} of ${total} transfers failed; ${c.exact ? "no generation was published and " : ""}nothing was deleted${rerun ? `; ${rerun}` : ""} (first: ${failures[0]?.path}: ${failures[0]?.error})`,
      failures,
      rerun,
    );
    if (failed && c.exact) throw partial();
    // A run with a failed transfer deletes nothing (and so approves nothing).
    const deletes = failed ? [] : [...c.deletes, ...gone.filter((p) => c.files.has(p))];
    const next: FileMap = new Map(c.files);
    for (const p of deletes) next.delete(p);
    for (const e of puts) next.set(e.path, e);
    // What stays dirty: the marked paths this commit neither puts nor deletes (a set of every put
    // only when something is marked: a first push of 1M files marks nothing).
    let dirty: string[] = [];
    if (marked.length > 0) {
      const settled = new Set(deletes);
      for (const e of puts) settled.add(e.path);
      dirty = marked.filter((p) => !settled.has(p));
    }
    const approvedDeletes = failed ? undefined : c.approvedDeletes;
    let result: CommitResult = { published: false, head: base, files: c.files, manifestBytes: undefined, deleted: 0 };
    if (puts.length > 0 || deletes.length > 0 || c.generation !== undefined) {
      if (!this.leaseHeld) await this.hold();
      if (base?.head.signature && !this.signingFor(c)) {
        log.warn({ generation: base.head.generation, keyId: base.head.signature.keyId }, "publishing an unsigned generation over a signed one: nodes with --trusted-key refuse it (give --signing-key)");
      }
      await this.prepare(deletes);
      await checkLease(store, loc, this.leaseId as string);
      const pub = await publishGeneration(store, loc, {
        previous: base,
        files: next,
        puts,
        deletes,
        writer: this.id,
        writerKind: this.o.kind,
        retain: this.o.retain,
        now: this.d.now,
        conditional: await this.conditionalWrites(),
        signing: this.signingFor(c),
        dirty,
        ...(c.generation !== undefined ? { generation: c.generation } : {}),
        ...(c.rebuilt ? { rebuilt: true } : {}),
        ...(approvedDeletes ? { approvedDeletes } : {}),
      }, log);
      result = { published: true, head: { head: pub.head, etag: pub.etag }, files: next, manifestBytes: pub.manifestBytes, deleted: 0 };
      if (!(await this.conditionalWrites())) {
        // No conditional writes: a writer stalled between its lease check and its head write (a
        // frozen VM, SIGSTOP) may have overwritten the head of a writer that took the lease over
        // meanwhile. The chain may have forked: say so (exit 6). That writer's next commit plans
        // against this head and publishes the next generation; nodes re-check a generation that
        // comes again with another manifest.
        // (A lease released meanwhile was taken and given up by another writer as well.)
        const lease = await readLease(store, loc);
        if (lease?.writer !== this.leaseId) {
          this.leaseHeld = false;
          throw new RaceError(`published generation ${pub.head.generation} of s3://${loc.bucket}/${loc.prefix}, but the write lease had passed to ${lease?.writer ?? "another writer, who released it again"} while this writer was stalled (this server has no conditional writes): that writer may have published generation ${pub.head.generation} too, and this one replaced it`, {
            hint: "run one writer per location; the other writer's next commit publishes the next generation over this one, and nodes converge to it",
          });
        }
      }
    }
    const done = new Set<string>();
    const left = new Set<string>(c.keep?.map((p) => loc.prefix + p));
    if (result.published && deletes.length > 0) {
      // Objects go only after the head stopped naming them: readers of the old generation may
      // still fetch them a moment longer, and fail over to the next run if not. The generation is
      // published either way: a deletion that fails leaves garbage outside every manifest, which
      // stays in the ledger for the next commit (or sweep) to delete.
      const keys = deletes.map((p) => loc.prefix + p);
      const notDeleted = await store.deleteMany(keys, signal).catch((err: unknown) => keys.map((key) => ({ key, error: errorMessage(err) })));
      for (const f of notDeleted) left.add(f.key);
      if (notDeleted.length > 0) log.warn({ objects: notDeleted.length, key: notDeleted[0]?.key, error: notDeleted[0]?.error }, "delete failed (kept in the ledger; the next commit deletes it)");
      for (const k of keys) if (!left.has(k)) done.add(k);
      result = { ...result, deleted: done.size };
    }
    if (result.published && result.head) {
      // CDN invalidation and --on-publish run on their own queues: the next generation never waits for them.
      try {
        this.d.afterGeneration?.({ location: formatLocation(loc), generation: result.head.head.generation, changed: puts.map((e) => e.path), deleted: deletes });
      } catch (err) {
        log.warn(errorFields(err), "after-generation observer failed");
      }
    }
    signal.throwIfAborted();
    await this.ledger.clean({ store, prefix: loc.prefix, current: result.files, done, later: left, signal, log, beforeDelete: () => this.hold() });
    if (failed) throw partial();
    return result;
  }

  /** The key id and site this writer signs with, if it signs. */
  get signs(): { readonly keyId: string; readonly site: string } | undefined {
    const s = this.o.signer;
    return s && { keyId: s.key.keyId, site: s.site };
  }

  private signingFor(c: CommitInput): GenerationSigning | undefined {
    if (c.signature) return { kind: "carry", signature: c.signature };
    return this.o.signer && { kind: "sign", key: this.o.signer.key, site: this.o.signer.site };
  }

  /** Whether the server enforces conditional writes (publisher.ts probes once per endpoint and bucket and caches it). */
  private async conditionalWrites(): Promise<boolean> {
    this.conditional ??= await conditionalWrites(this.o.store, this.o.loc, this.o.shared, this.d.log);
    return this.conditional;
  }
}

/**
 * The keys under `prefix` of the paths `lists` gives, looked up without making a key string per
 * path (1M at a first push of 1M files); the paths are gathered only if a key is looked up at all
 * (a ledger with nothing recorded looks up none).
 */
function ourKeys(prefix: string, lists: () => readonly (readonly string[])[]): KeySet {
  let paths: Set<string> | undefined;
  return {
    has(key) {
      if (!paths) {
        paths = new Set();
        for (const list of lists()) for (const p of list) paths.add(p);
      }
      return key.startsWith(prefix) && paths.has(key.slice(prefix.length));
    },
  };
}
