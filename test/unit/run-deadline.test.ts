import assert from "node:assert/strict";
import { test } from "node:test";
import { RunTimeout } from "../../src/core/errors.ts";
import { DEADLINE_FLOOR_BYTES_PER_S, RunDeadline } from "../../src/engine/run-deadline.ts";

const aborted = (s: AbortSignal) => new Promise<unknown>((r) => (s.aborted ? r(s.reason) : s.addEventListener("abort", () => r(s.reason), { once: true })));

test("a run deadline aborts its signal with RunTimeout; the planned bytes buy time at the floor rate", async () => {
  const d = new RunDeadline(40, new AbortController().signal);
  const t0 = Date.now();
  const reason = await aborted(d.signal);
  assert.ok(reason instanceof RunTimeout && d.expired);
  assert.ok(Date.now() - t0 >= 35);
  assert.match(d.error().message, /stopped after 0s/);
  d.dispose();

  const e = new RunDeadline(40, new AbortController().signal);
  e.allow(DEADLINE_FLOOR_BYTES_PER_S / 10); // 100 ms more
  const t1 = Date.now();
  await aborted(e.signal);
  assert.ok(Date.now() - t1 >= 120, "extended by the bytes planned");
  e.dispose();
});

test("the parent's stop is not a timeout; 0 means no deadline", async () => {
  const parent = new AbortController();
  const d = new RunDeadline(10_000, parent.signal);
  parent.abort(new Error("SIGTERM"));
  assert.equal(((await aborted(d.signal)) as Error).message, "SIGTERM");
  assert.equal(d.expired, false);
  d.dispose();
  const none = new RunDeadline(0, new AbortController().signal);
  none.allow(1e12);
  await new Promise((r) => setTimeout(r, 30));
  assert.equal(none.signal.aborted, false);
  none.dispose();
});
