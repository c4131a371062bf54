/**
 * Availability (issue 18): states that never healed by themselves while the tools reported
 * success. A killed push followed by a revert left the head naming an object that held other bytes
 * (unversioned buckets); multipart uploads recorded the version id "null"; one unreadable file
 * stopped every push and killed the watch daemon; files skipped because they changed during the
 * upload, and names that cannot be keys, were dropped without a word.
 */
import assert from "node:assert/strict";
import { chmod, readFile, writeFile, mkdir, copyFile, readdir } from "node:fs/promises";
import path from "node:path";
import { spawn } from "node:child_process";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { jobStateDir } from "../../src/adapters/state-dir.ts";
import { startCli, waitCli, runCli } from "../helpers/cli.ts";
import { expectCode, useServer } from "../helpers/ctx.ts";
import { checkBucketEqualsTree, checkHeadComplete, readGeneration, useFigures } from "../helpers/faults.ts";
import { type Fault, startProxy } from "../helpers/proxy.ts";
import { getBytes } from "../helpers/s3.ts";
import { seededBytes, writeTree } from "../helpers/tree.ts";
import { skipEngineTier } from "../helpers/integ-tiers.ts";

const ctx = useServer();
const fig = useFigures("availability");
const server = process.env.FANSYNC_TEST_SERVER ?? "moto";
const pass: Fault = { kind: "none" };
const STATE_DIR_MODULE = fileURLToPath(new URL("../../src/adapters/state-dir.ts", import.meta.url));
// Root reads any file: unreadable files are only unreadable without these capabilities.
const NO_DAC = process.getuid?.() === 0 ? ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--inh-caps=-dac_override,-dac_read_search"] : [];

