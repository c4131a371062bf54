/**
 * `fansync sync <docroot> s3://bucket/prefix`: the two-way daemon, on every node that may write.
 * Publishes the node's own changes and applies everyone else's, on the bucket format push and pull
 * use. Needs a server that enforces conditional writes: on one that does not, it refuses to start.
 */
import { afterGenerationFor } from "./after-generation.ts";
import { mkdir, readFile, stat } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import picomatch from "picomatch";
import type { ConfigFor } from "../core/config.ts";
import { errorLine, LocalIoError, UsageError } from "../core/errors.ts";
import { formatLocation } from "../core/location.ts";
import { fanOutEvents } from "../core/transfer-events.ts";
import type { Logger } from "../adapters/logger.ts";
import type { S3Store } from "../adapters/s3-store.ts";
import { writeFileAtomic } from "../adapters/state-files.ts";
import { HashIndex } from "../adapters/hash-index.ts";
import { statsLinesFor } from "../adapters/progress-stats.ts";
import { FANSYNC_VERSION } from "../adapters/version.ts";
import { writeNodeReport } from "../engine/node-reports.ts";
import { readHead } from "../engine/generation-reader.ts";
import { conditionalWrites } from "../engine/publisher.ts";
import type { EventHealth } from "../engine/event-listener.ts";
import { runSyncDaemon, type RoundOutcome } from "../engine/sync-daemon.ts";
import { type DryRunResult, type KeptRecord, readConvergedGeneration, type RoundResult, TwoWayNode } from "../engine/two-way.ts";
import { Uploader } from "../engine/uploader.ts";
import { startMonitor } from "./monitor-setup.ts";
import { eventQueueFor, jobState, locationState, signerFor, storeFor, trustFor } from "./wiring.ts";
import { docrootFilter, FALLBACK_INTERVAL_MS, nodeName, pullerOptions, statusFiles, uploaderOptions } from "./job-options.ts";

/** The status a sync node writes after every round (`<state>/sync-status.json`, and `--status-file`). */
export interface SyncStatus {
  readonly kind: "fansync-sync-status/1";
  readonly status: "OK" | "ERROR";
  readonly line: string;
  readonly docroot: string;
  readonly target: string;
  readonly node: string;
  readonly generation: number;
  readonly headGeneration: number;
  readonly lastSuccess: string | null;
  readonly lastAttempt: string;
  readonly lastError: string | null;
  /** Versions kept outside the docroot (conflict losers, not-owned changes), as listed in the state directory's conflicts.ndjson. */
  readonly keptTotal: number;
  /** Conflicts settled since this process started. */
  readonly conflictsTotal: number;
  /** Where they are. */
  readonly conflictsDir: string;
  /** The most recent ones. */
  readonly kept: readonly KeptRecord[];
  /** Paths changed here that this node does not own (last round). */
  readonly notOwned: readonly string[];
  /** Paths the last scan could not carry (names that cannot be keys, unreadable files), and why. */
  readonly skipped: readonly { readonly path: string; readonly reason: string }[];
  readonly host: string;
  /** With `--events`: the queue's state (a queue that fails means the node is polling). */
  readonly events?: EventHealth | undefined;
}

