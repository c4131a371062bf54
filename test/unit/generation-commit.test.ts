/**
 * The commit object's rules (src/engine/generation-writer.ts: begin → transfers → finish) on the
 * MemoryStore, each seen through both engines that commit partial work differently — the uploader
 * (a generation of its own: what succeeded is published) and the replicator (a region's copy of a
 * primary generation: all or nothing) — so that the two are shown to keep one rule:
 * - a transfer that fails: nothing is deleted (the removed path stays named, its object kept, the
 *   next run deletes it), the failed path keeps its old entry and stays marked dirty in the head;
 * - a deletion that fails after the head moved: the object stays, the next run deletes it;
 * - a head that moved under the commit: the commit is refused (RaceError), nothing is deleted.
 * Rollback commits through the same object: its overwritten objects are marked like the others'.
 * Faults come from the store's gate; no server, no subprocess. Buckets are unversioned (objects are
 * path-keyed and overwritten in place: the case the dirty marks exist for).
 */
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, test } from "node:test";
import { currentOf, MemoryStore, MemoryWorld, type StoreCall, type StoreGate } from "../../src/adapters/memory-store.ts";
import { PartialFailureError, RaceError, RemoteError } from "../../src/core/errors.ts";
import { sha256Hex } from "../../src/core/manifest.ts";
import { readHead, readManifest } from "../../src/engine/generation-reader.ts";
import { makeReplicator, makeUploader, runRollback } from "../../sim/world.ts";

const roots: string[] = [];
after(() => {
  for (const r of roots) rmSync(r, { recursive: true, force: true });
});

/** Write (or with null remove) files under `dir`, each with a fresh mtime so a scan sees the change. */
let tick = Date.now() / 1000 - 1000;
function writeTree(dir: string, files: Record<string, string | null>): void {
  tick += 10;
  for (const [p, body] of Object.entries(files)) {
    const abs = path.join(dir, p);
    if (body === null) {
      rmSync(abs, { force: true });
      continue;
    }
    mkdirSync(path.dirname(abs), { recursive: true });
    writeFileSync(abs, body);
    utimesSync(abs, tick, tick);
  }
}

/** A gate whose rule says, per call, to fail it before or after it takes effect, or to run something first. */
class Faults implements StoreGate {
  rule: (call: StoreCall) => "before" | "after" | (() => Promise<void>) | undefined = () => undefined;
  async enter(call: StoreCall): Promise<(() => Promise<void>) | void> {
    const r = this.rule(call);
    // Not retryable: the transfer fails at once (no backoff), as a server's refusal does.
    const fail = (when: string) => new RemoteError(`injected: ${call.op} ${call.key} failed ${when}`, { retryable: false });
    if (r === "before") throw fail("before taking effect");
    if (r === "after") return async () => { throw fail("after taking effect (the answer was lost)"); };
    if (r) await r();
  }
}

const WRITES: readonly StoreCall["op"][] = ["put", "putContent", "upload", "copy"];

/** A world with the primary and a region bucket, each seen by the engines through its own fault gate. */
function setup() {
  const world = new MemoryWorld();
  world.bucket("primary", "off");
  world.bucket("region", "off");
  const root = mkdtempSync(path.join(os.tmpdir(), "fansync-commit-"));
  roots.push(root);
  const faults = { primary: new Faults(), region: new Faults() };
  const primary = new MemoryStore({ world, bucket: "primary", gate: faults.primary });
  const region = new MemoryStore({ world, bucket: "region", gate: faults.region });
  const master = path.join(root, "master");
  const uploader = makeUploader(primary, { docroot: master, url: "s3://primary/site/", base: path.join(root, "m") });
  const replicator = makeReplicator(primary, region, { primaryUrl: "s3://primary/site/", regionUrl: "s3://region/site/", base: path.join(root, "r") });
  return { world, faults, stores: { primary, region }, master, uploader, replicator };
}

type World = ReturnType<typeof setup>;
type Side = "primary" | "region";

/** The object's bytes at `site/<p>`, undefined when absent. */
function object(s: World, side: Side, p: string): string | undefined {
  const b = s.world.buckets.get(side);
  return b && currentOf(b, `site/${p}`)?.body.toString();
}

