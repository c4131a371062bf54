/**
 * The replicator: brings regional locations to the primary's generation. Per region and round:
 * objects first (server-side copy when the region's server can reach the primary's bucket, else
 * streamed GET→PUT), then the region's manifest and journal rewritten with the region's own ETags
 * and VersionIds, then the region's head (conditional, through publishGeneration), then deletions.
 * A region's generation N is the primary's generation N, so pullers can compare sources.
 * Regions never wait for each other: each has its own round, retries and daemon loop.
 */
import pLimit from "p-limit";
import { contentTypeFor } from "../core/content-type.ts";
import { ConditionFailed, errorMessage, type FailedTransfer, IntegrityError, ObjectMoved, RemoteError, errorLine } from "../core/errors.ts";
import { prefixClashes } from "../core/paths.ts";
import type { Location } from "../core/location.ts";
import type { Entry, FileMap, Journal } from "../core/manifest.ts";
import { planReplicate, type ReplicatePlan } from "../core/replicate-plan.ts";
import { filesMatchSignature, type HeadSignature, type TrustPolicy, verifyGeneration, verifyHeadSignature } from "../core/signing.ts";
import { errorFields, type Logger } from "../adapters/logger.ts";
import { withRetry } from "../adapters/retry.ts";
import { isRetryable } from "../adapters/s3-errors.ts";
import { type ObjectAttrs, type PutResult, type ObjectStore, realVersion } from "../adapters/object-store.ts";
import { StateDir } from "../adapters/state-dir.ts";
import { readJson, writeJson } from "../adapters/state-files.ts";
import { GenerationWriter } from "./generation-writer.ts";
import { type HeadState, readHead, readHeadIfChanged, readJournal, readManifest } from "./generation-reader.ts";
import { catchUpThroughJournals } from "./journals.ts";
import type { JobDeps, PublishDeps } from "./job-deps.ts";
import { copyAcross, findMovedObjects, objectRef, verifyStored } from "./transfer.ts";
import { PackCarrier } from "./packs.ts";
import type { EventQueue } from "../adapters/event-queue.ts";
import { EventListener, type EventHealth } from "./event-listener.ts";
import { runDaemonLoop } from "./daemon-loop.ts";
import { Wake } from "./wake.ts";

/** A location with its store. */
export interface Endpoint {
  readonly url: string;
  readonly loc: Location;
  readonly store: ObjectStore;
}

/** A regional location. */
export interface Region extends Endpoint {
  /** The region's server can read the primary's bucket itself (same endpoint and credentials): CopyObject. */
  readonly serverSideCopy: boolean;
  /** The region location's state shared by every writer of it (ledger, capabilities). */
  readonly shared: StateDir;
}

/** Resolved options. */
export interface ReplicatorOptions {
  readonly primary: Endpoint;
  readonly regions: readonly Region[];
  /** The replicator's own state directory (per-region status files, capabilities). */
  readonly stateDir: string;
  readonly concurrency: number;
  readonly multipartThreshold: number;
  readonly partSize: number;
  readonly retain: number;
  /** How long the write lease lives without renewal (default 60 s; the CLI's FANSYNC_LEASE_TTL). */
  readonly leaseTtlMs?: number | undefined;
  /** A region at most this many generations behind catches up through the primary's journals. */
  readonly maxJournals: number;
  /** Check every object a region's head names (not only those it marks dirty) and copy again those that moved. */
  readonly verify: boolean;
  /**
   * Copy only primary generations these keys signed (--trusted-key): a forged one is refused before
   * any object is copied (issue 22). Undefined: nothing is checked (a warning says so once when the
   * primary is signed).
   */
  readonly trust?: TrustPolicy | undefined;
}

/** Injected collaborators; `signal` aborts requests in flight (the hard stop). */
export interface ReplicatorDeps extends JobDeps, PublishDeps {
  /** Told every region status as a round ends (the daemon's status page). */
  readonly onStatus?: ((s: RegionStatus) => void) | undefined;
  /** `--events`: the daemon's regions also start a round when this queue has a message (event-listener.ts). */
  readonly queue?: EventQueue | undefined;
}

