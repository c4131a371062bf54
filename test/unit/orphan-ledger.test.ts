/**
 * The orphan ledger reads and writes its keys a line at a time (issue 25, memory: a first push of
 * 1M files records 1M keys, which were held as one string, one array and several sets). What it
 * deletes and keeps is unchanged: the objects of recorded keys that the manifest does not name go,
 * those written again by this run (`done`) or failed just now (`later`) stay, and a ledger in the
 * one-line layout older versions wrote is still read.
 */
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, test } from "node:test";
import { currentOf, MemoryStore, MemoryWorld } from "../../src/adapters/memory-store.ts";
import { OrphanLedger } from "../../src/adapters/orphan-ledger.ts";
import { silentLogger } from "../../src/adapters/logger.ts";
import { readJsonList } from "../../src/adapters/state-files.ts";
import type { Entry, FileMap } from "../../src/core/manifest.ts";

const root = mkdtempSync(path.join(os.tmpdir(), "fansync-ledger-"));
after(() => rmSync(root, { recursive: true, force: true }));

const entry = (p: string): Entry => ({ path: p, size: 1, mtimeMs: 1, mode: 0o644, sha256: "0".repeat(64), etag: '"e"' });
const files = (...paths: string[]): FileMap => new Map(paths.map((p) => [p, entry(p)]));

async function bucketWith(keys: string[]) {
  const world = new MemoryWorld();
  const bucket = world.bucket("b", "off");
  const store = new MemoryStore({ world, bucket: "b" });
  for (const k of keys) await store.put(k, Buffer.from(k), {});
  return { store, has: (k: string) => currentOf(bucket, k) !== undefined };
}

test("ledger: recorded keys the manifest does not name are deleted, the named ones, this run's and the failed ones kept", async () => {
  const file = path.join(root, "l1", "ledger.json");
  const ledger = new OrphanLedger(file);
  await ledger.record("site/", ["a.html", "b.html", "gone.html", "mine.html"]);
  await ledger.record("site/", ["b.html", "later.html"]);
  // Recorded as keys, each once, one per line.
  const recorded: unknown[] = [];
  assert.equal(await readJsonList(file, "keys", (k) => recorded.push(k)), true);
  assert.deepEqual(recorded, ["site/a.html", "site/b.html", "site/gone.html", "site/mine.html", "site/later.html"]);
  const { store, has } = await bucketWith(["site/a.html", "site/b.html", "site/gone.html", "site/mine.html", "site/later.html"]);
  await ledger.clean({ store, prefix: "site/", current: files("a.html", "b.html"), done: new Set(["site/mine.html"]), later: new Set(["site/later.html"]), log: silentLogger() });
  assert.deepEqual(["site/a.html", "site/b.html", "site/gone.html", "site/mine.html", "site/later.html"].map(has), [true, true, false, true, true]);
  const left: unknown[] = [];
  await readJsonList(file, "keys", (k) => left.push(k));
  assert.deepEqual(left, ["site/later.html"]);
});

test("ledger: a ledger in the one-line layout is read (its stale key deleted); a damaged one is treated as absent", async () => {
  const file = path.join(root, "l2", "ledger.json");
  const ledger = new OrphanLedger(file);
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, JSON.stringify({ keys: ["site/old.html", "site/kept.html"] }));
  const { store, has } = await bucketWith(["site/old.html", "site/kept.html"]);
  await ledger.clean({ store, prefix: "site/", current: files("kept.html"), log: silentLogger() });
  assert.deepEqual([has("site/old.html"), has("site/kept.html")], [false, true]);
  writeFileSync(file, '{"keys":[\n"site/x.html"\n,"site/y');
  const seen: unknown[] = [];
  assert.equal(await readJsonList(file, "keys", (k) => seen.push(k)), false);
  // record over a damaged ledger starts it anew.
  await ledger.record("site/", ["z.html"]);
  assert.equal(readFileSync(file, "utf8"), '{"keys":[\n"site/z.html"\n]}\n');
});
