/**
 * The simulation's scheduler: every store call of every actor waits at one gate, and the seed decides
 * which pending call goes next, which fails (before it takes effect, or after: a lost answer) and
 * where an actor dies (TigerBeetle's VOPR, FoundationDB's simulation). Between two decisions the
 * scheduler waits until nothing runs: every actor is at the gate or has finished its operation, and
 * no file I/O is in flight.
 *
 * Time is virtual. `now()` (handed to every engine) advances a fixed quantum per step; a timer an
 * actor sets (a retry's backoff, the two-way node's lease wait, the lease's settle pause) fires at
 * once in real time, so a seed costs milliseconds. Timers of more than 10 s (run deadlines, drains)
 * never fire inside the simulation. `Math.random` and `crypto.randomBytes` are seeded while a seed runs.
 *
 * Which actor a call belongs to is carried by AsyncLocalStorage from the operation's start.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { createRequire, syncBuiltinESMExports } from "node:module";
import { RemoteError } from "../src/core/errors.ts";
import type { StoreCall, StoreGate } from "../src/adapters/memory-store.ts";

/** A small, fast, seedable PRNG (mulberry32). */
export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0 || 0x9e3779b9;
  }
  next(): number {
    let t = (this.s = (this.s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)] as T;
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
}

/** Thrown into a killed actor's calls: the process is gone. */
export class Crash extends Error {
  override name = "SimCrash";
}

/** One incarnation of an actor (a process): its operation in flight, and whether it was killed. */
export interface ActorCtx {
  readonly id: string;
  readonly incarnation: number;
  dead: boolean;
  busy: boolean;
  /** How the last operation ended. */
  outcome: { ok: true; value: unknown } | { ok: false; error: unknown } | undefined;
  /** Faults may be injected into this actor's calls. */
  faults: boolean;
}

interface Pending {
  readonly ctx: ActorCtx;
  readonly call: StoreCall;
  readonly seq: number;
  readonly go: (after?: () => Promise<void>) => void;
  readonly fail: (err: unknown) => void;
}

/** Fault rates per released call. */
export interface FaultRates {
  readonly before: number;
  readonly after: number;
  readonly crash: number;
}

/** Counters for the summary line. */
export interface SchedStats {
  steps: number;
  faults: number;
  crashes: number;
}

const require = createRequire(import.meta.url);
const timersPromises = require("node:timers/promises") as typeof import("node:timers/promises");
const crypto = require("node:crypto") as typeof import("node:crypto");
const REAL = {
  setTimeout: globalThis.setTimeout,
  clearTimeout: globalThis.clearTimeout,
  setImmediate: globalThis.setImmediate,
  clearImmediate: globalThis.clearImmediate,
  promiseTimeout: timersPromises.setTimeout,
  random: Math.random,
  randomBytes: crypto.randomBytes,
};
const LONG_TIMER_MS = 10_000;
// Event-loop turns with nothing in flight after which a released actor counts as waiting in a join.
const JOIN_TURNS = 40;
const BUSY = /^(FS|FileHandle|CloseReq|Zlib|GetAddrInfo|StatWatcher)/;

/** Seeded scheduling of every gated store call; see the module comment. */
export class Scheduler {
  readonly als = new AsyncLocalStorage<ActorCtx>();
  readonly stats: SchedStats = { steps: 0, faults: 0, crashes: 0 };
  readonly rng: Rng;
  /** Virtual milliseconds since the epoch. */
  vnow: number;
  faults: FaultRates = { before: 0, after: 0, crash: 0 };
  private pending: Pending[] = [];
  private running = new Set<ActorCtx>();
  private instant = 0;
  private seq = 0;
  private readonly ours = new WeakSet<object>();
  private readonly quantumMs: number;
  /** Each actor's last call (said when the simulation does not settle). */
  private readonly lastCall = new Map<string, string>();

  constructor(seed: number, opts: { startMs: number; quantumMs: number }) {
    this.rng = new Rng(seed);
    this.vnow = opts.startMs;
    this.quantumMs = opts.quantumMs;
  }

  /** The virtual clock, for every engine's `now`. */
  readonly now = (): Date => new Date(this.vnow);

