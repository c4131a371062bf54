/**
 * The two-way node (`fansync sync`): one round brings the docroot and the bucket together.
 *
 *   scan the docroot → local changes since the node's base (the generation it last converged to)
 *   none: apply the head like a puller (journals, one conditional GET when nothing moved)
 *   some: take the write lease (waiting with jitter while another writer holds it), read the head,
 *         plan (core/sync-plan.ts: rebase + conflict rule + ownership), keep every losing version
 *         outside the docroot, apply the head to the docroot through the puller (paths being
 *         published are left alone), publish the node's own changes through the uploader (scoped
 *         to those paths: the generation writer's lease, transfers, manifest + journal, head with
 *         If-Match), adopt the new generation as the base, release the lease.
 *
 * The base lives in the node's state directory (`sync-base.ndjson`, `sync-base.json`), written
 * only after the docroot reached it: a round killed half way is planned again from the old base,
 * and what it had applied already then equals the head and is no change of this node's. A round
 * stopped after the puller recorded the whole apply but before the base was written is finished by
 * the next one, which adopts that record first (readBaseDoc).
 * Echo suppression follows: a file the puller wrote equals the base, so it is never published again.
 */
import { randomBytes } from "node:crypto";
import { appendFile, copyFile, lstat, mkdir, rename, stat, unlink, utimes } from "node:fs/promises";
import path from "node:path";
import { errorMessage, FileChanging, IntegrityError, ObjectMoved, RaceError, UntrustedHead } from "../core/errors.ts";
import type { PathFilter } from "../core/filters.ts";
import type { TransferEvents } from "../core/transfer-events.ts";
import { formatLocation, type Location } from "../core/location.ts";
import type { Entry, FileMap } from "../core/manifest.ts";
import { verifyGeneration } from "../core/signing.ts";
import { type Applied, appliedBetween, appliedOrNone, type ApplyPlan, type ConflictRule, type FileFacts, heldForApply, type KeptVersion, localChanges, mergeApplied, planApply, planSync, type SyncConflict, type SyncPlan } from "../core/sync-plan.ts";
import { hashFile, scanTree, type Skipped } from "../adapters/local-tree.ts";
import type { HashIndex } from "../adapters/hash-index.ts";
import type { ObjectStore } from "../adapters/object-store.ts";
import type { StateDir } from "../adapters/state-dir.ts";
import { readJson, readNdjsonMap, writeJson, writeNdjsonMap } from "../adapters/state-files.ts";
import { type HeadState, readHead, readJournal, readManifest } from "./generation-reader.ts";
import { catchUpThroughJournals } from "./journals.ts";
import { adoptPullState, preparePullState, readPulledFiles, readPullState } from "./pull-state.ts";
import type { JobDeps } from "./job-deps.ts";
import { pullOnce, type PullerOptions, type PullResult } from "./puller.ts";
import { sleep } from "./sleep.ts";
import { downloadTo, findMovedObjects, transferBuffers } from "./transfer.ts";
import type { ReconcileResult } from "./uploader.ts";
import { errorFields } from "../adapters/logger.ts";

/** What the node publishes with (the uploader, scoped to the paths it wins). */
export interface Publisher {
  /**
   * The docroot's hash index the publisher keeps (the uploader's): the node's scan hashes into it,
   * so the publisher finds what changed already hashed, and nothing is hashed twice in a round.
   */
  readonly hashes: HashIndex;
  holdLease(): Promise<void>;
  releaseLease(): Promise<void>;
  /** `repair`: paths whose objects hold other bytes than the head names, uploaded again from the docroot. */
  reconcile(scope?: readonly string[], o?: { readonly repair?: readonly string[] }): Promise<ReconcileResult>;
}

/** A node's settings. */
export interface TwoWayOptions {
  readonly docroot: string;
  readonly loc: Location;
  /** The node's own state directory (base, puller and uploader state, conflict list). */
  readonly state: StateDir;
  /** Where losing versions are kept (outside the docroot). */
  readonly conflictsDir: string;
  readonly filter: PathFilter;
  readonly owns: (p: string) => boolean;
  readonly rule: ConflictRule;
  /** This node's name in conflict copies' names. */
  readonly nodeId: string;
  /** The puller's options (its state is `state`). */
  readonly puller: PullerOptions;
  /** Files modified less than this long ago are left for a later round (still being written). */
  readonly settleMs: number;
  /**
   * `sync --verify`: the first round of the process also checks every object of the generation it
   * converged to (one HEAD each) and uploads again, from the docroot, those that hold other bytes.
   */
  readonly verify?: boolean | undefined;
}

