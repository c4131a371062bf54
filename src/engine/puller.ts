/**
 * The puller engine: bring a web node's docroot to the generation a location's head names.
 * Stage every download as a verified temp file next to its target, then commit (renames, mode and
 * mtime updates, deletions) only when all of them succeeded: the docroot moves from one complete
 * generation to the next, and a failed or interrupted run leaves it as it was.
 */
import type { Stats } from "node:fs";
import { chmod, chown, lstat, mkdir, readdir, realpath, rename, rm, rmdir, stat, unlink, utimes } from "node:fs/promises";
import path from "node:path";
import pMap from "p-map";
import type { TransferEvents } from "../core/transfer-events.ts";
import { errorMessage, FansyncError, IntegrityError, LocalIoError, ObjectMoved, PartialFailureError, PathsNotReplaced, RunTimeout, StaleHead, TransferCorrupt, UntrustedHead, UsageError } from "../core/errors.ts";
import { applyChmod, type ChmodRules } from "../core/chmod.ts";
import { checkDeleteGuard } from "../core/guard.ts";
import { formatLocation, type Location, metaPrefix } from "../core/location.ts";
import { type Entry, type FileMap, type Head, metaKeys } from "../core/manifest.ts";
import { showPath, TEMP_MARK } from "../core/paths.ts";
import { type HeldFile, isEmptyPlan, planPull, type PullPlan } from "../core/plan.ts";
import { filesDigest, filesMatchSignature, type HeadSignature, type TrustPolicy, verifyGeneration, verifyHeadSignature } from "../core/signing.ts";
import { type DeleteLimit, formatAge } from "../core/units.ts";
import { errorFields, type Logger } from "../adapters/logger.ts";
import { withRetry } from "../adapters/retry.ts";
import type { ObjectStore } from "../adapters/object-store.ts";
import type { StateDir } from "../adapters/state-dir.ts";
import { ensureParentDirs, newRunId, pruneEmptyDirs, tempPathFor, toLocal } from "../adapters/safe-write.ts";
import { NdjsonAppender, readJson, readNdjsonMap, writeJson, writeNdjsonMap } from "../adapters/state-files.ts";
import { hashFile } from "../adapters/local-tree.ts";
import { type PullState, readPulledFiles, readPullState, refreshPullState, writePullState } from "./pull-state.ts";
import { changedPaths, readHeadIfChanged, readJournal, readManifest } from "./generation-reader.ts";
import { catchUpThroughJournals } from "./journals.ts";
import type { JobDeps } from "./job-deps.ts";
import { TransferThreads } from "./transfer-threads.ts";
import { downloadTo, transferBuffers } from "./transfer.ts";
import { stagePackedFiles } from "./packs.ts";

/** Resolved options of a puller. */
export interface PullerOptions {
  readonly docroot: string;
  readonly state: StateDir;
  readonly concurrency: number;
  /** Transfer threads for small downloads (transfer-threads.ts); 0: all on this thread. Default 0. */
  readonly threads?: number | undefined;
  readonly maxDelete: DeleteLimit;
  readonly force: boolean;
  readonly dryRun: boolean;
  readonly deleteExtraneous: boolean;
  readonly verify: boolean;
  readonly checksum: boolean;
  /** Absolute paths inside the docroot that are never deleted (the status file). */
  readonly keep: readonly string[];
  /** Journals are fetched when at most this many generations behind; else the full manifest. */
  readonly maxJournals: number;
  /** Signed generations: the keys and site this node accepts; undefined: heads are not checked. */
  readonly trust: TrustPolicy | undefined;
  /** STALE, nothing applied, when the head was signed (unsigned: written) longer ago than this. */
  readonly maxAgeMs: number | undefined;
  /** Apply setuid/setgid bits from the bucket; by default they are stripped. */
  readonly allowSetuid: boolean;
  /** rsync's --chmod: the modes files and directories get in the docroot instead of the bucket's. */
  readonly chmod?: ChmodRules | undefined;
  /** --group: the group id of what lands in the docroot (files and the directories on their way). */
  readonly gid?: number | undefined;
}

/** One source to pull from. */
export interface Source {
  readonly loc: Location;
  readonly store: ObjectStore;
}

/** Injected collaborators. */
export interface PullerDeps extends JobDeps {
  /** Observer of transfers (progress bar, metrics). */
  readonly events?: TransferEvents | undefined;
  /** The run's deadline, told how many bytes the plan downloads (it allows time for them). */
  readonly deadline?: { allow(bytes: number): void } | undefined;
  /**
   * Two-way sync: called right before a path of the docroot is replaced or deleted, so that a file
   * written there since the node last looked is kept first (engine/two-way.ts), or the apply stops:
   * a FansyncError it throws ends the run as it is, with what landed so far left in place (each
   * of those files is the generation's). Pull never sets it.
   */
  readonly beforeReplace?: ((path: string) => Promise<void>) | undefined;
}

