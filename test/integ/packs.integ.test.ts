/**
 * Pack objects (issue 14) against a real S3 server: a first pull takes small files from a few large
 * GETs and converges byte for byte; incremental pulls and path-keyed (CDN) reads are unchanged; a
 * corrupt or missing pack and a hostile pack index fall back to path-keyed objects; regions get the
 * packs from the replicator.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { readdir, rm } from "node:fs/promises";
import { createHash } from "node:crypto";
import path from "node:path";
import { gunzipSync, gzipSync } from "node:zlib";
import { DeleteObjectCommand } from "@aws-sdk/client-s3";
import { describe, test } from "node:test";
import { startCli, waitCli } from "../helpers/cli.ts";
import { expectCode, useServer } from "../helpers/ctx.ts";
import { startProxy } from "../helpers/proxy.ts";
import { getBytes, headObject, listKeys, putBytes, readHeadDoc, readManifestDoc } from "../helpers/s3.ts";
import { serverLabel } from "../helpers/s3-server.ts";
import { seededBytes, snapshot, writeTree } from "../helpers/tree.ts";

const ctx = useServer();
const notStatus = (rel: string) => rel.startsWith("status.");
const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");

/** A site of `n` small files (0..6 KiB) and one file too big to pack. */
function site(n: number, seed = 1): Record<string, Buffer> {
  const out: Record<string, Buffer> = {};
  for (let i = 0; i < n; i++) out[`d${i % 5}/f${i}.html`] = seededBytes(seed * 100_000 + i, (i * 37) % 6000);
  out["media/big.bin"] = seededBytes(seed, 300 * 1024);
  return out;
}

/** A master with a pushed site, and a way to pull it into fresh nodes through a counting proxy. */
async function setup(tag: string, n = 300) {
  const bucket = await ctx.server.bucket(tag);
  const master = ctx.tmp("master");
  const mstate = ctx.tmp("mstate");
  await writeTree(master, site(n));
  const url = `s3://${bucket}/site/`;
  const push = async (...extra: string[]) => {
    const r = await ctx.cli(["push", master, url, "--packs", ...ctx.flags(mstate), ...extra]);
    expectCode(r, 0);
    return r;
  };
  /** Pull `from` into `node` (default: a fresh one) through a proxy; the GETs it sent. */
  const pull = async (opts: { node?: string; nstate?: string; from?: string; code?: number } = {}) => {
    const proxy = await startProxy(ctx.server.endpoint);
    const node = opts.node ?? ctx.tmp("node");
    const nstate = opts.nstate ?? ctx.tmp("nstate");
    try {
      const r = await ctx.cli(["pull", opts.from ?? url, node, "--endpoint-url", proxy.url, "--state-dir", nstate, "--log-format", "json", "--status-file", path.join(node, "status.json")]);
      expectCode(r, opts.code ?? 0);
      const gets = proxy.requests.filter((q) => q.method === "GET");
      return { r, node, nstate, gets: gets.length, packGets: gets.filter((q) => /\.fansync\/packs\/[0-9a-f]{64}\.pack/.test(q.url)).length, indexGets: gets.filter((q) => q.url.includes(".fansync/packs/index.json.gz")).length };
    } finally {
      await proxy.close();
    }
  };
  await push();
  return { bucket, master, mstate, url, push, pull };
}

const packKeysOf = async (bucket: string, prefix = "site/") => (await listKeys(ctx.server.client, bucket, `${prefix}.fansync/packs/`)).filter((k) => k.endsWith(".pack"));