/** Collaborators. */
export interface TwoWayDeps extends JobDeps {
  readonly store: ObjectStore;
  readonly publisher: Publisher;
  readonly events?: TransferEvents | undefined;
  /** Told each version as soon as it is kept (a round that fails later still reports it). */
  readonly onKept?: ((r: KeptRecord) => void) | undefined;
}

/** One kept version, as listed in `conflicts.ndjson` and the status. */
export interface KeptRecord {
  readonly time: string;
  readonly path: string;
  readonly reason: KeptVersion["reason"];
  /** Whose version this is: the node's own ("local") or the head's ("remote"). */
  readonly version: "local" | "remote";
  /** Where it was kept, relative to the conflicts directory. */
  readonly kept: string;
  readonly size: number;
  readonly sha256: string;
  /** The generation the round planned against. */
  readonly generation: number;
}

/** What one round did. */
export interface RoundResult {
  readonly generation: number;
  readonly headGeneration: number;
  readonly published: boolean;
  readonly localChanges: number;
  readonly conflicts: readonly SyncConflict[];
  readonly notOwned: readonly string[];
  readonly kept: readonly KeptRecord[];
  /** Paths left for a later round (still being written). */
  readonly deferred: number;
  /**
   * Another writer's generation this round applied to the docroot, with the paths it changed and
   * deleted there (for `--on-apply`); undefined when the round applied nothing.
   */
  readonly applied?: Applied | undefined;
  /** What the last scan could not carry (names that cannot be keys, unreadable files), as push reports them. */
  readonly skipped: readonly Skipped[];
}

/**
 * A round that did not scan (the watcher said nothing changed) found a local file that differs from
 * the base right before the puller would replace it: the watcher was behind (a frozen or stalled
 * process, a dropped event). The round is planned again with a scan, so the edit meets the conflict
 * rule instead of being overwritten (issue 27: an edit made while the daemon was SIGSTOPped lost to
 * an older one). Caught inside the round; a retryable local error if it ever escapes.
 */
export class UnseenLocalChange extends FileChanging {
  override name = "UnseenLocalChange";
  readonly path: string;
  constructor(p: string) {
    super(`${p} changed in the docroot since the last scan`);
    this.path = p;
  }
}

/** What `sync --dry-run` found: the plan of one round. */
export interface DryRunResult {
  readonly generation: number;
  readonly headGeneration: number;
  readonly plan: SyncPlan;
  /** The published paths that are deletions. */
  readonly deletes: readonly string[];
  readonly apply: ApplyPlan;
  readonly deferred: number;
  readonly skipped: readonly Skipped[];
}

/** The base as recorded. */
interface BaseDoc {
  readonly generation: number;
}

/**
 * The generation a two-way node's docroot last converged to (its base; 0: none yet), for /healthz.
 * Not the puller's head, which a round marks incomplete while it pulls: the docroot still holds the base.
 */
export async function readConvergedGeneration(state: StateDir): Promise<number> {
  return (await readJson<BaseDoc>(state.syncBaseHead))?.generation ?? 0;
}

// While another writer holds the lease: wait between this and twice this, up to this many times per round.
const LEASE_WAIT_MS = 300;
const LEASE_TRIES = 400;

