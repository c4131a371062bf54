/** The one daemon loop (engine/daemon-loop.ts) with a fake runner: no server, no docroot. */
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  ConfigError, CredentialsMissing, FileChanging, GuardError, IntegrityError, LocalIoError, LockedError, ObjectMoved, PartialFailureError,
  RaceError, RegionMissing, RemoteError, RunTimeout, TransferCorrupt, UntrustedHead, UsageError,
} from "../../src/core/errors.ts";
import { BACKOFF_CAP_MS, daemonVerdict, retryDelayMs, runDaemonLoop, type RunContext, type Writers } from "../../src/engine/daemon-loop.ts";
import { Wake } from "../../src/engine/wake.ts";

// What waiting cannot fix ends every daemon; a lost race ends only the one that holds the lease.
const FATAL: readonly [string, () => Error, readonly Writers[]][] = [
  ["usage", () => new UsageError("bad flag"), ["single", "shared"]],
  ["config", () => new ConfigError(["interval: expected a duration"]), ["single", "shared"]],
  ["credentials", () => new CredentialsMissing("no AWS credentials found"), ["single", "shared"]],
  ["region", () => new RegionMissing("no AWS region"), ["single", "shared"]],
  ["locked", () => new LockedError("another fansync run holds the lock"), ["single", "shared"]],
  ["lost race", () => new RaceError("lost the race"), ["single"]],
];

// Everything a later run may settle is retried, whatever the daemon.
const RETRIED: readonly [string, () => unknown, readonly Writers[]][] = [
  ["lost race", () => new RaceError("lost the race"), ["shared"]],
  ["partial", () => new PartialFailureError("1 failed", [{ path: "a", error: "503" }]), ["single", "shared"]],
  ["remote", () => new RemoteError("unreachable", { retryable: true }), ["single", "shared"]],
  ["guard", () => new GuardError("would delete 90%"), ["single", "shared"]],
  ["untrusted head", () => new UntrustedHead("not signed"), ["single", "shared"]],
  ["integrity", () => new IntegrityError("bad manifest"), ["single", "shared"]],
  ["corrupt transfer", () => new TransferCorrupt("sha256 mismatch", false), ["single", "shared"]],
  ["object moved", () => new ObjectMoved("404"), ["single", "shared"]],
  ["run timeout", () => new RunTimeout("too slow"), ["single", "shared"]],
  ["local io", () => new LocalIoError("EACCES"), ["single", "shared"]],
  ["file changing", () => new FileChanging("still written"), ["single", "shared"]],
  ["an SDK or fs error", () => Object.assign(new Error("socket hang up"), { code: "ECONNRESET" }), ["single", "shared"]],
];

const noSleep = async () => {};

for (const [kind, make, writers] of FATAL) {
  for (const w of writers) {
    test(`fatal (${kind}, ${w} writer): the loop stops after that run and throws that error`, async () => {
      const err = make();
      let runs = 0;
      const retries: number[] = [];
      // A second run (a wrong verdict) stops the loop, so the test fails instead of spinning.
      const stop = new AbortController();
      await assert.rejects(
        runDaemonLoop({ run: async () => { runs++; if (runs > 1) stop.abort(); throw err; }, signal: stop.signal, wake: new Wake(), pollMs: () => 60_000, writers: w, onRetry: (_e, ms) => retries.push(ms), sleep: noSleep }),
        (thrown) => thrown === err,
      );
      assert.equal(runs, 1);
      assert.deepEqual(retries, []);
    });
  }
}

for (const [kind, make, writers] of RETRIED) {
  for (const w of writers) {
    test(`retried (${kind}, ${w} writer)`, () => assert.equal(daemonVerdict(make(), w), "retry"));
  }
}

