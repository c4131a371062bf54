/**
 * Real engines wired on an {@link ObjectStore} (usually a MemoryStore) and real temp directories,
 * the way src/commands wires them from a config: what the fast engine tests (test/unit/engines-memory)
 * and the simulation (sim/run.ts) build their actors from. Only the options a command would derive
 * from flags are chosen here; everything else is the engines' own code.
 */
import { mkdirSync } from "node:fs";
import path from "node:path";
import type { ObjectStore } from "../src/adapters/object-store.ts";
import { silentLogger } from "../src/adapters/logger.ts";
import { jobStateDir, locationStateDir } from "../src/adapters/state-dir.ts";
import { compileFilter } from "../src/core/filters.ts";
import { formatLocation, type Location, parseLocation } from "../src/core/location.ts";
import { DEFAULT_PACK_TUNING, type PackTuning } from "../src/core/pack-format.ts";
import type { SigningKey, TrustPolicy } from "../src/core/signing.ts";
import type { WriterTuning } from "../src/core/config.ts";
import type { Logger } from "../src/adapters/logger.ts";
import { PackWriter } from "../src/engine/packs.ts";
import { pullOnce, type PullerOptions, type PullResult, type Source } from "../src/engine/puller.ts";
import { Replicator } from "../src/engine/replicator.ts";
import { rollback, type RollbackResult } from "../src/engine/rollback.ts";
import { TwoWayNode } from "../src/engine/two-way.ts";
import { Uploader } from "../src/engine/uploader.ts";
import type { Hasher } from "../src/adapters/hash-index.ts";

/** What every engine is given besides its store: the injected trio. */
export interface EngineEnv {
  readonly log?: Logger;
  readonly signal?: AbortSignal;
  readonly now?: () => Date;
}

// One silent logger and one signal that never aborts, shared: building them per engine costs more than a small run.
const SILENT = silentLogger();
const NEVER = new AbortController().signal;

function deps(env: EngineEnv) {
  return { log: env.log ?? SILENT, signal: env.signal ?? NEVER, now: env.now ?? (() => new Date()) };
}

/**
 * Multipart from 2 KiB in parts of 1 KiB (the in-memory store takes any part size): a small tree
 * then has objects whose ETag is not an MD5, as a real site's large files have.
 */
export const SMALL_PARTS = { multipartThreshold: 2048, partSize: 1024 } as const;

/** The writers' lease lives 20 s: virtual seconds (see scheduler.ts), so a crashed writer's lease runs out within a seed. */
export const SIM_LEASE_TTL_MS = 20_000;

/** The writer tuning of a small site: one transfer at a time (the simulation's scheduler orders them). */
export function tuning(over: Partial<WriterTuning> = {}): WriterTuning {
  return { concurrency: 1, ...SMALL_PARTS, maxDelete: { kind: "percent", value: 100 }, force: true, dryRun: false, retain: 5, ...over };
}

/** The uploader of `push`/`watch` for `docroot` → `url`, its state under `base`. */
export function makeUploader(store: ObjectStore, o: { docroot: string; url: string; base: string; signer?: { key: SigningKey; site: string } | undefined; verify?: boolean; tuning?: Partial<WriterTuning> }, env: EngineEnv = {}): Uploader {
  const loc = parseLocation(o.url);
  return new Uploader(
    {
      docroot: o.docroot, loc,
      state: jobStateDir(o.base, "push", { docroot: o.docroot, url: o.url }),
      shared: locationStateDir(o.base, o.url),
      ...tuning(o.tuning),
      filter: compileFilter({ exclude: [], include: [] }),
      cacheControl: () => undefined,
      verify: o.verify ?? false,
      approveDeletes: false,
      signer: o.signer,
      leaseTtlMs: SIM_LEASE_TTL_MS,
    },
    { store, ...deps(env) },
  );
}

/** The puller's options as `fansync pull` resolves them (defaults), for `docroot` with state under `base`. */
export function pullerOptions(o: { docroot: string; base: string; trust?: TrustPolicy | undefined; verify?: boolean }): PullerOptions {
  return {
    docroot: o.docroot, state: jobStateDir(o.base, "pull", { docroot: o.docroot }),
    concurrency: 1, maxDelete: { kind: "percent", value: 100 }, force: false, dryRun: false, deleteExtraneous: false, verify: o.verify ?? false, checksum: false,
    keep: [], maxJournals: 20, trust: o.trust, maxAgeMs: undefined, allowSetuid: false,
  };
}

/** One `pull` run of `docroot` from `source`. */
export function pullOnceWith(source: Source, o: { docroot: string; base: string; trust?: TrustPolicy | undefined; verify?: boolean }, env: EngineEnv = {}): Promise<PullResult> {
  mkdirSync(o.docroot, { recursive: true });
  return pullOnce(source, pullerOptions(o), deps(env));
}