/** One two-way node: a docroot and a location. */
export class TwoWayNode {
  private readonly o: TwoWayOptions;
  private readonly d: TwoWayDeps;
  /** The docroot's persisted hash index, shared with the publisher: a changed file is hashed once per round. */
  private readonly hashes: HashIndex;
  private readonly url: string;
  /** The docroot as this round planned with it: a file that differs when the puller replaces it is kept first. */
  private expected: ReadonlyMap<string, FileFacts> = new Map();
  private keptDuringApply: KeptRecord[] = [];
  /** What the last scan skipped; the names already warned about (once per name, as push does per run). */
  private skipped: readonly Skipped[] = [];
  private readonly warned = new Set<string>();
  /** Read buffers for the versions it keeps, this node's own. */
  private readonly buffers = transferBuffers();
  /** This round did not scan: a difference from the base found while applying stops the apply (issue 27). */
  private unscanned = false;
  private roundGeneration = 0;
  /**
   * Another writer's generation adopted while healing a stopped round (readBaseDoc): the puller
   * applied it, the stopped round never reported it, so the next round that succeeds does
   * (`applied`, for --on-apply), merged with what that round applies itself.
   */
  private healed: Applied | undefined;

  constructor(o: TwoWayOptions, d: TwoWayDeps) {
    this.o = o;
    this.d = d;
    this.url = formatLocation(o.loc);
    this.hashes = d.publisher.hashes;
  }

  private get baseFiles(): string {
    return this.o.state.syncBaseFiles;
  }

  private get baseDoc(): string {
    return this.o.state.syncBaseHead;
  }

  /** The list of kept versions. */
  get keptList(): string {
    return this.o.state.syncKept;
  }

  /**
   * One round (see the module comment). `joining`: the first round of this process. `scan: false`
   * (nothing changed in the docroot since the last scan, as far as the watcher knows): the docroot
   * is taken to be the base, and the round is a pull; a file the puller would replace that differs
   * from the base means the watcher was behind, and the round starts again with a scan
   * ({@link UnseenLocalChange}).
   */
  async round(opts: { joining: boolean; scan?: boolean }): Promise<RoundResult> {
    if (!opts.joining || !this.o.verify) return this.roundOnce(opts);
    let r: RoundResult;
    try {
      r = await this.roundOnce(opts);
    } catch (err) {
      // The round's own reads may meet what --verify repairs: repaired, the round runs again.
      const moved = err instanceof ObjectMoved || (err instanceof IntegrityError && err.cause instanceof ObjectMoved);
      if (!moved || !(await this.repairObjects())) throw err;
      return this.roundOnce(opts);
    }
    await this.repairObjects();
    return r;
  }

