/**
 * Operating a fleet: pullers' opt-in reports in the bucket, `fansync status s3://...` across
 * locations, and a daemon's /healthz, /metrics and /status.json over real HTTP.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { setTimeout as delay } from "node:timers/promises";
import { GetObjectCommand, HeadObjectCommand } from "@aws-sdk/client-s3";
import { type CliResult, startCli, waitCli } from "../helpers/cli.ts";
import { expectCode, useServer } from "../helpers/ctx.ts";
import { listKeys, putBytes } from "../helpers/s3.ts";
import { snapshot, writeTree } from "../helpers/tree.ts";
import { serverLabel } from "../helpers/s3-server.ts";
import { startProxy } from "../helpers/proxy.ts";

const ctx = useServer();
const kind = serverLabel();

async function site(tag: string) {
  const bucket = await ctx.server.bucket(tag);
  const master = ctx.tmp("master");
  const mstate = ctx.tmp("mstate");
  await writeTree(master, { "index.html": "<h1>home</h1>", "css/site.css": "body{}", "img/logo.svg": "<svg/>" });
  const url = `s3://${bucket}/site/`;
  const push = async () => expectCode(await ctx.cli(["push", master, url, ...ctx.flags(mstate)]), 0);
  await push();
  return { bucket, master, url, push };
}

const json = (r: CliResult) => JSON.parse(r.stdout.trim().split("\n").at(-1) as string) as Record<string, any>;

/** Wait for the daemon's "status page listening" log line; returns its URL. */
async function pageUrl(child: ReturnType<typeof startCli>): Promise<string> {
  for (let i = 0; i < 200; i++) {
    const line = child.out.stdout.split("\n").find((l) => l.includes("status page listening"));
    if (line) return (JSON.parse(line) as { url: string }).url;
    if (child.exitCode !== null) break;
    await delay(100);
  }
  throw new Error(`no status page URL; stdout:\n${child.out.stdout}\nstderr:\n${child.out.stderr}`);
}

