/**
 * The engines on MemoryStore: uploader, puller, replicator, rollback, the two-way node and packs,
 * each the real code with real temp docroots and no server (STYLE.md 10/15). Each test asserts what
 * a user sees: bytes in the bucket, bytes on disk, what is kept.
 */
import assert from "node:assert/strict";
import { readFileSync, rmSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import pino from "pino";
import { MemoryStore, MemoryWorld } from "../../src/adapters/memory-store.ts";
import { sha256Hex } from "../../src/core/manifest.ts";
import { makePackWriter, makeReplicator, makeTwoWay, makeUploader, pullOnceWith, runRollback } from "../../sim/world.ts";
import { object, readTree, tmp, writeTree } from "../helpers/memory-world.ts";

function setup(versioning: "off" | "Enabled" = "off") {
  const world = new MemoryWorld();
  world.bucket("primary", versioning);
  world.bucket("region", versioning);
  const store = new MemoryStore({ world, bucket: "primary" });
  const root = tmp();
  return { world, store, root, url: "s3://primary/site/" };
}

test("uploader: a push puts every file's bytes under the prefix, a second push is a no-op, a removed file's object goes", async () => {
  const { world, store, root, url } = setup();
  const docroot = path.join(root, "master");
  writeTree(docroot, { "index.html": "<h1>hi</h1>", "css/a.css": "body{}" });
  const up = makeUploader(store, { docroot, url, base: path.join(root, "state") });
  const r1 = await up.reconcile();
  assert.equal(r1.generation, 1);
  assert.equal(object(world, "primary", "site/index.html"), "<h1>hi</h1>");
  assert.equal(object(world, "primary", "site/css/a.css"), "body{}");
  assert.ok(object(world, "primary", "site/.fansync/head.json"));
  const r2 = await up.reconcile();
  assert.equal(r2.published, false);
  writeTree(docroot, { "css/a.css": null });
  const r3 = await up.reconcile();
  assert.equal(r3.generation, 2);
  assert.equal(object(world, "primary", "site/css/a.css"), undefined);
});

test("puller: a pull brings the docroot to the head; an object holding other bytes is refused and the docroot is left as it was", async () => {
  const { world, store, root, url } = setup();
  const master = path.join(root, "master");
  writeTree(master, { "index.html": "one", "a/b.txt": "bee" });
  const up = makeUploader(store, { docroot: master, url, base: path.join(root, "m") });
  await up.reconcile();
  const node = path.join(root, "node");
  const base = path.join(root, "n");
  await pullOnceWith({ loc: { bucket: "primary", prefix: "site/" }, store }, { docroot: node, base });
  assert.deepEqual(readTree(node), { "index.html": "one", "a/b.txt": "bee" });
  writeTree(master, { "index.html": "two" });
  await up.reconcile();
  // Someone overwrites the object behind the manifest's back (other bytes).
  await store.put("site/index.html", Buffer.from("evil"), { contentType: "text/html" });
  await assert.rejects(pullOnceWith({ loc: { bucket: "primary", prefix: "site/" }, store }, { docroot: node, base }));
  assert.deepEqual(readTree(node), { "index.html": "one", "a/b.txt": "bee" }, "nothing of the refused generation is applied");
  void world;
});

test("replicator: a region gets the primary's objects and then its head; a regional pull installs them", async () => {
  const { world, store, root, url } = setup();
  const master = path.join(root, "master");
  writeTree(master, { "index.html": "home", "x/y.txt": "why" });
  await makeUploader(store, { docroot: master, url, base: path.join(root, "m") }).reconcile();
  const region = new MemoryStore({ world, bucket: "region" });
  const rep = makeReplicator(store, region, { primaryUrl: url, regionUrl: "s3://region/site/", base: path.join(root, "r") });
  const res = await rep.runOnce();
  assert.equal(res[0]?.error, undefined, String(res[0]?.error));
  assert.equal(object(world, "region", "site/x/y.txt"), "why");
  const node = path.join(root, "node");
  await pullOnceWith({ loc: { bucket: "region", prefix: "site/" }, store: region }, { docroot: node, base: path.join(root, "n") });
  assert.deepEqual(readTree(node), { "index.html": "home", "x/y.txt": "why" });
});

test("rollback: on a versioned bucket the old generation's bytes are published again as a new generation", async () => {
  const { store, root, url } = setup("Enabled");
  const master = path.join(root, "master");
  const up = makeUploader(store, { docroot: master, url, base: path.join(root, "m") });
  writeTree(master, { "index.html": "v1", "old.txt": "old" });
  await up.reconcile();
  writeTree(master, { "index.html": "v2", "old.txt": null, "new.txt": "new" });
  await up.reconcile();
  // As `push` does at its end: a live lease would make the rollback refuse (another uploader).
  await up.releaseLease();
  const r = await runRollback(store, { url, base: path.join(root, "rb"), to: 1 });
  assert.equal(r.generation, 3);
  const node = path.join(root, "node");
  await pullOnceWith({ loc: { bucket: "primary", prefix: "site/" }, store }, { docroot: node, base: path.join(root, "n") });
  assert.deepEqual(readTree(node), { "index.html": "v1", "old.txt": "old" });
});

test("two-way: a file written on one node arrives on the other; both editing one file keeps the loser outside the docroot", async () => {
  const { store, root } = setup();
  const url = "s3://primary/shared/";
  const a = makeTwoWay(store, { docroot: path.join(root, "A"), url, base: path.join(root, "sa"), nodeId: "a" });
  const b = makeTwoWay(store, { docroot: path.join(root, "B"), url, base: path.join(root, "sb"), nodeId: "b" });
  writeTree(path.join(root, "A"), { "f.txt": "from A" });
  await a.node.round({ joining: true });
  await b.node.round({ joining: true });
  assert.deepEqual(readTree(path.join(root, "B")), { "f.txt": "from A" });
  const t = Date.now() / 1000;
  writeTree(path.join(root, "A"), { "f.txt": "A older" }, t - 5);
  writeTree(path.join(root, "B"), { "f.txt": "B newer" }, t - 2);
  await a.node.round({ joining: false });
  await b.node.round({ joining: false });
  await a.node.round({ joining: false });
  assert.equal(readTree(path.join(root, "A"))["f.txt"], "B newer");
  assert.equal(readTree(path.join(root, "B"))["f.txt"], "B newer");
  const kept = [...Object.values(readTree(a.conflictsDir)), ...Object.values(readTree(b.conflictsDir))];
  assert.ok(kept.includes("A older"), `the losing version is kept (kept: ${JSON.stringify(kept)})`);
});

test("packs: a push writes packs, and a pull takes its files from them (the path-keyed objects are not needed)", async () => {
  const { world, store, root, url } = setup();
  const master = path.join(root, "master");
  const files: Record<string, string> = {};
  for (let i = 0; i < 80; i++) files[`p/${i}.html`] = `page ${i} `.repeat(20);
  writeTree(master, files);
  const up = makeUploader(store, { docroot: master, url, base: path.join(root, "m") });
  await up.reconcile();
  const pub = up.published;
  assert.ok(pub);
  const w = await makePackWriter(store, up, { docroot: master, url, tuning: { minNewFiles: 10 } }).write(pub.files, pub.generation, () => up.holdLease());
  assert.ok(w.packsWritten >= 1, "packs were written");
  await up.releaseLease();
  // Take the path-keyed objects away: only packs can give the bytes now.
  for (const p of Object.keys(files)) await store.deleteMany([`site/${p}`]);
  const node = path.join(root, "node");
  await pullOnceWith({ loc: { bucket: "primary", prefix: "site/" }, store }, { docroot: node, base: path.join(root, "n") });
  const got = readTree(node);
  assert.equal(Object.keys(got).length, 80);
  for (const [p, body] of Object.entries(files)) assert.equal(sha256Hex(got[p] ?? ""), sha256Hex(body), p);
  void world;
});

test("uploader: a writer that died after writing the next manifest (other content, longer) publishes that generation on its next run", async () => {
  // Found by the simulation (npm run sim -- --seed 28 --actors master,puller --no-quirks): the
  // existing manifest was read back capped at the new body's length and refused as too large.
  const { world, store, root, url } = setup();
  const master = path.join(root, "master");
  writeTree(master, { "index.html": "one" });
  const up = makeUploader(store, { docroot: master, url, base: path.join(root, "m") });
  await up.reconcile();
  await up.releaseLease();
  // What a crashed run left: generation 2's manifest for a tree that then changed again.
  await store.put("site/.fansync/manifests/000000000002.ndjson.gz", Buffer.alloc(4096, 0x20), { contentType: "application/x-ndjson" });
  writeTree(master, { "index.html": "two" });
  const r = await up.reconcile();
  assert.equal(r.generation, 2);
  assert.equal(object(world, "primary", "site/index.html"), "two");
});

test("two-way: a node stopped between applying the head and recording its base, its docroot then restored from an old backup: the head's newer version is applied and the old one kept, its own edits published", async () => {
  // sync.integ's "restored from an old snapshot" failed about one run in four: its SIGTERM landed
  // after the puller had renamed x2 into place and saved its own state, and before the round recorded
  // the base. The stop lands there every time here: the signal aborts when the puller logs that the
  // docroot reached the generation (written after its state, right before it checks the signal).
  const { store, root } = setup();
  const url = "s3://primary/shared/";
  const A = path.join(root, "A");
  const B = path.join(root, "B");
  const a = makeTwoWay(store, { docroot: A, url, base: path.join(root, "sa"), nodeId: "a" });
  const old = Date.now() / 1000 - 7200;
  writeTree(A, { "x.html": "x1", "y.html": "y1" }, old);
  await a.node.round({ joining: true });
  await makeTwoWay(store, { docroot: B, url, base: path.join(root, "sb"), nodeId: "b" }).node.round({ joining: true });
  writeTree(A, { "x.html": "x2" }, Date.now() / 1000 - 60);
  await a.node.round({ joining: false });
  const stop = new AbortController();
  const log = pino({ level: "info" }, { write: (line: string) => (line.includes("docroot at generation") ? stop.abort() : undefined) });
  const stopped = makeTwoWay(store, { docroot: B, url, base: path.join(root, "sb"), nodeId: "b" }, { log, signal: stop.signal });
  await assert.rejects(stopped.node.round({ joining: false }), (e: unknown) => (e as Error).name === "AbortError");
  assert.equal(readTree(B)["x.html"], "x2", "the apply landed before the stop");
  // B's docroot comes back from last night's backup, then y.html is edited and z.html added.
  rmSync(B, { recursive: true });
  writeTree(B, { "x.html": "x1", "y.html": "y1" }, old);
  writeTree(B, { "y.html": "y edited on b", "z.html": "new on b" });
  const b = makeTwoWay(store, { docroot: B, url, base: path.join(root, "sb"), nodeId: "b" });
  const r = await b.node.round({ joining: true });
  assert.deepEqual(r.kept.map((k) => [k.path, k.reason]), [["x.html", "older-than-base"]]);
  assert.equal(readTree(b.conflictsDir)[r.kept[0]?.kept ?? ""], "x1", "the restored x1 is kept");
  await a.node.round({ joining: false });
  const want = { "x.html": "x2", "y.html": "y edited on b", "z.html": "new on b" };
  assert.deepEqual(readTree(B), want);
  assert.deepEqual(readTree(A), want);
});

test("uploader on a server that refuses dir/file prefix clashes (versitygw): file d → directory d/ and back heal within the run", async () => {
  const world = new MemoryWorld();
  world.bucket("primary", "off");
  const store = new MemoryStore({ world, bucket: "primary", quirks: { refusesPrefixClash: true } });
  const root = tmp();
  const docroot = path.join(root, "master");
  writeTree(docroot, { "index.html": "i", d: "a file" });
  const up = makeUploader(store, { docroot, url: "s3://primary/site/", base: path.join(root, "state") });
  await up.reconcile();
  writeTree(docroot, { d: null });
  writeTree(docroot, { "d/x.html": "now a directory" });
  await up.reconcile();
  assert.equal(object(world, "primary", "site/d/x.html"), "now a directory");
  assert.equal(object(world, "primary", "site/d"), undefined);
  writeTree(docroot, { d: null });
  writeTree(docroot, { d: "a file again" });
  await up.reconcile();
  assert.equal(object(world, "primary", "site/d"), "a file again");
  assert.equal(object(world, "primary", "site/d/x.html"), undefined);
});

test("two-way on a server that refuses dir/file prefix clashes (versitygw): a node turning file d into directory d/ and back publishes it, and the other node follows", async () => {
  const world = new MemoryWorld();
  world.bucket("primary", "off");
  const store = new MemoryStore({ world, bucket: "primary", quirks: { refusesPrefixClash: true } });
  const root = tmp();
  const url = "s3://primary/shared/";
  const A = path.join(root, "A");
  const B = path.join(root, "B");
  const a = makeTwoWay(store, { docroot: A, url, base: path.join(root, "sa"), nodeId: "a" });
  const b = makeTwoWay(store, { docroot: B, url, base: path.join(root, "sb"), nodeId: "b" });
  writeTree(A, { "f.txt": "f", d: "a file" });
  await a.node.round({ joining: true });
  await b.node.round({ joining: true });
  assert.deepEqual(readTree(B), { "f.txt": "f", d: "a file" });
  writeTree(A, { d: null });
  writeTree(A, { "d/x.html": "now a directory" });
  await a.node.round({ joining: false });
  assert.equal(object(world, "primary", "shared/d/x.html"), "now a directory");
  assert.equal(object(world, "primary", "shared/d"), undefined);
  // A's base follows both generations it published (the deletion of d went first, as its own).
  const baseOfA = readFileSync(path.join(path.dirname(a.conflictsDir), "sync-base.ndjson"), "utf8").split("\n").filter(Boolean).map((l) => (JSON.parse(l) as [string, unknown])[0]).sort();
  assert.deepEqual(baseOfA, ["d/x.html", "f.txt"]);
  await b.node.round({ joining: false });
  assert.deepEqual(readTree(B), { "f.txt": "f", "d/x.html": "now a directory" });
  writeTree(B, { d: null });
  writeTree(B, { d: "a file again" });
  await b.node.round({ joining: false });
  assert.equal(object(world, "primary", "shared/d"), "a file again");
  assert.equal(object(world, "primary", "shared/d/x.html"), undefined);
  await a.node.round({ joining: false });
  assert.deepEqual(readTree(A), { "f.txt": "f", d: "a file again" });
  assert.deepEqual(readTree(a.conflictsDir), {});
  await a.node.round({ joining: false });
  await b.node.round({ joining: false });
  assert.deepEqual(readTree(A), readTree(B));
});