  private async roundOnce(opts: { joining: boolean; scan?: boolean }): Promise<RoundResult> {
    const { log } = this.d;
    const doc = await this.readBaseDoc();
    const base: FileMap = doc ? await readNdjsonMap<Entry>(this.baseFiles) : new Map();
    const generation = doc?.generation ?? 0;
    let scan = opts.scan === false && doc ? { local: new Map<string, FileFacts>(base), deferred: 0 } : await this.scanLocal(base);
    let changes = localChanges(base, scan.local);
    if (changes.length === 0) {
      // Nothing of our own: a plain pull (the no-op is one conditional GET).
      const hs = doc ? undefined : await readHead(this.d.store, this.o.loc, this.d.signal);
      if (!doc && !hs) return { generation: 0, headGeneration: 0, published: false, localChanges: 0, conflicts: [], notOwned: [], kept: [], deferred: scan.deferred, skipped: this.skipped, applied: this.takeHealed(changes, undefined) };
      // The puller plans against its own record: it must say what the base says (a round killed
      // after it prepared the puller left another record behind).
      const ph = await readPullState(this.o.state);
      if (!doc || !ph?.complete) await this.preparePull(base, generation);
      let r: Awaited<ReturnType<typeof pullOnce>>;
      try {
        // Unscanned, the docroot is only believed to be the base: a path found otherwise right
        // before it would be replaced stops the apply, and the round starts again with a scan.
        this.unscanned = opts.scan === false;
        r = await this.pull(scan.local);
      } catch (err) {
        if (!(err instanceof UnseenLocalChange)) throw err;
        this.takeKeptDuringApply();
        log.info({ path: err.path }, "the docroot changed where the watcher had not said yet: scanning before applying");
        return this.roundOnce({ joining: opts.joining, scan: true });
      } finally {
        this.unscanned = false;
      }
      if (!r.noop || !doc) await this.adoptPulled(r.generation);
      return { generation: r.generation, headGeneration: r.headGeneration, published: false, localChanges: 0, conflicts: [], notOwned: [], kept: this.takeKeptDuringApply(), deferred: scan.deferred, skipped: this.skipped, applied: this.takeHealed(changes, appliedBy(r)) };
    }
    await this.takeLease();
    try {
      // Under the lease no other writer moves the head: what is read now is what we publish over.
      const hs = await readHead(this.d.store, this.o.loc, this.d.signal);
      // An old head put back (a replay) is refused, as the puller refuses it: the docroot keeps the base.
      if (hs && hs.head.generation < generation && !this.o.puller.force) {
        throw new IntegrityError(`the head at ${this.url} went backwards: generation ${hs.head.generation}, this node's base is ${generation}; nothing was applied or published`, {
          hint: "someone put an old head.json back (check who can write to the bucket); if the location was deliberately reset, rerun with --force",
        });
      }
      // Nor is the number this node applied, with other signed content, taken for what it applied
      // (a writer that never saw that generation published its own under the number over an old
      // head put back): the puller's rule, on its record of the last complete apply or publish.
      const sig = hs?.head.signature;
      const ph = sig ? await readJson<{ generation: number; complete?: boolean; filesSha256?: string }>(this.o.state.pullHead) : undefined;
      if (hs && sig && ph?.complete && ph.generation === hs.head.generation && ph.filesSha256 !== undefined && ph.filesSha256 !== sig.filesSha256 && !this.o.puller.force) {
        throw new UntrustedHead(`the head at ${this.url} is generation ${ph.generation} with other content than the generation ${ph.generation} this node applied (signed digest ${sig.filesSha256.slice(0, 12)}…, applied ${ph.filesSha256.slice(0, 12)}…); nothing was applied or published`);
      }
      const remote: FileMap = !hs ? new Map() : hs.head.generation === generation && doc ? base : (await readManifest(this.d.store, hs.head, this.d.signal)).files;
      // The base was applied (verified) or published by this node; anything newer verifies before
      // it is planned with, kept against, applied or published over (issue 22). Without local
      // changes the puller makes the same check.
      const trust = this.o.puller.trust;
      if (trust && hs && remote !== base) verifyGeneration(hs.head, remote.values(), trust, this.url);
      // The docroot may have moved while we waited for the lease.
      scan = await this.scanLocal(base);
      changes = localChanges(base, scan.local);
      const plan = planSync({ base, local: scan.local, remote, owns: this.o.owns, rule: this.o.rule, joining: opts.joining });
      for (const c of plan.conflicts) log.warn({ path: c.path, kind: c.kind, winner: c.winner, generation: hs?.head.generation ?? 0 }, "conflict");
      for (const p of plan.notOwned) log.warn({ path: p }, "changed here but not owned by this node (--owns): not published; the published version is restored");
      this.roundGeneration = hs?.head.generation ?? 0;
      const kept = await this.keepVersions(plan.keep, scan.local, remote, this.roundGeneration);
      let applied: RoundResult["applied"];
      if (hs && (hs.head.generation !== generation || plan.restore.length > 0)) {
        // The head's changes come in first (paths we publish are left alone), so the docroot is the
        // head plus our own changes before anything is published: whatever the uploader scans is ours.
        await this.preparePull(heldForApply(base, remote, plan), generation);
        this.roundGeneration = hs.head.generation;
        const r = await this.pull(scan.local).catch((err: unknown) => {
          // Under the lease the head cannot move: an object holding other bytes than it names was
          // written over outside fansync, and "the next run converges" would not be true.
          if (!(err instanceof ObjectMoved)) throw err;
          throw new IntegrityError(`${err.message}: the head did not move (this node holds the write lease), so those objects were written over outside fansync`, {
            cause: err,
            hint: "a node that holds their bytes uploads them again with `fansync sync --verify` (push --verify on a master); else publish or delete those paths from a node",
          });
        });
        await this.adoptPulled(r.generation);
        applied = appliedBy(r);
        kept.push(...this.takeKeptDuringApply());
      }
      let published = false;
      let now = hs?.head.generation ?? 0;
      let deferred = scan.deferred;
      if (plan.publish.length > 0) {
        const res = await this.d.publisher.reconcile(plan.publish);
        deferred += res.deferred.length;
        if (res.published) {
          await this.adoptPublished(res.generation);
          published = true;
          now = res.generation;
        }
      }
      return { generation: now, headGeneration: now, published, localChanges: changes.length, conflicts: plan.conflicts, notOwned: plan.notOwned, kept, deferred, skipped: this.skipped, applied: this.takeHealed(changes, applied) };
    } finally {
      await this.d.publisher.releaseLease();
    }
  }

