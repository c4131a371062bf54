/**
 * One seed of the simulation: the world it builds (buckets, quirks, signing, actors), the schedule
 * it drives, the clean phase after the faults stop, and the invariants checked along the way
 * (sim/checks.ts). Everything random comes from the seed; see sim/run.ts for the command.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { MemoryStore, MemoryWorld, type MemoryQuirks } from "../src/adapters/memory-store.ts";
import type { ObjectStore } from "../src/adapters/object-store.ts";
import { GuardError, IntegrityError, ObjectMoved } from "../src/core/errors.ts";
import { parseLocation } from "../src/core/location.ts";
import { generateSigningKeyPair, parsePrivateKey, parsePublicKey, type SigningKey, type TrustPolicy } from "../src/core/signing.ts";
import type { Uploader } from "../src/engine/uploader.ts";
import { Checker, type Violation } from "./checks.ts";
import { type ActorCtx, Crash, Scheduler } from "./scheduler.ts";
import { DocrootWriter } from "./docroots.ts";
import { naivePull, plantHeadBeforeObjects, plantUnverifiedSource } from "./plants.ts";
import { makeReplicator, makeTwoWay, makeUploader, pullOnceWith, runRollback } from "./world.ts";

/** The classes of actors `--actors` chooses from. */
export const ACTOR_CLASSES = ["master", "sync", "replicator", "puller", "rollback", "adversary"] as const;
export type ActorClass = (typeof ACTOR_CLASSES)[number];

/** The bugs `--self-test` plants, one at a time (sim/plants.ts). */
export const PLANTS = ["head-before-objects", "puller-skips-sha256", "sync-applies-without-rebase", "replicator-unverified-copy", "signature-check-skipped"] as const;
export type Plant = (typeof PLANTS)[number];

/** How one seed runs. */
export interface SeedOptions {
  readonly actors: readonly ActorClass[];
  readonly steps: number;
  readonly plant: Plant | undefined;
  readonly verbose: boolean;
  readonly quirks: boolean;
  /** Directory ↔ file flips in the writers' docroots (off: the sync wedge of issue 27 is not provoked). */
  readonly flips: boolean;
}

/** What one seed did. */
export interface SeedResult {
  readonly steps: number;
  readonly faults: number;
  readonly crashes: number;
  readonly violation: Violation | undefined;
  /** The world the seed drew (for the violation report). */
  readonly describe: string;
}

const SITE = "s3://primary/site/";
const SHARED = "s3://primary/shared/";
const REGION = "s3://region/site/";
const REGION2 = "s3://region2/site/";
const START_MS = Date.UTC(2026, 0, 1);
// How often the clean phase runs every actor while one still fails without a reason (see runSeed).
const CLEAN_PASSES = 3;
// One signing key for the whole run: generating one per seed costs more than a seed.
const KEYS = (() => {
  const k = generateSigningKeyPair();
  return { key: parsePrivateKey(k.privatePem) as SigningKey, trusted: parsePublicKey(k.publicText) };
})();

/** An actor: a process that runs one operation at a time and can be killed and restarted. */
interface Actor {
  readonly id: string;
  readonly cls: ActorClass;
  ctx: ActorCtx;
  incarnation: number;
  /** Chance per step of starting an operation when idle. */
  readonly startChance: number;
  /** Build its in-memory state anew (a new process; the state directory stays). */
  make(clean: boolean): void;
  /** The operation to run now (undefined: nothing to do). */
  op(): (() => Promise<unknown>) | undefined;
  /** After an operation ended. */
  done?(ok: boolean, value: unknown): Promise<Violation | undefined>;
  /** A refusal that is the right answer in a signed run (a trusted node meeting a forgery). */
  readonly refusalIsAnswer?: boolean;
  /** The location a reader reads (pullers, sync nodes). */
  readonly source?: string;
}