test("a failing daemon backs off doubling up to one cap, and a good run starts it over", async () => {
  const stop = new AbortController();
  const slept: number[] = [];
  const reasons: string[] = [];
  let runs = 0;
  // Twelve failures (each a different retryable kind in turn), one success, two failures, then stop.
  const kinds = RETRIED.map(([, make]) => make);
  await runDaemonLoop({
    run: async (ctx: RunContext) => {
      reasons.push(ctx.reason);
      runs++;
      if (runs <= 12 || (runs >= 14 && runs <= 15)) throw (kinds[runs % kinds.length] as () => unknown)();
      if (runs === 13) return { againInMs: 0 };
      stop.abort();
    },
    signal: stop.signal,
    wake: new Wake(),
    pollMs: () => 60_000,
    writers: "shared",
    sleep: async (ms) => void slept.push(ms),
  });
  assert.equal(runs, 16);
  assert.deepEqual(slept, [500, 1000, 2000, 4000, 8000, 16_000, 30_000, 30_000, 30_000, 30_000, 30_000, 30_000, 500, 1000]);
  assert.equal(Math.max(...slept), BACKOFF_CAP_MS);
  assert.deepEqual(reasons.slice(0, 3), ["start", "retry", "retry"]);
  assert.equal(reasons[13], "poll", "the good run asked to come back at once");
});

test("retryDelayMs: the one cap policy", () => {
  assert.deepEqual([1, 2, 3, 6, 7, 8, 1000].map(retryDelayMs), [500, 1000, 2000, 16_000, 30_000, 30_000, 30_000]);
});

test("a wake during a run (any number of them) triggers exactly one more run; the nap is otherwise the poll interval", async () => {
  const stop = new AbortController();
  const wake = new Wake();
  const reasons: string[] = [];
  const loop = runDaemonLoop({
    run: async (ctx) => {
      reasons.push(ctx.reason);
      if (reasons.length === 1) {
        for (let i = 0; i < 50; i++) {
          wake.fire();
          await new Promise((r) => setImmediate(r));
        }
      }
    },
    signal: stop.signal,
    wake,
    pollMs: () => 60_000,
    writers: "shared",
    sleep: noSleep,
  });
  // Let the loop settle into its long nap after the second run, then stop it.
  while (reasons.length < 2) await new Promise((r) => setTimeout(r, 5));
  await new Promise((r) => setTimeout(r, 50));
  stop.abort();
  await loop;
  assert.deepEqual(reasons, ["start", "wake"]);
});

test("a wake cuts a healthy nap short but never a failing daemon's backoff", async () => {
  const stop = new AbortController();
  const wake = new Wake();
  const reasons: string[] = [];
  let releaseBackoff!: () => void;
  const loop = runDaemonLoop({
    run: async (ctx) => {
      reasons.push(ctx.reason);
      if (reasons.length === 1) throw new RemoteError("unreachable");
      if (reasons.length === 3) stop.abort();
    },
    signal: stop.signal,
    wake,
    pollMs: () => 60_000,
    writers: "shared",
    // The backoff ends only when the test says so: fires meanwhile must not start a run.
    sleep: () => new Promise<void>((r) => (releaseBackoff = r)),
  });
  while (!releaseBackoff) await new Promise((r) => setTimeout(r, 5));
  wake.fire();
  wake.fire();
  await new Promise((r) => setTimeout(r, 30));
  assert.deepEqual(reasons, ["start"], "fires during the backoff start no run");
  releaseBackoff();
  // The retry answers those fires: the loop naps its poll interval after it, until the fire below.
  while (reasons.length < 2) await new Promise((r) => setTimeout(r, 5));
  await new Promise((r) => setTimeout(r, 30));
  assert.deepEqual(reasons, ["start", "retry"]);
  wake.fire();
  await loop;
  assert.deepEqual(reasons, ["start", "retry", "wake"]);
});

test("abort: a napping loop returns at once; a run in flight finishes, and its failure after the stop is neither retried nor thrown", async () => {
  const napping = new AbortController();
  let runs = 0;
  const loop = runDaemonLoop({ run: async () => void runs++, signal: napping.signal, wake: new Wake(), pollMs: () => 3_600_000, writers: "single", sleep: noSleep });
  await new Promise((r) => setTimeout(r, 20));
  napping.abort();
  await loop;
  assert.equal(runs, 1);

  const inFlight = new AbortController();
  const retries: number[] = [];
  let finished = false;
  await runDaemonLoop({
    run: async () => {
      inFlight.abort();
      await new Promise((r) => setTimeout(r, 10));
      finished = true;
      // Even a kind that is fatal: the stop came first, the drain cut the run short.
      throw new RaceError("request aborted");
    },
    signal: inFlight.signal,
    wake: new Wake(),
    pollMs: () => 60_000,
    writers: "single",
    onRetry: (_e, ms) => retries.push(ms),
    sleep: noSleep,
  });
  assert.equal(finished, true);
  assert.deepEqual(retries, []);
});