/** What one round did in one region. */
export interface RegionResult {
  readonly region: string;
  readonly from: number;
  readonly generation: number;
  readonly noop: boolean;
  readonly transfers: number;
  readonly regionCopies: number;
  readonly metaOnly: number;
  readonly deletes: number;
  readonly transferBytes: number;
  readonly durationMs: number;
}

/** The per-region status file (`fansync status` prints it). */
export interface RegionStatus {
  readonly kind: "fansync-region-status/1";
  readonly region: string;
  readonly primary: string;
  readonly status: "OK" | "ERROR";
  readonly generation: number;
  readonly primaryGeneration: number;
  /** Seconds are counted from when the region was first seen behind (a lower bound in one-shot runs). */
  readonly lag: { readonly generations: number; readonly seconds: number };
  readonly behindSince: string | null;
  readonly lastSuccess: string | null;
  readonly lastAttempt: string;
  readonly lastError: string | null;
  readonly failures: number;
}

/** The primary's object is no longer the one its manifest names: it moved on during the round. */
function sourceMoved(message: string): ObjectMoved {
  return new ObjectMoved(message, "the primary published again during the copy; the next round converges");
}

/**
 * Whole rounds a one-shot run tries per region: a second round picks up a primary that moved on
 * during the first. Transfers inside a round have their own tries (adapters/retry.ts), so one
 * object costs at most ROUND_TRIES × MAX_REQUESTS_PER_OBJECT requests in a run.
 */
export const ROUND_TRIES = 2;

// CopyObject copies at most 5 GiB in one request; bigger objects are streamed.
const MAX_COPY_BYTES = 5 * 1024 ** 3;
// Status files are rewritten when something changes, else at most this often.
const STATUS_REFRESH_MS = 5_000;

/** In-memory state of one region between rounds. */
interface RegionState {
  files: FileMap | undefined;
  head: HeadState | undefined;
  writer: GenerationWriter;
  generation: number;
  primaryGeneration: number;
  behindSince: string | null;
  lastSuccess: string | null;
  failures: number;
  loaded: boolean;
  written: { text: string; at: number } | undefined;
  /** Daemon mode: a new generation announced (or an event) cuts the region's nap short. */
  readonly wake: Wake;
}

/** Replicates one primary location to its regions. */
export class Replicator {
  private readonly o: ReplicatorOptions;
  private readonly d: ReplicatorDeps;
  private readonly state: StateDir;
  private readonly states = new Map<string, RegionState>();
  private primaryHead: HeadState | undefined;
  private primaryHeadInFlight: Promise<HeadState | undefined> | undefined;
  private primaryManifest: { generation: number; files: Promise<FileMap> } | undefined;
  /** The site of the first primary head verified (with trust and no --site). */
  private pinnedSite: string | undefined;
  private warnedUnchecked = false;
  private readonly journals = new Map<number, Promise<Journal | undefined>>();
  /** Packs (issue 14): carried to each region after its generation (engine/packs.ts). */
  private readonly packs: PackCarrier;
  private listener: EventListener | undefined;

  constructor(opts: ReplicatorOptions, deps: ReplicatorDeps) {
    this.o = opts;
    this.d = deps;
    this.state = new StateDir(opts.stateDir);
    this.packs = new PackCarrier(opts.primary, opts, (url) => this.state.regionPackCarry(url), deps);
  }

  /** One round in every region at once, each retried with backoff on retryable errors; never throws. */
  async runOnce(retries = ROUND_TRIES - 1): Promise<{ region: string; result?: RegionResult; error?: unknown }[]> {
    const settled = await Promise.allSettled(this.o.regions.map((r) => this.runRegion(r, retries)));
    return settled.map((s, i) => {
      const region = (this.o.regions[i] as Region).url;
      return s.status === "fulfilled" ? { region, result: s.value } : { region, error: s.reason as unknown };
    });
  }

