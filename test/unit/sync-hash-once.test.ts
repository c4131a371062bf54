/**
 * A two-way node hashes a file it finds modified once per round (issue 26): its scan and its
 * uploader read the same persisted hash index, so the uploader does not read the file again to
 * hash it, and a restarted node does not hash an unchanged docroot at all. MemoryStore, no server;
 * the hasher is the real one, counted.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, test } from "node:test";
import { currentOf, MemoryStore, MemoryWorld } from "../../src/adapters/memory-store.ts";
import { hashFile } from "../../src/adapters/local-tree.ts";
import { sha256Hex } from "../../src/core/manifest.ts";
import { makeTwoWay } from "../../sim/world.ts";

const root = mkdtempSync(path.join(os.tmpdir(), "fansync-hash-once-"));
after(() => rmSync(root, { recursive: true, force: true }));

test("sync: a file modified between rounds is hashed once per round, and a restarted node hashes nothing unchanged", async () => {
  const world = new MemoryWorld();
  const bucket = world.bucket("primary", "off");
  const store = new MemoryStore({ world, bucket: "primary" });
  const docroot = path.join(root, "A");
  const base = path.join(root, "state");
  const url = "s3://primary/site/";
  // Every hash pass of the docroot, by relative path.
  const hashed = new Map<string, number>();
  const hasher = async (abs: string, size: number) => {
    const rel = path.relative(docroot, abs);
    hashed.set(rel, (hashed.get(rel) ?? 0) + 1);
    return hashFile(abs, size);
  };
  const write = (p: string, body: string, ageSeconds: number) => {
    const abs = path.join(docroot, p);
    writeFileSync(abs, body);
    const t = Date.now() / 1000 - ageSeconds;
    utimesSync(abs, t, t);
  };
  const inBucket = (p: string) => currentOf(bucket, `site/${p}`)?.body.toString("utf8");

  const a = makeTwoWay(store, { docroot, url, base, nodeId: "a", hasher });
  write("index.html", "first", 60);
  write("big.css", "x".repeat(5000), 60);
  await a.node.round({ joining: true });
  assert.equal(inBucket("index.html"), "first");

  for (const [round, body] of [[1, "second, longer"], [2, "third"]] as const) {
    hashed.clear();
    write("index.html", body, 30 - round);
    write("big.css", "y".repeat(5000 + round), 30 - round);
    const r = await a.node.round({ joining: false });
    assert.equal(r.published, true, `round ${round} publishes the edits`);
    assert.equal(inBucket("index.html"), body, `round ${round}: the bucket holds the new bytes`);
    assert.equal(sha256Hex(Buffer.from(inBucket("big.css") ?? "")), sha256Hex(Buffer.from("y".repeat(5000 + round))));
    assert.deepEqual(Object.fromEntries(hashed), { "index.html": 1, "big.css": 1 }, `round ${round}: each modified file hashed once`);
  }

  // A new process on the same state directory: nothing changed, nothing is read to be hashed.
  hashed.clear();
  const again = makeTwoWay(store, { docroot, url, base, nodeId: "a", hasher });
  const r = await again.node.round({ joining: true });
  assert.equal(r.published, false);
  assert.deepEqual(Object.fromEntries(hashed), {}, "a restarted node finds the docroot in the persisted index");
});
