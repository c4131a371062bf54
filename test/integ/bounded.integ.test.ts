/**
 * Every read and every wait bounded (issue 22, findings 3–6): a 400 MiB head.json, a 1 GiB journal,
 * an endless object body, a 2 GiB error body, and a PUT answered by a 503 that trickles. The bodies
 * are made on the fly by the proxy (nothing of that size on disk). Each run must end within
 * seconds with a clear error and a non-zero exit, its peak RSS under 200 MiB, the docroot unchanged
 * and no temp file left; watch's batch fails, is reported on /healthz, retried, and later edits are
 * published once the fault is gone; SIGTERM ends the daemon within its drain deadline. Each test
 * runs the lean data path and FANSYNC_DATA_PATH=sdk, and failed before the fix.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { readdir, writeFile } from "node:fs/promises";
import net from "node:net";
import path from "node:path";
import { describe, test } from "node:test";
import { startCli, waitCli } from "../helpers/cli.ts";
import { expectCode, useServer } from "../helpers/ctx.ts";
import { type Fault, startProxy } from "../helpers/proxy.ts";
import { readHeadDoc } from "../helpers/s3.ts";
import { snapshot, writeTree } from "../helpers/tree.ts";

const ctx = useServer();
const server = process.env.FANSYNC_TEST_SERVER ?? "moto";
const DATA_PATHS = ["lean", "sdk"] as const;
const MiB = 1024 * 1024;
const RSS_LIMIT_MIB = 200;

/** A master with a large file (the streamed download path) and a node that pulled it. */
async function setup(tag: string) {
  const bucket = await ctx.server.bucket(tag);
  const master = ctx.tmp("master");
  const node = ctx.tmp("node");
  const mstate = ctx.tmp("mstate");
  const nstate = ctx.tmp("nstate");
  await writeTree(master, { "a.html": "a", "big.bin": randomBytes(3 * MiB), "sub/c.css": "ccc" });
  const url = `s3://${bucket}/site`;
  const pushArgs = (...extra: string[]) => ["push", master, url, ...ctx.flags(mstate), ...extra];
  const push = async () => expectCode(await ctx.cli(pushArgs()), 0);
  const pullArgs = (endpoint: string) => ["pull", url, node, ...ctx.flags(nstate)].map((a) => (a === ctx.server.endpoint ? endpoint : a));
  await push();
  expectCode(await ctx.cli(["pull", url, node, ...ctx.flags(nstate)]), 0);
  return { bucket, master, node, mstate, url, push, pushArgs, pullArgs };
}

/** Temp files a run left in a tree. */
async function tempFiles(root: string): Promise<string[]> {
  return (await readdir(root, { recursive: true })).filter((n) => n.includes(".fansync-tmp-"));
}

/** Run the CLI with `env`, sampling its peak resident memory (VmHWM) until it exits. */
async function runMeasured(args: readonly string[], env: Record<string, string>, timeoutMs = Number(process.env.FANSYNC_TEST_CHILD_TIMEOUT_MS ?? 90_000)) {
  const t0 = Date.now();
  const child = startCli(args, { env });
  let peak = 0;
  const timer = setInterval(() => {
    try {
      const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, "utf8"));
      if (m) peak = Math.max(peak, Number(m[1]) / 1024);
    } catch {
      // exited between two samples: the last sample stands
    }
  }, 5);
  const r = await waitCli(child, timeoutMs);
  clearInterval(timer);
  return { ...r, peakMiB: Math.round(peak), ms: Date.now() - t0 };
}

const isGet = (q: { method: string }) => q.method === "GET";
const isPut = (q: { method: string }) => q.method === "PUT";
const contentKey = (q: { url: string }) => !/(\/|%2F)\.fansync(\/|%2F)/.test(q.url);

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