  /**
   * Daemon: every region polls the primary every `intervalMs` on its own daemon loop
   * (daemon-loop.ts); a failing region backs off without delaying the others. Resolves once `stop`
   * aborted and the rounds in flight finished; a fatal error in one region (the loop's table) stops
   * the others after their rounds in flight and is thrown.
   */
  async daemon(intervalMs: number, stop: AbortSignal, fallbackIntervalMs = intervalMs): Promise<void> {
    // Events (issue 24): a message is a kick, as a new generation announced by `watch` is; while the
    // queue cannot be read the regions poll at the fallback interval.
    const listener = this.d.queue ? new EventListener(this.d.queue, () => this.kick(), this.d) : undefined;
    this.listener = listener;
    const fatal = new AbortController();
    const until = AbortSignal.any([stop, fatal.signal]);
    const listening = listener?.run(until);
    const every = () => (listener?.failing ? Math.min(intervalMs, fallbackIntervalMs) : intervalMs);
    const loops = await Promise.allSettled(
      this.o.regions.map((r) =>
        runDaemonLoop({
          // runRegion logged the failure and wrote the status file.
          run: async () => void (await this.runRegion(r, 0)),
          signal: until,
          wake: this.stateOf(r).wake,
          pollMs: every,
          writers: "shared",
        }).catch((err: unknown) => {
          fatal.abort(err);
          throw err;
        }),
      ),
    );
    fatal.abort();
    await listening;
    const failed = loops.find((l) => l.status === "rejected");
    if (failed) throw failed.reason;
  }

  /** With `--events`, the queue's state (the daemon's /metrics); undefined without. */
  get events(): EventHealth | undefined {
    return this.listener?.health;
  }

  /** Announce a new primary generation (watch --replicate-to): every region runs a round now, or after its backoff. */
  kick(): void {
    for (const r of this.o.regions) this.stateOf(r).wake.fire();
  }

  /** One round in one region with whole-round retries; records the region's status either way. */
  async runRegion(r: Region, retries: number): Promise<RegionResult> {
    const st = this.stateOf(r);
    const log = this.d.log.child({ region: r.url });
    if (!st.loaded) await this.loadStatus(r, st);
    try {
      const res = await withRetry(() => this.replicateRegion(r, st, log), {
        tries: retries + 1,
        minTimeoutMs: 500,
        signal: this.d.signal,
        onRetry: (err, _left, delayMs) => log.warn({ ...errorFields(err), retryInMs: delayMs }, "region round failed; retrying"),
      });
      st.failures = 0;
      st.lastSuccess = this.d.now().toISOString();
      await this.recordStatus(r, st, undefined);
      return res;
    } catch (err) {
      st.failures++;
      const lag = this.lagOf(st);
      log.error({ ...errorFields(err), generation: st.generation, primaryGeneration: st.primaryGeneration, lagGenerations: lag.generations, lagSeconds: lag.seconds, failures: st.failures }, "region failed");
      await this.recordStatus(r, st, err).catch((e: unknown) => log.warn(errorFields(e), "could not write the region status"));
      throw err;
    }
  }

