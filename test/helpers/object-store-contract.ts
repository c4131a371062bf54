/**
 * One contract for every {@link ObjectStore} (tus-node-server runs one store suite against every
 * store): the semantics the engines rely on. `test/unit/object-store-contract.test.ts` runs it on
 * MemoryStore; `test/integ/object-store-contract.integ.test.ts` runs the same cases on a real server,
 * which keeps the in-memory twin honest.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { Readable } from "node:stream";
import { describe, test } from "node:test";
import { ConditionFailed } from "../../src/core/errors.ts";
import type { ObjectStore } from "../../src/adapters/object-store.ts";

// Every read names its cap (adapters/bounded-io.ts); these objects are small.
const CAP = 64 * 1024 * 1024;

/** What the suite is given: a fresh bucket's store, and what the server enforces. */
export interface ContractTarget {
  /** A store on a new, empty bucket (versioned when asked and the server can). */
  make(opts: { versioned: boolean }): Promise<ObjectStore>;
  readonly conditionalWrites: boolean;
  readonly versioning: boolean;
  /** Whether CopySourceIfMatch is checked (moto and fauxqs ignore it). */
  readonly copySourceIfMatch: boolean;
  /** Whether listings come in UTF-8 byte order (fauxqs sorts with localeCompare: S3-SERVERS.md). */
  readonly byteOrderListing: boolean;
}

const md5 = (b: string | Buffer) => createHash("md5").update(b).digest("hex");
const attrs = { contentType: "text/plain", metadata: { sha256: "abc" } };

async function text(s: Readable): Promise<string> {
  const parts: Buffer[] = [];
  for await (const c of s) parts.push(c as Buffer);
  return Buffer.concat(parts).toString();
}

