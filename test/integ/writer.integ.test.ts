/**
 * The generation writer's rules, through each engine that commits with it (push, replicate,
 * rollback), over a fault proxy: a deletion that fails stays in the ledger and the next commit of
 * any writer of that location deletes it; a transfer that fails after its retries publishes nothing
 * it should not and deletes nothing, in every engine, and the next run converges; a SlowDown storm
 * on uploads and copies converges within one run; one object costs a bounded number of requests.
 */
import assert from "node:assert/strict";
import { rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { describe, test } from "node:test";
import { MAX_REQUESTS_PER_OBJECT, SDK_MAX_ATTEMPTS } from "../../src/adapters/retry.ts";
import { expectCode, useServer } from "../helpers/ctx.ts";
import { checkBucketEqualsTree, readGeneration, useFigures } from "../helpers/faults.ts";
import { type Fault, startProxy } from "../helpers/proxy.ts";
import { listKeys } from "../helpers/s3.ts";
import { writeTree } from "../helpers/tree.ts";

const ctx = useServer();
const fig = useFigures("writer");
const server = process.env.FANSYNC_TEST_SERVER ?? "moto";
const pass: Fault = { kind: "none" };

/**
 * The first DeleteObjects request (POST ?delete) to `bucket` answered 500 on every attempt the SDK
 * makes; later ones (the lease's release, for one) pass, as does everything else.
 */
const failDeletes = (bucket: string) => {
  let failed = 0;
  return (q: { method: string; url: string }): Fault =>
    q.method === "POST" && q.url.startsWith(`/${bucket}`) && /[?&]delete/.test(q.url) && failed++ < SDK_MAX_ATTEMPTS ? { kind: "status", status: 500, code: "InternalError" } : pass;
};

async function site(tag: string) {
  const bucket = await ctx.server.bucket(tag);
  const proxy = await startProxy(ctx.server.endpoint);
  const master = ctx.tmp("master");
  const state = ctx.tmp("state");
  const via = ["--endpoint-url", proxy.url, "--state-dir", state, "--log-format", "json", "--concurrency", "4"];
  return { bucket, proxy, master, state, via, url: `s3://${bucket}/site/` };
}

const files = (n: number) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`p${i}.html`, `<p>page ${i}</p>\n`]));

