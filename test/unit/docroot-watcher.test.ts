/** The one docroot watcher (adapters/docroot-watcher.ts): its quiet window + cap on a fake clock, and chokidar on a temp dir. */
import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { test } from "node:test";
import { QuietWindow, watchDocroot } from "../../src/adapters/docroot-watcher.ts";
import { TEMP_MARK } from "../../src/core/paths.ts";
import { fakeLog } from "../helpers/fake-log.ts";

test("quiet window: a burst is one batch, settled the delay after its last event", (t) => {
  t.mock.timers.enable({ apis: ["setTimeout", "Date"] });
  const batches: string[][] = [];
  const w = new QuietWindow({ delayMs: 100, maxDelayMs: 10_000 }, (p) => batches.push([...p].sort()));
  for (const p of ["a", "b", "a", "c"]) {
    w.add(p);
    t.mock.timers.tick(60);
  }
  assert.deepEqual(batches, [], "still events within the window");
  t.mock.timers.tick(39);
  assert.deepEqual(batches, []);
  t.mock.timers.tick(1);
  assert.deepEqual(batches, [["a", "b", "c"]]);
  t.mock.timers.tick(10_000);
  assert.equal(batches.length, 1, "nothing more without events");
  w.add("d");
  t.mock.timers.tick(100);
  assert.deepEqual(batches, [["a", "b", "c"], ["d"]]);
});

test("cap: under a constant stream of events a batch still settles every maxDelay", (t) => {
  t.mock.timers.enable({ apis: ["setTimeout", "Date"] });
  const settledAt: number[] = [];
  const w = new QuietWindow({ delayMs: 100, maxDelayMs: 500 }, () => settledAt.push(Date.now()));
  const t0 = Date.now();
  // An event every 20 ms for 2 s: the quiet window never passes.
  for (let i = 0; i < 100; i++) {
    w.add(`f${i % 7}`);
    t.mock.timers.tick(20);
  }
  w.close();
  assert.deepEqual(settledAt.map((x) => x - t0), [500, 1000, 1500, 2000]);
});

test("watchDocroot: changes become batches of docroot-relative paths; ignored directories and temp names never appear", async () => {
  const root = await mkdtemp(path.join(os.tmpdir(), "fansync-watcher-"));
  try {
    const state = path.join(root, "state");
    await mkdir(path.join(root, "sub"), { recursive: true });
    await mkdir(state);
    const seen = new Set<string>();
    let batches = 0;
    const w = await watchDocroot({ docroot: root, ignoreDirs: [state], delayMs: 50, maxDelayMs: 1000 }, (paths) => {
      batches++;
      for (const p of paths) seen.add(p);
    }, fakeLog().log);
    try {
      await writeFile(path.join(state, "index.json"), "{}");
      await writeFile(path.join(root, "sub", `${TEMP_MARK}tmp-1`), "x");
      await writeFile(path.join(root, "a.html"), "a");
      await writeFile(path.join(root, "sub", "b.html"), "b");
      const deadline = Date.now() + 10_000;
      while (!(seen.has("a.html") && seen.has("sub/b.html")) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      await new Promise((r) => setTimeout(r, 200));
    } finally {
      await w.close();
    }
    assert.ok(batches >= 1);
    assert.ok(seen.has("a.html") && seen.has("sub/b.html"), JSON.stringify([...seen]));
    for (const p of seen) {
      assert.ok(!p.startsWith("state"), `the ignored directory was reported: ${p}`);
      assert.ok(!path.basename(p).startsWith(TEMP_MARK), `a temp name was reported: ${p}`);
    }
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});