/** What one pull did. */
export interface PullResult {
  readonly generation: number;
  readonly headGeneration: number;
  readonly headTime: string;
  readonly source: string;
  readonly noop: boolean;
  readonly downloads: number;
  readonly downloadBytes: number;
  readonly metaOnly: number;
  readonly deletes: number;
  readonly drift: number;
  /** The head read was signed (this key id) but this node checks no signatures (no trust given). */
  readonly uncheckedSignature?: string | undefined;
  /** Of a run that applied a generation: the paths written (content or metadata) and deleted (--on-apply). */
  readonly changedPaths?: readonly string[];
  readonly deletedPaths?: readonly string[];
}

/**
 * The generation the docroot holds complete (0: none yet), from the puller's state: the state is
 * written only after a whole generation is in place, so a failed run leaves this number as it was.
 */
export async function readServedGeneration(state: StateDir): Promise<number> {
  const h = await readPullState(state);
  return h?.complete ? h.generation : 0;
}

/** What a node refused by its delete guard says to do (also in its status line). */
export const APPROVE_HINT = "if the master meant these deletions: run `fansync push --approve-deletes` there (every node then accepts them); for this node alone: pull --force";

/** Pull `source` into the docroot once. */
export async function pullOnce(source: Source, o: PullerOptions, d: PullerDeps): Promise<PullResult> {
  // Temp files a killed or interrupted run verified are kept for this one (issue 27: a rerun
  // fetched everything again); the rest of its temp files are removed.
  const staging = { ...(await cleanStaging(o.state, d.log)), takenOver: false };
  const res = await pullGeneration(source, o, d, staging);
  // A run that ends without downloading (no-op, dry run, nothing to fetch) has no use for them;
  // one that fails before that leaves them to the next run.
  if (!staging.takenOver && !o.dryRun) await dropStaged(o.state, staging.kept);
  return res;
}