  /**
   * `--verify`: objects of the head's generation that hold other bytes than it names (written over
   * by someone without the key: every reader refuses them, and nothing else repairs them) are
   * uploaded again from the docroot where it holds the very bytes the (verified) generation names,
   * and published. Versioned objects are read by version and need nothing. Returns whether a
   * generation was published.
   */
  private async repairObjects(): Promise<boolean> {
    const { store, signal, log } = this.d;
    const hs = await readHead(store, this.o.loc, signal);
    if (!hs) return false;
    const { files } = await readManifest(store, hs.head, signal);
    // Only bytes a trusted key signed are uploaded again (the uploader builds on the head only if it verifies, too).
    const trust = this.o.puller.trust;
    if (trust) verifyGeneration(hs.head, files.values(), trust, this.url);
    const moved = await findMovedObjects(store, this.o.loc.prefix, files, ["*"], { concurrency: this.o.puller.concurrency, signal });
    if (moved.size === 0) return false;
    const doc = await readJson<BaseDoc>(this.baseDoc);
    const base: FileMap = doc ? await readNdjsonMap<Entry>(this.baseFiles) : new Map();
    const { local } = await this.scanLocal(base);
    const held = [...moved].filter((p) => local.get(p)?.sha256 === files.get(p)?.sha256).sort();
    log.warn({ generation: hs.head.generation, objects: moved.size, paths: [...moved].slice(0, 10), repairable: held.length }, "objects of the head's generation hold other bytes than it names (written outside fansync): uploading those this docroot holds again");
    if (held.length === 0) return false;
    await this.takeLease();
    try {
      // Under the lease, over the head that was checked (else the next --verify looks again).
      if ((await readHead(store, this.o.loc, signal))?.etag !== hs.etag) return false;
      const res = await this.d.publisher.reconcile(held, { repair: held });
      // The same files under new ETags: a docroot that held the repaired generation holds this one.
      if (res.published && doc?.generation === hs.head.generation) await this.adoptPublished(res.generation);
      return res.published;
    } finally {
      await this.d.publisher.releaseLease();
    }
  }

  /**
   * The base, after healing a round stopped between the apply and the base's record: the puller
   * saves its state (complete, at the generation it brought the docroot to) right after its last
   * rename, and the base is written from it only after pullOnce returns, so a SIGTERM (the puller
   * checks its signal after saving) or a kill in between left a docroot at generation N and a base
   * at N-1. Planned from that stale base, a docroot restored to the old version looks unchanged
   * and the puller, already at N, applies nothing: the node serves the old file for good. A
   * complete pull record of this location at a newer generation than the base's is exactly that
   * state, and adopting it is the step the stopped round did not take (the same for a round stopped
   * between saving a published generation as pulled and recording it as the base).
   */
  private async readBaseDoc(): Promise<BaseDoc | undefined> {
    const doc = await readJson<BaseDoc>(this.baseDoc);
    const reached = await this.unrecordedGeneration(doc);
    if (reached === undefined) return doc;
    this.d.log.info({ generation: reached.generation, base: doc?.generation ?? 0 }, "the docroot reached a generation the last round did not record as its base (stopped in between): adopting it");
    // An applied generation (not one this node published) was never reported to --on-apply: what
    // it changed here is the difference between the old base and the generation reached.
    if (!reached.publishedHere) {
      const changes = appliedBetween(doc ? await readNdjsonMap<Entry>(this.baseFiles) : new Map(), await readPulledFiles(this.o.state), reached.generation);
      this.healed = mergeApplied(this.healed, changes);
    }
    await this.adoptPulled(reached.generation);
    return { generation: reached.generation };
  }