  private async replicateRegion(r: Region, st: RegionState, log: Logger): Promise<RegionResult> {
    const { signal } = this.d;
    const started = Date.now();
    const primary = await this.readPrimaryHead();
    if (primary) st.primaryGeneration = primary.head.generation;
    const noop = (gen: number): RegionResult => ({ region: r.url, from: gen, generation: gen, noop: true, transfers: 0, regionCopies: 0, metaOnly: 0, deletes: 0, transferBytes: 0, durationMs: Date.now() - started });
    const rh = await readHead(r.store, r.loc, signal);
    const have = rh?.head.generation ?? 0;
    st.generation = have;
    if (!primary) {
      log.debug("the primary has no generation yet");
      return noop(have);
    }
    const ph = primary.head;
    // Before anything is copied or carried: the primary's head verifies under a trusted key.
    const sig = this.checkPrimary(ph, log);
    if (have > ph.generation) {
      throw new IntegrityError(`region ${r.url} is at generation ${have}, ahead of the primary's ${ph.generation}`, {
        hint: "the primary was reset, or another primary replicates here: empty the region's prefix or point the region elsewhere",
      });
    }
    const regionFiles = async (): Promise<FileMap> => (!rh ? new Map() : st.files && st.head?.etag === rh.etag && st.head.head.generation === have ? st.files : (await readManifest(r.store, rh.head, signal)).files);
    const check = this.o.verify ? ["*"] : (rh?.head.dirty ?? []);
    if (have === ph.generation) {
      st.behindSince = null;
      if (rh) {
        try {
          const files = await regionFiles();
          // A run killed between this head and its deletions left objects only the ledger knows of.
          await st.writer.sweep(files);
          let cur = check.length > 0 ? await this.repairInPlace(r, st, rh, ph, files, check, log) : rh;
          // The primary's head was rewritten in place (an approval of its deletions, re-signed):
          // the region's head carries the same approval and signature.
          if ((ph.approvedDeletes ?? 0) !== (cur.head.approvedDeletes ?? 0) || (ph.signature?.value ?? "") !== (cur.head.signature?.value ?? "")) {
            cur = await st.writer.carry(cur, { approvedDeletes: ph.approvedDeletes ?? 0, ...(ph.signature ? { signature: ph.signature } : {}) });
            st.head = cur;
            log.info({ generation: have, approvedDeletes: ph.approvedDeletes ?? 0 }, "region's head now carries the primary's approval and signature");
          }
        } finally {
          await st.writer.release();
        }
        await this.packs.carry(r, ph.files, false, log);
      }
      return noop(have);
    }
    st.behindSince ??= ph.time || this.d.now().toISOString();
    const lag = this.lagOf(st);
    log.info({ generation: have, primaryGeneration: ph.generation, lagGenerations: lag.generations, lagSeconds: lag.seconds }, "region behind; replicating");
    const files = await regionFiles();
    const where = this.o.primary.url;
    const trusted = (f: FileMap) => !sig || filesMatchSignature(sig, f.values());
    const target = await this.targetFor(have, ph, files, log, trusted);
    // What is copied is what the primary's writer signed: a swapped or edited manifest stops here.
    if (sig && this.o.trust) verifyGeneration(ph, target.values(), { keys: this.o.trust.keys, site: sig.site }, where, `the manifest of the primary's generation ${ph.generation} at ${where}`);
    // Objects of the region that an interrupted round overwrote are planned as if absent: copied again.
    const moved = await this.findMoved(r, files, check, log);
    const plan = planReplicate(target, withoutPaths(files, moved));
    const deletes = [...plan.deletes, ...[...moved].filter((p) => !target.has(p))];
    const written = [...plan.transfers, ...plan.regionCopies.map((c) => c.entry), ...plan.twins.map((t) => t.entry)].map((e) => e.path);
    // A region whose server refuses dir/file prefix clashes (versitygw) takes d/x.html only once d
    // is gone (and d once d/… are). A writer of its own content publishes such deletions first as
    // their own generation; a region cannot (its generation N is the primary's N, under the
    // primary's signature, and there is no number between), so they are treated as overwrites:
    // marked in the region's head, then deleted before the copies. Readers of a versioned region
    // still read them by version; of an unversioned one they skip them until the head moves, as
    // for an object this round overwrites. (begin's sweep then removes what an interrupted round
    // stranded outside the region's manifest, which may clash too.)
    const clashing = prefixClashes(deletes, written);
    try {
      let base = rh;
      if (rh && clashing.length > 0) {
        base = await st.writer.setDirty(rh, [...new Set([...(rh.head.dirty ?? []), ...clashing])]);
        await this.deleteAhead(r, clashing, log);
      }
      // A region's generation N is the primary's generation N: all of it or nothing, under the
      // primary's signature (the replicator holds no key; the signature covers no ETag).
      const commit = await st.writer.begin(base, { files, writes: written, deletes, exact: true, generation: ph.generation, signature: ph.signature, approvedDeletes: have === ph.generation - 1 ? ph.approvedDeletes : undefined });
      const copied = await this.copyObjects(r, plan).catch(async (err: unknown) => {
        await commit.abort();
        throw err;
      });
      const c = await commit.finish([...copied.puts, ...plan.metaOnly], copied.failed);
      st.head = c.head;
      st.files = c.files;
    } finally {
      // The lease the dirty mark took (begin releases only one it took itself).
      await st.writer.release();
    }
    st.generation = ph.generation;
    st.behindSince = null;
    await this.packs.carry(r, ph.files, true, log);
    const res: RegionResult = {
      region: r.url,
      from: have,
      generation: ph.generation,
      noop: false,
      transfers: plan.transfers.length,
      regionCopies: plan.regionCopies.length + plan.twins.length,
      metaOnly: plan.metaOnly.length,
      deletes: plan.deletes.length,
      transferBytes: plan.transferBytes,
      durationMs: Date.now() - started,
    };
    const { region: _r, ...fields } = res;
    log.info({ ...fields, unchanged: plan.unchanged, serverSideCopy: r.serverSideCopy }, "region at generation");
    return res;
  }