/** Register the contract's tests under `name`. */
export function objectStoreContract(name: string, t: ContractTarget): void {
  describe(`ObjectStore contract: ${name}`, () => {
    test("a PUT is read back at once, with the MD5 of its bytes as ETag and its metadata", async () => {
      const s = await t.make({ versioned: false });
      const put = await s.put("a/b.txt", Buffer.from("hello"), attrs);
      assert.equal(put.etag.replace(/"/g, ""), md5("hello"));
      assert.equal(put.versionId, undefined, "an unversioned bucket hands out no version id (never \"null\")");
      const got = await s.get("a/b.txt", { maxBytes: CAP, maxBytes: CAP });
      assert.equal(got.status, "ok");
      if (got.status === "ok") assert.equal(got.body.toString(), "hello");
      const st = await s.getStream("a/b.txt", { maxBytes: CAP, ifMatch: put.etag });
      assert.equal(st.status, "ok");
      if (st.status === "ok") {
        assert.equal(await text(st.body), "hello");
        assert.equal(st.attrs.metadata?.sha256, "abc");
      }
      assert.equal((await s.headAttrs("a/b.txt", { ifMatch: put.etag }))?.contentType, "text/plain");
      assert.equal(await s.headAttrs("a/b.txt", { ifMatch: `"${md5("other")}"` }), undefined);
      assert.equal((await s.get("missing", { maxBytes: CAP, maxBytes: CAP })).status, "not-found");
    });

    test("conditional GET: If-None-Match on the current ETag is not-modified, If-Match on another is precondition-failed", async () => {
      const s = await t.make({ versioned: false });
      const put = await s.put("k", Buffer.from("one"), attrs);
      assert.equal((await s.get("k", { maxBytes: CAP, ifNoneMatch: put.etag })).status, "not-modified");
      assert.equal((await s.get("k", { maxBytes: CAP, ifMatch: `"${md5("two")}"` })).status, "precondition-failed");
      assert.equal((await s.getStream("k", { maxBytes: CAP, ifMatch: `"${md5("two")}"` })).status, "precondition-failed");
    });

    test("conditional PUT: If-None-Match * refuses an existing key, If-Match refuses another ETag", { skip: !t.conditionalWrites && "the server ignores conditional writes" }, async () => {
      const s = await t.make({ versioned: false });
      const first = await s.put("head.json", Buffer.from("1"), attrs, { ifNoneMatch: "*" });
      await assert.rejects(s.put("head.json", Buffer.from("x"), attrs, { ifNoneMatch: "*" }), ConditionFailed);
      await assert.rejects(s.put("head.json", Buffer.from("x"), attrs, { ifMatch: `"${md5("nope")}"` }), ConditionFailed);
      await assert.rejects(s.put("never-written", Buffer.from("x"), attrs, { ifMatch: first.etag }), "If-Match on a key that is not there fails");
      await s.put("head.json", Buffer.from("2"), attrs, { ifMatch: first.etag });
      const got = await s.get("head.json", { maxBytes: CAP, maxBytes: CAP });
      assert.ok(got.status === "ok" && got.body.toString() === "2");
    });

    test("copy keeps the bytes, guarded by the source ETag", async () => {
      const s = await t.make({ versioned: false });
      const src = await s.put("src", Buffer.from("bytes"), attrs);
      const c = await s.copy("dst", { bucket: s.bucket, key: "src", etag: src.etag }, undefined);
      assert.equal(c.etag.replace(/"/g, ""), md5("bytes"));
      const got = await s.get("dst", { maxBytes: CAP, maxBytes: CAP });
      assert.ok(got.status === "ok" && got.body.toString() === "bytes");
      await assert.rejects(s.copy("dst2", { bucket: s.bucket, key: "gone", etag: src.etag }, undefined), ConditionFailed);
      if (t.copySourceIfMatch) await assert.rejects(s.copy("dst3", { bucket: s.bucket, key: "src", etag: `"${md5("other")}"` }, undefined), ConditionFailed);
    });

    test("multipart: the ETag is the md5 of the parts' md5s with -N, and the bytes read back whole", async () => {
      const s = await t.make({ versioned: false });
      const part = 5 * 1024 * 1024;
      const body = Buffer.alloc(part + 10, 7);
      const r = await s.upload("big", Readable.from([body]), attrs, { size: body.length, partSize: part, queueSize: 2 });
      const want = md5(Buffer.concat([createHash("md5").update(body.subarray(0, part)).digest(), createHash("md5").update(body.subarray(part)).digest()]));
      assert.equal(r.etag.replace(/"/g, ""), `${want}-2`);
      const got = await s.get("big", { maxBytes: CAP, maxBytes: CAP });
      assert.ok(got.status === "ok" && got.body.equals(body));
    });

    test("a body over the reader's cap is refused", async () => {
      const s = await t.make({ versioned: false });
      await s.put("big.json", Buffer.alloc(100, 0x61), attrs);
      await assert.rejects(s.get("big.json", { maxBytes: 10 }), { name: "BodyTooLarge" });
    });

    test("delete and list: listings are in byte order and skip deleted keys", async () => {
      const s = await t.make({ versioned: false });
      for (const k of ["p/b", "p/a", "p/\u00e9", "p/Z", "q/x"]) await s.put(k, Buffer.from(k), attrs);
      assert.deepEqual((await s.deleteMany(["p/b"])).length, 0);
      const l = await s.list("p/");
      const listed = l.keys.map((k) => k.key);
      assert.deepEqual(t.byteOrderListing ? listed : [...listed].sort(), ["p/Z", "p/a", "p/\u00e9"]);
      assert.equal(l.truncated, false);
      assert.equal((await s.list("p/", { max: 2 })).truncated, true);
      assert.equal((await s.get("p/b", { maxBytes: CAP, maxBytes: CAP })).status, "not-found");
    });

    test("versioned bucket: old versions stay readable by id, a delete leaves a marker", { skip: !t.versioning && "the server has no versioning" }, async () => {
      const s = await t.make({ versioned: true });
      assert.equal(await s.readVersioning(), "Enabled");
      const v1 = await s.put("f", Buffer.from("one"), attrs);
      const v2 = await s.put("f", Buffer.from("two"), attrs);
      assert.ok(v1.versionId && v2.versionId && v1.versionId !== v2.versionId);
      const old = await s.get("f", { maxBytes: CAP, versionId: v1.versionId });
      assert.ok(old.status === "ok" && old.body.toString() === "one");
      await s.deleteMany(["f"]);
      assert.equal((await s.get("f", { maxBytes: CAP, maxBytes: CAP })).status, "not-found");
      const still = await s.getStream("f", { maxBytes: CAP, versionId: v2.versionId });
      assert.equal(still.status, "ok");
      // An old version restored onto its own key.
      await s.copy("f", { bucket: s.bucket, key: "f", versionId: v1.versionId, etag: v1.etag }, undefined);
      const back = await s.get("f", { maxBytes: CAP, maxBytes: CAP });
      assert.ok(back.status === "ok" && back.body.toString() === "one");
    });
  });
}
