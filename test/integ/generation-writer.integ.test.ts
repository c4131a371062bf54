/**
 * The generation writer itself (src/engine/generation-writer.ts), against a real server: its two
 * rules written once, tested once here (each engine has its own test in writer.integ.test.ts).
 * - a failed transfer: an exact commit publishes nothing; any other publishes what succeeded,
 *   keeps the failed path's previous entry and deletes nothing; both end in exit 4's error;
 * - a failed deletion after the head moved stays in the ledger, and the next commit deletes it.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { PartialFailureError } from "../../src/core/errors.ts";
import { parseLocation } from "../../src/core/location.ts";
import { type Entry, type FileMap, sha256Hex } from "../../src/core/manifest.ts";
import { createLogger } from "../../src/adapters/logger.ts";
import { createS3Client } from "../../src/adapters/s3-client.ts";
import { S3Store } from "../../src/adapters/s3-store.ts";
import { StateDir } from "../../src/adapters/state-dir.ts";
import { GenerationWriter } from "../../src/engine/generation-writer.ts";
import { readHead, readManifest } from "../../src/engine/generation-reader.ts";
import { useServer } from "../helpers/ctx.ts";
import { type Fault, startProxy } from "../helpers/proxy.ts";
import { listKeys } from "../helpers/s3.ts";

const ctx = useServer();
const server = process.env.FANSYNC_TEST_SERVER ?? "moto";
const log = createLogger({ level: "silent", format: "json" });

async function setup(tag: string, endpoint = ctx.server.endpoint) {
  const bucket = await ctx.server.bucket(tag);
  const loc = parseLocation(`s3://${bucket}/site/`);
  const store = new S3Store({ client: createS3Client({ endpointUrl: endpoint, pathStyle: true, profile: undefined, maxSockets: 8 }), bucket, endpoint });
  const state = new StateDir(ctx.tmp("job"));
  const shared = new StateDir(ctx.tmp("loc"));
  const deps = { log, signal: new AbortController().signal, now: () => new Date() };
  const writer = () => new GenerationWriter({ loc, store, state, shared, retain: 10 }, deps);
  /** Put an object and return its entry. */
  const put = async (p: string, body: string): Promise<Entry> => {
    const r = await store.put(loc.prefix + p, Buffer.from(body), { contentType: "text/plain" });
    return { path: p, size: body.length, mtimeMs: 1, mode: 0o644, sha256: sha256Hex(Buffer.from(body)), etag: r.etag, versionId: r.versionId };
  };
  const current = async () => {
    const hs = await readHead(store, loc);
    return { hs, files: hs ? (await readManifest(store, hs.head)).files : (new Map() as FileMap) };
  };
  return { bucket, loc, store, writer, put, current };
}

describe(`generation writer (${server})`, () => {
  test("a failed transfer: an exact commit publishes nothing; another publishes what succeeded, keeps the failed path's entry, deletes nothing", async () => {
    const s = await setup("gw-partial");
    const w = s.writer();
    await w.hold();
    const first = await (await w.begin(undefined, { files: new Map(), writes: ["a", "b", "c"], deletes: [] })).finish([await s.put("a", "a0"), await s.put("b", "b0"), await s.put("c", "c0")], []);
    assert.equal(first.head?.head.generation, 1);
    const one = await s.current();
    const failed = [{ path: "b", error: "injected" }];
    // Exact: nothing is published, nothing deleted.
    const exact = await w.begin(one.hs, { files: one.files, writes: ["a", "b"], deletes: ["c"], exact: true });
    await assert.rejects(exact.finish([await s.put("a", "a1")], failed),
      (e: unknown) => e instanceof PartialFailureError && /1 of 2 transfers failed; no generation was published and nothing was deleted/.test(e.message));
    assert.equal((await s.current()).hs?.head.generation, 1);
    assert.ok((await listKeys(ctx.server.client, s.bucket, "site/")).includes("site/c"));
    // Not exact: the put that succeeded is published; b keeps its entry; c is not deleted.
    const partial = await w.begin((await s.current()).hs, { files: one.files, writes: ["a", "b"], deletes: ["c"] });
    await assert.rejects(partial.finish([await s.put("a", "a2")], failed),
      (e: unknown) => e instanceof PartialFailureError && /1 of 2 transfers failed; nothing was deleted/.test(e.message));
    const two = await s.current();
    assert.equal(two.hs?.head.generation, 2);
    assert.equal(two.files.get("a")?.sha256, sha256Hex(Buffer.from("a2")));
    assert.equal(two.files.get("b")?.sha256, sha256Hex(Buffer.from("b0")));
    assert.ok(two.files.has("c"));
    assert.ok((await listKeys(ctx.server.client, s.bucket, "site/")).includes("site/c"));
    await w.release();
  });

  test("a failed deletion stays in the ledger; the next commit (of another writer of the location) deletes it", async () => {
    const proxy = await startProxy(ctx.server.endpoint);
    try {
      const s = await setup("gw-ledger", proxy.url);
      let deletesFailed = 0;
      const w = s.writer();
      await w.hold();
      await (await w.begin(undefined, { files: new Map(), writes: ["keep", "gone"], deletes: [] })).finish([await s.put("keep", "k"), await s.put("gone", "g")], []);
      const one = await s.current();
      proxy.fault = (q): Fault => (q.method === "POST" && /[?&]delete/.test(q.url) && deletesFailed++ < 3 ? { kind: "status", status: 500, code: "InternalError" } : { kind: "none" });
      const c = await (await w.begin(one.hs, { files: one.files, writes: [], deletes: ["gone"] })).finish([], []);
      assert.equal(c.head?.head.generation, 2, "the generation is published although its deletion failed");
      assert.equal(c.deleted, 0);
      assert.ok((await listKeys(ctx.server.client, s.bucket, "site/")).includes("site/gone"));
      await w.release();
      proxy.fault = () => ({ kind: "none" });
      // A second writer of the location (same shared state): its sweep before any commit deletes it.
      const w2 = s.writer();
      const two = await s.current();
      await w2.sweep(two.files);
      await w2.release();
      assert.deepEqual((await listKeys(ctx.server.client, s.bucket, "site/")).filter((k) => !k.includes(".fansync/")), ["site/keep"]);
    } finally {
      await proxy.close();
    }
  });
});
