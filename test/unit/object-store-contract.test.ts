/** The ObjectStore contract on MemoryStore, plus what only the twin can show: its quirk switches and fault gate. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { ConditionFailed, RemoteError } from "../../src/core/errors.ts";
import { MemoryStore, MemoryWorld, type StoreCall } from "../../src/adapters/memory-store.ts";
import { objectStoreContract } from "../helpers/object-store-contract.ts";

// Every read names its cap (adapters/bounded-io.ts); these objects are small.
const CAP = 64 * 1024 * 1024;

let n = 0;
objectStoreContract("MemoryStore", {
  make: async ({ versioned }) => {
    const world = new MemoryWorld();
    const bucket = `b${n++}`;
    world.bucket(bucket, versioned ? "Enabled" : "off");
    return new MemoryStore({ world, bucket });
  },
  conditionalWrites: true,
  versioning: true,
  copySourceIfMatch: true,
  byteOrderListing: true,
});

const attrs = { contentType: "text/plain" };

test("quirk ignoresConditionalWrites: If-None-Match * and If-Match overwrite (fauxqs)", async () => {
  const s = new MemoryStore({ world: new MemoryWorld(), bucket: "b", quirks: { ignoresConditionalWrites: true } });
  await s.put("k", Buffer.from("1"), attrs, { ifNoneMatch: "*" });
  await s.put("k", Buffer.from("2"), attrs, { ifNoneMatch: "*" });
  await s.put("k", Buffer.from("3"), attrs, { ifMatch: '"nope"' });
  const got = await s.get("k", { maxBytes: CAP, maxBytes: CAP });
  assert.ok(got.status === "ok" && got.body.toString() === "3");
});

test("quirk ignoresCopySourceIfMatch: a copy of changed bytes goes through (moto, fauxqs)", async () => {
  const s = new MemoryStore({ world: new MemoryWorld(), bucket: "b", quirks: { ignoresCopySourceIfMatch: true } });
  const first = await s.put("src", Buffer.from("old"), attrs);
  await s.put("src", Buffer.from("new"), attrs);
  await s.copy("dst", { bucket: "b", key: "src", etag: first.etag }, undefined);
  const got = await s.get("dst", { maxBytes: CAP, maxBytes: CAP });
  assert.ok(got.status === "ok" && got.body.toString() === "new");
});

test("quirk refusesPrefixClash: a key under an object, or an object over keys, is refused (versitygw)", async () => {
  const s = new MemoryStore({ world: new MemoryWorld(), bucket: "b", quirks: { refusesPrefixClash: true } });
  await s.put("d/x", Buffer.from("x"), attrs);
  await assert.rejects(s.put("d", Buffer.from("d"), attrs), RemoteError);
  await s.put("f", Buffer.from("f"), attrs);
  await assert.rejects(s.put("f/y", Buffer.from("y"), attrs), RemoteError);
});

test("quirk refusesCreateOverDeleteMarker: If-None-Match * over a delete marker is refused (versitygw)", async () => {
  const world = new MemoryWorld();
  world.bucket("b", "Enabled");
  const s = new MemoryStore({ world, bucket: "b", quirks: { refusesCreateOverDeleteMarker: true } });
  await s.put("lease.json", Buffer.from("1"), attrs);
  await s.deleteMany(["lease.json"]);
  await assert.rejects(s.put("lease.json", Buffer.from("2"), attrs, { ifNoneMatch: "*" }), ConditionFailed);
  const plain = new MemoryStore({ world, bucket: "b" });
  await plain.put("lease.json", Buffer.from("2"), attrs, { ifNoneMatch: "*" });
});

test("suspended versioning: writes replace the null version, earlier versions stay", async () => {
  const world = new MemoryWorld();
  const b = world.bucket("b", "Enabled");
  const s = new MemoryStore({ world, bucket: "b" });
  const v1 = await s.put("k", Buffer.from("1"), attrs);
  b.versioning = "Suspended";
  const n1 = await s.put("k", Buffer.from("2"), attrs);
  await s.put("k", Buffer.from("3"), attrs);
  assert.equal(n1.versionId, undefined);
  assert.equal(world.buckets.get("b")?.keys.get("k")?.length, 2, "v1 and one null version");
  const old = await s.get("k", { maxBytes: CAP, versionId: v1.versionId as string });
  assert.ok(old.status === "ok" && old.body.toString() === "1");
});

test("gate: a failure before the call changes nothing; a lost answer after it keeps the write", async () => {
  const world = new MemoryWorld();
  const calls: StoreCall[] = [];
  let mode: "before" | "after" | "none" = "before";
  const s = new MemoryStore({
    world, bucket: "b",
    gate: {
      async enter(c) {
        calls.push(c);
        if (mode === "before") throw new RemoteError("injected", { retryable: true });
        if (mode === "after") return async () => { throw new RemoteError("answer lost", { retryable: true }); };
      },
    },
  });
  await assert.rejects(s.put("k", Buffer.from("1"), attrs), /injected/);
  mode = "none";
  assert.equal((await s.get("k", { maxBytes: CAP, maxBytes: CAP })).status, "not-found");
  mode = "after";
  await assert.rejects(s.put("k", Buffer.from("2"), attrs), /answer lost/);
  mode = "none";
  const got = await s.get("k", { maxBytes: CAP, maxBytes: CAP });
  assert.ok(got.status === "ok" && got.body.toString() === "2");
  assert.deepEqual(calls.map((c) => `${c.op} ${c.key}`), ["put k", "get k", "put k", "get k"]);
});