/** The head (generation, dirty marks, writer) and what its manifest names, by path → sha256. */
async function published(s: World, side: Side) {
  const store = new MemoryStore({ world: s.world, bucket: side });
  const hs = await readHead(store, { bucket: side, prefix: "site/" });
  assert.ok(hs, `${side} has a head`);
  const files = (await readManifest(store, hs.head)).files;
  return { generation: hs.head.generation, dirty: hs.head.dirty ?? [], writer: hs.head.writer, names: Object.fromEntries([...files].map(([p, e]) => [p, e.sha256])) };
}

const sha = (s: string) => sha256Hex(Buffer.from(s));

/** One replicate round with no whole-round retry; returns its error, if any. */
async function replicate(s: World): Promise<unknown> {
  const [res] = await s.replicator.runOnce(0);
  return res?.error;
}

/**
 * Generation 1 {a, b, gone} in the primary (and the region), then the master changes a and b and
 * removes gone: what the next push (and the next replicate round) is to publish.
 */
async function changed(s: World, withRegion: boolean): Promise<void> {
  writeTree(s.master, { "a.html": "a1", "b.html": "b1", "gone.html": "g" });
  await s.uploader.reconcile();
  if (withRegion) assert.equal(await replicate(s), undefined);
  writeTree(s.master, { "a.html": "a2", "b.html": "b2", "gone.html": null });
}

const isWriteOf = (p: string) => (c: StoreCall) => WRITES.includes(c.op) && c.key === `site/${p}`;

test("uploader: a transfer that fails (its object overwritten, the answer lost): the rest is published, the failed path keeps its entry and stays dirty, the removed path stays named and its object kept; the next run converges", async () => {
  const s = setup();
  await changed(s, false);
  s.faults.primary.rule = (c) => (isWriteOf("a.html")(c) ? "after" : undefined);
  await assert.rejects(s.uploader.reconcile(), PartialFailureError);
  const two = await published(s, "primary");
  assert.equal(two.generation, 2, "what succeeded is published");
  assert.deepEqual(two.names, { "a.html": sha("a1"), "b.html": sha("b2"), "gone.html": sha("g") });
  assert.deepEqual(two.dirty, ["a.html"], "the failed path's object holds other bytes than its entry: marked");
  assert.equal(object(s, "primary", "gone.html"), "g", "nothing was deleted");
  // Next run, the removed path's deletion is held back again by another failure: a.html, marked and
  // removed meanwhile, is still named, so it stays marked (the rule the replicator did not apply).
  writeTree(s.master, { "a.html": null, "b.html": "b3", "c.html": "c" });
  s.faults.primary.rule = (c) => (isWriteOf("c.html")(c) ? "before" : undefined);
  await assert.rejects(s.uploader.reconcile(), PartialFailureError);
  const three = await published(s, "primary");
  assert.equal(three.generation, 3);
  assert.deepEqual(three.names, { "a.html": sha("a1"), "b.html": sha("b3"), "gone.html": sha("g") });
  assert.deepEqual(three.dirty, ["a.html"], "a deletion that was not carried out settles nothing");
  s.faults.primary.rule = () => undefined;
  await s.uploader.reconcile();
  const four = await published(s, "primary");
  assert.deepEqual(four.names, { "b.html": sha("b3"), "c.html": sha("c") });
  assert.deepEqual(four.dirty, []);
  assert.equal(object(s, "primary", "gone.html"), undefined, "the next run deleted it");
  assert.equal(object(s, "primary", "a.html"), undefined);
});

test("replicator: a copy that fails (its object overwritten, the answer lost): nothing is published, the failed path keeps its entry and is dirty in the region's head, the removed path stays; the next round converges", async () => {
  const s = setup();
  await changed(s, true);
  await s.uploader.reconcile();
  s.faults.region.rule = (c) => (isWriteOf("a.html")(c) ? "after" : undefined);
  assert.ok((await replicate(s)) instanceof PartialFailureError);
  const one = await published(s, "region");
  assert.equal(one.generation, 1, "all or nothing: the region's head did not move");
  assert.deepEqual(one.names, { "a.html": sha("a1"), "b.html": sha("b1"), "gone.html": sha("g") });
  assert.deepEqual(one.dirty, ["a.html", "b.html"], "the objects the round overwrote are marked, as the uploader marks them");
  assert.equal(object(s, "region", "a.html"), "a2", "the write took effect although its answer was lost");
  assert.equal(object(s, "region", "gone.html"), "g", "nothing was deleted");
  s.faults.region.rule = () => undefined;
  assert.equal(await replicate(s), undefined);
  const two = await published(s, "region");
  assert.equal(two.generation, 2);
  assert.deepEqual(two.names, { "a.html": sha("a2"), "b.html": sha("b2") });
  assert.deepEqual(two.dirty, []);
  assert.equal(object(s, "region", "gone.html"), undefined, "the next round deleted it");
});