  /** The gate every actor's stores share: the actor is the one whose operation made the call. */
  readonly gate: StoreGate = {
    enter: (call) => {
      const ctx = this.als.getStore();
      if (!ctx) return Promise.resolve(); // the checker and the sim itself: not scheduled
      if (ctx.dead) return Promise.reject(new Crash(`${ctx.id} was killed`));
      this.lastCall.set(ctx.id, `${call.op} ${call.key}`);
      this.running.delete(ctx);
      return new Promise<(() => Promise<void>) | void>((go, fail) => {
        this.pending.push({ ctx, call, seq: this.seq++, go, fail });
      });
    },
  };

  /** Start `fn` as `ctx`'s operation; its outcome lands in `ctx.outcome`. */
  start(ctx: ActorCtx, fn: () => Promise<unknown>): void {
    ctx.busy = true;
    ctx.outcome = undefined;
    this.running.add(ctx);
    void this.als.run(ctx, () =>
      fn().then(
        (value) => this.settle(ctx, { ok: true, value }),
        (error: unknown) => this.settle(ctx, { ok: false, error }),
      ),
    );
  }

  private settle(ctx: ActorCtx, outcome: NonNullable<ActorCtx["outcome"]>): void {
    ctx.outcome = outcome;
    ctx.busy = false;
    this.running.delete(ctx);
  }

  /**
   * Wait until nothing runs: every actor at the gate or done, no file I/O or timer in flight. An
   * actor released into a join (`Promise.all` over several calls: one released, the others still
   * at the gate) may wait for its other calls and arrive nowhere: once nothing has been in flight
   * for a while, such an actor is taken to be waiting. An actor with no call at the gate is always
   * waited for (it may be compressing a manifest on the thread pool, which no resource list shows).
   */
  async quiesce(): Promise<void> {
    let stable = 0;
    let idle = 0;
    for (let i = 0; ; i++) {
      await new Promise<void>((r) => REAL.setImmediate(r));
      const io = this.instant > 0 || process.getActiveResourcesInfo().some((n) => BUSY.test(n));
      const alone = [...this.running].some((c) => c.busy && !c.dead && !this.pending.some((p) => p.ctx === c));
      if (io || alone) stable = idle = 0;
      else if (this.running.size === 0) stable++;
      else idle++;
      if (stable >= 2 || idle >= JOIN_TURNS) return;
      if (i > 2_000_000) {
        const who = [...this.running].map((c) => `${c.id} after ${this.lastCall.get(c.id) ?? "no call"}`).join(", ");
        throw new Error(`the simulation never settled (running: ${who || "none"}; timers: ${this.instant}; resources: ${process.getActiveResourcesInfo().join(", ")})`);
      }
    }
  }

  /** Calls waiting at the gate. */
  get waiting(): number {
    return this.pending.length;
  }

  /**
   * Release one pending call (chosen by the seed), possibly failing it or killing its actor.
   * Returns what happened, or undefined when no call was waiting.
   */
  async step(): Promise<{ actor: string; call: StoreCall; fault: "none" | "before" | "after" | "crash" } | undefined> {
    await this.quiesce();
    if (this.pending.length === 0) return undefined;
    // Deterministic order of the candidates, whatever order they arrived in (the branches of one
    // actor's Promise.all may arrive in any order): by actor, then by the call itself.
    const order = (p: Pending) => `${p.ctx.id}\0${p.call.op}\0${p.call.key}`;
    this.pending.sort((a, b) => (order(a) < order(b) ? -1 : order(a) > order(b) ? 1 : a.seq - b.seq));
    const i = this.rng.int(this.pending.length);
    const p = this.pending.splice(i, 1)[0] as Pending;
    this.stats.steps++;
    this.vnow += this.quantumMs;
    // A call left at the gate by an operation that already ended (a Promise.all that rejected on a
    // sibling) goes through, but nothing waits for it to arrive anywhere.
    if (p.ctx.busy) this.running.add(p.ctx);
    if (p.ctx.dead) {
      p.fail(new Crash(`${p.ctx.id} was killed`));
      await this.quiesce();
      return { actor: p.ctx.id, call: p.call, fault: "crash" };
    }
    const f = this.faults;
    const r = p.ctx.faults ? this.rng.next() : 1;
    let fault: "none" | "before" | "after" | "crash" = "none";
    if (r < f.crash) {
      fault = "crash";
      this.stats.crashes++;
      p.ctx.dead = true;
      p.fail(new Crash(`${p.ctx.id} killed at ${p.call.op} ${p.call.key}`));
    } else if (r < f.crash + f.before) {
      fault = "before";
      this.stats.faults++;
      p.fail(new RemoteError(`injected: ${p.call.op} ${p.call.key} failed before taking effect (503)`, { retryable: true }));
    } else if (r < f.crash + f.before + f.after) {
      fault = "after";
      this.stats.faults++;
      p.go(async () => {
        throw new RemoteError(`injected: the answer to ${p.call.op} ${p.call.key} was lost`, { retryable: true });
      });
    } else p.go();
    await this.quiesce();
    return { actor: p.ctx.id, call: p.call, fault };
  }

