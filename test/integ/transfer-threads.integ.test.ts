/**
 * Downloads on transfer threads (issue 25, engine/transfer-threads.ts): a pull of a few hundred
 * small files runs their GETs on worker threads beside the main thread. On every server: the
 * threads sign their own requests, and the docroot ends byte for byte, mode and mtime the
 * master's. On moto, through a proxy: a throttled answer is retried, a body cut short or with
 * other bytes fails the run with the docroot as it was and no temp file left, an endless body is
 * refused at the manifest's size — the same outcomes, and the same exit codes, as on the main thread.
 */
import assert from "node:assert/strict";
import { readdir } from "node:fs/promises";
import { describe, test } from "node:test";
import { checkDocrootEqualsTree, rng, SEED } from "../helpers/faults.ts";
import { expectCode, useServer } from "../helpers/ctx.ts";
import { skipEngineTier } from "../helpers/integ-tiers.ts";
import { type Fault, startProxy } from "../helpers/proxy.ts";
import { seededBytes, snapshot, writeTree } from "../helpers/tree.ts";

const ctx = useServer();
const FILES = 240;
const VICTIMS = ["d1/f8.html", "d3/f17.html", "d5/f117.html", "d6/f230.html"];
const VICTIM_SIZE = 5000;

/** A master of FILES small files in a few directories (and one large file, streamed on the main thread), pushed. */
async function setup(tag: string) {
  const bucket = await ctx.server.bucket(tag);
  const master = ctx.tmp("master");
  const node = ctx.tmp("node");
  const nstate = ctx.tmp("nstate");
  const mstate = ctx.tmp("mstate");
  const r = rng(SEED + 25);
  const files: Record<string, Buffer> = {};
  for (let i = 0; i < FILES; i++) files[`d${i % 7}/f${i}.html`] = seededBytes(r.int(1, 1e9), r.int(1, 20_000));
  // The proxy's victims have a known size (a body of other bytes the same size is "other bytes", not "cut short").
  for (const v of VICTIMS) files[v] = seededBytes(r.int(1, 1e9), VICTIM_SIZE);
  files["big.bin"] = seededBytes(r.int(1, 1e9), 2 * 1024 * 1024);
  await writeTree(master, files);
  const url = `s3://${bucket}/site`;
  const pushed = await ctx.cli(["push", master, url, ...ctx.flags(mstate), "--threads", "2", "--log-level", "debug"]);
  expectCode(pushed, 0);
  assert.match(pushed.stdout, /transfers run on transfer threads/, "the push did not use its threads");
  return { bucket, master, node, nstate, mstate, url };
}

async function tempFiles(root: string): Promise<string[]> {
  return (await readdir(root, { recursive: true })).filter((n) => n.includes(".fansync-tmp-"));
}