  /** Delete region objects before the head stops naming them (they are marked dirty in it); a failure fails the round. */
  private async deleteAhead(r: Region, paths: readonly string[], log: Logger): Promise<void> {
    const failed = await r.store.deleteMany(paths.map((p) => r.loc.prefix + p), this.d.signal);
    if (failed.length > 0) throw new RemoteError(`could not delete ${failed[0]?.key} ahead of the copies that clash with it: ${failed[0]?.error}`, { retryable: true });
    log.info({ objects: paths.length, paths: paths.slice(0, 10) }, "deleted the objects that clash with this round's copies (a server that refuses dir/file prefix clashes) before copying");
  }

  private async findMoved(r: Region, files: FileMap, paths: readonly string[], log: Logger): Promise<Set<string>> {
    // --verify reads every object's bytes; a dirty mark is checked by ETag (one HEAD each).
    const moved = await findMovedObjects(r.store, r.loc.prefix, files, paths, { concurrency: this.o.concurrency, signal: this.d.signal, bytes: paths.includes("*") });
    if (moved.size > 0) log.warn({ objects: moved.size, paths: [...moved].slice(0, 10) }, "objects the region's head names hold other bytes (an interrupted round): copying them again");
    return moved;
  }

  /**
   * The region is at the primary's generation but its head marks objects an interrupted round may
   * have overwritten: verify them, copy the moved ones again from the primary, and clear the mark
   * for every object that holds the bytes (and ETag) the region's manifest names.
   */
  private async repairInPlace(r: Region, st: RegionState, rh: HeadState, ph: HeadState["head"], files: FileMap, check: readonly string[], log: Logger): Promise<HeadState> {
    const moved = await this.findMoved(r, files, check, log);
    const primaryFiles = moved.size > 0 ? await this.targetFor(ph.generation, ph, new Map(), log, () => true) : new Map<string, Entry>();
    // Copied again only from a primary manifest that verifies (the head did, in checkPrimary).
    if (moved.size > 0 && this.o.trust && ph.signature) verifyGeneration(ph, primaryFiles.values(), { keys: this.o.trust.keys, site: ph.signature.site }, this.o.primary.url);
    const still = new Set<string>();
    const fixed: Entry[] = [];
    await Promise.all([...moved].map(async (p) => {
      const want = primaryFiles.get(p);
      const named = files.get(p);
      // Only the same bytes can be put back under this generation (its files and signature stay).
      if (!want || !named || want.sha256 !== named.sha256 || want.size !== named.size) return still.add(p);
      try {
        const res = await withRetry(() => this.transfer(r, want), { signal: this.d.signal, unless: (err) => err instanceof ObjectMoved });
        if (res.etag !== named.etag || res.versionId !== named.versionId) fixed.push({ ...named, etag: res.etag, versionId: res.versionId });
      } catch (err) {
        log.warn({ path: p, ...errorFields(err) }, "could not copy a moved object again");
        still.add(p);
      }
    }));
    // Every path the head marked was among those checked: what is still moved is all that stays marked.
    const left = [...still].sort();
    if (still.size > 0) log.warn({ objects: still.size }, "objects could not be restored under the region's current manifest: the next generation from the primary repairs them");
    if (fixed.length > 0) {
      // The objects hold the right bytes again under new ETags: the region's manifest (its own,
      // never the primary's) names them anew, so nodes can read them now, not at the next generation.
      const amended = await st.writer.amend(rh, files, fixed, left);
      st.head = amended.head;
      st.files = amended.files;
      log.info({ generation: rh.head.generation, objects: fixed.length }, "repaired objects: the region's manifest names their new ETags");
      return st.head;
    }
    if (JSON.stringify(left) === JSON.stringify(rh.head.dirty ?? [])) return rh;
    st.head = await st.writer.setDirty(rh, left);
    return st.head;
  }