  /** Kill `ctx` now: its waiting calls fail with {@link Crash}, and so will every later one. */
  kill(ctx: ActorCtx): void {
    ctx.dead = true;
    for (const p of this.pending.filter((x) => x.ctx === ctx)) {
      this.pending.splice(this.pending.indexOf(p), 1);
      if (ctx.busy) this.running.add(ctx);
      p.fail(new Crash(`${ctx.id} killed`));
    }
  }

  /** Let every actor's calls through at once in the seed's order until none is running (the clean phase). */
  async drain(maxSteps: number): Promise<number> {
    let n = 0;
    while (n < maxSteps) {
      const s = await this.step();
      if (!s) break;
      n++;
    }
    return n;
  }

  /** Install virtual timers and seeded Math.random (for the whole process; {@link uninstall} undoes). */
  install(randomSeed: number): void {
    const sched = this;
    const rnd = new Rng(randomSeed);
    Math.random = () => rnd.next();
    // Writer ids, probe keys and temp names come from randomBytes: seeded too, so calls sort alike.
    crypto.randomBytes = ((n: number, cb?: (err: Error | null, b: Buffer) => void) => {
      const b = Buffer.alloc(n);
      for (let i = 0; i < n; i++) b[i] = rnd.int(256);
      if (cb) {
        process.nextTick(cb, null, b);
        return undefined;
      }
      return b;
    }) as typeof crypto.randomBytes;
    const fakeTimeout = function (cb: (...a: unknown[]) => void, ms?: number, ...args: unknown[]) {
      if (!sched.als.getStore()) return REAL.setTimeout(cb, ms, ...args);
      if ((ms ?? 0) > LONG_TIMER_MS) {
        const h = { ref: () => h, unref: () => h, hasRef: () => false, refresh: () => h, [Symbol.toPrimitive]: () => 0 };
        sched.ours.add(h);
        return h;
      }
      sched.instant++;
      let done = false;
      const im = REAL.setImmediate(() => {
        if (done) return;
        done = true;
        sched.instant--;
        cb(...args);
      });
      const h = {
        ref: () => h, unref: () => h, hasRef: () => true, refresh: () => h, [Symbol.toPrimitive]: () => 0,
        cancel: () => {
          if (done) return;
          done = true;
          sched.instant--;
          REAL.clearImmediate(im);
        },
      };
      sched.ours.add(h);
      return h;
    };
    globalThis.setTimeout = fakeTimeout as unknown as typeof globalThis.setTimeout;
    globalThis.clearTimeout = ((h: unknown) => {
      if (h && typeof h === "object" && sched.ours.has(h)) (h as { cancel?: () => void }).cancel?.();
      else REAL.clearTimeout(h as Parameters<typeof clearTimeout>[0]);
    }) as typeof globalThis.clearTimeout;
    timersPromises.setTimeout = (async (ms?: number, value?: unknown, opts?: { signal?: AbortSignal }) => {
      if (!sched.als.getStore()) return REAL.promiseTimeout(ms, value, opts);
      opts?.signal?.throwIfAborted();
      if ((ms ?? 0) > LONG_TIMER_MS) return new Promise(() => undefined);
      await new Promise<void>((r) => fakeTimeout(() => r(), 0));
      return value;
    }) as typeof timersPromises.setTimeout;
    syncBuiltinESMExports();
  }

  /** Undo {@link install}. */
  static uninstall(): void {
    globalThis.setTimeout = REAL.setTimeout;
    globalThis.clearTimeout = REAL.clearTimeout;
    timersPromises.setTimeout = REAL.promiseTimeout;
    Math.random = REAL.random;
    crypto.randomBytes = REAL.randomBytes;
    syncBuiltinESMExports();
  }
}
