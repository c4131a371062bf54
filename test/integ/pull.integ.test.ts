import assert from "node:assert/strict";
import { readdir, readFile, rm, writeFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import path from "node:path";
import { gzipSync } from "node:zlib";
import { createHash } from "node:crypto";
import { describe, test } from "node:test";
import { startCli, waitCli } from "../helpers/cli.ts";
import { expectCode, useServer } from "../helpers/ctx.ts";
import { startProxy } from "../helpers/proxy.ts";
import { putBytes, readHeadDoc } from "../helpers/s3.ts";
import { seededBytes, snapshot, writeTree } from "../helpers/tree.ts";
import { DeleteObjectCommand } from "@aws-sdk/client-s3";
import { serverLabel } from "../helpers/s3-server.ts";

const ctx = useServer();
const sha = (b: Buffer | string) => createHash("sha256").update(b).digest("hex");
const notStatus = (rel: string) => rel.startsWith("status.");

/** A master, a bucket and a node, with push/pull shortcuts. */
async function setup(tag: string, files: Record<string, string | Buffer>) {
  const bucket = await ctx.server.bucket(tag, { versioning: true });
  const master = ctx.tmp("master");
  const node = ctx.tmp("node");
  const mstate = ctx.tmp("mstate");
  const nstate = ctx.tmp("nstate");
  await writeTree(master, files);
  const url = `s3://${bucket}/site`;
  const push = async (...extra: string[]) => expectCode(await ctx.cli(["push", master, url, ...ctx.flags(mstate), ...extra]), 0);
  const pull = (...extra: string[]) => ctx.cli(["pull", url, node, ...ctx.flags(nstate), "--status-file", path.join(node, "status.json"), ...extra]);
  await push();
  return { bucket, master, node, nstate, url, push, pull };
}

describe(`pull (${serverLabel()})`, () => {
  test("first pull reproduces the pushed tree byte for byte, with mtimes and modes; edits converge", async () => {
    const s = await setup("pull-first", {
      "index.html": "<h1>home</h1>",
      "a/b/deep.css": "deep",
      "caf\u00e9/x.html": "nfc",
      "cafe\u0301/x.html": "nfd",
      "sp ace/f i.txt": "spaces",
      "empty.txt": "",
      "big.bin": seededBytes(3, 12 * 1024 * 1024),
      "old/rename.txt": "rename me",
      "gone.txt": "bye",
    });
    const r = await s.pull();
    expectCode(r, 0);
    assert.deepEqual(await snapshot(s.node, notStatus), await snapshot(s.master));
    assert.equal((await readFile(path.join(s.node, "status.txt"), "utf8")).trim(), "OK 1");
    await writeFile(path.join(s.master, "index.html"), "<h1>new home</h1>");
    await rm(path.join(s.master, "gone.txt"));
    await rm(path.join(s.master, "old"), { recursive: true });
    await writeTree(s.master, { "new/rename.txt": "rename me", "added.js": "x=1" });
    await s.push();
    expectCode(await s.pull(), 0);
    assert.deepEqual(await snapshot(s.node, notStatus), await snapshot(s.master));
    assert.ok(!existsSync(path.join(s.node, "old")), "the emptied directory was removed");
    const st = JSON.parse(await readFile(path.join(s.node, "status.json"), "utf8")) as Record<string, unknown>;
    assert.equal(st.status, "OK");
    assert.equal(st.generation, 2);
    assert.equal(st.lastError, null);
  });

  test("a no-op pull is exactly one request; a pull 5 generations behind uses journals", async () => {
    const s = await setup("pull-noop", { "a.html": "a", "b.html": "b" });
    const proxy = await startProxy(ctx.server.endpoint);
    try {
      const viaProxy = (...extra: string[]) => ctx.cli(["pull", s.url, s.node, "--endpoint-url", proxy.url, "--state-dir", s.nstate, "--log-format", "json", ...extra]);
      expectCode(await viaProxy(), 0);
      proxy.reset();
      expectCode(await viaProxy(), 0);
      assert.deepEqual(proxy.requests.map((q) => `${q.method} ${q.status}`), ["GET 304"], "one conditional GET of the head");
      for (let i = 0; i < 5; i++) {
        await writeTree(s.master, { [`gen${i}.html`]: `generation ${i}` });
        await s.push();
      }
      proxy.reset();
      expectCode(await viaProxy(), 0);
      const urls = proxy.requests.map((q) => decodeURIComponent(q.url));
      assert.equal(urls.filter((u) => u.includes("/journal/")).length, 5, urls.join("\n"));
      assert.equal(urls.filter((u) => u.includes("/manifests/")).length, 0, "no full manifest when 5 behind");
      assert.deepEqual(await snapshot(s.node), await snapshot(s.master));
    } finally {
      await proxy.close();
    }
  });

  test("the delete guard refuses a mass delete and an empty manifest; the docroot is untouched", async () => {
    const files: Record<string, string> = {};
    for (let i = 0; i < 10; i++) files[`p${i}.html`] = `page ${i}`;
    const s = await setup("pull-guard", files);
    expectCode(await s.pull(), 0);
    const before = await snapshot(s.node, notStatus);
    for (let i = 0; i < 8; i++) await rm(path.join(s.master, `p${i}.html`));
    // A master whose own guard lets it through without saying so (no --force, no --approve-deletes):
    // nodes judge the deletion with their own guard.
    await s.push("--max-delete", "100%");
    const r = await s.pull();
    expectCode(r, 5);
    assert.match(r.stderr, /refusing to delete 8 of 10 files of the docroot/);
    assert.deepEqual(await snapshot(s.node, notStatus), before);
    assert.match(await readFile(path.join(s.node, "status.txt"), "utf8"), /^ERROR 1 GuardError/);
    expectCode(await s.pull("--max-delete", "80%"), 0);
    assert.deepEqual(await snapshot(s.node, notStatus), await snapshot(s.master));
  });

  test("a hostile manifest fails the run; nothing is written anywhere", async () => {
    const s = await setup("pull-hostile", { "a.html": "a" });
    expectCode(await s.pull(), 0);
    const before = await snapshot(s.node, notStatus);
    const outside = path.join(path.dirname(s.node), `escape-${path.basename(s.node)}`);
    const entries = [
      { path: "a.html", size: 1, mtimeMs: 1, mode: 0o644, sha256: sha("a"), etag: "x" },
      { path: `../${path.basename(outside)}/pwned.txt`, size: 5, mtimeMs: 1, mode: 0o644, sha256: sha("pwned"), etag: "x" },
    ];
    const body = gzipSync([JSON.stringify({ format: "fansync-manifest/1", generation: 2, files: 2 }), ...entries.map((e) => JSON.stringify(e))].join("\n"));
    const key = "site/.fansync/manifests/000000000002.ndjson.gz";
    await putBytes(ctx.server.client, s.bucket, key, body);
    await putBytes(ctx.server.client, s.bucket, `site/${entries[1]?.path}`, "pwned");
    const head = await readHeadDoc(ctx.server.client, s.bucket, "site/");
    await putBytes(ctx.server.client, s.bucket, "site/.fansync/head.json", JSON.stringify({ ...head, generation: 2, manifestKey: key, manifestSha256: sha(body), files: 2, oldestJournal: 2 }));
    const r = await s.pull();
    expectCode(r, 8);
    assert.match(r.stderr, /invalid path.*"\.\."/);
    assert.ok(!existsSync(outside), "nothing outside the docroot");
    assert.deepEqual(await snapshot(s.node, notStatus), before);
  });

  test("a pull killed with SIGKILL mid-download leaves no partial file; the next run converges", async () => {
    const s = await setup("pull-kill", { "small.html": "s", "huge.bin": seededBytes(11, 20 * 1024 * 1024) });
    const proxy = await startProxy(ctx.server.endpoint);
    // Slow every object GET so the kill lands mid-transfer.
    proxy.fault = (q) => (q.method === "GET" && q.url.includes("huge") ? { kind: "delay", ms: 1500 } : { kind: "none" });
    try {
      const child = startCli(["pull", s.url, s.node, "--endpoint-url", proxy.url, "--state-dir", s.nstate, "--log-format", "json"]);
      await new Promise((r) => setTimeout(r, 1200));
      child.kill("SIGKILL");
      await waitCli(child);
      const names = await readdir(s.node, { recursive: true });
      assert.ok(!names.includes("huge.bin"), "no file under its final name before it is complete");
      proxy.fault = () => ({ kind: "none" });
      expectCode(await ctx.cli(["pull", s.url, s.node, "--endpoint-url", proxy.url, "--state-dir", s.nstate, "--log-format", "json"]), 0);
      assert.deepEqual(await snapshot(s.node), await snapshot(s.master));
      assert.deepEqual((await readdir(s.node, { recursive: true })).filter((n) => n.includes(".fansync-tmp-")), [], "stale temp files cleaned");
    } finally {
      await proxy.close();
    }
  });

  test("two overlapping runs: one takes the lock, the other exits 75; the result is exact", async () => {
    const files: Record<string, string> = {};
    for (let i = 0; i < 200; i++) files[`d${i % 7}/f${i}.txt`] = `content ${i}`;
    const s = await setup("pull-overlap", files);
    const a = startCli(["pull", s.url, s.node, ...ctx.flags(s.nstate)]);
    const b = startCli(["pull", s.url, s.node, ...ctx.flags(s.nstate)]);
    const [ra, rb] = await Promise.all([waitCli(a), waitCli(b)]);
    const codes = [ra.code, rb.code].sort();
    assert.ok(codes[0] === 0 && (codes[1] === 0 || codes[1] === 75), `exit codes ${codes.join(",")}`);
    assert.deepEqual(await snapshot(s.node), await snapshot(s.master));
  });

  test("status: STALE while objects are missing (the master moved on), ERROR when the source is down", async () => {
    const s = await setup("pull-status", { "a.html": "a" });
    expectCode(await s.pull(), 0);
    await writeTree(s.master, { "b.html": "b" });
    await s.push();
    // The object the new manifest names is not there (replication lag, or the master moved on).
    await ctx.server.client.send(new DeleteObjectCommand({ Bucket: s.bucket, Key: "site/b.html" }));
    if (ctx.server.features.versioning) {
      // With versioning the manifest's VersionId still reads the old bytes; remove that version too.
      const { ListObjectVersionsCommand } = await import("@aws-sdk/client-s3");
      const v = await ctx.server.client.send(new ListObjectVersionsCommand({ Bucket: s.bucket, Prefix: "site/b.html" }));
      for (const ver of v.Versions ?? []) await ctx.server.client.send(new DeleteObjectCommand({ Bucket: s.bucket, Key: "site/b.html", VersionId: ver.VersionId }));
    }
    const r = await s.pull();
    expectCode(r, 4);
    assert.ok(!existsSync(path.join(s.node, "b.html")));
    assert.match(await readFile(path.join(s.node, "status.txt"), "utf8"), /^STALE 1 /);
    const down = await ctx.cli(["pull", s.url, s.node, "--endpoint-url", "http://127.0.0.1:9", "--state-dir", s.nstate, "--status-file", path.join(s.node, "status.json")]);
    expectCode(down, 7);
    assert.match(await readFile(path.join(s.node, "status.txt"), "utf8"), /^ERROR 1 RemoteError: .*cannot reach/);
    const st = JSON.parse(await readFile(path.join(s.node, "status.json"), "utf8")) as Record<string, unknown>;
    assert.equal(st.generation, 1);
    assert.ok(typeof st.lastSuccess === "string");
  });

  test("a 404 that is not 'no such key' is a credentials or configuration error (exit 7), never 'nothing published' (exit 8)", async (t) => {
    const s = await setup("pull-404", { "a.html": "a" });
    expectCode(await s.pull(), 0);
    const status = path.join(s.node, "status.json");
    // Injected: the head's GET answered 404 with another code than NoSuchKey (versitygw's answer to
    // an unknown access key, and one no server is known to send).
    const proxy = await startProxy(ctx.server.endpoint);
    try {
      for (const [code, said] of [["XAdminUserNotFound", /: the credentials were rejected \(XAdminUserNotFound\)$/m], ["UnexpectedNotFound", /: the server answered 404 UnexpectedNotFound, which is not "no such key"/]] as const) {
        proxy.fault = (q) => (q.method === "GET" && q.url.includes("head.json") ? { kind: "status", status: 404, code } : { kind: "none" });
        const r = await ctx.cli(["pull", s.url, s.node, "--endpoint-url", proxy.url, "--state-dir", s.nstate, "--status-file", status, "--log-format", "json"]);
        expectCode(r, 7);
        assert.match(r.stderr, said);
        assert.doesNotMatch(r.stderr, /no fansync head|fansync push/);
        assert.match(r.stderr, /what to do: check AWS_ACCESS_KEY_ID/);
      }
    } finally {
      await proxy.close();
    }
    assert.deepEqual(await snapshot(s.node, notStatus), await snapshot(s.master), "the docroot was left alone");
    // The server itself, with an access key it does not know (where it checks keys at all).
    const unknown = { AWS_ACCESS_KEY_ID: "FANSYNCUNKNOWNKEY0001", AWS_SECRET_ACCESS_KEY: "not-the-secret" };
    const r = await ctx.cli(["pull", s.url, s.node, ...ctx.flags(s.nstate), "--status-file", status], unknown);
    if (r.code === 0) {
      t.diagnostic(`${ctx.server.label} accepts an unknown access key: only the injected answers were checked`);
      return;
    }
    expectCode(r, 7);
    assert.match(r.stderr, /: the credentials were rejected \((InvalidAccessKeyId|SignatureDoesNotMatch|XAdminUserNotFound)\)$/m);
    assert.doesNotMatch(r.stderr, /no fansync head|fansync push/);
  });

  test("--verify repairs a hand edit and a deleted file; --dry-run only reports", async () => {
    const s = await setup("pull-verify", { "a.html": "aaaa", "b.html": "bbbb", "c/d.css": "dddd" });
    expectCode(await s.pull(), 0);
    await writeFile(path.join(s.node, "a.html"), "hacked");
    await rm(path.join(s.node, "c/d.css"));
    const dry = await s.pull("--verify", "--dry-run");
    expectCode(dry, 0);
    assert.deepEqual(dry.logs.filter((l) => l.op === "get").map((l) => l.path).sort(), ["a.html", "c/d.css"]);
    assert.equal(await readFile(path.join(s.node, "a.html"), "utf8"), "hacked");
    expectCode(await s.pull("--verify", "--checksum"), 0);
    assert.deepEqual(await snapshot(s.node, notStatus), await snapshot(s.master));
  });

  test("local files fansync never wrote are kept, unless --delete-extraneous", async () => {
    const s = await setup("pull-extra", { "a.html": "a", "b.html": "b", "c.html": "c" });
    await writeTree(s.node, { "local-only.txt": "mine" });
    expectCode(await s.pull(), 0);
    await rm(path.join(s.master, "a.html"));
    await s.push();
    expectCode(await s.pull(), 0);
    assert.ok(!existsSync(path.join(s.node, "a.html")));
    assert.equal(await readFile(path.join(s.node, "local-only.txt"), "utf8"), "mine");
    // Extraneous files are swept when a new generation arrives or on --verify (a no-op stays one request).
    expectCode(await s.pull("--delete-extraneous", "--verify"), 0);
    assert.ok(!existsSync(path.join(s.node, "local-only.txt")));
    assert.ok(existsSync(path.join(s.node, "status.txt")), "the status file is never deleted");
  });
});