  /**
   * The generation healed by readBaseDoc, for the round's result (then forgotten), merged with
   * what the round applied itself; paths the node changed locally since (its own version is in
   * the docroot, to be published) are not among the healed generation's.
   */
  private takeHealed(local: readonly string[], applied: Applied | undefined): Applied | undefined {
    const h = this.healed;
    this.healed = undefined;
    if (!h) return applied;
    const own = new Set(local);
    return mergeApplied(appliedOrNone(h.generation, h.changed.filter((p) => !own.has(p)), h.deleted.filter((p) => !own.has(p))), applied);
  }

  /**
   * The generation a complete pull record of this location says the docroot reached, when the base
   * is older. (The record is saved before the base in every sequence, never after: a base newer
   * than the record is not this state, and the base is never moved back.)
   */
  private async unrecordedGeneration(doc: BaseDoc | undefined): Promise<{ generation: number; publishedHere: boolean } | undefined> {
    const ph = await readPullState(this.o.state);
    return ph?.complete && ph.source === this.url && ph.generation > (doc?.generation ?? 0) ? { generation: ph.generation, publishedHere: ph.publishedHere === true } : undefined;
  }

  /**
   * `sync --dry-run`: the round a starting daemon would run, planned and not carried out. Reads
   * the base, the docroot and the head; takes no lease, keeps nothing, writes nothing.
   */
  async dryRun(): Promise<DryRunResult> {
    let doc = await readJson<BaseDoc>(this.baseDoc);
    // The base a round would heal to (see readBaseDoc), read and not written.
    const reached = await this.unrecordedGeneration(doc);
    if (reached !== undefined) doc = { generation: reached.generation };
    const base: FileMap = doc ? await (reached !== undefined ? readPulledFiles(this.o.state) : readNdjsonMap<Entry>(this.baseFiles)) : new Map();
    const scan = await this.scanLocal(base, { persist: false });
    const hs = await readHead(this.d.store, this.o.loc, this.d.signal);
    const remote: FileMap = !hs ? new Map() : doc && hs.head.generation === doc.generation ? base : (await readManifest(this.d.store, hs.head, this.d.signal)).files;
    // A generation the round would refuse is refused here too (said, not planned with).
    const trust = this.o.puller.trust;
    if (trust && hs && remote !== base) verifyGeneration(hs.head, remote.values(), trust, this.url);
    const plan = planSync({ base, local: scan.local, remote, owns: this.o.owns, rule: this.o.rule, joining: true });
    const deletes = plan.publish.filter((p) => !scan.local.has(p));
    return { generation: doc?.generation ?? 0, headGeneration: hs?.head.generation ?? 0, plan, deletes, apply: planApply(base, remote, plan), deferred: scan.deferred, skipped: this.skipped };
  }

  /** Apply the head through the puller; `local` is the docroot as planned (see {@link keepIfChanged}). */
  private async pull(local: ReadonlyMap<string, FileFacts>): Promise<Awaited<ReturnType<typeof pullOnce>>> {
    this.expected = local;
    try {
      return await pullOnce({ loc: this.o.loc, store: this.d.store }, this.o.puller, {
        log: this.d.log, signal: this.d.signal, now: this.d.now, ...(this.d.events ? { events: this.d.events } : {}),
        beforeReplace: (p) => this.keepIfChanged(p),
      });
    } finally {
      this.expected = new Map();
    }
  }

  /**
   * Right before the puller replaces or deletes `p`: a file written there after the round looked
   * (an edit racing the apply) is kept, never silently overwritten.
   */
  private async keepIfChanged(p: string): Promise<void> {
    const st = await lstat(path.join(this.o.docroot, p)).catch(() => undefined);
    if (!st?.isFile()) return;
    const e = this.expected.get(p);
    if (e && e.size === st.size && e.mtimeMs === Math.floor(st.mtimeMs)) return;
    if (this.unscanned) throw new UnseenLocalChange(p);
    this.keptDuringApply.push(...(await this.keepVersions([{ path: p, from: "local", reason: "changed-during-apply" }], new Map(), new Map(), this.roundGeneration)));
  }