/** Poll `fn` until it returns a value (or time out with the last failure). */
async function eventually<T>(what: string, fn: () => Promise<T | undefined>, ms = 30_000): Promise<T> {
  const end = Date.now() + ms;
  let last: unknown;
  while (Date.now() < end) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    await delay(200);
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ""}`);
}

describe(`fleet status (${kind})`, () => {
  test("pullers report with --report; status lists every node, its generation and lag; --json parses", async () => {
    const s = await site("fleet-report");
    const nodes = ["web-1", "web-2"];
    for (const n of nodes) {
      expectCode(await ctx.cli(["pull", s.url, ctx.tmp(n), ...ctx.flags(ctx.tmp(`${n}-state`)), "--report", "--node-id", n]), 0);
    }
    // The report is one small object per node under the meta prefix, nothing else was written.
    const keys = await listKeys(ctx.server.client, s.bucket, "site/.fansync/nodes/");
    assert.deepEqual(keys.sort(), ["site/.fansync/nodes/web-1.json", "site/.fansync/nodes/web-2.json"]);
    const r = await ctx.cli(["status", s.url, ...ctx.flags(ctx.tmp("st")), "--json"]);
    expectCode(r, 0);
    const st = json(r);
    assert.equal(st.locations[0].generation, 1);
    assert.equal(st.locations[0].files, 3);
    assert.deepEqual(st.fleet.nodes.map((n: { node: string }) => n.node), nodes);
    for (const n of st.fleet.nodes) {
      assert.equal(n.status, "OK");
      assert.equal(n.generation, 1);
      assert.equal(n.behind, 0);
    }
    // Text form: one row per node, the head line first.
    const t = await ctx.cli(["status", s.url, ...ctx.flags(ctx.tmp("st2"))]);
    expectCode(t, 0);
    assert.match(t.stdout, /generation 1 .*3 files/);
    assert.match(t.stdout, /nodes: 2 \(2 OK, 0 STALE, 0 ERROR, 0 SILENT\)/);
    assert.match(t.stdout, /^web-1\s+OK\s+1\s+0\s/m);
    // After a new generation, a node that has not pulled is shown behind.
    await writeTree(s.master, { "index.html": "<h1>v2</h1>" });
    await s.push();
    const st2 = json(await ctx.cli(["status", s.url, ...ctx.flags(ctx.tmp("st3")), "--json"]));
    assert.equal(st2.locations[0].generation, 2);
    assert.ok(st2.fleet.nodes.every((n: { behind: number }) => n.behind === 1), JSON.stringify(st2.fleet.nodes));
  });

  test("an unchanged report is not rewritten by a no-op pull; a change is reported at once", async () => {
    const s = await site("fleet-noop");
    const node = ctx.tmp("node");
    const state = ctx.tmp("nstate");
    const pull = () => ctx.cli(["pull", s.url, node, ...ctx.flags(state), "--report", "--node-id", "n1"]);
    expectCode(await pull(), 0);
    const key = "site/.fansync/nodes/n1.json";
    const body = async () => JSON.parse(await (await ctx.server.client.send(new GetObjectCommand({ Bucket: s.bucket, Key: key }))).Body!.transformToString()) as Record<string, unknown>;
    const first = await body();
    await delay(1100);
    expectCode(await pull(), 0);
    assert.equal((await body()).time, first.time, "a no-op pull within the reporting period writes no report");
    await writeTree(s.master, { "new.html": "new" });
    await s.push();
    expectCode(await pull(), 0);
    const after = await body();
    assert.equal(after.generation, 2);
    assert.notEqual(after.time, first.time);
    assert.deepEqual([...(await snapshot(node)).keys()].sort(), [...(await snapshot(s.master)).keys()].sort());
  });

  test("a node silent for too long is SILENT; a hostile or foreign report is not trusted; exit 4", async () => {
    const s = await site("fleet-silent");
    expectCode(await ctx.cli(["pull", s.url, ctx.tmp("n"), ...ctx.flags(ctx.tmp("ns")), "--report", "--node-id", "alive"]), 0);
    const old = new Date(Date.now() - 3_600_000).toISOString();
    const report = (node: string, extra: Record<string, unknown> = {}) =>
      JSON.stringify({ format: "fansync-node-report/1", node, host: "h", status: "OK", generation: 1, headGeneration: 1, lagSeconds: 0, source: s.url, lastSuccess: old, lastError: null, time: old, everyMs: 60_000, version: "x", ...extra });
    await putBytes(ctx.server.client, s.bucket, "site/.fansync/nodes/dead.json", report("dead"));
    // Claims to be "alive" from another key, and one that is not JSON at all.
    await putBytes(ctx.server.client, s.bucket, "site/.fansync/nodes/impostor.json", report("alive", { time: new Date().toISOString(), generation: 99 }));
    await putBytes(ctx.server.client, s.bucket, "site/.fansync/nodes/junk.json", "<script>alert(1)</script>");
    const r = await ctx.cli(["status", s.url, ...ctx.flags(ctx.tmp("st")), "--json"]);
    expectCode(r, 4);
    const st = json(r);
    const byNode = new Map(st.fleet.nodes.map((n: { node: string }) => [n.node, n]));
    assert.equal((byNode.get("dead") as { status: string }).status, "SILENT");
    assert.equal((byNode.get("alive") as { generation: number }).generation, 1, "the impostor's generation 99 was not believed");
    assert.equal(st.unreadable.length, 2, JSON.stringify(st.unreadable));
    const t = await ctx.cli(["status", s.url, ...ctx.flags(ctx.tmp("st2")), "--stale-after", "2h"]);
    expectCode(t, 0);
    assert.match(t.stdout, /^dead\s+OK/m, "within --stale-after the old report counts");
  });

  test("status reads several locations: a region behind is shown, an unreachable one makes exit 4", async () => {
    const s = await site("fleet-primary");
    const region = await ctx.server.bucket("fleet-region");
    const regionUrl = `s3://${region}/site/`;
    expectCode(await ctx.cli(["replicate", s.url, regionUrl, ...ctx.flags(ctx.tmp("rs"))]), 0);
    expectCode(await ctx.cli(["pull", regionUrl, ctx.tmp("n"), ...ctx.flags(ctx.tmp("ns")), "--report", "--node-id", "tokyo-1"]), 0);
    await writeTree(s.master, { "index.html": "<h1>v2</h1>" });
    await s.push();
    const r = await ctx.cli(["status", s.url, regionUrl, ...ctx.flags(ctx.tmp("st"))]);
    expectCode(r, 0);
    assert.match(r.stdout, new RegExp(`${regionUrl.replace(/[/.]/g, "\\$&")}\\s+generation 1 .*1 behind`));
    assert.match(r.stdout, /^tokyo-1\s+OK\s+1\s+1\s/m, r.stdout);
    const missing = await ctx.cli(["status", s.url, `s3://no-such-bucket-${Date.now()}/site/`, ...ctx.flags(ctx.tmp("st2"))]);
    expectCode(missing, 4);
    assert.match(missing.stdout, /UNREADABLE/);
  });

  test("pull --watch --http serves /healthz, /metrics and /status.json that follow the node", async () => {
    const s = await site("fleet-http");
    const node = ctx.tmp("node");
    const d = startCli(["pull", s.url, node, ...ctx.flags(ctx.tmp("ns")), "--watch", "--interval", "200ms", "--report", "--node-id", "web-http", "--http", "127.0.0.1:0"], { env: { FANSYNC_SAMPLE_EVERY: "300" } });
    try {
      const base = await pageUrl(d);
      const health = await eventually("healthy", async () => {
        const res = await fetch(new URL("healthz", base));
        return res.status === 200 ? await res.text() : undefined;
      });
      assert.match(health, /^OK generation 1/);
      await writeTree(s.master, { "about.html": "<p>about</p>", "index.html": "<h1>v2</h1>" });
      await s.push();
      const metrics = await eventually("generation 2 in /metrics", async () => {
        const text = await (await fetch(new URL("metrics", base))).text();
        return /^fansync_generation\{role="pull"\} 2$/m.test(text) ? text : undefined;
      });
      assert.match(metrics, /^fansync_files_transferred_total\{role="pull",op="download"\} ([3-9]|\d{2,})$/m, "3 files at gen 1 + 2 at gen 2");
      assert.match(metrics, /^fansync_s3_requests_total\{command="GetObject"\} \d+$/m);
      assert.match(metrics, /^fansync_runs_total\{role="pull",result="ok"\} \d+$/m);
      assert.match(metrics, /^# TYPE fansync_batch_files histogram$/m);
      const st = await eventually("the node in the fleet at gen 2", async () => {
        const j = (await (await fetch(new URL("status.json", base))).json()) as Record<string, any>;
        return j.fleet?.nodes?.some((n: { node: string; generation: number }) => n.node === "web-http" && n.generation === 2) ? j : undefined;
      });
      assert.equal(st.self.generation, 2);
      assert.ok(st.history.length >= 1, "the lag chart has samples");
      assert.deepEqual([...(await snapshot(node)).keys()].sort(), [...(await snapshot(s.master)).keys()].sort());
      assert.equal((await fetch(new URL("nope", base))).status, 404);
      assert.equal((await fetch(new URL("metrics", base), { method: "POST" })).status, 405);
    } finally {
      d.kill("SIGTERM");
      const r = await waitCli(d, 30_000);
      assert.equal(r.code, 0, r.stderr);
    }
  });

  test("/healthz stays 200 (DEGRADED) with the bucket cut off while the docroot holds a complete generation; /readyz says 503", async () => {
    const s = await site("fleet-cut");
    const node = ctx.tmp("node");
    const ns = ctx.tmp("ns");
    const proxy = await startProxy(ctx.server.endpoint);
    const flags = ["--endpoint-url", proxy.url, "--state-dir", ns, "--log-format", "json"];
    const start = () => startCli(["pull", s.url, node, ...flags, "--watch", "--interval", "200ms", "--http", "127.0.0.1:0"]);
    const get = async (base: string, p: string) => {
      const res = await fetch(new URL(p, base));
      return { status: res.status, body: await res.text() };
    };
    let d = start();
    try {
      let base = await pageUrl(d);
      await eventually("in step", async () => ((await get(base, "readyz")).status === 200 ? true : undefined));
      assert.deepEqual(await get(base, "healthz"), { status: 200, body: "OK generation 1\n" });
      // The bucket is cut off: the source is unreachable, the docroot still holds generation 1.
      proxy.fault = () => ({ kind: "status", status: 503, code: "ServiceUnavailable" });
      const ready = await eventually("a failed run on /readyz", async () => {
        const r = await get(base, "readyz");
        return r.status === 503 ? r.body : undefined;
      });
      assert.match(ready, /^ERROR generation 1: /);
      const live = await get(base, "healthz");
      assert.equal(live.status, 200, live.body);
      assert.match(live.body, /^DEGRADED generation 1: the last run failed: /);
      // A node restarted during the outage still serves what its docroot holds.
      d.kill("SIGTERM");
      await waitCli(d, 30_000);
      d = start();
      base = await pageUrl(d);
      await eventually("a failed first run", async () => ((await get(base, "readyz")).body.startsWith("ERROR") ? true : undefined));
      const again = await get(base, "healthz");
      assert.equal(again.status, 200, again.body);
      assert.match(again.body, /^DEGRADED generation 1: /);
      const st = (await (await fetch(new URL("status.json", base))).json()) as Record<string, any>;
      assert.equal(st.health.ok, true);
      assert.equal(st.readiness.ok, false);
      assert.equal((await snapshot(node)).size, 3, "the docroot is untouched");
    } finally {
      d.kill("SIGTERM");
      await waitCli(d, 30_000);
      await proxy.close();
    }
  });

  test("/readyz and /healthz answer 503 with the reason while every run fails and nothing was pulled, and a used port is a clear error", async () => {
    const bucket = `missing-${Date.now()}`;
    const url = `s3://${bucket}/site/`;
    const d = startCli(["pull", url, ctx.tmp("node"), ...ctx.flags(ctx.tmp("ns")), "--watch", "--interval", "200ms", "--http", "127.0.0.1:0"]);
    try {
      const base = await pageUrl(d);
      const text = await eventually("a failed run", async () => {
        const res = await fetch(new URL("readyz", base));
        const body = await res.text();
        return res.status === 503 && body.startsWith("ERROR") ? body : undefined;
      });
      assert.match(text, /ERROR generation 0: /);
      // Nothing to serve yet: the load balancer's check fails too, saying why.
      const live = await fetch(new URL("healthz", base));
      assert.equal(live.status, 503);
      assert.match(await live.text(), /^EMPTY no complete generation in the docroot yet; ERROR generation 0: /);
      const metrics = await (await fetch(new URL("metrics", base))).text();
      assert.match(metrics, /^fansync_runs_total\{role="pull",result="error"\} [1-9]\d*$/m);
      // Same port again: a usage error naming the address, not a crash.
      const port = new URL(base).port;
      const second = await ctx.cli(["pull", url, ctx.tmp("node2"), ...ctx.flags(ctx.tmp("ns2")), "--watch", "--http", `127.0.0.1:${port}`]);
      expectCode(second, 2);
      assert.match(second.stderr, new RegExp(`cannot serve --http on 127\\.0\\.0\\.1:${port}: EADDRINUSE`));
    } finally {
      d.kill("SIGTERM");
      await waitCli(d, 30_000);
    }
    // Without --watch the flag makes no sense and says so.
    const once = await ctx.cli(["pull", url, ctx.tmp("n3"), ...ctx.flags(ctx.tmp("ns3")), "--http", "127.0.0.1:0"]);
    expectCode(once, 2);
    assert.match(once.stderr, /--http .* needs --watch/);
  });

  test("the uploader daemon (watch --http) reports its published generation", async () => {
    const bucket = await ctx.server.bucket("fleet-watch");
    const master = ctx.tmp("master");
    await writeTree(master, { "index.html": "one" });
    const url = `s3://${bucket}/site/`;
    const d = startCli(["watch", master, url, ...ctx.flags(ctx.tmp("ms")), "--delay", "100ms", "--http", "127.0.0.1:0"]);
    try {
      const base = await pageUrl(d);
      await eventually("generation 1", async () => ((await (await fetch(new URL("healthz", base))).text()).startsWith("OK generation 1") ? true : undefined));
      await writeTree(master, { "two.html": "two" });
      const metrics = await eventually("generation 2", async () => {
        const t = await (await fetch(new URL("metrics", base))).text();
        return /^fansync_generation\{role="push"\} 2$/m.test(t) ? t : undefined;
      });
      assert.match(metrics, /^fansync_files_transferred_total\{role="push",op="upload"\} 2$/m);
      assert.match(metrics, /^fansync_bytes_transferred_total\{role="push"\} 6$/m, "'one' + 'two' = 6 bytes");
      assert.match(metrics, /^fansync_s3_requests_total\{command="PutObject"\} \d+$/m);
      const head = await ctx.server.client.send(new HeadObjectCommand({ Bucket: bucket, Key: "site/two.html" }));
      assert.equal(head.ContentLength, 3);
    } finally {
      d.kill("SIGTERM");
      const r = await waitCli(d, 30_000);
      assert.equal(r.code, 0, r.stderr);
    }
  });
});