describe(`packs (${serverLabel()})`, () => {
  test("a fresh pull with packs is byte-identical and sends a few GETs instead of one per file; path-keyed objects stay", async () => {
    const s = await setup("packs-first");
    const packs = await packKeysOf(s.bucket);
    assert.equal(packs.length, 1, "301 files of ~3 KiB: one pack");
    const p = await s.pull();
    assert.deepEqual(await snapshot(p.node, notStatus), await snapshot(s.master));
    assert.equal(p.packGets, 1);
    assert.equal(p.indexGets, 1);
    // head, manifest, index, pack, the big file (and nothing per small file).
    assert.ok(p.gets <= 8, `a first pull of 301 files sent ${p.gets} GETs`);
    assert.ok(p.r.logs.some((l) => l.msg === "files taken from packs" && l.files === 300), "300 small files came from the pack");
    // The bucket still serves every file path-keyed (a CDN origin), with its metadata.
    const b = await getBytes(ctx.server.client, s.bucket, "site/d3/f8.html");
    assert.deepEqual(b, site(300)["d3/f8.html"]);
    assert.ok((await headObject(ctx.server.client, s.bucket, "site/d3/f8.html")).Metadata?.sha256);
  });

  test("incremental pulls are unchanged: a small change rewrites no pack and comes path-keyed", async () => {
    const s = await setup("packs-incr");
    const first = await s.pull();
    const indexBefore = (await headObject(ctx.server.client, s.bucket, "site/.fansync/packs/index.json.gz")).ETag;
    await writeTree(s.master, { "d1/f1.html": "changed\n", "d2/new.html": "new\n" });
    const r = await s.push();
    assert.ok(!r.logs.some((l) => l.msg === "packs written"), "two changed files: the index stays");
    assert.equal((await headObject(ctx.server.client, s.bucket, "site/.fansync/packs/index.json.gz")).ETag, indexBefore);
    const p = await s.pull({ node: first.node, nstate: first.nstate });
    assert.deepEqual(await snapshot(p.node, notStatus), await snapshot(s.master));
    assert.equal(p.indexGets + p.packGets, 0, "an incremental pull reads no pack index");
    // A fresh node now: the pack gives the unchanged files, the two changed ones come path-keyed.
    const fresh = await s.pull();
    assert.deepEqual(await snapshot(fresh.node, notStatus), await snapshot(s.master));
    assert.equal(fresh.packGets, 1);
    assert.ok(fresh.gets <= 10, `${fresh.gets} GETs`);
  });

  test("a node behind by many files takes them from the new pack: 1,200 changed files, a few GETs", async () => {
    const s = await setup("packs-behind");
    const first = await s.pull();
    const changed: Record<string, Buffer> = {};
    for (let i = 0; i < 1200; i++) changed[`new/n${i}.txt`] = seededBytes(9000 + i, 300);
    await writeTree(s.master, changed);
    const r = await s.push();
    assert.ok(r.logs.some((l) => l.msg === "packs written" && l.packsWritten === 1), "1,200 files in no pack: a new pack");
    const p = await s.pull({ node: first.node, nstate: first.nstate });
    assert.deepEqual(await snapshot(p.node, notStatus), await snapshot(s.master));
    assert.equal(p.packGets, 1, "only the new pack: the old one holds nothing this node lacks");
    assert.ok(p.gets <= 8, `${p.gets} GETs for 1,200 new files`);
  });

  test("a pull killed after its pack stage leaves no file under a final name; the next run cleans up and converges", async () => {
    const s = await setup("packs-kill");
    const proxy = await startProxy(ctx.server.endpoint);
    const node = ctx.tmp("node");
    const nstate = ctx.tmp("nstate");
    const args = ["pull", s.url, node, "--state-dir", nstate, "--log-format", "json"];
    try {
      // The pack is staged; the one path-keyed download (too big to pack) never answers.
      proxy.fault = (q) => (q.url.includes("media/big.bin") ? { kind: "hold", until: new Promise(() => {}) } : { kind: "none" });
      const child = startCli([...args, "--endpoint-url", proxy.url]);
      await proxy.waitFor((q) => q.url.includes("media/big.bin"));
      child.kill("SIGKILL");
      await waitCli(child);
      const left = [...(await snapshot(node)).keys()];
      assert.ok(left.length >= 300, `the pack's files were staged (${left.length})`);
      assert.deepEqual(left.filter((p) => !path.basename(p).startsWith(".fansync-tmp-")), [], "only temp files, nothing under a final name");
    } finally {
      await proxy.close();
    }
    expectCode(await ctx.cli([...args, "--endpoint-url", ctx.server.endpoint]), 0);
    assert.deepEqual(await snapshot(node), await snapshot(s.master), "converged, temp files gone");
  });

  test("a corrupt pack, then a missing one: files come path-keyed and the pull converges", async () => {
    const s = await setup("packs-corrupt");
    const [key] = await packKeysOf(s.bucket);
    const bytes = await getBytes(ctx.server.client, s.bucket, key as string);
    const bad = Buffer.from(bytes);
    bad[Math.floor(bad.length / 2)] ^= 0xff;
    await putBytes(ctx.server.client, s.bucket, key as string, bad);
    const p1 = await s.pull();
    assert.deepEqual(await snapshot(p1.node, notStatus), await snapshot(s.master));
    assert.ok(p1.r.logs.some((l) => l.msg === "a pack's bytes are not the manifest's: fetching the file path-keyed"));
    assert.ok(p1.gets < 20, `one file fell back (${p1.gets} GETs)`);
    await ctx.server.client.send(new DeleteObjectCommand({ Bucket: s.bucket, Key: key }));
    const p2 = await s.pull();
    assert.deepEqual(await snapshot(p2.node, notStatus), await snapshot(s.master));
    assert.ok(p2.gets > 300, "every small file came path-keyed");
    // The next push that repacks heals it.
    const r = await s.push("--repack");
    assert.ok(r.logs.some((l) => l.msg === "packs written" && l.reason === "repack"));
    const p3 = await s.pull();
    assert.deepEqual(await snapshot(p3.node, notStatus), await snapshot(s.master));
    assert.equal(p3.packGets, 1);
  });

  test("a hostile pack index is refused with a clear error; nothing lands outside the docroot and the pull converges", async () => {
    const s = await setup("packs-hostile");
    const [key] = await packKeysOf(s.bucket);
    const id = path.basename(key as string, ".pack");
    const sha = "a".repeat(64);
    const hostile = [
      [["../escape.html", 0, 10, sha]],
      [["d0/f0.html", 0, 100, sha], ["d0/f5.html", 50, 100, sha]],
      [["d0/f0.html", 0, 2 ** 40, sha]],
    ];
    const parent = ctx.tmp("parent");
    for (const files of hostile) {
      await putBytes(ctx.server.client, s.bucket, "site/.fansync/packs/index.json.gz", gzipSync(JSON.stringify({ format: "fansync-packs/1", generation: 1, time: "", packs: [{ id, size: 10_000_000, files }], retiring: [] })));
      const node = path.join(parent, "www");
      const p = await s.pull({ node, nstate: ctx.tmp("ns") });
      const refused = p.r.logs.find((l) => l.msg === "pack index refused: fetching every file path-keyed");
      assert.ok(refused, "the refusal is logged");
      assert.equal(refused.level, 50, "as an error");
      assert.deepEqual(await snapshot(node, notStatus), await snapshot(s.master));
      assert.deepEqual(await readdir(parent), ["www"], "nothing outside the docroot");
      assert.ok(!existsSync(path.join(parent, "escape.html")));
      await rm(node, { recursive: true });
    }
  });

  test("signed generations: a pack holding other bytes than the signed manifest is never applied, whatever its index claims", async () => {
    const keyFile = path.join(ctx.tmp("key"), "signing.key");
    expectCode(await ctx.cli(["keygen", keyFile]), 0);
    const s = await setup("packs-signed");
    await s.push("--signing-key", keyFile);
    // Someone who can write the bucket (not the key) plants a pack of their own bytes, and an
    // index whose entries carry the signed manifest's sizes and sha256s so a node would pick them.
    const { entries } = await readManifestDoc(ctx.server.client, s.bucket, "site/");
    const victims = entries.filter((x) => (x.size as number) > 0).slice(0, 20);
    const evil = Buffer.concat(victims.map((x) => Buffer.alloc(x.size as number, "!")));
    const id = sha256(evil);
    let offset = 0;
    const files = victims.map((x) => {
      const f = [x.path, offset, x.size, x.sha256];
      offset += x.size as number;
      return f;
    });
    await putBytes(ctx.server.client, s.bucket, `site/.fansync/packs/${id}.pack`, evil);
    await putBytes(ctx.server.client, s.bucket, "site/.fansync/packs/index.json.gz", gzipSync(JSON.stringify({ format: "fansync-packs/1", generation: 2, time: "", packs: [{ id, size: evil.length, files }], retiring: [] })));
    const node = ctx.tmp("node");
    const r = await ctx.cli(["pull", s.url, node, ...ctx.flags(ctx.tmp("ns")), "--trusted-key", `${keyFile}.pub`]);
    expectCode(r, 0);
    assert.deepEqual(await snapshot(node), await snapshot(s.master), "every file is the signed one");
    assert.equal(r.logs.filter((l) => l.msg === "a pack's bytes are not the manifest's: fetching the file path-keyed").length, victims.length);
  });

  test("watch --packs writes packs after its generations: 1,000 new small files become a new pack", async () => {
    const bucket = await ctx.server.bucket("packs-watch");
    const master = ctx.tmp("master");
    await writeTree(master, site(50));
    const child = startCli(["watch", master, `s3://${bucket}/site/`, "--packs", ...ctx.flags(ctx.tmp("wstate")), "--delay", "200ms", "--max-delay", "2s"]);
    const packsNamed = async () => {
      const bytes = await getBytes(ctx.server.client, bucket, "site/.fansync/packs/index.json.gz").catch(() => undefined);
      return bytes ? (JSON.parse(gunzipSync(bytes).toString("utf8")) as { packs: { files: unknown[] }[] }).packs : [];
    };
    const until = async (what: string, ok: () => Promise<boolean>) => {
      for (const deadline = Date.now() + 30_000; !(await ok()); await new Promise((r) => setTimeout(r, 200))) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n${child.out.stdout.slice(-2000)}`);
      }
    };
    try {
      await until("the first pack", async () => (await packsNamed()).length === 1);
      const more: Record<string, Buffer> = {};
      for (let i = 0; i < 1200; i++) more[`new/n${i}.txt`] = seededBytes(7000 + i, 200);
      await writeTree(master, more);
      await until("a second pack", async () => (await packsNamed()).length >= 2);
      // The last batch may still be on its way: stop the daemon once every file is published.
      const total = Object.keys(site(50)).length + 1200;
      await until(`${total} files published`, async () => Number((await readHeadDoc(ctx.server.client, bucket, "site/").catch(() => ({ files: 0 }))).files) === total);
    } finally {
      child.kill("SIGTERM");
    }
    expectCode(await waitCli(child), 0);
    const node = ctx.tmp("node");
    expectCode(await ctx.cli(["pull", `s3://${bucket}/site/`, node, ...ctx.flags(ctx.tmp("ns"))]), 0);
    assert.deepEqual(await snapshot(node), await snapshot(master));
  });

  test("replicate carries packs and index to a region; a fresh node pulls from the region with a few GETs", async () => {
    const s = await setup("packs-primary");
    const region = await ctx.server.bucket("packs-region");
    const rurl = `s3://${region}/www/`;
    const rstate = ctx.tmp("rstate");
    const rep = await ctx.cli(["replicate", s.url, rurl, ...ctx.flags(rstate)]);
    expectCode(rep, 0);
    assert.ok(rep.logs.some((l) => l.msg === "region's packs follow the primary's" && l.copied === 1));
    assert.deepEqual((await packKeysOf(region, "www/")).map((k) => path.basename(k)), (await packKeysOf(s.bucket)).map((k) => path.basename(k)));
    const p = await s.pull({ from: rurl });
    assert.deepEqual(await snapshot(p.node, notStatus), await snapshot(s.master));
    assert.equal(p.packGets, 1);
    assert.ok(p.gets <= 8, `${p.gets} GETs from the region`);
    // A second one-shot run with nothing new copies no index again (the ETag carried is remembered).
    const again = await ctx.cli(["replicate", s.url, rurl, ...ctx.flags(rstate)]);
    expectCode(again, 0);
    assert.ok(!again.logs.some((l) => l.msg === "region's packs follow the primary's"), "nothing carried twice");
  });
});