  /** The primary's files at its head: journals on top of the region's map when close, else its manifest. */
  private async targetFor(have: number, ph: HeadState["head"], regionFiles: FileMap, log: Logger, trusted: (files: FileMap) => boolean): Promise<FileMap> {
    const caught = await catchUpThroughJournals(regionFiles, have, ph, this.o.maxJournals, (g) => this.primaryJournal(g), log);
    // Journals are not signed: ones that do not add up to the signed files are set aside for the manifest.
    if (caught && trusted(caught.files)) return caught.files;
    if (caught) log.warn({ generation: ph.generation }, "the primary's journals do not add up to the signed generation; reading the full manifest");
    if (this.primaryManifest?.generation !== ph.generation) {
      const files = readManifest(this.o.primary.store, ph, this.d.signal).then((m) => m.files);
      this.primaryManifest = { generation: ph.generation, files };
      files.catch(() => {
        if (this.primaryManifest?.files === files) this.primaryManifest = undefined;
      });
    }
    return this.primaryManifest.files;
  }

  /**
   * Copy every object the plan needs into the region (each with its own retries); returns the
   * entries with the region's ETags and the copies that failed. A primary that moved on is not
   * a failed copy but a reason to start the round again: it is thrown once everything settled, so
   * no copy of this round is still running when the next starts.
   */
  private async copyObjects(r: Region, plan: ReplicatePlan): Promise<{ puts: Entry[]; failed: FailedTransfer[] }> {
    const limit = pLimit(this.o.concurrency);
    const puts: Entry[] = [];
    const failed: FailedTransfer[] = [];
    let moved: ObjectMoved | undefined;
    const landed = new Map<string, Entry>();
    const one = (e: Entry, fn: () => Promise<PutResult>) =>
      limit(async () => {
        if (this.d.signal.aborted) return;
        try {
          const res = await withRetry(fn, { signal: this.d.signal, unless: (err) => err instanceof ObjectMoved });
          const entry: Entry = { ...e, etag: res.etag, versionId: res.versionId };
          puts.push(entry);
          landed.set(e.path, entry);
        } catch (err) {
          if (err instanceof ObjectMoved) moved ??= err;
          else failed.push({ path: e.path, error: errorMessage(err), retryable: isRetryable(err) });
        }
      });
    await Promise.all([
      ...plan.transfers.map((e) => one(e, () => this.transfer(r, e))),
      ...plan.regionCopies.map(({ entry, from }) => one(entry, () => this.copyInRegion(r, entry, from))),
    ]);
    if (failed.length === 0 && !moved) {
      await Promise.all(plan.twins.map(({ entry, of }) => one(entry, () => this.copyInRegion(r, entry, landed.get(of) as Entry))));
    }
    this.d.signal.throwIfAborted();
    if (moved) throw moved;
    return { puts, failed };
  }