/** A two-way node (`fansync sync`) with its uploader, as commands/sync.ts wires it. */
export function makeTwoWay(store: ObjectStore, o: { docroot: string; url: string; base: string; nodeId: string; signer?: { key: SigningKey; site: string } | undefined; trust?: TrustPolicy | undefined; hasher?: Hasher | undefined; verify?: boolean }, env: EngineEnv = {}): { node: TwoWayNode; uploader: Uploader; conflictsDir: string } {
  const loc = parseLocation(o.url);
  const state = jobStateDir(o.base, "sync", { docroot: o.docroot, url: o.url });
  const conflictsDir = path.join(state.dir, "conflicts");
  mkdirSync(o.docroot, { recursive: true });
  const d = deps(env);
  const uploader = new Uploader(
    { docroot: o.docroot, loc, state, shared: locationStateDir(o.base, o.url), ...tuning({ force: false, maxDelete: { kind: "percent", value: 100 } }), filter: compileFilter({ exclude: [], include: [] }), cacheControl: () => undefined, verify: false, approveDeletes: false, signer: o.signer, leaseTtlMs: SIM_LEASE_TTL_MS },
    // The node's scan hashes into the uploader's index (uploader.hashes), with this hasher.
    { store, ...d, hasher: o.hasher },
  );
  const node = new TwoWayNode(
    {
      docroot: o.docroot, loc, state, conflictsDir, filter: compileFilter({ exclude: [], include: [] }), owns: () => true, rule: "newer", nodeId: o.nodeId, settleMs: 0, verify: o.verify ?? false,
      // As commands/sync.ts: a node applies only what verifies under its trusted keys (its own signing key's included).
      puller: { ...pullerOptions({ docroot: o.docroot, base: o.base, trust: o.trust }), state },
    },
    { store, publisher: uploader, ...d },
  );
  return { node, uploader, conflictsDir };
}

/**
 * The replicator of `primaryUrl` into `regionUrl` and any `more` regions (server-side copies when
 * they are in one world).
 */
export function makeReplicator(primary: ObjectStore, region: ObjectStore, o: { primaryUrl: string; regionUrl: string; base: string; serverSideCopy?: boolean; verify?: boolean; more?: readonly { store: ObjectStore; url: string }[] }, env: EngineEnv = {}): Replicator {
  const state = jobStateDir(o.base, "replicate", { url: o.primaryUrl });
  mkdirSync(state.dir, { recursive: true });
  return new Replicator(
    {
      primary: { url: o.primaryUrl, loc: parseLocation(o.primaryUrl), store: primary },
      regions: [{ store: region, url: o.regionUrl }, ...(o.more ?? [])].map((r) => ({ url: r.url, loc: parseLocation(r.url), store: r.store, serverSideCopy: o.serverSideCopy ?? true, shared: locationStateDir(o.base, r.url) })),
      stateDir: state.dir, concurrency: 1, ...SMALL_PARTS, retain: 5, leaseTtlMs: SIM_LEASE_TTL_MS, maxJournals: 20, verify: o.verify ?? false,
    },
    deps(env),
  );
}

/** `fansync rollback --to <to>` of `url`. */
export function runRollback(store: ObjectStore, o: { url: string; base: string; to: number; fromDir?: string; signer?: { key: SigningKey; site: string } | undefined; trust?: TrustPolicy | undefined }, env: EngineEnv = {}): Promise<RollbackResult> {
  const loc: Location = parseLocation(o.url);
  return rollback(
    {
      ...tuning(), loc, to: o.to, fromDir: o.fromDir,
      state: jobStateDir(o.base, "rollback", { url: formatLocation(loc) }),
      shared: locationStateDir(o.base, o.url),
      cacheControl: () => undefined,
      signer: o.signer,
      leaseTtlMs: SIM_LEASE_TTL_MS,
      // As commands/rollback.ts: a signing rollback restores only a retained generation that verifies.
      trust: o.trust,
    },
    { store, ...deps(env) },
  );
}

/** The pack writer `push --packs` runs after each generation. */
export function makePackWriter(store: ObjectStore, uploader: Uploader, o: { docroot: string; url: string; tuning?: Partial<PackTuning> }, env: EngineEnv = {}): PackWriter {
  return new PackWriter(
    { loc: parseLocation(o.url), store, docroot: o.docroot, tuning: { ...DEFAULT_PACK_TUNING, ...o.tuning }, ...SMALL_PARTS, cacheFiles: uploader.state.packIndexCache },
    deps(env),
  );
}