describe(`availability (${server})`, () => {
  for (const fresh of [false, true]) {
    test(`a push killed after its objects, then a revert: the next push ${fresh ? "from a fresh state dir " : ""}repairs what the head names; a new node converges`, async (t) => {
      if (skipEngineTier(t)) return;
      const bucket = await ctx.server.bucket(`av-revert${fresh ? "-fresh" : ""}`, { versioning: false });
      const proxy = await startProxy(ctx.server.endpoint);
      const master = ctx.tmp("master");
      const [state, state2, node, nstate] = [ctx.tmp("state"), ctx.tmp("state2"), ctx.tmp("node"), ctx.tmp("nstate")];
      const url = `s3://${bucket}/site/`;
      const via = (st: string) => ["--endpoint-url", proxy.url, "--state-dir", st, "--log-format", "json"];
      const v0 = "<h1>version zero</h1>\n";
      try {
        await writeTree(master, { "index.html": v0, "about.html": "<p>about</p>\n" });
        expectCode(await ctx.cli(["push", master, url, ...via(state)]), 0);
        await writeFile(path.join(master, "index.html"), "<h1>version one, a little longer</h1>\n");
        const manifestPut = (q: { method: string; url: string }) => q.method === "PUT" && q.url.includes("/.fansync/manifests/");
        proxy.reset();
        proxy.fault = (q) => (manifestPut(q) ? { kind: "stall" } : pass);
        const child = startCli(["push", master, url, ...via(state)]);
        await proxy.waitFor(manifestPut);
        child.kill("SIGKILL");
        await waitCli(child);
        fig.killPoints++;
        assert.ok(proxy.requests.some((q) => q.method === "PUT" && q.url.includes("/site/index.html")), "the killed push had written the object");
        proxy.fault = () => pass;
        // doctor sees it: the head names an object that holds other bytes.
        const doc = await ctx.cli(["doctor", url, "--no-write", "--json", "--endpoint-url", proxy.url]);
        const report = doc.stdout.split("\n").find((l) => l.startsWith("[")) ?? "[]";
        const data = (JSON.parse(report) as { name: string; status: string; data?: { moved?: string[] } }[]).find((c) => c.name === "fansync-data");
        assert.equal(data?.status, "WARN", doc.stdout);
        assert.deepEqual(data?.data?.moved, ["index.html"]);
        await writeFile(path.join(master, "index.html"), v0);
        let st = state;
        if (fresh) {
          // A new state directory on the same host: it keeps the writer's id (else it waits out the dead run's lease).
          const [dir] = (await readdir(state)).filter((d) => d.startsWith("push-"));
          await mkdir(path.join(state2, dir as string), { recursive: true });
          await copyFile(path.join(state, dir as string, "writer-id.json"), path.join(state2, dir as string, "writer-id.json"));
          st = state2;
        }
        expectCode(await ctx.cli(["push", master, url, ...via(st)]), 0);
        const h = await checkHeadComplete(ctx.server.client, bucket, "site/", { strict: true });
        fig.verified(h);
        assert.equal((await getBytes(ctx.server.client, bucket, "site/index.html")).toString(), v0);
        expectCode(await ctx.cli(["pull", url, node, ...via(nstate)]), 0);
        assert.equal(await readFile(path.join(node, "index.html"), "utf8"), v0);
      } finally {
        await proxy.close();
      }
    });
  }

  test("a replicate round killed after its copies, then a revert on the master: the next round repairs the region; a regional node converges", async (t) => {
    if (skipEngineTier(t)) return;
    const bucket = await ctx.server.bucket("av-rep-p", { versioning: false });
    const region = await ctx.server.bucket("av-rep-r", { versioning: false });
    const proxy = await startProxy(ctx.server.endpoint);
    const master = ctx.tmp("master");
    const [mstate, rstate, node, nstate] = [ctx.tmp("ms"), ctx.tmp("rs"), ctx.tmp("node"), ctx.tmp("ns")];
    const url = `s3://${bucket}/site/`;
    const rurl = `s3://${region}/site/`;
    const via = (st: string) => ["--endpoint-url", proxy.url, "--state-dir", st, "--log-format", "json"];
    const v0 = "<h1>version zero</h1>\n";
    try {
      await writeTree(master, { "index.html": v0, "about.html": "<p>about</p>\n" });
      expectCode(await ctx.cli(["push", master, url, ...ctx.flags(mstate)]), 0);
      expectCode(await ctx.cli(["replicate", url, rurl, ...via(rstate)]), 0);
      await writeFile(path.join(master, "index.html"), "<h1>version one, a little longer</h1>\n");
      expectCode(await ctx.cli(["push", master, url, ...ctx.flags(mstate)]), 0);
      const regionManifestPut = (q: { method: string; url: string }) => q.method === "PUT" && q.url.startsWith(`/${region}/site/.fansync/manifests/`);
      proxy.reset();
      proxy.fault = (q) => (regionManifestPut(q) ? { kind: "stall" } : pass);
      const child = startCli(["replicate", url, rurl, ...via(rstate)]);
      await proxy.waitFor(regionManifestPut);
      child.kill("SIGKILL");
      await waitCli(child);
      fig.killPoints++;
      proxy.fault = () => pass;
      await writeFile(path.join(master, "index.html"), v0);
      expectCode(await ctx.cli(["push", master, url, ...ctx.flags(mstate)]), 0);
      expectCode(await ctx.cli(["replicate", url, rurl, ...via(rstate)]), 0);
      const h = await checkHeadComplete(ctx.server.client, region, "site/", { strict: true });
      fig.verified(h);
      expectCode(await ctx.cli(["pull", rurl, node, ...via(nstate)]), 0);
      assert.equal(await readFile(path.join(node, "index.html"), "utf8"), v0);
    } finally {
      await proxy.close();
    }
  });

  test("multipart uploads on an unversioned bucket record no version id; a node reads them by ETag", async () => {
    const bucket = await ctx.server.bucket("av-mpu", { versioning: false });
    const master = ctx.tmp("master");
    const node = ctx.tmp("node");
    const url = `s3://${bucket}/site/`;
    await writeTree(master, { "big.bin": seededBytes(7, 6 * 1024 * 1024 + 17), "small.txt": "s\n" });
    expectCode(await ctx.cli(["push", master, url, ...ctx.flags(ctx.tmp("st")), "--multipart-threshold", "5MiB", "--part-size", "5MiB"]), 0);
    const g = await readGeneration(ctx.server.client, bucket, "site/");
    const big = g?.entries.find((e) => e.path === "big.bin");
    assert.ok(big, "big.bin is in the manifest");
    assert.equal(big.versionId, undefined, `no version id recorded (got ${JSON.stringify(big.versionId)})`);
    expectCode(await ctx.cli(["pull", url, node, ...ctx.flags(ctx.tmp("nst"))]), 0);
    assert.ok((await readFile(path.join(node, "big.bin"))).equals(seededBytes(7, 6 * 1024 * 1024 + 17)));
  });

  test("an unreadable file or directory is skipped and named, the rest is published (exit 4), its published version stays", async (t) => {
    if (skipEngineTier(t)) return;
    const bucket = await ctx.server.bucket("av-unreadable");
    const master = ctx.tmp("master");
    const url = `s3://${bucket}/site/`;
    const flags = ctx.flags(ctx.tmp("st"));
    await writeTree(master, { "a.html": "a0\n", "secret.html": "s0\n", "locked/inner.html": "i0\n" });
    expectCode(await ctx.cli(["push", master, url, ...flags]), 0);
    await writeFile(path.join(master, "a.html"), "a1\n");
    await writeFile(path.join(master, "b.html"), "b1\n");
    await writeFile(path.join(master, "secret.html"), "s1 (never readable)\n");
    await chmod(path.join(master, "secret.html"), 0o000);
    await chmod(path.join(master, "locked"), 0o000);
    try {
      const r = await runCli(["push", master, url, ...flags], { wrap: NO_DAC });
      expectCode(r, 4);
      assert.match(r.stderr, /secret\.html/);
      assert.match(r.stderr, /locked/);
      assert.match(r.stderr, /could not be read/);
      const g = await readGeneration(ctx.server.client, bucket, "site/");
      const byPath = new Map(g?.entries.map((e) => [e.path, e]));
      assert.deepEqual([...byPath.keys()].sort(), ["a.html", "b.html", "locked/inner.html", "secret.html"]);
      assert.equal((await getBytes(ctx.server.client, bucket, "site/secret.html")).toString(), "s0\n", "the published version stays");
      assert.equal((await getBytes(ctx.server.client, bucket, "site/a.html")).toString(), "a1\n", "the rest was published");
      // The watch daemon does not die on it: it publishes what changes next and stops cleanly.
      const w = startCli(["watch", master, url, ...flags, "--delay", "200ms", "--max-delay", "1s"], { wrap: NO_DAC });
      await new Promise((res) => setTimeout(res, 2500));
      await writeFile(path.join(master, "c.html"), "c1\n");
      let seen = false;
      for (let i = 0; i < 60 && !seen; i++) {
        await new Promise((res) => setTimeout(res, 250));
        seen = ((await readGeneration(ctx.server.client, bucket, "site/"))?.entries ?? []).some((e) => e.path === "c.html");
      }
      w.kill("SIGTERM");
      const wr = await waitCli(w);
      assert.ok(seen, `watch published c.html despite the unreadable paths:\n${wr.stdout.slice(-2000)}\n${wr.stderr.slice(-2000)}`);
      assert.equal(wr.code, 0, wr.stderr);
    } finally {
      await chmod(path.join(master, "secret.html"), 0o644);
      await chmod(path.join(master, "locked"), 0o755);
    }
  });

  test("a file that keeps changing while it is uploaded is named and counted: push exits 4, the next push converges", async (t) => {
    if (skipEngineTier(t)) return;
    const bucket = await ctx.server.bucket("av-changing");
    const proxy = await startProxy(ctx.server.endpoint);
    const master = ctx.tmp("master");
    const url = `s3://${bucket}/site/`;
    const flags = ["--endpoint-url", proxy.url, "--state-dir", ctx.tmp("st"), "--log-format", "json", "--multipart-threshold", "5MiB", "--part-size", "5MiB"];
    try {
      await writeTree(master, { "index.html": "<p>home</p>\n", "video.bin": seededBytes(3, 6 * 1024 * 1024) });
      const partPut = (q: { method: string; url: string }) => q.method === "PUT" && q.url.includes("partNumber=");
      proxy.fault = (q) => (partPut(q) ? { kind: "delay", ms: 1500 } : pass);
      const child = startCli(["push", master, url, ...flags]);
      await proxy.waitFor(partPut);
      await writeFile(path.join(master, "video.bin"), seededBytes(4, 6 * 1024 * 1024 + 100));
      const r = await waitCli(child);
      fig.faults += proxy.injected;
      expectCode(r, 4);
      assert.match(r.stderr, /video\.bin \(changed while being uploaded\)/);
      assert.match(r.stderr, /the rest was published as generation 1/);
      proxy.fault = () => pass;
      expectCode(await ctx.cli(["push", master, url, ...flags]), 0);
      const eq = await checkBucketEqualsTree(ctx.server.client, bucket, "site/", master);
      fig.verified(eq);
      assert.deepEqual(eq.problems, []);
    } finally {
      await proxy.close();
    }
  });

  test("a push whose head PUT answers are all lost: it reads the head back, sees it stored, and exits 0", async (t) => {
    if (skipEngineTier(t)) return;
    const bucket = await ctx.server.bucket("av-lost-head");
    const proxy = await startProxy(ctx.server.endpoint);
    const master = ctx.tmp("master");
    const url = `s3://${bucket}/site/`;
    const flags = ["--endpoint-url", proxy.url, "--state-dir", ctx.tmp("st"), "--log-format", "json"];
    try {
      await writeTree(master, { "index.html": "<p>one</p>\n" });
      expectCode(await ctx.cli(["push", master, url, ...flags]), 0);
      await writeFile(path.join(master, "index.html"), "<p>two</p>\n");
      proxy.fault = (q) => (q.method === "PUT" && q.url.includes("/.fansync/head.json") ? { kind: "drop-answer" } : pass);
      const r = await ctx.cli(["push", master, url, ...flags], { FANSYNC_REQUEST_TIMEOUT: "2s" });
      fig.faults += proxy.injected;
      assert.ok(proxy.injected >= 1, "the head PUT's answer was dropped");
      expectCode(r, 0);
      assert.ok(r.logs.some((l) => /reading it back shows it was stored/.test(String(l.msg))), r.stdout.slice(-2000));
      assert.equal((await readGeneration(ctx.server.client, bucket, "site/"))?.generation, 2);
    } finally {
      await proxy.close();
    }
  });

  test("a node that cannot run because its lock is held says so in its status file once the last run is older than --stale-after; a cron overlap stays quiet", async (t) => {
    if (skipEngineTier(t)) return;
    const bucket = await ctx.server.bucket("av-locked");
    const master = ctx.tmp("master");
    const node = ctx.tmp("node");
    const nstate = ctx.tmp("ns");
    const url = `s3://${bucket}/site/`;
    const status = path.join(ctx.tmp("st"), "status.json");
    await writeTree(master, { "index.html": "hi\n" });
    expectCode(await ctx.cli(["push", master, url, ...ctx.flags(ctx.tmp("ms"))]), 0);
    expectCode(await ctx.cli(["pull", url, node, ...ctx.flags(nstate), "--status-file", status]), 0);
    // Another process holds the node's run lock (a stuck run).
    const lockFile = path.join(jobStateDir(nstate, "pull", { docroot: node }).dir, "pull.lock");
    const holder = spawn(process.execPath, ["--input-type=module", "-e", `const { acquireRunLock } = await import(${JSON.stringify(STATE_DIR_MODULE)}); await acquireRunLock(${JSON.stringify(lockFile)}); process.stdout.write("held\\n"); setInterval(() => {}, 1000);`], { stdio: ["ignore", "pipe", "inherit"] });
    try {
      await new Promise<void>((res) => holder.stdout.once("data", () => res()));
      const overlap = await ctx.cli(["pull", url, node, ...ctx.flags(nstate), "--status-file", status]);
      expectCode(overlap, 75);
      assert.match(await readFile(status.replace(/\.json$/, ".txt"), "utf8"), /^OK 1/, "a cron overlap leaves the status alone");
      await new Promise((res) => setTimeout(res, 1200));
      const stuck = await ctx.cli(["pull", url, node, ...ctx.flags(nstate), "--status-file", status, "--stale-after", "1s"]);
      expectCode(stuck, 75);
      assert.match(await readFile(status.replace(/\.json$/, ".txt"), "utf8"), /^STALE 1 could not run: another fansync run \(pid \d+/);
    } finally {
      holder.kill("SIGKILL");
    }
    // The holder is gone (the kernel released its lock): the next run runs and says OK again.
    expectCode(await ctx.cli(["pull", url, node, ...ctx.flags(nstate), "--status-file", status]), 0);
    assert.match(await readFile(status.replace(/\.json$/, ".txt"), "utf8"), /^OK 1/);
  });

  test("names that cannot be keys and temp-looking names are skipped with a warning naming them", async (t) => {
    if (skipEngineTier(t)) return;
    const bucket = await ctx.server.bucket("av-names");
    const master = ctx.tmp("master");
    await writeTree(master, { "ok.html": "ok\n", ".fansync-tmp-abc-x.html": "tmp\n" });
    await writeFile(Buffer.from(path.join(master, "bad") + "\xff.html", "latin1"), "bad\n");
    const r = await ctx.cli(["push", master, `s3://${bucket}/site/`, ...ctx.flags(ctx.tmp("st"))]);
    expectCode(r, 0);
    const skipped = r.logs.filter((l) => l.msg === "skipped").map((l) => String(l.reason));
    assert.ok(skipped.some((x) => /not valid UTF-8/.test(x)), `a warning for bad\\xff.html: ${JSON.stringify(skipped)}`);
    assert.ok(skipped.some((x) => /temp-file name/.test(x)), `a warning for the temp-looking name: ${JSON.stringify(skipped)}`);
    const g = await readGeneration(ctx.server.client, bucket, "site/");
    assert.deepEqual(g?.entries.map((e) => e.path), ["ok.html"]);
  });
});