/** Run seed `seed`. */
export async function runSeed(seed: number, o: SeedOptions): Promise<SeedResult> {
  const sched = new Scheduler(seed, { startMs: START_MS, quantumMs: 25 });
  const rng = sched.rng;
  const has = (c: ActorClass) => o.actors.includes(c);
  // The world this seed draws.
  const fauxqs = o.quirks && rng.chance(0.1);
  const versioned = !fauxqs && rng.chance(0.5);
  const quirks: MemoryQuirks = {
    ignoresConditionalWrites: fauxqs,
    ignoresCopySourceIfMatch: fauxqs || (o.quirks && rng.chance(0.35)),
    ...(o.quirks && !fauxqs && rng.chance(0.15) ? { refusesPrefixClash: true, refusesCreateOverDeleteMarker: true } : {}),
  };
  const signed = (has("adversary") && rng.chance(0.6)) || o.plant === "signature-check-skipped";
  const faulty = rng.chance(0.8);
  const world = new MemoryWorld(sched.now);
  world.bucket("primary", versioned ? "Enabled" : "off");
  world.bucket("region", versioned ? "Enabled" : "off");
  world.bucket("region2", versioned ? "Enabled" : "off");
  // A replicator with one region or two (drawn only when there is a replicator: other runs keep their seeds).
  const regions = has("replicator") ? 1 + rng.int(2) : 0;
  const gated = (bucket: string): MemoryStore => new MemoryStore({ world, bucket, quirks, gate: sched.gate });
  const raw = (bucket: string): MemoryStore => new MemoryStore({ world, bucket, quirks });
  const signer = signed ? { key: KEYS.key, site: "site" } : undefined;
  const trust: TrustPolicy | undefined = signed && KEYS.trusted ? { keys: [KEYS.trusted], site: "site" } : undefined;
  // A sync node refuses to start on a server that ignores conditional writes (commands/sync.ts).
  const syncWriters = has("sync") && !fauxqs ? 1 + rng.int(2) : 0;
  const describe = `versioned=${versioned} quirks=${JSON.stringify(quirks)} signed=${signed} faults=${faulty} sync=${syncWriters} regions=${regions}`;

  // tmpfs where there is one: the state files are fsynced, and a seed writes hundreds of them.
  const root = mkdtempSync(path.join(existsSync("/dev/shm") ? "/dev/shm" : os.tmpdir(), `fansync-sim-${seed}-`));
  sched.install(seed ^ 0x5bd1e995);
  const checker = new Checker({ world, raw, root, signed });
  const docs = new DocrootWriter(rng, sched, checker);
  const actors: Actor[] = [];
  const ctxOf = (id: string, inc: number, faults: boolean): ActorCtx => ({ id, incarnation: inc, dead: false, busy: false, outcome: undefined, faults });
  try {
    // The master: push batches of its docroot (files change under it between and during batches).
    if (has("master")) {
      const docroot = path.join(root, "master");
      mkdirSync(docroot, { recursive: true });
      docs.register("master", docroot, SITE, { flips: o.flips });
      let up: Uploader;
      actors.push({
        id: "master", cls: "master", ctx: ctxOf("master", 0, true), incarnation: 0, startChance: 0.3,
        make(clean) {
          const store: ObjectStore = o.plant === "head-before-objects" ? plantHeadBeforeObjects(gated("primary")) : gated("primary");
          // In a signed run the adversary may have overwritten objects: the clean run is `push --verify`.
          up = makeUploader(store, { docroot, url: SITE, base: path.join(root, "master-state"), signer, verify: clean && signed }, { now: sched.now });
        },
        op: () => async () => {
          try {
            return await up.reconcile();
          } finally {
            await up.releaseLease();
          }
        },
      });
    }
    // Two-way writers on their own prefix (a push over their generations would delete their files).
    for (let i = 1; i <= syncWriters; i++) {
      const id = `sync${i}`;
      const docroot = path.join(root, id);
      mkdirSync(docroot, { recursive: true });
      docs.register(id, docroot, SHARED, { flips: o.flips, sync: true });
      checker.syncNodes.push({ id, docroot });
      let node: ReturnType<typeof makeTwoWay>;
      let joining = true;
      const base = path.join(root, `${id}-state`);
      actors.push({
        id, cls: "sync", ctx: ctxOf(id, 0, true), incarnation: 0, startChance: 0.3, refusalIsAnswer: signed, source: SHARED,
        make(clean) {
          // A signing node trusts its own key's public half (commands/wiring.ts trustFor). In a signed
          // run the adversary may have written over objects: the clean run is `sync --verify`, as the
          // master's is `push --verify`.
          node = makeTwoWay(gated("primary"), { docroot, url: SHARED, base, nodeId: id, signer, trust, verify: clean && signed }, { now: sched.now });
          checker.conflictDirs.add(node.conflictsDir);
          joining = true;
        },
        op: () => async () => {
          if (o.plant === "sync-applies-without-rebase") {
            // Planted: the head is applied over the docroot before the round looks at it, as a
            // round that skipped the rebase would (local changes are neither published nor kept).
            await pullOnceWith({ loc: parseLocation(SHARED), store: gated("primary") }, { docroot, base: path.join(base, "plant") }, { now: sched.now }).catch(() => undefined);
          }
          const r = await node.node.round({ joining, scan: true });
          joining = false;
          return r;
        },
      });
    }
    // The replicator: the site's generations into one region or two.
    if (has("replicator")) {
      let rep: ReturnType<typeof makeReplicator>;
      actors.push({
        id: "replicator", cls: "replicator", ctx: ctxOf("replicator", 0, true), incarnation: 0, startChance: 0.25,
        make() {
          const primary: ObjectStore = o.plant === "replicator-unverified-copy" ? plantUnverifiedSource(gated("primary")) : gated("primary");
          const regionStore = (b: string): ObjectStore => (o.plant === "replicator-unverified-copy" ? plantUnverifiedSource(gated(b)) : gated(b));
          const more = regions > 1 ? [{ store: regionStore("region2"), url: REGION2 }] : [];
          rep = makeReplicator(primary, regionStore("region"), { primaryUrl: SITE, regionUrl: REGION, base: path.join(root, "replicator-state"), more }, { now: sched.now });
        },
        op: () => async () => {
          const res = await rep.runOnce(0);
          const failed = res.find((r) => r.error !== undefined);
          if (failed) throw failed.error;
          return res.map((r) => r.result);
        },
      });
    }
    // Pullers: the site from the primary, the site from the region, the two-way prefix.
    if (has("puller")) {
      const sources: { id: string; url: string; bucket: string }[] = [];
      if (has("master")) sources.push({ id: "pull-site", url: SITE, bucket: "primary" });
      if (has("replicator")) sources.push({ id: "pull-region", url: REGION, bucket: "region" });
      if (regions > 1) sources.push({ id: "pull-region2", url: REGION2, bucket: "region2" });
      if (syncWriters > 0) sources.push({ id: "pull-shared", url: SHARED, bucket: "primary" });
      for (const s of sources) {
        const docroot = path.join(root, s.id);
        const base = path.join(root, `${s.id}-state`);
        const written = s.url === SHARED ? SHARED : SITE;
        checker.pullers.push({ id: s.id, docroot, written, trusted: signed });
        actors.push({
          id: s.id, cls: "puller", ctx: ctxOf(s.id, 0, true), incarnation: 0, startChance: 0.35, refusalIsAnswer: signed, source: s.url,
          make() {},
          op: () => () => {
            const source = { loc: parseLocation(s.url), store: gated(s.bucket) };
            if (o.plant === "puller-skips-sha256") return naivePull(source, docroot, path.join(base, "naive"));
            // Planted: the node has a trusted key but does not check it.
            const t = o.plant === "signature-check-skipped" ? undefined : trust;
            return pullOnceWith(source, { docroot, base, trust: t }, { now: sched.now });
          },
          done: async (ok) => (ok && o.plant !== "puller-skips-sha256" ? checker.afterPull(s.id, docroot, base, s.bucket) : o.plant === "puller-skips-sha256" && ok ? checker.afterNaivePull(s.id, docroot, path.join(base, "naive"), s.bucket) : undefined),
        });
      }
    }
    // Rollback now and then (on a versioned bucket: old versions are there to restore).
    if (has("rollback") && has("master") && versioned) {
      actors.push({
        id: "rollback", cls: "rollback", ctx: ctxOf("rollback", 0, true), incarnation: 0, startChance: 0.04, refusalIsAnswer: signed,
        make() {},
        op: () => {
          const head = checker.headGeneration(SITE);
          if (head < 2) return undefined;
          // The operator rolls back one or two generations, or (half the time, once there is one) to
          // the generation the adversary edited: issue 22's reproduction does exactly that.
          const edited = checker.edited.get(SITE);
          // (Retention keeps 5 generations: an edited one further back is gone, as an operator would see in `fansync log`.)
          const to = edited !== undefined && edited < head && edited > head - 4 && rng.chance(0.5) ? edited : Math.max(1, head - 1 - rng.int(2));
          return () => runRollback(gated("primary"), { url: SITE, base: path.join(root, "rollback-state"), to, signer, trust }, { now: sched.now });
        },
      });
    }
    // The adversary: bucket write access, no key; only in signed runs (unsigned, nothing is promised).
    if (has("adversary") && signed) {
      let n = 0;
      actors.push({
        id: "adversary", cls: "adversary", ctx: ctxOf("adversary", 0, false), incarnation: 0, startChance: 0.08,
        make() {},
        op: () => {
          const targets = [...(has("master") ? [SITE] : []), ...(syncWriters > 0 ? [SHARED] : [])];
          if (targets.length === 0) return undefined;
          const url = rng.pick(targets);
          // A retained manifest is worth editing where a rollback may restore it (versioned, site).
          const kinds = versioned && url === SITE && has("rollback") ? (["deface", "replay", "garbage", "manifest", "manifest"] as const) : (["deface", "deface", "replay", "garbage"] as const);
          const kind = rng.pick(kinds);
          const k = n++;
          return () => checker.attack(kind, url, gated("primary"), path.join(root, `adversary-${k}`), rng.int(1 << 30), sched.now);
        },
      });
    }
    for (const a of actors) a.make(false);
    if (faulty) sched.faults = { before: 0.04, after: 0.04, crash: 0.015 };
    const log = (s: string) => {
      if (o.verbose) process.stderr.write(`[${seed}:${sched.stats.steps}] ${s}\n`);
    };

    const finished = async (a: Actor, clean: boolean): Promise<Violation | undefined> => {
      const out = a.ctx.outcome;
      if (!out) return undefined;
      a.ctx.outcome = undefined;
      if (!out.ok) log(`${a.id} failed: ${out.error instanceof Error ? `${out.error.name}: ${out.error.message}` : String(out.error)}`);
      else log(`${a.id} ok${typeof out.value === "string" ? `: ${out.value}` : ""}`);
      if (clean && out.ok) checker.refused.delete(a.id);
      if (out.ok && a.done) {
        const v = await a.done(true, out.value);
        return v && { ...v, step: sched.stats.steps };
      }
      if (!out.ok && clean) {
        if (out.error instanceof Crash) return undefined;
        // A refusal that says why is an answer: a trusted node meeting a forgery, and a node's
        // delete guard refusing a generation that empties the site (the master pushed an empty
        // tree, or a rollback restored one). The node then keeps what it has.
        // And, in a signed run, a reader refusing an object the adversary wrote garbage over that no
        // writer could upload again (its bytes are nowhere else: checked on the bucket).
        const lost = a.refusalIsAnswer && out.error instanceof ObjectMoved && a.source !== undefined && checker.lostToGarbage(a.source);
        if ((a.refusalIsAnswer && out.error instanceof IntegrityError) || (a.cls === "puller" && out.error instanceof GuardError) || lost) {
          checker.refused.add(a.id);
          return undefined;
        }
        return { step: sched.stats.steps, check: "stuck", message: `${a.id} fails after the faults stopped: ${out.error instanceof Error ? `${out.error.name}: ${out.error.message}` : String(out.error)}`.slice(0, 400) };
      }
      return undefined;
    };
    const restart = (a: Actor, clean: boolean) => {
      a.incarnation++;
      a.ctx = ctxOf(a.id, a.incarnation, a.ctx.faults);
      a.make(clean);
      log(`${a.id} restarted (incarnation ${a.incarnation})`);
    };

    // The run: files change, operations start, the seed schedules every store call.
    for (let i = 0; i < o.steps; i++) {
      if (rng.chance(0.12)) docs.mutate();
      for (const a of actors) {
        if (a.ctx.dead && !a.ctx.busy) restart(a, false);
        if (!a.ctx.busy && rng.chance(a.startChance)) {
          const fn = a.op();
          if (fn) sched.start(a.ctx, fn);
        }
      }
      const st = await sched.step();
      if (st) log(`step ${st.actor} ${st.call.op} ${st.call.key} ${st.fault}`);
      for (const a of actors) {
        if (a.ctx.busy) continue;
        const v = await finished(a, false);
        if (v) return result(v);
      }
      const v = await checker.afterStep(sched.stats.steps, st?.actor);
      if (v) return result(v);
    }

    // The faults stop: what is in flight finishes, dead processes restart, leases run out.
    sched.faults = { before: 0, after: 0, crash: 0 };
    for (let i = 0; i < 5000 && actors.some((a) => a.ctx.busy); i++) {
      await sched.step();
      for (const a of actors) if (!a.ctx.busy) await finished(a, false);
    }
    if (actors.some((a) => a.ctx.busy)) return result({ step: sched.stats.steps, check: "stuck", message: `${actors.filter((a) => a.ctx.busy).map((a) => a.id).join(", ")} never finished its operation` });
    sched.vnow += 10 * 60_000;
    for (const a of actors) restart(a, true);
    // Every actor runs clean, one at a time; the two-way writers twice (each applies the other's round).
    const order = [
      ...actors.filter((a) => a.cls === "master"),
      ...actors.filter((a) => a.cls === "rollback"),
      ...actors.filter((a) => a.cls === "sync"),
      ...actors.filter((a) => a.cls === "sync"),
      ...actors.filter((a) => a.cls === "replicator"),
      ...actors.filter((a) => a.cls === "puller"),
    ];
    // Stuck means no progress and no report within bounded steps: one actor's clean run may fail
    // because of another's state that a later clean run repairs (a sync node whose pull meets an
    // object written over, which the node holding those bytes uploads again with --verify). So the
    // order runs again while some actor failed without saying why, up to CLEAN_PASSES times; an actor
    // whose last run still failed so is stuck. (A refusal that says why is an answer: see finished.)
    const failing = new Map<string, Violation>();
    for (let pass = 0; pass < CLEAN_PASSES && (pass === 0 || failing.size > 0); pass++) {
      const again = new Set(failing.keys());
      failing.clear();
      for (const a of order) {
        // A rollback that went through is not run again (it would publish yet another generation).
        if (pass > 0 && a.cls === "rollback" && !again.has(a.id)) continue;
        const fn = a.op();
        if (!fn) continue;
        sched.start(a.ctx, fn);
        for (let i = 0; i < 3000 && a.ctx.busy; i++) await sched.step();
        if (a.ctx.busy) return result({ step: sched.stats.steps, check: "stuck", message: `${a.id} did not finish a clean run in 3000 store calls` });
        const v = await finished(a, true);
        if (v?.check === "stuck") failing.set(a.id, v);
        else if (v) return result(v);
        else failing.delete(a.id);
        const w = await checker.afterStep(sched.stats.steps);
        if (w) return result(w);
      }
    }
    const stuck = failing.values().next().value;
    if (stuck) return result({ ...stuck, message: `${stuck.message} (still after ${CLEAN_PASSES} clean passes)` });
    const v = await checker.atEnd(sched.stats.steps, {
      regions: actors.some((a) => a.cls === "replicator") ? [REGION, ...(regions > 1 ? [REGION2] : [])] : [],
      syncIds: actors.filter((a) => a.cls === "sync").map((a) => a.id),
      docs,
    });
    return result(v);
  } finally {
    Scheduler.uninstall();
    rmSync(root, { recursive: true, force: true });
  }

  function result(violation: Violation | undefined): SeedResult {
    return { steps: sched.stats.steps, faults: sched.stats.faults, crashes: sched.stats.crashes, violation, describe };
  }
}