/** Run the two-way daemon until `signal` aborts. */
export async function sync(cfg: ConfigFor<"sync">, log: Logger, signal: AbortSignal): Promise<void> {
  const docroot = path.resolve(cfg.docroot);
  const url = formatLocation(cfg.target);
  const state = jobState(cfg, "sync", { docroot, url });
  const conflictsDir = path.resolve(cfg.conflictsDir ?? path.join(state.dir, "conflicts"));
  const rel = path.relative(docroot, conflictsDir);
  if (rel === "" || (!rel.startsWith("..") && !path.isAbsolute(rel))) {
    throw new UsageError(`--conflicts-dir ${conflictsDir} is inside the docroot ${docroot}: losing versions would be served`, { hint: "give a directory outside the docroot (default: the node's state directory)" });
  }
  // rsync's rule, as pull: a missing docroot is created when its parent exists (a new node).
  await (cfg.dryRun ? stat(docroot) : mkdir(docroot)).catch((err: unknown) => {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw new LocalIoError(`docroot ${docroot} does not exist and cannot be ${cfg.dryRun ? "read" : "created"} (${(err as NodeJS.ErrnoException).code})`, { cause: err, hint: "is the volume mounted? create its parent first if this is a new node" });
  });
  // Signed generations: this node signs what it publishes with its key, and applies and builds on
  // only what verifies under --trusted-key and that key's own public half (issue 22).
  const signer = signerFor(cfg, cfg.target);
  const trust = trustFor(cfg, signer);
  const store = storeFor(cfg, cfg.target);
  const shared = locationState(cfg, url);
  // Several writers serialise through the lease and the head's If-Match: without conditional
  // writes two nodes could both publish generation N and one node's changes would vanish. Asked
  // where the node's writer asks (probed once, cached with the location's state).
  // (A dry run writes nothing, not even the probe's object.)
  const conditional = cfg.dryRun || (await conditionalWrites(store, cfg.target, shared, log));
  if (!conditional) {
    throw new UsageError(`refusing to sync with ${url}: the server at ${store.endpoint} ignores conditional writes (If-Match / If-None-Match), so two writers could overwrite each other's generations`, {
      hint: "use a server that enforces conditional writes (AWS S3, MinIO, versitygw, LocalStack, moto), or run one writer (`fansync watch`) and pull elsewhere",
    });
  }
  const status = statusFiles(cfg);
  // A status file inside the docroot is this node's own: never published (each node's differs).
  const filter = docrootFilter(cfg, docroot, status?.both);
  const owned = cfg.owns.map((g) => picomatch(g.replace(/^\//, ""), { dot: true }));
  const owns = owned.length === 0 ? () => true : (p: string) => owned.some((m) => m(p));
  const node = nodeName(cfg);
  const nodeOptions = {
    docroot,
    loc: cfg.target,
    state,
    conflictsDir,
    filter,
    owns,
    rule: cfg.conflict,
    nodeId: node,
    settleMs: cfg.delay,
    verify: cfg.verify,
    puller: { ...(await pullerOptions(cfg, "sync", trust)), state },
  };
  if (cfg.dryRun) {
    const refuse = () => Promise.reject(new UsageError("a dry run publishes nothing"));
    // Its hash index is read, never written (the dry run's scan saves nothing).
    const publisher = { hashes: new HashIndex(state.index), holdLease: refuse, releaseLease: async () => {}, reconcile: refuse };
    const dry = new TwoWayNode(nodeOptions, { store, publisher, log: log.child({ component: "sync" }), signal, now: () => new Date() });
    logDryRun(log, await dry.dryRun());
    return;
  }
  const monitor = await startMonitor(cfg, log, signal, { role: "sync", daemon: true, detail: `${docroot} ⇄ ${url}`, fleet: [cfg.target], serving: () => readConvergedGeneration(state) });
  const events = fanOutEvents(statsLinesFor(cfg, log), monitor?.events());
  const lock = await state.lock("sync").catch(async (err: unknown) => {
    await monitor?.stop();
    throw err;
  });
  // A two-way node's own generations: CDN invalidation and --on-publish; other writers' generations
  // it applied: --on-apply (docs/events.md). Each on its own queue and record.
  const after = await afterGenerationFor(cfg, "publish", state, log, signal);
  const afterApply = await afterGenerationFor(cfg, "apply", state, log, signal);
  const uploader = new Uploader(
    uploaderOptions(cfg, { state, loc: cfg.target, filter, kind: "sync", signer, trust, shared }),
    { store, log: log.child({ component: "uploader" }), signal, now: () => new Date(), events, afterGeneration: after && ((g) => after.notify(g)) },
  );
  // What earlier runs kept stays listed (conflicts.ndjson is the node's whole record of them).
  const before = (await readFile(state.syncKept, "utf8").catch(() => "")).split("\n").filter(Boolean).flatMap((l) => {
    try {
      return [JSON.parse(l) as KeptRecord];
    } catch {
      return [];
    }
  });
  let keptTotal = before.length;
  let conflictsTotal = before.filter((k) => k.reason === "conflict").length;
  let recent: KeptRecord[] = before.slice(-50);
  const two = new TwoWayNode(
    nodeOptions,
    {
      store, publisher: uploader, log: log.child({ component: "sync" }), signal, now: () => new Date(), events,
      onKept: (k) => {
        keptTotal++;
        recent = [...recent, k].slice(-50);
        monitor?.metrics.recordKept(k.reason);
      },
    },
  );
  let last: RoundResult | undefined;
  let lastSuccess: string | null = null;
  const writeStatus = async (r: RoundOutcome) => {
    const at = new Date().toISOString();
    if (r.ok) {
      last = r.result;
      const a = r.result.applied;
      if (a) afterApply?.notify({ location: url, generation: a.generation, changed: a.changed, deleted: a.deleted });
      lastSuccess = at;
      conflictsTotal += r.result.conflicts.length;
      if (r.result.conflicts.length > 0) monitor?.metrics.recordConflicts(r.result.conflicts.length);
      monitor?.metrics.recordSkipped("sync", r.result.skipped.length);
    }
    const skipped = last?.skipped ?? [];
    const generation = last?.generation ?? 0;
    const st: SyncStatus = {
      kind: "fansync-sync-status/1",
      status: r.ok ? "OK" : "ERROR",
      line: r.ok ? `OK ${generation}${keptTotal > 0 ? ` (${keptTotal} kept version(s) in ${conflictsDir})` : ""}${skipped.length > 0 ? ` (${skipped.length} path(s) skipped, first: ${JSON.stringify(skipped[0]?.path)})` : ""}`.slice(0, 300) : `ERROR ${generation} ${errorLine(r.error)}`.slice(0, 300),
      docroot, target: url, node, generation, headGeneration: last?.headGeneration ?? 0,
      lastSuccess, lastAttempt: at, lastError: r.ok ? null : errorLine(r.error).slice(0, 300),
      keptTotal, conflictsTotal, conflictsDir, kept: recent, notOwned: last?.notOwned ?? [], skipped: skipped.slice(0, 50), host: os.hostname(),
      ...(r.events ? { events: r.events } : {}),
    };
    const body = JSON.stringify(st, null, 1) + "\n";
    await writeFileAtomic(state.syncStatus, body);
    // Like a puller's --report: the fleet view shows this node where it stands (not a puller's
    // old report from before it switched to sync).
    if (cfg.report) {
      await writeNodeReport(store, cfg.target, {
        node, host: os.hostname(), status: st.status, generation, headGeneration: st.headGeneration,
        lagSeconds: 0, source: url, lastSuccess, lastError: st.lastError, time: at, everyMs: 60_000, version: FANSYNC_VERSION,
      }, { state, log });
    }
    if (status) {
      await writeFileAtomic(status.file, body);
      await writeFileAtomic(status.text, st.line + "\n");
    }
    await monitor?.record(r.ok ? { ok: true, generation, headGeneration: st.headGeneration, lagSeconds: 0 } : { ok: false, generation, headGeneration: st.headGeneration, lagSeconds: 0, error: r.error });
    if (r.events) monitor?.recordEvents(r.events);
  };
  try {
    log.info({ docroot, target: url, node, owns: cfg.owns, conflict: cfg.conflict, conflictsDir, signs: signer?.key.keyId, trusts: trust?.keys.map((k) => k.keyId), ...(cfg.events ? { events: cfg.events } : {}) }, "two-way sync");
    await warnOneSided(store, cfg, signer !== undefined, trust !== undefined, log);
    await runSyncDaemon(
      { docroot, ignoreDirs: [state.dir, conflictsDir], delayMs: cfg.delay, maxDelayMs: cfg.maxDelay, intervalMs: cfg.interval, rescanIntervalMs: cfg.rescanInterval, fallbackIntervalMs: FALLBACK_INTERVAL_MS },
      { node: two, log: log.child({ component: "sync" }), signal, now: () => new Date(), onRound: writeStatus, queue: await eventQueueFor(cfg) },
    );
  } finally {
    await uploader.releaseLease();
    await after?.flush();
    await afterApply?.flush();
    await monitor?.stop();
    await lock.release();
  }
}

/**
 * Signing configured on one side only is said once at start: a node that checks but does not sign
 * publishes what trusted nodes refuse; one that neither checks nor signs, on a location whose head
 * is signed, would apply (and republish) a forged generation unchecked.
 */
async function warnOneSided(store: S3Store, cfg: ConfigFor<"sync">, signs: boolean, checks: boolean, log: Logger): Promise<void> {
  if (checks && !signs) {
    log.warn({ target: formatLocation(cfg.target) }, "this node checks signatures but does not sign: what it publishes is unsigned, and nodes with --trusted-key refuse it (give --signing-key)");
    return;
  }
  if (checks) return;
  const hs = await readHead(store, cfg.target).catch(() => undefined);
  if (hs?.head.signature) {
    log.warn({ target: formatLocation(cfg.target), generation: hs.head.generation, keyId: hs.head.signature.keyId }, "the head is signed, but this node neither checks nor signs: it would apply and republish a forged generation unchecked, and trusted nodes refuse what it publishes (give --signing-key or --trusted-key)");
  }
}

/** `sync --dry-run`: one line per thing the round would do, then the counts. */
function logDryRun(log: Logger, r: DryRunResult): void {
  const deletes = new Set(r.deletes);
  for (const c of r.plan.conflicts) log.warn({ path: c.path, kind: c.kind, winner: c.winner }, "would settle a conflict");
  for (const k of r.plan.keep) log.info({ op: "keep", path: k.path, version: k.from, reason: k.reason }, "would keep the losing version");
  for (const p of r.plan.publish) log.info({ op: deletes.has(p) ? "delete" : "put", path: p }, deletes.has(p) ? "would publish the deletion" : "would publish");
  for (const p of r.apply.fetch) log.info({ op: "get", path: p }, "would apply");
  for (const p of r.apply.remove) log.info({ op: "remove", path: p }, "would remove");
  for (const p of r.plan.notOwned) log.warn({ path: p }, "changed here but not owned by this node (--owns): would restore the published version");
  for (const k of r.skipped) log.warn({ path: k.path, reason: k.reason }, "skipped");
  log.info({
    generation: r.generation, headGeneration: r.headGeneration, publish: r.plan.publish.length - r.deletes.length, publishDeletes: r.deletes.length,
    apply: r.apply.fetch.length, remove: r.apply.remove.length, keep: r.plan.keep.length, conflicts: r.plan.conflicts.length, deferred: r.deferred, skipped: r.skipped.length,
  }, "dry run: nothing changed");
}