  private takeKeptDuringApply(): KeptRecord[] {
    const k = this.keptDuringApply;
    this.keptDuringApply = [];
    return k;
  }

  /** Take the write lease, waiting with jitter while another writer holds it. */
  private async takeLease(): Promise<void> {
    for (let i = 0; ; i++) {
      try {
        await this.d.publisher.holdLease();
        return;
      } catch (err) {
        if (!(err instanceof RaceError) || i >= LEASE_TRIES) throw err;
        this.d.signal.throwIfAborted();
        if (i % 20 === 0) this.d.log.info(errorFields(err), "another writer holds the lease: waiting");
        await sleep(LEASE_WAIT_MS + Math.floor(Math.random() * LEASE_WAIT_MS), this.d.signal);
      }
    }
  }

  /**
   * The docroot as files (path → content facts). A file whose size and mtime equal the base's is
   * not read; others are hashed once per (size, mtime, inode). Files younger than `settleMs` are
   * left as the base has them, for a later round.
   */
  private async scanLocal(base: FileMap, opts: { persist: boolean } = { persist: true }): Promise<{ local: Map<string, FileFacts>; deferred: number }> {
    const s = await scanTree(this.o.docroot, { filter: this.o.filter, excludeAbs: [this.o.state.dir, this.o.conflictsDir] });
    // Issue 27: sync skipped these silently (push warns). Warned once per name per process (a round
    // every few seconds would repeat it forever); the status and /metrics carry the current list.
    this.skipped = s.skipped;
    for (const k of s.skipped) {
      if (this.warned.has(k.path)) continue;
      this.warned.add(k.path);
      this.d.log.warn({ path: k.path, reason: k.reason }, "skipped");
    }
    const hashes = await this.hashes.load();
    const local = new Map<string, FileFacts>();
    const now = this.d.now().getTime();
    let deferred = 0;
    const seen = new Set<string>();
    // What cannot be read is neither published nor taken for deleted.
    for (const p of s.unreadable) {
      for (const [bp, e] of base) if (bp === p || bp.startsWith(p + "/")) local.set(bp, e);
    }
    for (const f of s.files) {
      seen.add(f.path);
      const b = base.get(f.path);
      if (b && b.size === f.size && b.mtimeMs === f.mtimeMs && b.mode === f.mode) {
        local.set(f.path, b);
        continue;
      }
      if (now - f.mtimeMs < this.o.settleMs) {
        deferred++;
        if (b) local.set(f.path, b);
        continue;
      }
      let sha = hashes.known(f)?.[3];
      if (sha === undefined) {
        try {
          sha = await hashes.hash(path.join(this.o.docroot, f.path), f);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === "ENOENT") continue;
          if (b) local.set(f.path, b);
          continue;
        }
      }
      local.set(f.path, { size: f.size, mtimeMs: f.mtimeMs, mode: f.mode, sha256: sha });
    }
    // A whole scan: what is gone is forgotten (not when a directory could not be read).
    if (s.unreadable.length === 0) hashes.prune((p) => seen.has(p));
    // Kept across restarts, as the uploader's: a restarted node does not read the docroot again.
    if (opts.persist) await hashes.save();
    return { local, deferred };
  }

  /**
   * Keep each losing version under the conflicts directory, as
   * `<dir>/<name>.sync-conflict-<UTC time>-<node>[-<local|remote>]<.ext>`, and list it.
   */
  private async keepVersions(keep: readonly KeptVersion[], local: ReadonlyMap<string, FileFacts>, remote: FileMap, generation: number): Promise<KeptRecord[]> {
    const out: KeptRecord[] = [];
    const t = this.d.now();
    const stamp = t.toISOString().replace(/[-:]/g, "").replace(/\.\d+Z$/, "").replace("T", "-");
    for (const k of keep) {
      const ext = path.posix.extname(k.path);
      const stem = ext && ext !== k.path ? k.path.slice(0, -ext.length) : k.path;
      const rel = `${stem}.sync-conflict-${stamp}-${this.o.nodeId}-${k.from}-${randomBytes(2).toString("hex")}${ext}`;
      const abs = path.join(this.o.conflictsDir, ...rel.split("/"));
      await mkdir(path.dirname(abs), { recursive: true });
      const tmp = `${abs}.partial`;
      let facts: FileFacts | undefined;
      if (k.from === "local") {
        const src = path.join(this.o.docroot, k.path);
        try {
          await copyFile(src, tmp);
          const st = await stat(src);
          await utimes(tmp, st.atime, st.mtime);
          facts = local.get(k.path) ?? { size: st.size, mtimeMs: Math.floor(st.mtimeMs), mode: st.mode & 0o7777, sha256: await hashFile(tmp, st.size) };
        } catch (err) {
          await unlink(tmp).catch(() => undefined);
          if ((err as NodeJS.ErrnoException).code === "ENOENT") continue; // gone meanwhile: nothing left to keep
          throw err;
        }
      } else {
        const e = remote.get(k.path);
        if (!e) continue;
        try {
          await downloadTo(this.d.store, this.o.loc.prefix + e.path, e, tmp, this.d.signal, this.buffers);
        } catch (err) {
          await unlink(tmp).catch(() => undefined);
          if (!(err instanceof ObjectMoved)) throw err;
          // Under the lease the head cannot move: its object was written over outside fansync, and
          // those bytes are in the bucket no more. Waiting would wedge the node for good.
          this.d.log.error({ path: k.path, generation, err: errorMessage(err) }, "the losing version could not be kept: the object the head names holds other bytes (written outside fansync)");
          continue;
        }
        facts = e;
      }
      await rename(tmp, abs);
      const rec: KeptRecord = { time: t.toISOString(), path: k.path, reason: k.reason, version: k.from, kept: rel, size: facts?.size ?? 0, sha256: facts?.sha256 ?? "", generation };
      await appendFile(this.keptList, JSON.stringify(rec) + "\n");
      this.d.log.warn({ path: k.path, reason: k.reason, version: k.from, kept: abs }, "kept the losing version outside the docroot");
      this.d.onKept?.(rec);
      out.push(rec);
    }
    return out;
  }

  /** Tell the puller what the docroot holds (its plan then touches only what must change). */
  private preparePull(held: FileMap, generation: number): Promise<void> {
    return preparePullState(this.o.state, held, generation, this.url);
  }

  /** The puller brought the docroot to `generation`: that is the new base. */
  private async adoptPulled(generation: number): Promise<void> {
    const files = await readPulledFiles(this.o.state);
    await writeNdjsonMap(this.baseFiles, files);
    await writeJson(this.baseDoc, { generation } satisfies BaseDoc);
  }

  /**
   * This node published `generation` over the base it had just applied: the new base is that plus
   * the generation's journal (or its manifest), and the puller is told so (no download of our own files).
   */
  private async adoptPublished(generation: number): Promise<void> {
    const hs = await readHead(this.d.store, this.o.loc, this.d.signal);
    if (!hs || hs.head.generation !== generation) throw new RaceError(`published generation ${generation}, but the head of ${this.url} is ${hs?.head.generation ?? "gone"}`);
    // The uploader may have published more than one generation over the base (deletions that
    // clash with its puts go first, as their own generation): the base catches up through every
    // journal since, the way the puller does (else the manifest).
    const have = (await readJson<BaseDoc>(this.baseDoc))?.generation ?? 0;
    const caught = have > 0 && have < generation ? await catchUpThroughJournals(await readNdjsonMap<Entry>(this.baseFiles), have, hs.head, this.o.puller.maxJournals, (g) => readJournal(this.d.store, this.o.loc, g, this.d.signal), this.d.log) : undefined;
    const files = caught?.files ?? (await readManifest(this.d.store, hs.head, this.d.signal)).files;
    await adoptPullState(this.o.state, this.url, hs.head, hs.etag, files);
    await writeNdjsonMap(this.baseFiles, files);
    await writeJson(this.baseDoc, { generation } satisfies BaseDoc);
  }
}

/** What a pull changed in the docroot, as `RoundResult.applied` (nothing for a no-op or an empty change). */
function appliedBy(r: PullResult): Applied | undefined {
  return r.noop ? undefined : appliedOrNone(r.generation, r.changedPaths ?? [], r.deletedPaths ?? []);
}