/** {@link pullOnce} once the staging of an earlier run is known; `takenOver` is set once a plan's downloads start. */
async function pullGeneration(source: Source, o: PullerOptions, d: PullerDeps, staging: { readonly resume: boolean; readonly kept: ReadonlyMap<string, StagedFile>; takenOver: boolean }): Promise<PullResult> {
  const { log, signal } = d;
  const state = await readPullState(o.state);
  const url = formatLocation(source.loc);
  const sameSource = state?.source === url;
  // The no-op path: one conditional GET of the head.
  const hs = await readHeadIfChanged(source.store, source.loc, state && sameSource && state.complete && !o.verify ? state.etag : undefined, signal);
  if (hs === "not-modified") {
    // A source that stopped updating keeps answering 304: --max-age measures from the head applied.
    checkAge(state?.signedTime ?? state?.headTime, state?.generation ?? 0, url, o, d);
    return { generation: state?.generation ?? 0, headGeneration: state?.generation ?? 0, headTime: state?.headTime ?? "", source: url, noop: true, downloads: 0, downloadBytes: 0, metaOnly: 0, deletes: 0, drift: 0 };
  }
  if (!hs) {
    throw new IntegrityError(`no fansync head at ${url} (${metaKeys.head(metaPrefix(source.loc))} does not exist)`, {
      hint: "check the s3:// location (bucket and prefix), or run `fansync push` on the master first",
    });
  }
  const { head } = hs;
  const have = state?.generation ?? 0;
  // Signed generations: a head this node does not trust is refused before anything else is read.
  const sig = o.trust ? verifyHeadSignature(head, o.trust.keys, o.trust.site ?? state?.site, url) : undefined;
  if (head.generation < have && !o.force) {
    throw new IntegrityError(`the head at ${url} went backwards: generation ${head.generation}, this node already has ${have}`, {
      hint: "if the bucket was deliberately reset, rerun with --force; otherwise the source is not the one this node follows (an old head replayed?)",
    });
  }
  checkAge(sig?.time ?? head.time, head.generation, url, o, d);
  if (sig && state?.complete && head.generation === have && state.filesSha256 !== undefined && state.filesSha256 !== sig.filesSha256 && !o.force) {
    // Without this check the node said "up to date" and silently differed from every fresh node.
    throw new UntrustedHead(`the head at ${url} is generation ${have} with other content than the generation ${have} this node applied (signed digest ${sig.filesSha256.slice(0, 12)}…, applied ${state.filesSha256.slice(0, 12)}…)`);
  }
  const signedFields = sig ? { site: sig.site, signedTime: sig.time } : {};
  // Signing on one side only: the master signs, this node does not check (the job says so once).
  const unchecked = !o.trust && head.signature ? { uncheckedSignature: head.signature.keyId } : {};
  // The same generation with another manifest (two writers forked it on a server without
  // conditional writes, and the later head won): not "up to date", the docroot follows this head.
  const sameManifest = state?.manifestSha256 === undefined || state.manifestSha256 === head.manifestSha256;
  if (state && sameSource && state.complete && head.generation === have && !sameManifest && !o.verify) {
    log.warn({ generation: have }, "the head names this generation with another manifest than the one applied: applying it");
  }
  if (state && sameSource && state.complete && head.generation === have && sameManifest && !o.verify) {
    await refreshPullState(o.state, { ...state, ...signedFields, etag: hs.etag });
    return { generation: have, headGeneration: have, headTime: head.time, source: url, noop: true, downloads: 0, downloadBytes: 0, metaOnly: 0, deletes: 0, drift: 0, ...unchecked };
  }

  const held = await readPulledFiles(o.state);
  const { files: signed, approvedDeletes } = await readTarget(source, head, sig, state, sameSource, held, o, d);
  // What is planned and applied is without setuid/setgid bits; what is recorded as held is the
  // generation as published (journals apply on top of it, and its digest is the signed one).
  const target = withLocalModes(o.allowSetuid ? signed : withoutSetuid(signed, log), o.chmod);
  const root = await openDocroot(o.docroot, o.dryRun, log);
  const keep = new Set(o.keep.map((k) => path.relative(root, k).split(path.sep).join("/")));
  // What is on disk, for --verify (drift) and --delete-extraneous (files fansync never wrote).
  let heldForPlan: ReadonlyMap<string, HeldFile> = withLocalModes(o.allowSetuid ? held : withoutSetuid(held), o.chmod);
  let drift = 0;
  if (o.verify) {
    const checked = await checkDisk(root, target, o.checksum);
    drift = [...target.keys()].filter((p) => !checked.has(p)).length;
    heldForPlan = checked;
    if (drift > 0) log.warn({ drift }, "docroot differs from the manifest; repairing");
  }
  const disk = o.deleteExtraneous ? await listDisk(root) : [];
  const extraneous = disk.filter((p) => !keep.has(p) && !target.has(p));
  if (o.verify) for (const p of held.keys()) if (!target.has(p)) extraneous.push(p);
  const plan = planPull(target, heldForPlan, extraneous);
  // The guard counts what the site holds once this generation is down (a first pull with
  // --delete-extraneous into a docroot with a stray file is not a "mass delete of 1 of 1 files").
  const holds = o.deleteExtraneous ? new Set([...disk, ...held.keys(), ...target.keys()]).size : held.size;
  checkDeleteGuard({
    deletes: plan.deletes.length, held: holds, remaining: target.size, limit: o.maxDelete, force: o.force, what: `docroot ${o.docroot}`,
    // Only what the writers deleted can be approved; --delete-extraneous and --verify's own deletions are judged whole.
    approved: Math.min(approvedDeletes, plan.deletes.length - extraneous.length),
    hint: APPROVE_HINT,
  });
  const base = { ...unchecked, headGeneration: head.generation, headTime: head.time, source: url, downloads: plan.downloads.length, downloadBytes: plan.downloadBytes, metaOnly: plan.metaOnly.length, deletes: plan.deletes.length, drift };
  d.deadline?.allow(plan.downloadBytes);
  if (o.dryRun) {
    for (const e of plan.downloads) log.info({ op: "get", path: e.path, bytes: e.size }, "would download");
    for (const e of plan.metaOnly) log.info({ op: "meta", path: e.path }, "would update mtime/mode");
    for (const p of plan.deletes) log.info({ op: "delete", path: p }, "would delete");
    log.info({ ...base }, "dry run: nothing changed");
    return { ...base, generation: have, noop: false };
  }
  let stuck: string[] = [];
  if (!isEmptyPlan(plan)) {
    staging.takenOver = true;
    stuck = await execute(source, root, plan, held, staging.resume, staging.kept, o, d);
  }
  // Paths the node could not replace or delete keep what they hold (the previous entry, or none):
  // the state is not complete, so the next run plans against the manifest again and retries them.
  let heldNow = signed;
  if (stuck.length > 0) {
    heldNow = new Map(signed);
    for (const p of stuck) {
      const before = held.get(p);
      if (before) heldNow.set(p, before);
      else heldNow.delete(p);
    }
  }
  await writePullState(o.state, heldNow, { generation: head.generation, etag: hs.etag, source: url, headTime: head.time, complete: stuck.length === 0, filesSha256: sig?.filesSha256 ?? filesDigest(signed.values()), manifestSha256: head.manifestSha256, ...signedFields });
  // The staging record goes only once the new state is saved: a run killed before that is resumed
  // (files already renamed into place are recognised instead of fetched again).
  await rm(o.state.pullStaging, { force: true });
  await rm(o.state.pullStaged, { force: true });
  if (stuck.length > 0) {
    const shown = stuck.slice(0, 10).map(showPath).join(", ");
    log.error({ generation: head.generation, paths: stuck.slice(0, 100), count: stuck.length }, "generation applied except paths this node cannot replace");
    throw new PathsNotReplaced(`generation ${head.generation} applied except ${stuck.length} path(s) this node cannot replace or delete: ${shown}${stuck.length > 10 ? ", …" : ""} (immutable, or not writable)`, stuck, head.generation);
  }
  log.info({ generation: head.generation, from: have, downloads: plan.downloads.length, bytes: plan.downloadBytes, metaOnly: plan.metaOnly.length, deletes: plan.deletes.length, drift, changed: changedPaths(plan.downloads.map((e) => e.path), plan.deletes) }, "docroot at generation");
  signal.throwIfAborted();
  return { ...base, generation: head.generation, noop: false, changedPaths: [...plan.downloads, ...plan.metaOnly].map((e) => e.path), deletedPaths: plan.deletes };
}

/**
 * The target generation's files, and how many of the deletions up to it its writers approved:
 * journals on top of what we hold when close, else the manifest. A signed head's files must be the
 * ones signed: journals that do not add up to them are set aside for the manifest, and a manifest
 * that does not (swapped for another generation's, or edited) is refused.
 */