for (const side of ["primary", "region"] as const) {
  const engine = side === "primary" ? "uploader" : "replicator";
  test(`${engine}: a deletion that fails after the head moved: the generation is published, the object stays, and the next run deletes it`, async () => {
    const s = setup();
    await changed(s, side === "region");
    s.faults[side].rule = (c) => (c.op === "delete" && c.key === "site/gone.html" ? "before" : undefined);
    if (side === "primary") await s.uploader.reconcile();
    else {
      await s.uploader.reconcile();
      assert.equal(await replicate(s), undefined);
    }
    const two = await published(s, side);
    assert.equal(two.generation, 2);
    assert.equal(two.names["gone.html"], undefined, "the head no longer names it");
    assert.equal(object(s, side, "gone.html"), "g", "its deletion failed");
    s.faults[side].rule = () => undefined;
    if (side === "primary") await s.uploader.reconcile();
    else assert.equal(await replicate(s), undefined);
    assert.equal((await published(s, side)).generation, 2, "nothing else to publish");
    assert.equal(object(s, side, "gone.html"), undefined, "the next run deleted it");
  });

  test(`${engine}: a commit over a head that moved during the transfers is refused, and nothing is deleted`, async () => {
    const s = setup();
    await changed(s, side === "region");
    if (side === "region") await s.uploader.reconcile();
    // Another writer rewrites the head while this one's objects are being written.
    const direct = new MemoryStore({ world: s.world, bucket: side });
    let moved = false;
    s.faults[side].rule = (c) => (isWriteOf("a.html")(c) && !moved ? async () => {
      moved = true;
      const b = s.world.buckets.get(side);
      const head = b && currentOf(b, "site/.fansync/head.json");
      assert.ok(head);
      await direct.put("site/.fansync/head.json", Buffer.from(JSON.stringify({ ...JSON.parse(head.body.toString()), writer: "intruder" })), { contentType: "application/json" });
    } : undefined);
    if (side === "primary") await assert.rejects(s.uploader.reconcile(), RaceError);
    else assert.ok((await replicate(s)) instanceof RaceError);
    assert.ok(moved);
    const head = await published(s, side);
    assert.equal(head.writer, "intruder", "the other writer's head stands");
    assert.equal(head.generation, 1);
    assert.equal(object(s, side, "gone.html"), "g", "nothing was deleted");
  });
}

test("rollback: a restore that fails marks in the head the objects it already rewrote, and the next push repairs them", async () => {
  const s = setup();
  const backup = path.join(path.dirname(s.master), "backup");
  writeTree(backup, { "a.html": "a1", "b.html": "b1" });
  writeTree(s.master, { "a.html": "a1", "b.html": "b1" });
  await s.uploader.reconcile();
  writeTree(s.master, { "a.html": "a2", "b.html": "b2" });
  await s.uploader.reconcile();
  await s.uploader.releaseLease();
  // No versions to copy back: both come from --from; b's upload is refused, a's lands.
  s.faults.primary.rule = (c) => (isWriteOf("b.html")(c) ? "before" : undefined);
  await assert.rejects(runRollback(s.stores.primary, { url: "s3://primary/site/", base: path.join(path.dirname(s.master), "rb"), to: 1, fromDir: backup }), PartialFailureError);
  s.faults.primary.rule = () => undefined;
  const two = await published(s, "primary");
  assert.equal(two.generation, 2, "all or nothing: no generation was published");
  assert.equal(object(s, "primary", "a.html"), "a1", "a's object already holds the old bytes");
  assert.deepEqual(two.dirty, ["a.html", "b.html"], "so the head marks the objects the rollback rewrites");
  // The master gives up on the rollback: its next push verifies the marked objects and sends a again.
  await s.uploader.reconcile();
  const three = await published(s, "primary");
  assert.deepEqual(three.names, { "a.html": sha("a2"), "b.html": sha("b2") });
  assert.equal(object(s, "primary", "a.html"), "a2", "the object the head names holds its bytes again");
  // b's object was verified intact but not rewritten: its mark goes with the next run that finds nothing to do.
  await s.uploader.reconcile();
  assert.deepEqual((await published(s, "primary")).dirty, []);
});
