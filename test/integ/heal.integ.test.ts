/**
 * Issue 27: states the bucket or a node was left in that did not heal by the next run. Each test
 * builds the state from outside (a proxy that rewrites answers, a killed run, an immutable file),
 * then checks what a user sees: the bytes nodes get, the exit codes, the requests a rerun sends.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readdir, readFile, rm, writeFile } from "node:fs/promises";
import { execFileSync } from "node:child_process";
import path from "node:path";
import { gunzipSync, gzipSync } from "node:zlib";
import { describe, test } from "node:test";
import { startCli, waitCli } from "../helpers/cli.ts";
import { expectCode, useServer } from "../helpers/ctx.ts";
import { checkBucketEqualsTree, checkHeadComplete, readGeneration, sleep, useFigures } from "../helpers/faults.ts";
import { type Fault, startProxy } from "../helpers/proxy.ts";
import { getBytes, putBytes, readHeadDoc } from "../helpers/s3.ts";
import { seededBytes, snapshot, writeTree } from "../helpers/tree.ts";

const ctx = useServer();
const fig = useFigures("heal");
const server = process.env.FANSYNC_TEST_SERVER ?? "moto";
const pass: Fault = { kind: "none" };
const sha = (b: Buffer | string) => createHash("sha256").update(b).digest("hex");
const files = (n: number, tag = "") => Object.fromEntries(Array.from({ length: n }, (_, i) => [`p${i}.html`, `<p>page ${i}${tag}</p>\n`]));

async function sameTree(a: string, b: string): Promise<void> {
  const [x, y] = await Promise.all([snapshot(a), snapshot(b)]);
  assert.deepEqual([...y.keys()].sort(), [...x.keys()].sort());
  for (const [p, s] of x) assert.equal(y.get(p)?.sha256, s.sha256, p);
}

describe(`heal every state (${server})`, () => {
  test("a PUT answered with a weak ETag, or 200 without storing: nothing unverified is published, every node reads every entry, a no-op push stays one request", async () => {
    const bucket = await ctx.server.bucket("heal-etag", { versioning: false });
    const proxy = await startProxy(ctx.server.endpoint);
    const [master, state, node, nstate] = [ctx.tmp("master"), ctx.tmp("state"), ctx.tmp("node"), ctx.tmp("nstate")];
    const url = `s3://${bucket}/site/`;
    const via = ["--endpoint-url", proxy.url, "--state-dir", state, "--log-format", "json", "--concurrency", "4"];
    const contentPut = (q: { method: string; url: string }, name = "") => q.method === "PUT" && q.url.startsWith(`/${bucket}/site/${name}`) && !q.url.includes("/.fansync/");
    try {
      // A proxy that weakens every content PUT's ETag (as some CDNs and compressing proxies do).
      await writeTree(master, files(6));
      proxy.fault = (q) => (contentPut(q) ? { kind: "rewrite-etag", to: (e) => (e.startsWith("W/") ? e : `W/${e}`) } : pass);
      const r0 = await ctx.cli(["push", master, url, ...via]);
      expectCode(r0, 0);
      const g = await readGeneration(ctx.server.client, bucket, "site/");
      assert.ok(g && g.entries.every((e) => !e.etag.startsWith("W/")), `no weak ETag in the manifest: ${JSON.stringify(g?.entries.map((e) => e.etag))}`);
      expectCode(await ctx.cli(["pull", url, node, ...ctx.flags(nstate)]), 0);
      await sameTree(master, node);

      // A server that answers 200 to one PUT without storing it: the path keeps its published bytes.
      await writeFile(path.join(master, "p1.html"), "<p>page 1, edited</p>\n");
      proxy.fault = (q) => (contentPut(q, "p1.html") ? { kind: "swallow", etag: '"0123456789abcdef0123456789abcdef"' } : pass);
      const r = await ctx.cli(["push", master, url, ...via]);
      expectCode(r, 4);
      await checkHeadComplete(ctx.server.client, bucket, "site/", { strict: true });
      expectCode(await ctx.cli(["pull", url, node, ...ctx.flags(nstate)]), 0);
      assert.equal((await snapshot(node)).get("p1.html")?.sha256, sha("<p>page 1</p>\n"));
      proxy.fault = () => pass;
      expectCode(await ctx.cli(["push", master, url, ...via]), 0);
      expectCode(await ctx.cli(["pull", url, node, ...ctx.flags(nstate)]), 0);
      await sameTree(master, node);
      proxy.reset();
      expectCode(await ctx.cli(["push", master, url, ...via]), 0);
      assert.equal(proxy.requests.length, 1, `a no-op push is one request: ${JSON.stringify(proxy.requests)}`);
      fig.verified({ files: 6 });
    } finally {
      await proxy.close();
    }
  });

  test("entries an earlier push published with a weak ETag are repaired by the next ordinary push", async () => {
    const bucket = await ctx.server.bucket("heal-weak-old", { versioning: false });
    const [master, state, node, nstate] = [ctx.tmp("master"), ctx.tmp("state"), ctx.tmp("node"), ctx.tmp("nstate")];
    const url = `s3://${bucket}/site/`;
    await writeTree(master, files(4));
    expectCode(await ctx.cli(["push", master, url, ...ctx.flags(state)]), 0);
    // The state an older fansync left behind a weakening proxy: the manifest names `W/"…"` ETags.
    const head = await readHeadDoc(ctx.server.client, bucket, "site/");
    const lines = gunzipSync(await getBytes(ctx.server.client, bucket, head.manifestKey as string)).toString("utf8").split("\n").filter(Boolean);
    const weak = [lines[0], ...lines.slice(1).map((l) => {
      const e = JSON.parse(l) as { etag: string };
      return JSON.stringify({ ...e, etag: `W/${e.etag}` });
    })].join("\n") + "\n";
    const bytes = gzipSync(weak);
    await putBytes(ctx.server.client, bucket, head.manifestKey as string, bytes);
    await putBytes(ctx.server.client, bucket, "site/.fansync/head.json", JSON.stringify({ ...head, manifestSha256: sha(bytes) }));
    expectCode(await ctx.cli(["push", master, url, ...ctx.flags(state)]), 0);
    const g = await readGeneration(ctx.server.client, bucket, "site/");
    assert.ok(g && g.entries.every((e) => !e.etag.startsWith("W/")), `the push repaired the weak entries: ${JSON.stringify(g?.entries.map((e) => e.etag))}`);
    expectCode(await ctx.cli(["pull", url, node, ...ctx.flags(nstate)]), 0);
    await sameTree(master, node);
  });

  // Multipart with the smallest parts S3 allows (5 MiB): big.bin is two parts.
  const MPU = ["--multipart-threshold", "5MiB", "--part-size", "5MiB"];
  const BIG = 5 * 1024 * 1024 + 4099;

  test("a push killed before its manifest leaves unpublished multipart bytes in the primary: replicate never publishes them in a region; once the master pushes again the region converges", async () => {
    const bucket = await ctx.server.bucket("heal-mpu-p", { versioning: false });
    const region = await ctx.server.bucket("heal-mpu-r", { versioning: false });
    const proxy = await startProxy(ctx.server.endpoint);
    const [master, mstate, rstate, node, nstate] = [ctx.tmp("master"), ctx.tmp("ms"), ctx.tmp("rs"), ctx.tmp("node"), ctx.tmp("ns")];
    const url = `s3://${bucket}/site/`;
    const rurl = `s3://${region}/site/`;
    const via = (st: string) => ["--endpoint-url", proxy.url, "--state-dir", st, "--log-format", "json"];
    try {
      await writeTree(master, { "big.bin": seededBytes(1, BIG), "index.html": "<h1>zero</h1>\n" });
      expectCode(await ctx.cli(["push", master, url, ...ctx.flags(mstate), ...MPU]), 0);
      // The next push dies after big.bin's new bytes are in place, before any manifest names them.
      await writeFile(path.join(master, "big.bin"), seededBytes(2, BIG));
      const manifestPut = (q: { method: string; url: string }) => q.method === "PUT" && q.url.startsWith(`/${bucket}/site/.fansync/manifests/`);
      proxy.fault = (q) => (manifestPut(q) ? { kind: "stall" } : pass);
      const child = startCli(["push", master, url, ...via(mstate), ...MPU]);
      await proxy.waitFor(manifestPut, 60_000);
      child.kill("SIGKILL");
      await waitCli(child);
      fig.killPoints++;
      proxy.fault = () => pass;
      const head = await readHeadDoc(ctx.server.client, bucket, "site/");
      assert.deepEqual(head.dirty, ["big.bin"], "the primary's head marks big.bin dirty");
      // The region must never name big.bin with bytes other than generation 1's.
      const r = await ctx.cli(["replicate", url, rurl, ...ctx.flags(rstate), ...MPU]);
      assert.notEqual(r.code, 0, "the region cannot be brought to generation 1 while the primary's big.bin holds other bytes");
      await checkHeadComplete(ctx.server.client, region, "site/", { strict: true });
      // The master's next push repairs the primary; the region follows; a regional node converges.
      expectCode(await ctx.cli(["push", master, url, ...ctx.flags(mstate), ...MPU]), 0);
      expectCode(await ctx.cli(["replicate", url, rurl, ...ctx.flags(rstate), ...MPU]), 0);
      const h = await checkHeadComplete(ctx.server.client, region, "site/", { strict: true });
      fig.verified(h);
      expectCode(await ctx.cli(["pull", rurl, node, ...ctx.flags(nstate)]), 0);
      await sameTree(master, node);
    } finally {
      await proxy.close();
    }
  });

  test("replicate --verify checks bytes, not ETags: a region object holding other bytes under the ETag its manifest names is found and repaired", async () => {
    const bucket = await ctx.server.bucket("heal-rv-p", { versioning: false });
    const region = await ctx.server.bucket("heal-rv-r", { versioning: false });
    const [master, mstate, rstate, node, nstate] = [ctx.tmp("master"), ctx.tmp("ms"), ctx.tmp("rs"), ctx.tmp("node"), ctx.tmp("ns")];
    const url = `s3://${bucket}/site/`;
    const rurl = `s3://${region}/site/`;
    await writeTree(master, { "big.bin": seededBytes(3, BIG), "index.html": "<h1>zero</h1>\n" });
    expectCode(await ctx.cli(["push", master, url, ...ctx.flags(mstate), ...MPU]), 0);
    expectCode(await ctx.cli(["replicate", url, rurl, ...ctx.flags(rstate), ...MPU]), 0);
    // The state an unchecked copy left: the region's big.bin holds other bytes, and its manifest
    // names the ETag those bytes have (what the unchecked copy answered).
    await putBytes(ctx.server.client, region, "site/big.bin", seededBytes(4, BIG));
    const etag = (await import("../helpers/s3.ts").then((m) => m.headObject(ctx.server.client, region, "site/big.bin"))).ETag as string;
    const head = await readHeadDoc(ctx.server.client, region, "site/");
    const lines = gunzipSync(await getBytes(ctx.server.client, region, head.manifestKey as string)).toString("utf8").split("\n").filter(Boolean);
    const planted = [lines[0], ...lines.slice(1).map((l) => {
      const e = JSON.parse(l) as { path: string; etag: string };
      return JSON.stringify(e.path === "big.bin" ? { ...e, etag } : e);
    })].join("\n") + "\n";
    const bytes = gzipSync(planted);
    await putBytes(ctx.server.client, region, head.manifestKey as string, bytes);
    await putBytes(ctx.server.client, region, "site/.fansync/head.json", JSON.stringify({ ...head, manifestSha256: sha(bytes) }));
    expectCode(await ctx.cli(["replicate", url, rurl, "--verify", ...ctx.flags(rstate), ...MPU]), 0);
    const h = await checkHeadComplete(ctx.server.client, region, "site/", { strict: true });
    fig.verified(h);
    expectCode(await ctx.cli(["pull", rurl, node, ...ctx.flags(nstate)]), 0);
    await sameTree(master, node);
  });

  // A site of a few hundred small files of varying sizes, for the interrupted runs.
  const SITE = 300;
  const siteFiles = () => Object.fromEntries(Array.from({ length: SITE }, (_, i) => [`d${i % 7}/f${i}.html`, seededBytes(100 + i, 1000 + ((i * 397) % 3000))]));

  test("a push killed at about half keeps its work: the rerun adopts what was sent and sends at most 10% more than the remainder", async () => {
    const bucket = await ctx.server.bucket("heal-int-push", { versioning: server === "moto" });
    const proxy = await startProxy(ctx.server.endpoint);
    const [master, state, node, nstate] = [ctx.tmp("master"), ctx.tmp("state"), ctx.tmp("node"), ctx.tmp("nstate")];
    const url = `s3://${bucket}/site/`;
    const via = ["--endpoint-url", proxy.url, "--state-dir", state, "--log-format", "json", "--concurrency", "4"];
    const content = (q: { method: string; url: string }) => q.method === "PUT" && q.url.startsWith(`/${bucket}/site/`) && !q.url.includes("/.fansync/");
    const tree = siteFiles();
    const sizeOf = (u: string) => (tree[decodeURIComponent(u.slice(`/${bucket}/site/`.length).split("?")[0] as string)] as Buffer).length;
    try {
      await writeTree(master, tree);
      // Half of the content PUTs pass, then the server stops answering: the push is killed there.
      let passed = 0;
      proxy.fault = (q) => (content(q) && passed++ >= SITE / 2 ? { kind: "stall" } : pass);
      const child = startCli(["push", master, url, ...via]);
      await proxy.waitFor((q) => content(q) && passed > SITE / 2, 60_000);
      // The stalled requests are in flight; what was acknowledged is recorded within a quarter second.
      await sleep(1000);
      child.kill("SIGKILL");
      await waitCli(child);
      fig.killPoints++;
      const sent = proxy.requests.filter((q) => content(q) && q.status === 200);
      const sentBytes = sent.reduce((n, q) => n + sizeOf(q.url), 0);
      const totalBytes = Object.values(tree).reduce((n, b) => n + b.length, 0);
      proxy.fault = () => pass;
      proxy.reset();
      expectCode(await ctx.cli(["push", master, url, ...via]), 0);
      const again = proxy.requests.filter(content);
      const againBytes = again.reduce((n, q) => n + sizeOf(q.url), 0);
      const remainder = { puts: SITE - sent.length, bytes: totalBytes - sentBytes };
      process.stdout.write(`# interrupted push: first run sent ${sent.length} PUTs; rerun ${again.length} PUTs, ${againBytes} bytes; remainder ${remainder.puts} PUTs, ${remainder.bytes} bytes\n`);
      assert.ok(again.length <= Math.ceil(remainder.puts * 1.1), `rerun sent ${again.length} PUTs, remainder ${remainder.puts}`);
      assert.ok(againBytes <= remainder.bytes * 1.1, `rerun sent ${againBytes} bytes, remainder ${remainder.bytes}`);
      const b = await checkBucketEqualsTree(ctx.server.client, bucket, "site/", master);
      assert.deepEqual(b.problems, []);
      fig.verified(b);
      expectCode(await ctx.cli(["pull", url, node, ...ctx.flags(nstate)]), 0);
      await sameTree(master, node);
    } finally {
      await proxy.close();
    }
  });

  test("a pull killed at about half keeps its verified temp files: none is visible under a final name, and the rerun fetches at most 10% more than the remainder", async () => {
    const bucket = await ctx.server.bucket("heal-int-pull", { versioning: server === "moto" });
    const proxy = await startProxy(ctx.server.endpoint);
    const [master, mstate, node, nstate] = [ctx.tmp("master"), ctx.tmp("mstate"), ctx.tmp("node"), ctx.tmp("nstate")];
    const url = `s3://${bucket}/site/`;
    const via = ["--endpoint-url", proxy.url, "--state-dir", nstate, "--log-format", "json", "--concurrency", "4"];
    const content = (q: { method: string; url: string }) => q.method === "GET" && q.url.startsWith(`/${bucket}/site/`) && !q.url.includes("/.fansync/");
    const tree = siteFiles();
    const sizeOf = (u: string) => (tree[decodeURIComponent(u.slice(`/${bucket}/site/`.length).split("?")[0] as string)] as Buffer).length;
    try {
      await writeTree(master, tree);
      expectCode(await ctx.cli(["push", master, url, ...ctx.flags(mstate)]), 0);
      let passed = 0;
      proxy.fault = (q) => (content(q) && passed++ >= SITE / 2 ? { kind: "stall" } : pass);
      const child = startCli(["pull", url, node, ...via]);
      await proxy.waitFor((q) => content(q) && passed > SITE / 2, 60_000);
      // The stalled requests are in flight; what was verified is recorded within a quarter second.
      await sleep(1000);
      child.kill("SIGKILL");
      await waitCli(child);
      fig.killPoints++;
      // Nothing under a final name: only hidden temp files.
      const visible = (await readdir(node, { recursive: true, withFileTypes: true })).filter((e) => e.isFile() && !e.name.startsWith(".fansync-tmp-"));
      assert.deepEqual(visible.map((e) => e.name), [], "no file of the killed pull is visible under a final name");
      const got = proxy.requests.filter((q) => content(q) && q.status === 200);
      const gotBytes = got.reduce((n, q) => n + sizeOf(q.url), 0);
      const totalBytes = Object.values(tree).reduce((n, b) => n + b.length, 0);
      proxy.fault = () => pass;
      proxy.reset();
      expectCode(await ctx.cli(["pull", url, node, ...via]), 0);
      const again = proxy.requests.filter(content);
      const againBytes = again.reduce((n, q) => n + sizeOf(q.url), 0);
      const remainder = { gets: SITE - got.length, bytes: totalBytes - gotBytes };
      process.stdout.write(`# interrupted pull: first run got ${got.length} objects; rerun ${again.length} GETs, ${againBytes} bytes; remainder ${remainder.gets} objects, ${remainder.bytes} bytes\n`);
      assert.ok(again.length <= Math.ceil(remainder.gets * 1.1), `rerun sent ${again.length} GETs, remainder ${remainder.gets}`);
      assert.ok(againBytes <= remainder.bytes * 1.1, `rerun fetched ${againBytes} bytes, remainder ${remainder.bytes}`);
      await sameTree(master, node);
      const temps = (await readdir(node, { recursive: true })).filter((n) => n.includes(".fansync-tmp-"));
      assert.deepEqual(temps, [], "no temp file left");
      fig.verified({ files: SITE });
    } finally {
      await proxy.close();
    }
  });

  test("an immutable file on a node: everything else of the generation is applied, and exactly that path is reported (exit 9, status, log) on every run until it can be replaced", async () => {
    const bucket = await ctx.server.bucket("heal-immutable");
    const [master, mstate, node, nstate] = [ctx.tmp("master"), ctx.tmp("mstate"), ctx.tmp("node"), ctx.tmp("nstate")];
    const statusFile = path.join(ctx.tmp("status"), "status.json");
    const url = `s3://${bucket}/site/`;
    await writeTree(master, files(10));
    expectCode(await ctx.cli(["push", master, url, ...ctx.flags(mstate)]), 0);
    expectCode(await ctx.cli(["pull", url, node, ...ctx.flags(nstate)]), 0);
    const stuck = path.join(node, "p3.html");
    execFileSync("chattr", ["+i", stuck]);
    try {
      await writeFile(path.join(master, "p3.html"), "<p>page 3, edited</p>\n");
      await writeFile(path.join(master, "p5.html"), "<p>page 5, edited</p>\n");
      await writeFile(path.join(master, "new.html"), "<p>new</p>\n");
      await rm(path.join(master, "p7.html"));
      expectCode(await ctx.cli(["push", master, url, ...ctx.flags(mstate)]), 0);
      for (let run = 0; run < 2; run++) {
        const r = await ctx.cli(["pull", url, node, ...ctx.flags(nstate), "--status-file", statusFile]);
        expectCode(r, 9);
        assert.match(r.stdout + r.stderr, /p3\.html/);
        const snap = await snapshot(node, (p) => p.startsWith(".fansync-tmp-"));
        const want = await snapshot(master);
        // Everything but p3.html is generation 2; p3.html is still generation 1's.
        assert.deepEqual([...snap.keys()].sort(), [...want.keys()].sort());
        for (const [p, f] of want) if (p !== "p3.html") assert.equal(snap.get(p)?.sha256, f.sha256, p);
        assert.equal(await readFile(stuck, "utf8"), "<p>page 3</p>\n");
        const st = JSON.parse(await readFile(statusFile, "utf8")) as { status: string; generation: number; unapplied?: string[]; line: string };
        assert.equal(st.status, "ERROR");
        assert.equal(st.generation, 2, st.line);
        assert.deepEqual(st.unapplied, ["p3.html"], st.line);
        assert.deepEqual((await readdir(node, { recursive: true })).filter((n) => n.includes(".fansync-tmp-")), [], "no temp file left");
      }
      // A daemon says it on /metrics too.
      const d = startCli(["pull", url, node, ...ctx.flags(nstate), "--watch", "--interval", "200ms", "--http", "127.0.0.1:0"]);
      try {
        let metrics = "";
        for (let i = 0; i < 150 && !/^fansync_paths_not_replaced\{role="pull"\} 1$/m.test(metrics); i++) {
          await sleep(200);
          const line = d.out.stdout.split("\n").find((l) => l.includes("status page listening"));
          if (line) metrics = await (await fetch(new URL("metrics", (JSON.parse(line) as { url: string }).url))).text().catch(() => "");
        }
        assert.match(metrics, /^fansync_paths_not_replaced\{role="pull"\} 1$/m, metrics.slice(0, 2000));
      } finally {
        d.kill("SIGTERM");
        await waitCli(d, 30_000);
      }
    } finally {
      execFileSync("chattr", ["-i", stuck]);
    }
    const r = await ctx.cli(["pull", url, node, ...ctx.flags(nstate), "--status-file", statusFile]);
    expectCode(r, 0);
    await sameTree(master, node);
    const st = JSON.parse(await readFile(statusFile, "utf8")) as { status: string; unapplied?: string[] };
    assert.equal(st.status, "OK");
    assert.equal(st.unapplied, undefined);
  });
});