async function waitUntil(what: string, cond: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await cond().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe(`every read and every wait is bounded (${server})`, () => {
  test("a hostile body on the read path: a 400 MiB head.json, a 1 GiB journal, an endless object body, a 2 GiB error body each end the pull within seconds, exit non-zero, memory bounded, nothing written", async () => {
    const s = await setup("bounded-read");
    // Generation 2 changes the large file: a journal to read and a large object to download.
    await writeTree(s.master, { "big.bin": randomBytes(3 * MiB) });
    await s.push();
    const before = await snapshot(s.node);
    const proxy = await startProxy(ctx.server.endpoint);
    const cases: { what: string; when: (q: { method: string; url: string }) => boolean; fault: Fault; code: number; says: RegExp }[] = [
      { what: "a 400 MiB head.json", when: (q) => isGet(q) && q.url.includes("head.json"), fault: { kind: "synth", status: 200, bytes: 400 * MiB }, code: 8, says: /head\.json is larger than the 1(\.0)? MiB it may be/ },
      { what: "a 1 GiB journal", when: (q) => isGet(q) && /journal/.test(q.url), fault: { kind: "synth", status: 200, bytes: 1024 * MiB }, code: 8, says: /journal.* is larger than the 16(\.0)? MiB it may be/ },
      { what: "an endless journal (no length)", when: (q) => isGet(q) && /journal/.test(q.url), fault: { kind: "synth", status: 200, bytes: Infinity }, code: 8, says: /journal.* is larger than the 16(\.0)? MiB it may be/ },
      { what: "an endless object body", when: (q) => isGet(q) && q.url.includes("big.bin"), fault: { kind: "synth", status: 200, bytes: Infinity }, code: 8, says: /big\.bin is larger than the 3(\.0)? MiB it may be \(reading stopped/ },
      { what: "a 2 GiB error body", when: (q) => isGet(q) && q.url.includes("big.bin"), fault: { kind: "synth", status: 503, bytes: 2048 * MiB }, code: 7, says: /GET s3:\/\/.*big\.bin: ServiceUnavailable \(HTTP 503\)/ },
    ];
    try {
      for (const c of cases) {
        for (const dataPath of DATA_PATHS) {
          const label = `${c.what} (${dataPath})`;
          proxy.fault = (q) => (c.when(q) ? c.fault : { kind: "none" });
          const sent = proxy.synthBytes;
          const r = await runMeasured(s.pullArgs(proxy.url), { FANSYNC_DATA_PATH: dataPath });
          const read = proxy.synthBytes - sent;
          assert.equal(r.code, c.code, `${label}: exit ${r.code} ${r.signal ?? ""} after ${r.ms} ms, peak ${r.peakMiB} MiB\n${r.stderr.slice(-2000)}`);
          assert.match(r.stderr, c.says, label);
          assert.doesNotMatch(r.stderr, /unexpected error|    at /, `${label}: a clear error, no stack trace`);
          assert.ok(r.peakMiB < RSS_LIMIT_MIB, `${label}: peak RSS ${r.peakMiB} MiB`);
          // What the server sent before fansync hung up: the cap, socket buffers, a few attempts.
          assert.ok(read < 256 * MiB, `${label}: ${Math.round(read / MiB)} MiB were sent`);
          assert.ok(r.ms < 60_000, `${label}: the run took ${r.ms} ms`);
          assert.deepEqual(await snapshot(s.node), before, label);
          assert.deepEqual(await tempFiles(s.node), [], label);
          process.stdout.write(`# ${label}: exit ${r.code} in ${r.ms} ms, peak RSS ${r.peakMiB} MiB, ${(read / MiB).toFixed(1)} MiB sent\n`);
        }
      }
      // Nothing was left behind that stops the next run: it converges.
      proxy.fault = () => ({ kind: "none" });
      expectCode(await ctx.cli(s.pullArgs(proxy.url)), 0);
      assert.deepEqual(await snapshot(s.node), await snapshot(s.master));
    } finally {
      await proxy.close();
    }
  });

  test("push against a 2 GiB error body or a 503 that trickles: exits non-zero within its deadline, memory bounded, the head unchanged; SIGTERM ends it at once", async () => {
    const s = await setup("bounded-push");
    const generation = async () => {
      const h = await readHeadDoc(ctx.server.client, s.bucket, "site/");
      return `${String(h.generation)} ${String(h.manifestSha256)}`;
    };
    const headBefore = await generation();
    await writeTree(s.master, { "a.html": "changed" });
    const proxy = await startProxy(ctx.server.endpoint);
    const faults: [string, Fault][] = [
      ["a 2 GiB error body", { kind: "synth", status: 503, bytes: 2048 * MiB }],
      ["a 503 that trickles a byte every 100 ms", { kind: "synth", status: 503, bytes: Infinity, everyMs: 100 }],
    ];
    try {
      for (const [what, fault] of faults) {
        for (const dataPath of DATA_PATHS) {
          const label = `${what} (${dataPath})`;
          proxy.fault = (q) => (isPut(q) && contentKey(q) ? fault : { kind: "none" });
          const sent = proxy.synthBytes;
          const args = s.pushArgs("--run-timeout", "3s").map((a) => (a === ctx.server.endpoint ? proxy.url : a));
          const r = await runMeasured(args, { FANSYNC_DATA_PATH: dataPath, FANSYNC_REQUEST_TIMEOUT: "1s" });
          const read = proxy.synthBytes - sent;
          assert.equal(r.code, 4, `${label}: exit ${r.code} ${r.signal ?? ""} after ${r.ms} ms\n${r.stderr.slice(-2000)}`);
          assert.match(r.stderr, /a\.html|--run-timeout/, label);
          assert.ok(r.peakMiB < RSS_LIMIT_MIB, `${label}: peak RSS ${r.peakMiB} MiB`);
          assert.ok(read < 256 * MiB, `${label}: ${Math.round(read / MiB)} MiB were sent`);
          assert.ok(r.ms < 30_000, `${label}: the push took ${r.ms} ms`);
          assert.equal(await generation(), headBefore, `${label}: no generation was published`);
          process.stdout.write(`# push, ${label}: exit ${r.code} in ${r.ms} ms, peak RSS ${r.peakMiB} MiB, ${(read / MiB).toFixed(1)} MiB sent\n`);
        }
      }
      // SIGTERM ends a push stuck on a trickling answer at once, whatever its deadline (none here).
      for (const dataPath of DATA_PATHS) {
        proxy.fault = (q) => (isPut(q) && contentKey(q) ? faults[1]![1] : { kind: "none" });
        proxy.reset();
        const args = s.pushArgs("--run-timeout", "0").map((a) => (a === ctx.server.endpoint ? proxy.url : a));
        const child = startCli(args, { env: { FANSYNC_DATA_PATH: dataPath } });
        await proxy.waitFor((q) => isPut(q) && contentKey(q), 20_000);
        const t0 = Date.now();
        child.kill("SIGTERM");
        const r = await waitCli(child, 30_000);
        const took = Date.now() - t0;
        assert.equal(r.code, 143, `SIGTERM (${dataPath}): exit ${r.code} ${r.signal ?? ""}\n${r.stderr.slice(-2000)}`);
        assert.ok(took < 5_000, `SIGTERM (${dataPath}) took ${took} ms`);
        assert.equal(await generation(), headBefore, `SIGTERM (${dataPath}): no generation was published`);
        process.stdout.write(`# push (${dataPath}): SIGTERM during a trickling PUT ended it in ${took} ms, exit ${r.code}\n`);
      }
    } finally {
      await proxy.close();
    }
  });

  for (const dataPath of DATA_PATHS) {
    test(`watch against a 503 that trickles (${dataPath}): the batch fails and shows on /healthz, is retried, later edits are published once the fault is gone; SIGTERM ends it within the drain deadline`, async () => {
      const s = await setup(`bounded-watch-${dataPath}`);
      const proxy = await startProxy(ctx.server.endpoint);
      const port = await freePort();
      const wstate = ctx.tmp("wstate");
      const env = { FANSYNC_DATA_PATH: dataPath, FANSYNC_REQUEST_TIMEOUT: "1s", FANSYNC_DRAIN_DEADLINE: "2s" };
      const watchArgs = ["watch", s.master, s.url, ...ctx.flags(wstate), "--delay", "200ms", "--max-delay", "1s", "--run-timeout", "2s", "--http", `127.0.0.1:${port}`]
        .map((a) => (a === ctx.server.endpoint ? proxy.url : a));
      const healthz = async () => {
        const res = await fetch(`http://127.0.0.1:${port}/healthz`);
        return { status: res.status, text: await res.text() };
      };
      const published = async (p: string, body: string) => {
        const { getBytes } = await import("../helpers/s3.ts");
        return (await getBytes(ctx.server.client, s.bucket, `site/${p}`)).toString("utf8") === body;
      };
      const trickle: Fault = { kind: "synth", status: 503, bytes: Infinity, everyMs: 100 };
      let child = startCli(watchArgs, { env });
      try {
        await waitUntil("the first batch", async () => (await healthz()).status === 200);
        proxy.fault = (q) => (isPut(q) && contentKey(q) ? trickle : { kind: "none" });
        await writeFile(path.join(s.master, "a.html"), "during the fault");
        await waitUntil("/healthz to report the failing batch", async () => {
          const h = await healthz();
          return h.status === 503 && /ERROR/.test(h.text);
        });
        proxy.fault = () => ({ kind: "none" });
        // The failed batch is retried; an edit made after the fault is published too.
        await writeFile(path.join(s.master, "sub/c.css"), "after the fault");
        await waitUntil("the edits to be published", async () => (await published("sub/c.css", "after the fault")) && (await published("a.html", "during the fault")));
        await waitUntil("/healthz OK again", async () => (await healthz()).status === 200);
        // SIGTERM while a batch is stuck: the daemon ends within its drain deadline (2 s) and some.
        proxy.fault = (q) => (isPut(q) && contentKey(q) ? trickle : { kind: "none" });
        proxy.reset();
        await writeFile(path.join(s.master, "a.html"), "stuck");
        await proxy.waitFor((q) => isPut(q) && contentKey(q), 20_000);
        const t0 = Date.now();
        child.kill("SIGTERM");
        const r = await waitCli(child, 30_000);
        const took = Date.now() - t0;
        assert.ok(r.code !== null && r.signal === null, `watch was killed: ${r.signal ?? ""}\n${r.stderr.slice(-2000)}`);
        assert.ok(took < 10_000, `SIGTERM took ${took} ms (drain deadline 2 s)`);
        process.stdout.write(`# watch (${dataPath}): SIGTERM during a stuck batch ended it in ${took} ms, exit ${r.code}\n`);
      } finally {
        if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
        child = undefined as never;
        await proxy.close();
      }
    });
  }
});

describe(`SIGTERM during a huge pull (${server})`, () => {
  test("memory stays where it was while the run drains (a planted manifest of 40k entries, 30k of them staged, then every download held)", async () => {
    const { serializeManifest, serializeHead, sha256Hex, metaKeys } = await import("../../src/core/manifest.ts");
    const { putBytes } = await import("../helpers/s3.ts");
    const bucket = await ctx.server.bucket("bounded-term");
    const nstate = ctx.tmp("nstate");
    const n = Number(process.env.FANSYNC_TEST_TERM_ENTRIES ?? 40_000);
    // Every file holds the same 10 bytes: the proxy serves them without the server.
    const content = Buffer.alloc(10, 0x20);
    const files = new Map<string, { path: string; size: number; mtimeMs: number; mode: number; sha256: string; etag: string }>();
    for (let i = 0; i < n; i++) {
      const p = `d${i % 500}/page-${i}.html`;
      files.set(p, { path: p, size: content.length, mtimeMs: 1_700_000_000_000, mode: 0o644, sha256: sha256Hex(content), etag: '"0123456789abcdef0123456789abcdef"' });
    }
    const manifest = await serializeManifest(1, files);
    await putBytes(ctx.server.client, bucket, metaKeys.manifest("site/.fansync/", 1), manifest);
    const head = { format: "fansync-head/1" as const, generation: 1, manifestKey: metaKeys.manifest("site/.fansync/", 1), manifestSha256: sha256Hex(manifest), files: n, bytes: n * content.length, oldestJournal: 1, writer: "test", time: new Date().toISOString() };
    await putBytes(ctx.server.client, bucket, metaKeys.head("site/.fansync/"), serializeHead(head));
    files.clear();
    const proxy = await startProxy(ctx.server.endpoint);
    try {
      // What a stopped run frees is the same on both data paths (its temp files): the lean one only,
      // as 30k downloads take a while on a shared machine.
      for (const dataPath of ["lean"] as const) {
        const node = ctx.tmp("node");
        // Most files download (staged as temp files, the run's list of them grows), then every GET is held.
        let served = 0;
        const downloaded = Math.floor(n * 0.75);
        proxy.fault = (q) => (isGet(q) && contentKey(q) ? (served++ < downloaded ? { kind: "synth", status: 200, bytes: content.length } : { kind: "stall" }) : { kind: "none" });
        const args = ["pull", `s3://${bucket}/site`, node, ...ctx.flags(nstate)].map((a) => (a === ctx.server.endpoint ? proxy.url : a));
        const child = startCli(args, { env: { FANSYNC_DATA_PATH: dataPath } });
        let peak = 0;
        const sampler = setInterval(() => {
          try {
            const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, "utf8"));
            if (m) peak = Math.max(peak, Number(m[1]) / 1024);
          } catch {
            // exited
          }
        }, 5);
        await waitUntil("the downloads to be held", async () => served > downloaded + 8, 300_000);
        // Let the run settle, then read its peak so far.
        await new Promise((r) => setTimeout(r, 1000));
        const before = Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, "utf8"))?.[1] ?? 0) / 1024;
        const t0 = Date.now();
        child.kill("SIGTERM");
        const r = await waitCli(child, 120_000);
        clearInterval(sampler);
        const took = Date.now() - t0;
        process.stdout.write(`# SIGTERM during a ${n}-entry pull with ${downloaded} files staged (${dataPath}): peak ${Math.round(before)} MiB before, ${Math.round(peak)} MiB at exit ${r.code} after ${took} ms\n`);
        assert.equal(r.code, 143, `${dataPath}: exit ${r.code} ${r.signal ?? ""}\n${r.stderr.slice(-2000)}`);
        // Before the fix the 30k temp files were removed all at once: +41 MiB here (1M: +880 MiB).
        assert.ok(peak < before + 24, `${dataPath}: the peak grew from ${Math.round(before)} to ${Math.round(peak)} MiB while draining`);
        // An interrupted pull keeps its verified temp files for the next run (issue 27 item 11): what is
        // left is exactly what it recorded in pull-staged.ndjson, hidden, nothing under a final name.
        const { readNdjsonMap } = await import("../../src/adapters/state-files.ts");
        const log = (await readdir(nstate, { recursive: true })).find((f) => f.endsWith("pull-staged.ndjson"));
        const recorded = log ? [...(await readNdjsonMap<{ tmp: string }>(path.join(nstate, log), { tornTail: true })).values()].map((k) => path.relative(node, k.tmp)).sort() : [];
        assert.deepEqual((await tempFiles(node)).sort(), recorded, `${dataPath}: only the verified temp files recorded for the next run are left`);
        assert.deepEqual([...(await snapshot(node, (p) => path.basename(p).startsWith(".fansync-tmp-"))).keys()], [], `${dataPath}: nothing under a final name`);
      }
    } finally {
      await proxy.close();
    }
  });
});