describe("transfers on transfer threads", () => {
  test("a push and a pull on 2 threads each: the node ends with the master's bytes, modes and mtimes; a second generation too", async () => {
    const s = await setup("threads-pull");
    const r = await ctx.cli(["pull", s.url, s.node, ...ctx.flags(s.nstate), "--threads", "2", "--log-level", "debug"]);
    expectCode(r, 0);
    assert.match(r.stdout, /transfers run on transfer threads/, "the pull did not use its threads");
    const eq = await checkDocrootEqualsTree(s.node, s.master);
    assert.deepEqual(eq.problems, []);
    assert.equal(eq.files, FILES + 1);
    // Most files change: the next generation's downloads replace files the threads wrote.
    const rr = rng(SEED + 26);
    const changed: Record<string, Buffer> = {};
    for (let i = 0; i < FILES; i += 1) if (i % 10 !== 0) changed[`d${i % 7}/f${i}.html`] = seededBytes(rr.int(1, 1e9), rr.int(1, 20_000));
    await writeTree(s.master, changed);
    expectCode(await ctx.cli(["push", s.master, s.url, ...ctx.flags(s.mstate)]), 0);
    expectCode(await ctx.cli(["pull", s.url, s.node, ...ctx.flags(s.nstate), "--threads", "2"]), 0);
    assert.deepEqual((await checkDocrootEqualsTree(s.node, s.master)).problems, []);
    assert.deepEqual(await tempFiles(s.node), []);
  });

  test("through a proxy: throttled answers are retried; bytes cut short, other bytes or an endless body fail the run and change nothing", async (t) => {
    if (skipEngineTier(t)) return;
    const s = await setup("threads-faults");
    const proxy = await startProxy(ctx.server.endpoint);
    const pull = (...extra: string[]) => ctx.cli(["pull", s.url, s.node, "--endpoint-url", proxy.url, "--state-dir", s.nstate, "--log-format", "json", ...extra]);
    // A few objects, by key: one fault each (the proxy sees every GET, from whichever thread).
    const isVictim = (url: string) => VICTIMS.some((v) => url.split("?")[0]?.endsWith(`/site/${v}`));
    try {
      for (const [what, fault, code, message] of [
        ["bytes cut short", { kind: "truncate" }, 7, /site\/d\d\/f\d+\.html: cannot reach http:\/\/127\.0\.0\.1:\d+ \(ECONNRESET\)/],
        ["other bytes of the same size", { kind: "synth", status: 200, bytes: VICTIM_SIZE }, 8, /do not match the manifest's sha256/],
        ["an endless body", { kind: "synth", status: 200, bytes: Infinity }, 8, /site\/d\d\/f\d+\.html is larger than the 4.9 KiB it may be \(reading stopped at 4.9 KiB \+ 1 byte\)/],
      ] as [string, Fault, number, RegExp][]) {
        proxy.fault = (req) => (req.method === "GET" && isVictim(req.url) ? fault : { kind: "none" });
        // The same outcome on the main thread alone (--threads 0) and with threads.
        for (const threads of ["0", "2"]) {
          const r = await pull("--threads", threads);
          assert.equal(r.code, code, `${what}, --threads ${threads}: exit ${r.code}\n${r.stderr.slice(-2000)}`);
          assert.match(r.stderr, message, `${what}, --threads ${threads}: ${r.stderr.slice(-600)}`);
          assert.deepEqual([...(await snapshot(s.node)).keys()], [], `${what}, --threads ${threads}: the docroot changed`);
          assert.deepEqual(await tempFiles(s.node), [], `${what}, --threads ${threads}: temp files left`);
        }
      }
      // Throttled twice, then answered: the run completes.
      const seen = new Map<string, number>();
      proxy.fault = (req) => {
        if (req.method !== "GET" || !isVictim(req.url)) return { kind: "none" };
        const n = (seen.get(req.url) ?? 0) + 1;
        seen.set(req.url, n);
        return n <= 2 ? { kind: "status", status: 503, code: "SlowDown" } : { kind: "none" };
      };
      expectCode(await pull("--threads", "2"), 0);
      assert.deepEqual((await checkDocrootEqualsTree(s.node, s.master)).problems, []);
      assert.ok([...seen.values()].every((n) => n >= 3), `each throttled object was asked again: ${JSON.stringify([...seen])}`);
    } finally {
      await proxy.close();
    }
  });
  test("a push on threads through a proxy: throttled PUTs are retried, answers with weakened ETags are read back; every object holds its file's bytes", async (t) => {
    if (skipEngineTier(t)) return;
    const bucket = await ctx.server.bucket("threads-push");
    const master = ctx.tmp("master");
    const node = ctx.tmp("node");
    const r = rng(SEED + 27);
    const files: Record<string, Buffer> = {};
    for (let i = 0; i < FILES; i++) files[`p${i % 5}/g${i}.css`] = seededBytes(r.int(1, 1e9), r.int(1, 9_000));
    await writeTree(master, files);
    const url = `s3://${bucket}/site`;
    const proxy = await startProxy(ctx.server.endpoint);
    const seen = new Map<string, number>();
    // Every 10th file: its PUT throttled twice; every 7th: its answer's ETag weakened (a proxy that rewrites them).
    proxy.fault = (req) => {
      const m = /\/site\/p\d\/g(\d+)\.css$/.exec(req.url.split("?")[0] ?? "");
      if (req.method !== "PUT" || !m) return { kind: "none" };
      const i = Number(m[1]);
      const n = (seen.get(req.url) ?? 0) + 1;
      seen.set(req.url, n);
      if (i % 10 === 0 && n <= 2) return { kind: "status", status: 503, code: "SlowDown" };
      if (i % 7 === 0) return { kind: "rewrite-etag", to: (etag) => `W/${etag}` };
      return { kind: "none" };
    };
    try {
      const out = await ctx.cli(["push", master, url, "--endpoint-url", proxy.url, "--state-dir", ctx.tmp("mstate"), "--log-format", "json", "--threads", "2", "--log-level", "debug"]);
      expectCode(out, 0);
      assert.match(out.stdout, /transfers run on transfer threads/);
    } finally {
      await proxy.close();
    }
    const throttled = [...seen].filter(([u]) => /g\d*0\.css/.test(u));
    assert.ok(throttled.length >= FILES / 10 && throttled.every(([, n]) => n >= 3), `each throttled PUT was sent again: ${JSON.stringify(throttled.slice(0, 5))}`);
    // A reader (no proxy) gets every file's bytes: nothing unverified was published.
    expectCode(await ctx.cli(["pull", url, node, ...ctx.flags(ctx.tmp("nstate")), "--threads", "0"]), 0);
    assert.deepEqual((await checkDocrootEqualsTree(node, master)).problems, []);
  });
});