describe(`generation writer (${server})`, () => {
  test("a failed deletion stays in the ledger: the next push deletes it (and publishes nothing new)", async () => {
    const s = await site("wr-del-push");
    try {
      await writeTree(s.master, files(4));
      expectCode(await ctx.cli(["push", s.master, s.url, ...s.via]), 0);
      await rm(path.join(s.master, "p2.html"));
      await rm(path.join(s.master, "p3.html"));
      s.proxy.fault = failDeletes(s.bucket);
      const r = await ctx.cli(["push", s.master, s.url, ...s.via]);
      expectCode(r, 0);
      assert.match(r.stdout, /delete failed \(kept in the ledger/);
      fig.faults += s.proxy.injected;
      const g2 = await readGeneration(ctx.server.client, s.bucket, "site/");
      assert.equal(g2?.generation, 2);
      assert.deepEqual(g2?.entries.map((e) => e.path).sort(), ["p0.html", "p1.html"]);
      assert.ok((await listKeys(ctx.server.client, s.bucket, "site/p")).includes("site/p3.html"), "the object whose deletion failed is still there");
      s.proxy.fault = () => pass;
      expectCode(await ctx.cli(["push", s.master, s.url, ...s.via]), 0);
      assert.deepEqual((await listKeys(ctx.server.client, s.bucket, "site/p")).sort(), ["site/p0.html", "site/p1.html"]);
      assert.equal((await readGeneration(ctx.server.client, s.bucket, "site/"))?.generation, 2, "no new generation for a clean-up");
      const eq = await checkBucketEqualsTree(ctx.server.client, s.bucket, "site/", s.master);
      fig.verified(eq);
      assert.deepEqual(eq.problems, []);
    } finally {
      await s.proxy.close();
    }
  });

  test("a failed deletion after a rollback is deleted by the next push of that location (any writer)", async () => {
    const s = await site("wr-del-rb");
    try {
      await writeTree(s.master, files(2));
      expectCode(await ctx.cli(["push", s.master, s.url, ...s.via]), 0);
      await writeFile(path.join(s.master, "extra.html"), "added in generation 2\n");
      expectCode(await ctx.cli(["push", s.master, s.url, ...s.via]), 0);
      s.proxy.fault = failDeletes(s.bucket);
      const rb = await ctx.cli(["rollback", s.url, "--to", "1", ...s.via]);
      expectCode(rb, 0);
      fig.faults += s.proxy.injected;
      assert.ok((await listKeys(ctx.server.client, s.bucket, "site/")).includes("site/extra.html"), "the deletion failed: the object is still there");
      s.proxy.fault = () => pass;
      // The master now matches generation 1 too: its push commits nothing, and still clears the ledger.
      await rm(path.join(s.master, "extra.html"));
      expectCode(await ctx.cli(["push", s.master, s.url, ...s.via]), 0);
      assert.ok(!(await listKeys(ctx.server.client, s.bucket, "site/")).includes("site/extra.html"), "the next writer deleted it");
      assert.equal((await readGeneration(ctx.server.client, s.bucket, "site/"))?.generation, 3);
    } finally {
      await s.proxy.close();
    }
  });

  test("a failed deletion in a region stays in the replicator's ledger; the next round deletes it", async () => {
    const s = await site("wr-del-rep");
    const region = await ctx.server.bucket("wr-del-region");
    const rurl = `s3://${region}/site/`;
    try {
      await writeTree(s.master, files(3));
      expectCode(await ctx.cli(["push", s.master, s.url, ...s.via]), 0);
      expectCode(await ctx.cli(["replicate", s.url, rurl, ...s.via]), 0);
      await rm(path.join(s.master, "p2.html"));
      expectCode(await ctx.cli(["push", s.master, s.url, ...s.via]), 0);
      s.proxy.fault = failDeletes(region);
      expectCode(await ctx.cli(["replicate", s.url, rurl, ...s.via]), 0);
      fig.faults += s.proxy.injected;
      assert.equal((await readGeneration(ctx.server.client, region, "site/"))?.generation, 2);
      assert.ok((await listKeys(ctx.server.client, region, "site/")).includes("site/p2.html"));
      s.proxy.fault = () => pass;
      expectCode(await ctx.cli(["replicate", s.url, rurl, ...s.via]), 0);
      assert.deepEqual((await listKeys(ctx.server.client, region, "site/p")).sort(), ["site/p0.html", "site/p1.html"]);
    } finally {
      await s.proxy.close();
    }
  });

  test("a transfer that keeps failing: push publishes the rest, deletes nothing, exits 4, costs a bounded number of requests; the next push converges", async () => {
    const s = await site("wr-part-push");
    try {
      await writeTree(s.master, files(4));
      expectCode(await ctx.cli(["push", s.master, s.url, ...s.via]), 0);
      await writeFile(path.join(s.master, "p0.html"), "changed\n");
      await writeFile(path.join(s.master, "p1.html"), "changed too\n");
      await rm(path.join(s.master, "p3.html"));
      s.proxy.reset();
      s.proxy.fault = (q) => (q.method === "PUT" && q.url.startsWith(`/${s.bucket}/site/p1.html`) ? { kind: "status", status: 500, code: "InternalError" } : pass);
      const r = await ctx.cli(["push", s.master, s.url, ...s.via]);
      expectCode(r, 4);
      assert.match(r.stderr, /1 of 2 transfers failed; nothing was deleted \(first: p1\.html/);
      fig.faults += s.proxy.injected;
      const tries = s.proxy.requests.filter((q) => q.method === "PUT" && q.url.startsWith(`/${s.bucket}/site/p1.html`)).length;
      assert.ok(tries > 1 && tries <= MAX_REQUESTS_PER_OBJECT, `p1.html was tried ${tries} times (bound ${MAX_REQUESTS_PER_OBJECT})`);
      const g = await readGeneration(ctx.server.client, s.bucket, "site/");
      assert.equal(g?.generation, 2, "the puts that succeeded were published");
      assert.ok(g?.entries.some((e) => e.path === "p3.html"), "nothing was deleted in a run with a failure");
      s.proxy.fault = () => pass;
      expectCode(await ctx.cli(["push", s.master, s.url, ...s.via]), 0);
      const eq = await checkBucketEqualsTree(ctx.server.client, s.bucket, "site/", s.master);
      fig.verified(eq);
      assert.deepEqual(eq.problems, []);
    } finally {
      await s.proxy.close();
    }
  });

  test("a copy that keeps failing: replicate publishes nothing in that region, deletes nothing, exits 4; the next run converges", async () => {
    const s = await site("wr-part-rep");
    const region = await ctx.server.bucket("wr-part-region");
    const rurl = `s3://${region}/site/`;
    try {
      await writeTree(s.master, files(3));
      expectCode(await ctx.cli(["push", s.master, s.url, ...s.via]), 0);
      expectCode(await ctx.cli(["replicate", s.url, rurl, ...s.via]), 0);
      await writeFile(path.join(s.master, "p0.html"), "changed\n");
      await writeFile(path.join(s.master, "new.html"), "new\n");
      await rm(path.join(s.master, "p2.html"));
      expectCode(await ctx.cli(["push", s.master, s.url, ...s.via]), 0);
      s.proxy.fault = (q) => (q.method === "PUT" && q.url.startsWith(`/${region}/site/new.html`) ? { kind: "status", status: 500, code: "InternalError" } : pass);
      const r = await ctx.cli(["replicate", s.url, rurl, ...s.via]);
      expectCode(r, 4);
      assert.match(r.stderr, /1 of \d+ transfers failed; no generation was published and nothing was deleted/);
      fig.faults += s.proxy.injected;
      assert.equal((await readGeneration(ctx.server.client, region, "site/"))?.generation, 1, "the region's head did not move");
      assert.ok((await listKeys(ctx.server.client, region, "site/")).includes("site/p2.html"), "nothing was deleted");
      s.proxy.fault = () => pass;
      expectCode(await ctx.cli(["replicate", s.url, rurl, ...s.via]), 0);
      const g = await readGeneration(ctx.server.client, region, "site/");
      assert.equal(g?.generation, 2);
      assert.deepEqual(g?.entries.map((e) => e.path).sort(), ["new.html", "p0.html", "p1.html"]);
      assert.deepEqual((await listKeys(ctx.server.client, region, "site/")).filter((k) => !k.includes(".fansync/")).sort(), ["site/new.html", "site/p0.html", "site/p1.html"]);
    } finally {
      await s.proxy.close();
    }
  });

  test("a SlowDown storm on uploads and copies converges within one push", async () => {
    const s = await site("wr-slowdown");
    try {
      await writeTree(s.master, files(30));
      expectCode(await ctx.cli(["push", s.master, s.url, ...s.via]), 0);
      // Renames become server-side copies; new files uploads: both meet 503 SlowDown on about 40% of writes.
      for (let i = 0; i < 10; i++) await writeFile(path.join(s.master, `new-${i}.html`), `<p>new ${i}</p>\n`);
      for (let i = 0; i < 10; i++) await writeFile(path.join(s.master, `copy-${i}.html`), `<p>page ${i}</p>\n`);
      let n = 0;
      s.proxy.fault = (q) => (q.method === "PUT" && !q.url.includes(".fansync") && n++ % 5 < 2 ? { kind: "status", status: 503, code: "SlowDown" } : pass);
      const r = await ctx.cli(["push", s.master, s.url, ...s.via]);
      expectCode(r, 0);
      fig.faults += s.proxy.injected;
      assert.ok(s.proxy.injected >= 8, `the storm was real (${s.proxy.injected} SlowDown answers)`);
      const eq = await checkBucketEqualsTree(ctx.server.client, s.bucket, "site/", s.master);
      fig.verified(eq);
      assert.deepEqual(eq.problems, []);
    } finally {
      await s.proxy.close();
    }
  });
});
