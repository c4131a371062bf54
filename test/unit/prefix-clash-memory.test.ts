/**
 * Rollback and the replicator on a server that refuses dir/file prefix clashes (versitygw keeps keys
 * as files of a POSIX tree: `d/x.html` cannot be written while an object `d` exists, nor `d` while
 * `d/…` exist), on MemoryStore's `refusesPrefixClash` quirk. Found by the simulation
 * (`npm run sim -- --seed 270 --actors master,replicator,puller,rollback` for rollback; seeds 13 48
 * 51 283 for a region): the writer wedged for good, every run refused (exit 4).
 */
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { MemoryStore, MemoryWorld } from "../../src/adapters/memory-store.ts";
import { makeReplicator, makeUploader, pullOnceWith, runRollback } from "../../sim/world.ts";
import { object, readTree, tmp, writeTree } from "../helpers/memory-world.ts";

/** Replace the docroot's tree with `files`. */
function setTree(dir: string, files: Record<string, string>): void {
  rmSync(dir, { recursive: true, force: true });
  writeTree(dir, files);
}

test("rollback across a file ↔ directory flip on a server that refuses prefix clashes: the clashing deletions go first, as their own generation, and the rollback completes", async () => {
  const world = new MemoryWorld();
  world.bucket("primary", "Enabled");
  const store = new MemoryStore({ world, bucket: "primary", quirks: { refusesPrefixClash: true } });
  const root = tmp();
  const url = "s3://primary/site/";
  const master = path.join(root, "master");
  const up = makeUploader(store, { docroot: master, url, base: path.join(root, "m") });
  setTree(master, { "index.html": "one", "d/y.html": "a page under d/" });
  await up.reconcile();
  const g1 = (await up.currentHead())?.generation ?? 0;
  setTree(master, { "index.html": "two", d: "d is a file now" });
  await up.reconcile();
  const g2 = (await up.currentHead())?.generation ?? 0;
  await up.releaseLease();
  // Back to the generation where d was a directory: d must go before d/y.html can be written.
  const r = await runRollback(store, { url, base: path.join(root, "rb"), to: g1 });
  assert.equal(r.published, true);
  assert.equal(object(world, "primary", "site/d"), undefined);
  assert.equal(object(world, "primary", "site/d/y.html"), "a page under d/");
  const node = path.join(root, "node");
  await pullOnceWith({ loc: { bucket: "primary", prefix: "site/" }, store }, { docroot: node, base: path.join(root, "n") });
  assert.deepEqual(readTree(node), { "index.html": "one", "d/y.html": "a page under d/" });
  // And forward again (d/ → d): a second rollback to the generation with the file.
  const r2 = await runRollback(store, { url, base: path.join(root, "rb"), to: g2 });
  assert.equal(r2.published, true);
  assert.equal(object(world, "primary", "site/d"), "d is a file now");
  assert.equal(object(world, "primary", "site/d/y.html"), undefined);
});

test("replicator into a region whose server refuses prefix clashes: a file that became a directory (and back) reaches the region", async () => {
  const world = new MemoryWorld();
  world.bucket("primary", "off");
  world.bucket("region", "off");
  // The primary's server takes the flip in one generation (AWS); the region's refuses it (versitygw).
  const primary = new MemoryStore({ world, bucket: "primary" });
  const region = new MemoryStore({ world, bucket: "region", quirks: { refusesPrefixClash: true } });
  const root = tmp();
  const url = "s3://primary/site/";
  const master = path.join(root, "master");
  const up = makeUploader(primary, { docroot: master, url, base: path.join(root, "m") });
  const rep = makeReplicator(primary, region, { primaryUrl: url, regionUrl: "s3://region/site/", base: path.join(root, "r") });
  const node = path.join(root, "node");
  const pullRegion = () => pullOnceWith({ loc: { bucket: "region", prefix: "site/" }, store: region }, { docroot: node, base: path.join(root, "n") });
  const trees: Record<string, string>[] = [
    { "index.html": "one", d: "d is a file" },
    { "index.html": "two", "d/x.html": "d is a directory" },
    { "index.html": "three", d: "d is a file again" },
  ];
  for (const tree of trees) {
    setTree(master, tree);
    await up.reconcile();
    await up.releaseLease();
    const res = await rep.runOnce(0);
    assert.equal(res[0]?.error, undefined, String(res[0]?.error));
    await pullRegion();
    assert.deepEqual(readTree(node), tree);
  }
  assert.equal(object(world, "region", "site/d/x.html"), undefined);
});

test("replicator: a round that died before its head left a new object d in the region; when d has become a directory meanwhile, the next round sweeps it first (found by the simulation, seed 49)", async () => {
  const world = new MemoryWorld();
  world.bucket("primary", "off");
  world.bucket("region", "off");
  const primary = new MemoryStore({ world, bucket: "primary" });
  // The region's head write fails once (the round dies after its copies).
  let failHead = false;
  const gate = { enter: async (call: { op: string; key: string }) => {
    if (failHead && call.op === "put" && call.key === "site/.fansync/head.json") {
      failHead = false;
      throw new Error("killed before the head");
    }
  } };
  const region = new MemoryStore({ world, bucket: "region", quirks: { refusesPrefixClash: true }, gate });
  const root = tmp();
  const url = "s3://primary/site/";
  const master = path.join(root, "master");
  const up = makeUploader(primary, { docroot: master, url, base: path.join(root, "m") });
  const rep = () => makeReplicator(primary, region, { primaryUrl: url, regionUrl: "s3://region/site/", base: path.join(root, "r") });
  setTree(master, { "index.html": "one" });
  await up.reconcile();
  await up.releaseLease();
  assert.equal((await rep().runOnce(0))[0]?.error, undefined);
  // index.html unchanged: the round's only head write is its commit's (no dirty mark first).
  setTree(master, { "index.html": "one", d: "d is a file" });
  await up.reconcile();
  await up.releaseLease();
  failHead = true;
  const died = (await rep().runOnce(0))[0]?.error;
  assert.ok(died, "the round died before its head");
  assert.equal(object(world, "region", "site/d"), "d is a file", "its copy of d is left behind");
  setTree(master, { "index.html": "one", "d/x.html": "d is a directory" });
  await up.reconcile();
  await up.releaseLease();
  const res = await rep().runOnce(0);
  assert.equal(res[0]?.error, undefined, String(res[0]?.error));
  assert.equal(object(world, "region", "site/d"), undefined);
  assert.equal(object(world, "region", "site/d/x.html"), "d is a directory");
});