  /** Bring one object's bytes from the primary into the region. */
  private async transfer(r: Region, e: Entry): Promise<PutResult> {
    const { primary } = this.o;
    const { signal } = this.d;
    const src = primary.loc.prefix + e.path;
    const dst = r.loc.prefix + e.path;
    if (r.serverSideCopy && e.size <= MAX_COPY_BYTES) {
      let res: PutResult;
      try {
        res = await r.store.copy(dst, { bucket: primary.store.bucket, key: src, versionId: e.versionId, etag: e.etag }, undefined, signal);
      } catch (err) {
        if (err instanceof ConditionFailed) throw sourceMoved(`${e.path}: the primary's object changed or vanished during the copy`);
        throw err;
      }
      // A copy by version id is exact. Otherwise some servers ignore CopySourceIfMatch (fauxqs,
      // moto): a single-part ETag is the MD5 of the bytes, so a different one means the copy took
      // different content. A multipart ETag proves nothing (issue 27: an interrupted push left
      // other bytes under big.bin, and the region published them): the copy is read back and
      // hashed before any head names it.
      if (realVersion(e.versionId)) return res;
      if (isPlainMd5(e.etag) && isPlainMd5(res.etag)) {
        if (res.etag !== e.etag) throw sourceMoved(`${e.path}: the copied object is not the one the manifest names`);
        return res;
      }
      return verifyStored(r.store, dst, e, res, signal, (m) => sourceMoved(`${e.path}: the copied object is not the one the manifest names (${m})`));
    }
    return copyAcross(primary.store, src, r.store, dst, e, { multipartThreshold: this.o.multipartThreshold, partSize: this.o.partSize, signal });
  }

  /**
   * Dedup: the region already holds these bytes under `from`: copy inside the region. The headers
   * come from the primary's object for this path (the twin's Content-Type may differ).
   */
  private async copyInRegion(r: Region, e: Entry, from: Entry): Promise<PutResult> {
    const { signal } = this.d;
    const head = await this.o.primary.store.headAttrs(this.o.primary.loc.prefix + e.path, { ...objectRef(e), signal });
    if (!head) throw sourceMoved(`${e.path}: the primary's object changed or vanished`);
    const { versionId: _primaryVersion, ...attrs } = head;
    try {
      return await r.store.copy(r.loc.prefix + e.path, { bucket: r.store.bucket, key: r.loc.prefix + from.path, versionId: from.versionId, etag: from.etag }, withFallbackType(attrs, e.path), signal);
    } catch (err) {
      // The twin changed under us (overwritten in this very round): bring the bytes from the primary.
      if (err instanceof ConditionFailed) return this.transfer(r, e);
      throw err;
    }
  }

  /**
   * With trust: the primary's head must verify (the site is pinned to the first one verified in this
   * process unless given). Without: a signed primary is worth one warning, since a forged
   * generation would be copied to every region unchecked.
   */
  private checkPrimary(ph: HeadState["head"], log: Logger): HeadSignature | undefined {
    const t = this.o.trust;
    if (!t) {
      if (ph.signature && !this.warnedUnchecked) {
        this.warnedUnchecked = true;
        log.warn({ generation: ph.generation, keyId: ph.signature.keyId }, "the primary's generations are signed, but this replicator does not check them: a generation forged in the primary would be copied to every region (give --trusted-key)");
      }
      return undefined;
    }
    const sig = verifyHeadSignature(ph, t.keys, t.site ?? this.pinnedSite, this.o.primary.url);
    this.pinnedSite ??= sig.site;
    return sig;
  }

