import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { chmod, readFile, rename, rm, utimes, writeFile } from "node:fs/promises";
import path from "node:path";
import { describe, test } from "node:test";
import { startProxy } from "../helpers/proxy.ts";
import { expectCode, useServer } from "../helpers/ctx.ts";
import { DeleteObjectCommand, ListObjectVersionsCommand } from "@aws-sdk/client-s3";
import { assertMediaType, getBytes, headObject, listKeys, readHeadDoc, readManifestDoc } from "../helpers/s3.ts";
import { seededBytes, snapshot, writeTree } from "../helpers/tree.ts";
import { serverLabel, versioningSupport } from "../helpers/s3-server.ts";

const ctx = useServer();
const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

async function site(root: string): Promise<void> {
  await writeTree(root, {
    "index.html": "<h1>home</h1>",
    "css/site.css": "body{}",
    "a/b/c/deep.txt": "deep",
    "caf\u00e9/menu.html": "nfc",
    "cafe\u0301/menu.html": "nfd",
    "with space/file name.txt": "spaces",
    "empty.txt": "",
    "big/video.bin": seededBytes(7, 30 * 1024 * 1024 + 123),
  });
  await chmod(path.join(root, "a/b/c/deep.txt"), 0o600);
}

describe(`push (${serverLabel()})`, () => {
  test("a generated tree lands byte-identical with a correct manifest; a second push is a no-op", async () => {
    const bucket = await ctx.server.bucket("push-tree");
    const root = ctx.tmp("master");
    const state = ctx.tmp("state");
    await site(root);
    const r = await ctx.cli(["push", root, `s3://${bucket}/www`, ...ctx.flags(state), "--part-size", "8MiB", "--multipart-threshold", "8MiB"]);
    expectCode(r, 0);
    const snap = await snapshot(root);
    const { header, entries } = await readManifestDoc(ctx.server.client, bucket, "www/");
    assert.equal(header.generation, 1);
    assert.equal(entries.length, snap.size);
    for (const e of entries) {
      const s = snap.get(e.path as string);
      assert.ok(s, `manifest names ${String(e.path)} which is not on disk`);
      assert.deepEqual([e.size, e.sha256, e.mode, e.mtimeMs], [s.size, s.sha256, s.mode, s.mtimeMs], String(e.path));
      // What landed in the bucket is byte-identical to the file (no aws-chunked framing, no CRC trailer).
      const body = await getBytes(ctx.server.client, bucket, `www/${String(e.path)}`);
      assert.equal(sha(body), s.sha256, `object bytes of ${String(e.path)}`);
    }
    const html = await headObject(ctx.server.client, bucket, "www/index.html");
    assertMediaType(html.ContentType, "text/html");
    assert.equal(html.Metadata?.sha256, snap.get("index.html")?.sha256);
    const big = await headObject(ctx.server.client, bucket, "www/big/video.bin");
    assert.match(big.ETag ?? "", /-\d+"$/, "30 MB file went multipart");
    // Second push: nothing uploaded, no new generation, and it says so.
    const again = await ctx.cli(["push", root, `s3://${bucket}/www`, ...ctx.flags(state)]);
    expectCode(again, 0);
    assert.ok(again.logs.some((l) => l.msg === "nothing changed: no new generation"));
    assert.equal((await readHeadDoc(ctx.server.client, bucket, "www/")).generation, 1);
  });

  test("edits, deletes and renames produce exactly the expected next generation", async () => {
    const bucket = await ctx.server.bucket("push-edit");
    const root = ctx.tmp("master");
    const state = ctx.tmp("state");
    await writeTree(root, { "a.html": "a", "b.html": "b", "dir/c.css": "c", "dir/d.js": "d", "old/name.txt": "rename me please" });
    expectCode(await ctx.cli(["push", root, `s3://${bucket}/`, ...ctx.flags(state)]), 0);
    await writeFile(path.join(root, "a.html"), "a changed");
    await rm(path.join(root, "b.html"));
    await rename(path.join(root, "old"), path.join(root, "new"));
    await utimes(path.join(root, "dir/c.css"), new Date(1_600_000_000_000), new Date(1_600_000_000_000));
    const r = await ctx.cli(["push", root, `s3://${bucket}/`, ...ctx.flags(state)]);
    expectCode(r, 0);
    const head = await readHeadDoc(ctx.server.client, bucket, "");
    assert.equal(head.generation, 2);
    const journal = JSON.parse((await getBytes(ctx.server.client, bucket, ".fansync/journal/000000000002.json")).toString()) as { puts: { path: string; mtimeMs: number }[]; deletes: string[] };
    assert.deepEqual(journal.puts.map((p) => p.path).sort(), ["a.html", "dir/c.css", "new/name.txt"]);
    assert.deepEqual(journal.deletes.sort(), ["b.html", "old/name.txt"]);
    assert.equal(journal.puts.find((p) => p.path === "dir/c.css")?.mtimeMs, 1_600_000_000_000);
    const keys = (await listKeys(ctx.server.client, bucket)).filter((k) => !k.startsWith(".fansync/"));
    assert.deepEqual(keys, ["a.html", "dir/c.css", "dir/d.js", "new/name.txt"]);
    assert.equal((await getBytes(ctx.server.client, bucket, "new/name.txt")).toString(), "rename me please");
    assert.equal((await getBytes(ctx.server.client, bucket, "a.html")).toString(), "a changed");
  });

  test("renames with new files under the old names: every path holds its own bytes (no copy from an object the same push overwrites)", async () => {
    const bucket = await ctx.server.bucket("push-swap");
    const root = ctx.tmp("master");
    const state = ctx.tmp("state");
    const old: Record<string, string> = {};
    for (let i = 0; i < 40; i++) old[`f${i}.txt`] = `original ${i} `.repeat(20);
    await writeTree(root, old);
    expectCode(await ctx.cli(["push", root, `s3://${bucket}/`, ...ctx.flags(state)]), 0);
    for (let i = 0; i < 40; i++) {
      await rename(path.join(root, `f${i}.txt`), path.join(root, `moved-${i}.txt`));
      await writeFile(path.join(root, `f${i}.txt`), `replacement ${i} `.repeat(20));
    }
    // Writes to the new names arrive late: a server-side copy from f<i> would then read the
    // replacement bytes on a server that ignores CopySourceIfMatch (moto).
    const proxy = await startProxy(ctx.server.endpoint);
    try {
      proxy.fault = (q) => (q.method === "PUT" && q.url.includes("/moved-") ? { kind: "delay", ms: 1500 } : { kind: "none" });
      const flags = ctx.flags(state);
      flags[flags.indexOf("--endpoint-url") + 1] = proxy.url;
      expectCode(await ctx.cli(["push", root, `s3://${bucket}/`, ...flags]), 0);
    } finally {
      await proxy.close();
    }
    for (let i = 0; i < 40; i++) {
      assert.equal((await getBytes(ctx.server.client, bucket, `moved-${i}.txt`)).toString(), `original ${i} `.repeat(20), `moved-${i}.txt`);
      assert.equal((await getBytes(ctx.server.client, bucket, `f${i}.txt`)).toString(), `replacement ${i} `.repeat(20), `f${i}.txt`);
    }
    // And a node that pulls it gets exactly that (its download checks each object against the manifest).
    const node = ctx.tmp("node");
    expectCode(await ctx.cli(["pull", `s3://${bucket}/`, node, ...ctx.flags(ctx.tmp("nstate"))]), 0);
    assert.equal(await readFile(path.join(node, "moved-7.txt"), "utf8"), "original 7 ".repeat(20));
  });

  test("--dry-run prints the plan and changes nothing", async () => {
    const bucket = await ctx.server.bucket("push-dry");
    const root = ctx.tmp("master");
    const state = ctx.tmp("state");
    await writeTree(root, { "x.html": "x", "y.html": "y" });
    expectCode(await ctx.cli(["push", root, `s3://${bucket}/p`, ...ctx.flags(state)]), 0);
    await writeFile(path.join(root, "x.html"), "x2");
    await writeFile(path.join(root, "z.html"), "z");
    const r = await ctx.cli(["push", root, `s3://${bucket}/p`, ...ctx.flags(state), "--dry-run"]);
    expectCode(r, 0);
    assert.deepEqual(r.logs.filter((l) => l.op === "put").map((l) => l.path).sort(), ["x.html", "z.html"]);
    assert.equal((await readHeadDoc(ctx.server.client, bucket, "p/")).generation, 1);
    assert.equal((await getBytes(ctx.server.client, bucket, "p/x.html")).toString(), "x");
    assert.ok(!(await listKeys(ctx.server.client, bucket, "p/z")).length);
  });

  test("the guard refuses an empty or missing docroot and a mass delete, unless --force", async () => {
    const bucket = await ctx.server.bucket("push-guard");
    const root = ctx.tmp("master");
    const state = ctx.tmp("state");
    const files: Record<string, string> = {};
    for (let i = 0; i < 10; i++) files[`f${i}.html`] = `file ${i}`;
    await writeTree(root, files);
    expectCode(await ctx.cli(["push", root, `s3://${bucket}/s`, ...ctx.flags(state)]), 0);
    for (let i = 0; i < 10; i++) await rm(path.join(root, `f${i}.html`));
    const empty = await ctx.cli(["push", root, `s3://${bucket}/s`, ...ctx.flags(state)]);
    expectCode(empty, 5);
    assert.match(empty.stderr, /refusing to publish an empty docroot/);
    const missing = await ctx.cli(["push", path.join(root, "nope"), `s3://${bucket}/s`, ...ctx.flags(state)]);
    expectCode(missing, 9);
    assert.match(missing.stderr, /does not exist/);
    await writeTree(root, { "f0.html": "file 0", "f1.html": "file 1", "f2.html": "file 2" });
    const mass = await ctx.cli(["push", root, `s3://${bucket}/s`, ...ctx.flags(state)]);
    expectCode(mass, 5);
    assert.match(mass.stderr, /refusing to delete 7 of 10 files/);
    assert.equal((await listKeys(ctx.server.client, bucket, "s/f")).length, 10, "nothing was deleted");
    expectCode(await ctx.cli(["push", root, `s3://${bucket}/s`, ...ctx.flags(state), "--max-delete", "7"]), 0);
    assert.deepEqual(await listKeys(ctx.server.client, bucket, "s/f"), ["s/f0.html", "s/f1.html", "s/f2.html"]);
  });

  test("filters: excluded paths and the state dir are never uploaded", async () => {
    const bucket = await ctx.server.bucket("push-filter");
    const root = ctx.tmp("master");
    await writeTree(root, { "keep.html": "k", "x.tmp": "t", "cache/a.html": "c", "logs/keep.log": "l", "logs/drop.log": "d" });
    const r = await ctx.cli(["push", root, `s3://${bucket}/`, ...ctx.flags(path.join(root, "..", "st-" + path.basename(root))), "--exclude", "*.tmp", "--exclude", "cache/", "--exclude", "*.log", "--include", "keep.log"]);
    expectCode(r, 0);
    const keys = (await listKeys(ctx.server.client, bucket)).filter((k) => !k.startsWith(".fansync/"));
    assert.deepEqual(keys, ["keep.html", "logs/keep.log"]);
    const inside = await ctx.cli(["push", root, `s3://${bucket}/`, ...ctx.flags(path.join(root, "state"))]);
    expectCode(inside, 2);
    assert.match(inside.stderr, /inside the docroot/);
  });

  test("the write lease is released by overwriting it, never deleted: no delete marker, and push after push works on a versioned bucket", async (t) => {
    const bucket = await ctx.server.bucket("push-lease", { versioning: true });
    const versioned = await versioningSupport(ctx.server.client, bucket);
    if (versioned !== undefined) t.diagnostic(`${ctx.server.label}: ${versioned}; the lease is checked on an unversioned bucket`);
    const root = ctx.tmp("master");
    const state = ctx.tmp("state");
    const lease = "l/.fansync/lease.json";
    for (let i = 1; i <= 3; i++) {
      await writeTree(root, { "index.html": `<h1>${i}</h1>` });
      expectCode(await ctx.cli(["push", root, `s3://${bucket}/l`, ...ctx.flags(state)]), 0);
      assert.equal((await readHeadDoc(ctx.server.client, bucket, "l/")).generation, i);
      const doc = JSON.parse((await getBytes(ctx.server.client, bucket, lease)).toString()) as { writer: string; released?: boolean; expires: string };
      assert.equal(doc.released, true, `after push ${i} lease.json is there and says released`);
      assert.ok(Date.parse(doc.expires) <= Date.now(), "a released lease has expired for readers that predate `released`");
    }
    if (versioned === undefined) {
      const v = await ctx.server.client.send(new ListObjectVersionsCommand({ Bucket: bucket, Prefix: lease }));
      assert.deepEqual(v.DeleteMarkers ?? [], [], "no delete marker on lease.json");
    }
  });

  test("a lease.json an older fansync deleted (a delete marker on a versioned bucket) does not stop the next push", async (t) => {
    const bucket = await ctx.server.bucket("push-oldlease", { versioning: true });
    const versioned = await versioningSupport(ctx.server.client, bucket);
    if (versioned !== undefined) return t.skip(`${ctx.server.label}: ${versioned}`);
    const root = ctx.tmp("master");
    const state = ctx.tmp("state");
    await writeTree(root, { "index.html": "<h1>one</h1>" });
    expectCode(await ctx.cli(["push", root, `s3://${bucket}/o`, ...ctx.flags(state)]), 0);
    // What fansync up to this change did at the end of each push: delete lease.json.
    await ctx.server.client.send(new DeleteObjectCommand({ Bucket: bucket, Key: "o/.fansync/lease.json" }));
    await writeTree(root, { "index.html": "<h1>two</h1>" });
    const r = await ctx.cli(["push", root, `s3://${bucket}/o`, ...ctx.flags(state)]);
    expectCode(r, 0);
    assert.equal((await readHeadDoc(ctx.server.client, bucket, "o/")).generation, 2);
    assert.equal((await getBytes(ctx.server.client, bucket, "o/index.html")).toString(), "<h1>two</h1>");
  });

  test("usage and remote errors: malformed URL, unreachable endpoint, missing bucket", async () => {
    const root = ctx.tmp("master");
    const state = ctx.tmp("state");
    await writeTree(root, { "a.html": "a" });
    const bad = await ctx.cli(["push", root, "bucket/prefix", ...ctx.flags(state)]);
    expectCode(bad, 2);
    assert.match(bad.stderr, /not an s3 location/);
    const down = await ctx.cli(["push", root, "s3://some-bucket/x", "--endpoint-url", "http://127.0.0.1:9", "--state-dir", state]);
    expectCode(down, 7);
    assert.match(down.stderr, /cannot reach http:\/\/127\.0\.0\.1:9/);
    const nob = await ctx.cli(["push", root, "s3://no-such-bucket-fansync/x", ...ctx.flags(state)]);
    expectCode(nob, 7);
    assert.match(nob.stderr, /bucket does not exist/);
  });
});