async function readTarget(source: Source, head: Head, sig: HeadSignature | undefined, state: PullState | undefined, sameSource: boolean, held: FileMap, o: PullerOptions, d: PullerDeps): Promise<{ files: FileMap; approvedDeletes: number }> {
  // Journals apply only on top of a docroot known to be at `have`, from this same source.
  if (state?.complete && sameSource && !o.verify) {
    const caught = await catchUpThroughJournals(held, state.generation, head, o.maxJournals, (g) => readJournal(source.store, source.loc, g, d.signal), d.log);
    // Under signatures only the signed approval counts (journals are not signed).
    if (caught && (!sig || filesMatchSignature(sig, caught.files.values()))) return sig ? { files: caught.files, approvedDeletes: sig.approvedDeletes ?? 0 } : caught;
    if (caught) d.log.warn({ generation: head.generation }, "journals do not add up to the signed generation; reading the full manifest");
  }
  const { files } = await readManifest(source.store, head, d.signal);
  if (sig && o.trust) verifyGeneration(head, files.values(), { keys: o.trust.keys, site: sig.site }, formatLocation(source.loc));
  // From the manifest only the head's own approval is known (a node far behind judges the rest itself).
  return { files, approvedDeletes: sig ? (sig.approvedDeletes ?? 0) : (head.approvedDeletes ?? 0) };
}

/**
 * Setuid and setgid bits from the bucket are not applied (a root puller would install a setuid
 * program chosen by whoever can write the bucket) unless the config allows them.
 */
function withoutSetuid(files: FileMap, log?: Logger): FileMap {
  let out: FileMap | undefined;
  for (const [p, e] of files) {
    if ((e.mode & 0o6000) === 0) continue;
    out ??= new Map(files);
    out.set(p, { ...e, mode: e.mode & ~0o6000 });
    log?.warn({ path: p, mode: e.mode.toString(8) }, "setuid/setgid bits stripped (allowSetuid is off)");
  }
  return out ?? files;
}

/** --chmod: the modes files get in this docroot (planned and checked against, like the bucket's). */
function withLocalModes(files: FileMap, rules: ChmodRules | undefined): FileMap {
  if (!rules) return files;
  const out = new Map(files);
  for (const [p, e] of files) {
    const mode = applyChmod(rules, e.mode, "file");
    if (mode !== e.mode) out.set(p, { ...e, mode });
  }
  return out;
}

/**
 * --chmod's directory rules and --group, on every directory a run wrote into (the docroot too):
 * directories are created 0755 (umask applied) like any mkdir, then given what the operator asked.
 */
async function fixDirectories(root: string, paths: readonly string[], o: PullerOptions, log: Logger): Promise<void> {
  if (!o.chmod && o.gid === undefined) return;
  const dirs = new Set<string>([""]);
  for (const p of paths) for (let d = path.posix.dirname(p); d !== "." && !dirs.has(d); d = path.posix.dirname(d)) dirs.add(d);
  for (const d of dirs) {
    const abs = path.join(root, d);
    try {
      const st = await lstat(abs);
      if (!st.isDirectory()) continue;
      if (o.gid !== undefined && st.gid !== o.gid) await chown(abs, -1, o.gid);
      const mode = o.chmod ? applyChmod(o.chmod, st.mode, "dir") : st.mode & 0o7777;
      // After the chown: changing the group clears a directory's setgid bit on some systems.
      if (o.chmod) await chmod(abs, mode);
    } catch (err) {
      log.warn({ path: d || ".", ...errorFields(err) }, "could not set the directory's mode or group");
    }
  }
}

/** --max-age: a head older than that means its source stopped updating (a freeze): STALE, nothing applied. */
function checkAge(time: string | undefined, generation: number, url: string, o: PullerOptions, d: PullerDeps): void {
  if (o.maxAgeMs === undefined || !time) return;
  const age = d.now().getTime() - Date.parse(time);
  if (age > o.maxAgeMs) {
    throw new StaleHead(`the head of ${url} (generation ${generation}) was ${o.trust ? "signed" : "written"} ${formatAge(age / 1000)} ago, longer than --max-age ${formatAge(o.maxAgeMs / 1000)}: the source stopped updating`);
  }
}