  /** Read the primary's head (conditional on the last ETag); concurrent callers share one request. */
  private readPrimaryHead(): Promise<HeadState | undefined> {
    this.primaryHeadInFlight ??= (async () => {
      const { store, loc } = this.o.primary;
      const cached = this.primaryHead;
      const res = await readHeadIfChanged(store, loc, cached?.etag, this.d.signal);
      if (res === "not-modified") return cached;
      return (this.primaryHead = res);
    })().finally(() => {
      this.primaryHeadInFlight = undefined;
    });
    return this.primaryHeadInFlight;
  }

  private primaryJournal(gen: number): Promise<Journal | undefined> {
    let j = this.journals.get(gen);
    if (!j) {
      const { store, loc } = this.o.primary;
      j = readJournal(store, loc, gen, this.d.signal);
      j.catch(() => this.journals.delete(gen));
      this.journals.set(gen, j);
      // Keep a bounded window: the newest generations are the ones regions still need.
      for (const k of this.journals.keys()) if (k < gen - this.o.maxJournals * 2) this.journals.delete(k);
    }
    return j;
  }

  private stateOf(r: Region): RegionState {
    let st = this.states.get(r.url);
    if (!st) {
      const writer = new GenerationWriter({ loc: r.loc, store: r.store, state: this.state, shared: r.shared, retain: this.o.retain, leaseTtlMs: this.o.leaseTtlMs }, this.d);
      st = { files: undefined, head: undefined, writer, generation: 0, primaryGeneration: 0, behindSince: null, lastSuccess: null, failures: 0, loaded: false, written: undefined, wake: new Wake() };
      this.states.set(r.url, st);
    }
    return st;
  }

  /** One-shot runs keep `behindSince` and `lastSuccess` across invocations through the status file. */
  private async loadStatus(r: Region, st: RegionState): Promise<void> {
    const prev = await readJson<RegionStatus>(this.state.regionStatus(r.url));
    st.loaded = true;
    if (prev?.kind !== "fansync-region-status/1") return;
    st.behindSince = prev.behindSince;
    st.lastSuccess = prev.lastSuccess;
    st.generation = prev.generation;
    st.primaryGeneration = prev.primaryGeneration;
  }

  private lagOf(st: RegionState): { generations: number; seconds: number } {
    const generations = Math.max(0, st.primaryGeneration - st.generation);
    const since = st.behindSince ? Date.parse(st.behindSince) : NaN;
    const seconds = generations > 0 && Number.isFinite(since) ? Math.max(0, Math.round((this.d.now().getTime() - since) / 1000)) : 0;
    return { generations, seconds };
  }

  private async recordStatus(r: Region, st: RegionState, err: unknown): Promise<void> {
    const now = this.d.now();
    const lag = this.lagOf(st);
    const body = {
      kind: "fansync-region-status/1" as const,
      region: r.url,
      primary: this.o.primary.url,
      status: err === undefined ? ("OK" as const) : ("ERROR" as const),
      generation: st.generation,
      primaryGeneration: st.primaryGeneration,
      lag,
      behindSince: lag.generations > 0 ? st.behindSince : null,
      lastSuccess: st.lastSuccess,
      lastError: err === undefined ? null : errorLine(err),
      failures: st.failures,
    };
    this.d.onStatus?.({ ...body, lastAttempt: now.toISOString() });
    const text = JSON.stringify(body);
    if (st.written?.text === text && now.getTime() - st.written.at < STATUS_REFRESH_MS) return;
    const doc: RegionStatus = { ...body, lastAttempt: now.toISOString() };
    await writeJson(this.state.regionStatus(r.url), doc);
    st.written = { text, at: now.getTime() };
  }
}

function withoutPaths(files: FileMap, drop: ReadonlySet<string>): FileMap {
  if (drop.size === 0) return files;
  const out: FileMap = new Map(files);
  for (const p of drop) out.delete(p);
  return out;
}

function isPlainMd5(etag: string): boolean {
  return /^"?[0-9a-f]{32}"?$/.test(etag);
}

function withFallbackType(attrs: ObjectAttrs, p: string): ObjectAttrs {
  return attrs.contentType ? attrs : { ...attrs, contentType: contentTypeFor(p) };
}