/** Carry a plan out; returns the paths it could not replace or delete (see {@link cannotReplace}). */
async function execute(source: Source, root: string, planned: PullPlan, held: FileMap, resume: boolean, kept: ReadonlyMap<string, StagedFile>, o: PullerOptions, d: PullerDeps): Promise<string[]> {
  const { log, signal } = d;
  const buffers = transferBuffers();
  // A metadata-only change lands by chmod and utimes, which follow a symlink: a file replaced by
  // a symlink (to a file outside the docroot, say) would have its target's mode and mtime changed.
  // Such a path is downloaded instead; the rename then replaces the link itself.
  const metaOnly: Entry[] = [];
  const downloads = [...planned.downloads];
  for (const e of planned.metaOnly) {
    const st = await lstat(path.join(root, e.path)).catch(() => undefined);
    if (st?.isFile()) metaOnly.push(e);
    else downloads.push(e);
  }
  const plan: PullPlan = { ...planned, downloads, metaOnly };
  const deleting = new Set(plan.deletes);
  // Before any temp file exists: a directory where the generation has a file would fail the
  // rename half way through the commit (issue 18: a generation half applied, and fifty temp files
  // left on every run). One holding only files this plan deletes (a directory that became a file)
  // is emptied before the renames; any other refuses the generation now.
  const clearFirst: { dir: string; files: string[]; dirs: string[] }[] = [];
  // A target whose parent directory does not resolve cannot be anything: one lstat per missing
  // directory instead of one per file (a first pull lstat-ed all of its 10k targets, issue 25).
  const parentMissing = new Map<string, boolean>();
  for (const e of plan.downloads) {
    const parent = path.dirname(path.join(root, e.path));
    let missing = parentMissing.get(parent);
    if (missing === undefined) {
      missing = (await lstat(parent).catch((err: NodeJS.ErrnoException) => err.code)) === "ENOENT";
      parentMissing.set(parent, missing);
    }
    if (missing) continue;
    const st = await lstat(path.join(root, e.path)).catch(() => undefined);
    if (!st?.isDirectory()) continue;
    const inside = await listUnder(root, e.path);
    const foreign = inside.files.find((p) => !deleting.has(p));
    if (foreign !== undefined) {
      throw new LocalIoError(`${showPath(e.path)} is a directory in the docroot ${root}, where the generation has a file, and it holds files fansync did not write (first: ${showPath(foreign)}); nothing was changed`, {
        hint: "move or remove that directory (or rerun with --delete-extraneous), then run again",
      });
    }
    clearFirst.push({ dir: e.path, ...inside });
  }
  const runId = newRunId();
  let seq = 0;
  const staged: { entry: Entry; tmp: string }[] = [];
  const tmps: string[] = [];
  // Before the first temp file exists, record where they will be: a killed run's leftovers are
  // found and removed by the next run without scanning the docroot.
  const dirs = [...new Set(plan.downloads.map((e) => path.dirname(path.join(root, e.path))))];
  // Verified temp files of an interrupted run that this plan wants as they are (same sha256 and
  // size); the others go now. They are recorded again at once, so a run interrupted again keeps them.
  const wanted = new Map(plan.downloads.map((e) => [e.path, e]));
  const adopt = new Map<string, StagedFile>();
  for (const [p, k] of kept) {
    const e = wanted.get(p);
    if (e && e.sha256 === k.sha256 && e.size === k.size && path.dirname(k.tmp) === path.dirname(path.join(root, p))) adopt.set(p, k);
    else await unlink(k.tmp).catch(() => undefined);
  }
  await writeJson(o.state.pullStaging, { runId, dirs } satisfies Staging);
  await writeNdjsonMap(o.state.pullStaged, adopt);
  const stagedLog = new NdjsonAppender<StagedFile>(o.state.pullStaged, { batch: 16, delayMs: 100 });
  const failed: { path: string; error: string }[] = [];
  const corrupt: string[] = [];
  const moved: string[] = [];
  const stagingFile = o.state.pullStaging;
  const verifiedDirs = new Set<string>([""]);
  // A local failure (disk full, unwritable docroot) ends the run, but only after every transfer in
  // flight has stopped: temp files are removed once nothing can create another.
  let fatal: unknown;
  const ev = d.events;
  ev?.start?.({ role: "pull", files: plan.downloads.length, bytes: plan.downloadBytes });
  // Packs (issue 14): a node far behind takes small files from a few large GETs, verified against
  // the manifest; whatever they cannot give comes path-keyed below.
  const packed = await stagePackedFiles(source, plan.downloads, { root, runId, nextSeq: () => seq++, removable: (p) => deleting.has(p) || held.has(p), verifiedDirs, concurrency: o.concurrency, files: plan.downloads.length + plan.metaOnly.length + plan.unchanged, events: ev }, d);
  for (const s of packed.staged) {
    staged.push(s);
    tmps.push(s.tmp);
  }
  const fromPacks = new Set(packed.staged.map((s) => s.entry.path));
  for (const p of fromPacks) {
    const k = adopt.get(p);
    if (k) await unlink(k.tmp).catch(() => undefined);
  }
  const pathKeyed = plan.downloads.filter((e) => !fromPacks.has(e.path));
  // Many small files: transfer threads GET and write them beside this thread (transfer-threads.ts).
  const small = pathKeyed.reduce((n, e) => (e.size < buffers.largest ? n + 1 : n), 0);
  const threads = await TransferThreads.start(source.store, { threads: o.threads ?? 0, small }, log);
  // p-map starts each download only when a slot frees: no 100k pending promises at once.
  try {
    await pMap(pathKeyed, async (e) => {
      if (signal.aborted || failed.length > 0 || fatal !== undefined) return;
      try {
        // Resuming an interrupted run: a file it already renamed into place (right size, mtime
        // and hash) is not fetched again. Only then: an lstat per file is not free at 100k.
        if (resume && (await alreadyThere(root, e))) {
          staged.push({ entry: e, tmp: "" });
          ev?.file?.({ role: "pull", op: "skip", bytes: 0 });
          return;
        }
        // A temp file an interrupted run verified: hashed again (it is a hidden file anyone could
        // have touched), given this generation's mode and mtime, and renamed like a download.
        const k = adopt.get(e.path);
        if (k) {
          tmps.push(k.tmp);
          if (await stagedIntact(k.tmp, e)) {
            staged.push({ entry: e, tmp: k.tmp });
            ev?.file?.({ role: "pull", op: "skip", bytes: 0 });
            return;
          }
          await unlink(k.tmp).catch(() => undefined);
        }
        await ensureParentDirs(root, e.path, (p) => deleting.has(p) || held.has(p), verifiedDirs, d.beforeReplace);
        // An object that moved is not fetched again now: the next run converges (retry.ts). Each try
        // gets a name of its own (temp files are created O_EXCL; a failed try removes its file, but
        // one it could not remove must not fail the next).
        const tmp = await withRetry(async () => {
          const t = tempPathFor(root, e.path, runId, seq++);
          tmps.push(t);
          const here = () => downloadTo(source.store, source.loc.prefix + e.path, e, t, signal, buffers);
          await (threads && e.size < buffers.largest ? threads.download(source.loc.prefix + e.path, e, t, signal, here) : here());
          return t;
        }, { signal, unless: (err) => err instanceof ObjectMoved });
        staged.push({ entry: e, tmp });
        stagedLog.add(e.path, { tmp, size: e.size, sha256: e.sha256 });
        ev?.file?.({ role: "pull", op: "download", bytes: e.size });
      } catch (err) {
        ev?.failed?.({ role: "pull", errorClass: (err as Error).name ?? "Error" });
        if (err instanceof ObjectMoved) moved.push(e.path);
        else if (err instanceof TransferCorrupt && !err.truncated) {
          // The whole object arrived, three times, with other bytes than the manifest says.
          corrupt.push(e.path);
          failed.push({ path: e.path, error: errorMessage(err) });
        } else {
          failed.push({ path: e.path, error: errorMessage(err) });
          if (err instanceof FansyncError && !(err instanceof PartialFailureError) && !(err instanceof TransferCorrupt)) fatal ??= err;
        }
      }
    }, { concurrency: o.concurrency });
  } finally {
    await threads?.close();
  }
  ev?.end?.({ role: "pull", ok: failed.length === 0 && moved.length === 0 && fatal === undefined && !signal.aborted });
  if (fatal === undefined && signal.aborted && !(signal.reason instanceof RunTimeout)) {
    // Interrupted (SIGINT, SIGTERM): the verified temp files stay, recorded, for the next run;
    // nothing is renamed, so the docroot shows none of them under a final name.
    stagedLog.flush();
    stagedLog.close();
    const verified = new Set(staged.map((x) => x.tmp));
    await removeAll(tmps.filter((t) => !verified.has(t)));
    signal.throwIfAborted();
  }
  stagedLog.close();
  if (fatal !== undefined || signal.aborted) {
    await removeAll(tmps);
    await rm(stagingFile, { force: true });
    await rm(o.state.pullStaged, { force: true });
    if (fatal !== undefined) throw fatal;
    signal.throwIfAborted();
  }
  if (failed.length > 0 || moved.length > 0) {
    await removeAll(tmps);
    await rm(stagingFile, { force: true });
    await rm(o.state.pullStaged, { force: true });
    if (corrupt.length > 0) {
      throw new IntegrityError(`${corrupt.length} object(s) do not match the manifest's sha256; the docroot was left as it was (first: ${failed.find((f) => f.path === corrupt[0])?.error})`);
    }
    if (failed.length > 0) {
      throw new PartialFailureError(`${failed.length} of ${plan.downloads.length} downloads failed; the docroot was left as it was (first: ${failed[0]?.path}: ${failed[0]?.error})`, failed);
    }
    throw new ObjectMoved(`${moved.length} object(s) changed or are not there yet (first: ${moved[0]}); the docroot was left as it was`);
  }
  // Commit: renames, then metadata, then deletions. Each rename is atomic; a crash here leaves
  // complete files only, and the staging list lets the next run clean up and resume.
  for (const c of clearFirst) {
    for (const p of c.files) {
      await d.beforeReplace?.(p);
      await unlink(path.join(root, p)).catch(() => undefined);
    }
    for (const p of [...c.dirs, c.dir].sort((a, b) => b.length - a.length)) await rmdir(path.join(root, p)).catch(() => undefined);
  }
  // Renames run a few at a time (one by one they took 5.7 s at 100k files): each is atomic and
  // independent, so the docroot still only ever shows whole files. After a failure no new rename
  // starts; those in flight finish.
  let renameFailure: { err: unknown; target: string } | undefined;
  const landed = new Set<number>();
  // A target this node may not replace (immutable) stops only itself: the rest of the generation
  // is applied and the path reported (issue 27: one `chattr +i` file left a node half applied,
  // exit 9 on every run). Any other failure stops the commit as before.
  const stuck: string[] = [];
  await pMap(staged.keys(), async (i) => {
    const { entry, tmp } = staged[i] as { entry: Entry; tmp: string };
    if (tmp === "" || renameFailure) return;
    try {
      await d.beforeReplace?.(entry.path);
      // --group: the file has its group before it is visible (its mode is already the planned one).
      if (o.gid !== undefined) await chown(tmp, -1, o.gid);
      await rename(tmp, path.join(root, entry.path));
      landed.add(i);
    } catch (err) {
      if (cannotReplace(err)) {
        stuck.push(entry.path);
        await unlink(tmp).catch(() => undefined);
        landed.add(i);
        return;
      }
      renameFailure ??= { err, target: path.join(root, entry.path) };
    }
  }, { concurrency: RENAME_CONCURRENCY });
  if (renameFailure) {
    // What did not land is removed now, not left for a later run (the staging record goes too).
    await removeAll(staged.filter((x, i) => x.tmp !== "" && !landed.has(i)).map((x) => x.tmp));
    await rm(stagingFile, { force: true });
    await rm(o.state.pullStaged, { force: true });
    // The caller's own refusal (sync's: a local change not rebased yet) is passed on as it is.
    throw renameFailure.err instanceof FansyncError ? renameFailure.err : toLocal(renameFailure.err, renameFailure.target);
  }
  for (const e of plan.metaOnly) {
    const abs = path.join(root, e.path);
    await ensureParentDirs(root, e.path, () => false);
    let failedMeta = false;
    const warn = (what: string) => (err: unknown) => {
      failedMeta ||= cannotReplace(err);
      log.warn({ path: e.path, ...errorFields(err) }, what);
    };
    if (o.gid !== undefined) await chown(abs, -1, o.gid).catch(warn("chown failed"));
    await chmod(abs, e.mode).catch(warn("chmod failed"));
    await utimes(abs, new Date(e.mtimeMs), new Date(e.mtimeMs)).catch(warn("utimes failed"));
    if (failedMeta) stuck.push(e.path);
  }
  await fixDirectories(root, [...plan.downloads, ...plan.metaOnly].map((e) => e.path), o, log);
  for (const p of plan.deletes) {
    const abs = path.join(root, p);
    let st: Stats | undefined;
    try {
      // A file where a parent directory was (the path is gone with it) is nothing to delete.
      await ensureParentDirs(root, p, () => false);
      st = await lstat(abs);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT" && !(err instanceof LocalIoError)) log.warn({ path: p, ...errorFields(err) }, "could not delete");
    }
    if (st?.isDirectory()) continue;
    if (st) {
      // The caller's refusal (sync: a local change not rebased yet) ends the run; nothing else here does.
      await d.beforeReplace?.(p);
      await unlink(abs).catch((err: unknown) => {
        if ((err as NodeJS.ErrnoException).code !== "ENOENT") log.warn({ path: p, ...errorFields(err) }, "could not delete");
        if (cannotReplace(err)) stuck.push(p);
      });
    }
    await pruneEmptyDirs(root, p);
  }
  return stuck.sort();
}

/**
 * Whether a rename over, or a deletion of, one path failed for that path alone: the file is
 * immutable or append-only (EPERM), or its directory may not be written (EACCES), or it is busy.
 */
function cannotReplace(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  return code === "EPERM" || code === "EACCES" || code === "EBUSY";
}

/**
 * The docroot's real path. rsync's rule for one that does not exist: create it when its parent
 * exists (a new node's first pull), refuse when the parent is missing too, which usually means a
 * volume that is not mounted: filling the mount point would hide the site behind it once it is.
 */
async function openDocroot(docroot: string, dryRun: boolean, log: Logger): Promise<string> {
  const abs = path.resolve(docroot);
  try {
    const root = await realpath(abs);
    // A puller owns what it writes under its docroot (with --delete-extraneous, everything there).
    if (root === path.parse(root).root) {
      throw new UsageError(`refusing to pull into ${root}${abs !== root ? ` (${docroot})` : ""}, the filesystem root`, { hint: "give the web server's docroot, a directory of its own" });
    }
    return root;
  } catch (err) {
    if (err instanceof UsageError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    const parent = path.dirname(abs);
    const parentIsDir = (await stat(parent).catch(() => undefined))?.isDirectory() ?? false;
    if (code !== "ENOENT" || !parentIsDir) {
      throw new LocalIoError(`docroot ${docroot} does not exist or cannot be read (${code}${code === "ENOENT" ? `, nor does its parent ${parent}` : ""})`, {
        hint: code === "ENOENT" ? `is the volume mounted? create ${parent} (or the docroot itself) if this is a new node` : "check the path and its permissions",
      });
    }
    if (dryRun) throw new LocalIoError(`docroot ${docroot} does not exist: a real run creates it (its parent ${parent} exists)`, { hint: "run without --dry-run to create it and download the site" });
    await mkdir(abs, { mode: 0o755 }).catch((e: unknown) => {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw toLocal(e, abs);
    });
    log.info({ docroot: abs }, "created the docroot (its parent exists)");
    return realpath(abs);
  }
}

async function alreadyThere(root: string, e: Entry): Promise<boolean> {
  const st = await lstat(path.join(root, e.path)).catch(() => undefined);
  if (!st?.isFile() || st.size !== e.size || Math.floor(st.mtimeMs) !== e.mtimeMs || (st.mode & 0o7777) !== e.mode) return false;
  return (await hashFile(path.join(root, e.path), e.size)) === e.sha256;
}

/** For --verify: which target files are on disk as the manifest says (size, mtime, and sha256 with --checksum). */
async function checkDisk(root: string, target: FileMap, checksum: boolean): Promise<Map<string, HeldFile>> {
  const ok = new Map<string, HeldFile>();
  await pMap(target.values(), async (e) => {
    const st = await lstat(path.join(root, e.path)).catch(() => undefined);
    if (!st?.isFile() || st.size !== e.size || Math.floor(st.mtimeMs) !== e.mtimeMs) return;
    if (checksum && (await hashFile(path.join(root, e.path), e.size)) !== e.sha256) return;
    ok.set(e.path, { size: e.size, mtimeMs: e.mtimeMs, mode: st.mode & 0o7777, sha256: e.sha256 });
  }, { concurrency: 16 });
  return ok;
}

/** Every regular file under the docroot (for --delete-extraneous), minus fansync's temp files. */
async function listDisk(root: string): Promise<string[]> {
  const { scanTree } = await import("../adapters/local-tree.ts");
  const { files } = await scanTree(root, { filter: { matches: () => true, prunesDir: () => false } });
  return files.map((f) => f.path);
}

/** The files and directories under the docroot's directory `rel` (relative paths, not following symlinks). */
async function listUnder(root: string, rel: string): Promise<{ files: string[]; dirs: string[] }> {
  const entries = await readdir(path.join(root, rel), { recursive: true, withFileTypes: true });
  const files: string[] = [];
  const dirs: string[] = [];
  for (const d of entries) {
    const p = path.relative(root, path.join(d.parentPath, d.name)).split(path.sep).join("/");
    (d.isDirectory() ? dirs : files).push(p);
  }
  return { files, dirs };
}

/**
 * Remove temp files, a few at a time. All at once (a promise and a request each) a run stopped
 * with 1M files staged doubled its memory while it drained (issue 22: 750 → 1,629 MiB).
 */
async function removeAll(files: readonly string[]): Promise<void> {
  await pMap(files, (f) => unlink(f).catch(() => undefined), { concurrency: UNLINK_CONCURRENCY });
}

/** Unlinks in flight at once when temp files are removed (the thread pool's 4 threads stay busy). */
const UNLINK_CONCURRENCY = 32;

/** Renames in flight at once during a commit (the thread pool has 4 threads; more only queue). */
const RENAME_CONCURRENCY = 8;

/** Where a run's temp files may be. */
interface Staging {
  runId: string;
  dirs: string[];
}

/** A temp file an interrupted run verified: where it is and what it holds. */
interface StagedFile {
  readonly tmp: string;
  readonly size: number;
  readonly sha256: string;
}

/**
 * Remove the temp files a killed or interrupted run left behind (their directories were recorded
 * before they were created), except those it verified and recorded: returned by path, for this
 * run to rename instead of fetching again. `resume`: there was such a run.
 */
async function cleanStaging(state: StateDir, log: Logger): Promise<{ resume: boolean; kept: Map<string, StagedFile> }> {
  const kept = new Map<string, StagedFile>();
  const st = await readJson<Staging>(state.pullStaging);
  if (!st || typeof st.runId !== "string" || !Array.isArray(st.dirs)) {
    await rm(state.pullStaged, { force: true });
    return { resume: false, kept };
  }
  const keep = new Set<string>();
  for (const [p, k] of await readNdjsonMap<StagedFile>(state.pullStaged, { tornTail: true })) {
    if (typeof k?.tmp !== "string" || typeof k.sha256 !== "string" || typeof k.size !== "number" || !path.basename(k.tmp).startsWith(TEMP_MARK)) continue;
    kept.set(p, k);
    keep.add(k.tmp);
  }
  const mark = `${TEMP_MARK}${st.runId}-`;
  let removed = 0;
  for (const dir of st.dirs) {
    const names = await readdir(dir).catch(() => [] as string[]);
    for (const n of names) {
      if (!n.startsWith(mark) || keep.has(path.join(dir, n))) continue;
      await unlink(path.join(dir, n)).catch(() => undefined);
      removed++;
    }
  }
  if (removed > 0) log.info({ removed }, "removed temp files of an interrupted run");
  if (kept.size > 0) log.info({ files: kept.size }, "an interrupted run left verified temp files: this run renames those it still wants instead of fetching them again");
  else await rm(state.pullStaging, { force: true });
  return { resume: true, kept };
}

/** A run that did not get to its downloads: the kept temp files are of no use now (a newer head came, or none). */
async function dropStaged(state: StateDir, kept: ReadonlyMap<string, StagedFile>): Promise<void> {
  if (kept.size === 0) return;
  await removeAll([...kept.values()].map((k) => k.tmp));
  await rm(state.pullStaging, { force: true });
  await rm(state.pullStaged, { force: true });
}

/** Whether a kept temp file still holds `e`'s bytes; if so it gets `e`'s mode and mtime. */
async function stagedIntact(tmp: string, e: Entry): Promise<boolean> {
  const st = await lstat(tmp).catch(() => undefined);
  if (!st?.isFile() || st.size !== e.size) return false;
  if ((await hashFile(tmp, e.size).catch(() => "")) !== e.sha256) return false;
  await chmod(tmp, e.mode);
  await utimes(tmp, new Date(e.mtimeMs), new Date(e.mtimeMs));
  return true;
}
