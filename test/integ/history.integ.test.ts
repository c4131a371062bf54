import assert from "node:assert/strict";
import { readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { describe, test } from "node:test";
import { gunzipSync } from "node:zlib";
import { DeleteObjectCommand, HeadObjectCommand } from "@aws-sdk/client-s3";
import { startCli, waitCli } from "../helpers/cli.ts";
import { startProxy } from "../helpers/proxy.ts";
import { expectCode, useServer } from "../helpers/ctx.ts";
import { getBytes, headObject, listKeys, readHeadDoc } from "../helpers/s3.ts";
import { type FileSnap, seededBytes, snapshot, writeTree } from "../helpers/tree.ts";
import { serverLabel, versioningSupport } from "../helpers/s3-server.ts";

const ctx = useServer();

// Generation 1 of the test site; generations 2 and 3 edit, add and delete (see threeGenerations).
const GEN1: Record<string, string | Buffer> = {
  "index.html": "<h1>home v1</h1>",
  "css/site.css": "body { color: red }",
  "about.html": "<p>about v1</p>",
  "img/logo.png": seededBytes(11, 5000),
  "keep.txt": "never changes",
  "empty.txt": "",
};

interface Site {
  readonly url: string;
  readonly master: string;
  readonly state: string;
  /** The master's docroot as generation 1 published it. */
  readonly gen1: Map<string, FileSnap>;
}

/**
 * Publish three generations:
 *   1: GEN1 (6 files)
 *   2: index.html edited; news.html added; backup/about-old.html added (generation 1's about.html
 *      bytes, so a rollback can copy it server-side); img/logo.png deleted   → +2 ~1 -1
 *   3: about.html edited; blog/post.html added; css/site.css deleted        → +1 ~1 -1
 */
async function threeGenerations(bucket: string): Promise<Site> {
  const master = ctx.tmp("master");
  const state = ctx.tmp("state");
  const url = `s3://${bucket}/www`;
  // A Cache-Control rule, so that restored objects can be checked to keep their headers.
  const push = async () => expectCode(await ctx.cli(["push", master, url, ...ctx.flags(state), "--cache-control", "*.html=public, max-age=60"]), 0);
  await writeTree(master, GEN1);
  await push();
  const gen1 = await snapshot(master);
  await writeTree(master, { "index.html": "<h1>home v2</h1>", "news.html": "news", "backup/about-old.html": GEN1["about.html"] as string });
  await rm(path.join(master, "img/logo.png"));
  await push();
  await writeTree(master, { "about.html": "<p>about v3</p>", "blog/post.html": "post" });
  await rm(path.join(master, "css/site.css"));
  await push();
  return { url, master, state, gen1 };
}

/** Every key of the bucket with its ETag: what "the bucket is unchanged" compares. */
async function bucketState(bucket: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const k of await listKeys(ctx.server.client, bucket)) out.set(k, (await headObject(ctx.server.client, bucket, k)).ETag ?? "");
  return out;
}

/** A node's docroot must hold exactly generation 1: same paths, bytes, mode and mtime. */
async function assertGen1(node: string, site: Site): Promise<void> {
  const snap = await snapshot(node);
  assert.deepEqual([...snap.keys()].sort(), [...site.gen1.keys()].sort(), "same paths as generation 1 (deleted ones gone)");
  for (const [p, want] of site.gen1) assert.deepEqual(snap.get(p), want, p);
}

/** Generation 1's bytes straight from GEN1 (the master's docroot moved on). */
async function assertGen1Bytes(node: string): Promise<void> {
  for (const [p, content] of Object.entries(GEN1)) assert.ok((await readFile(path.join(node, p))).equals(Buffer.from(content)), `bytes of ${p}`);
}

const ops = (logs: readonly Record<string, unknown>[]) =>
  Object.fromEntries(logs.filter((l) => l.msg === "restored").map((l) => [l.path as string, l.from === undefined ? String(l.op) : `${String(l.op)} ${String(l.from)}`]));

describe(`history and rollback (${serverLabel()})`, () => {
  test("log shows the generations; rollback without a source refuses and changes nothing; with --from it publishes generation 4 and nodes get generation 1 back", async () => {
    // Unversioned: without old versions the rollback needs --from (the versioned case is below).
    const bucket = await ctx.server.bucket("hist", { versioning: false });
    const site = await threeGenerations(bucket);
    const { url } = site;
    const flags = ctx.flags(ctx.tmp("op-state"));

    const text = await ctx.cli(["log", url, ...flags]);
    expectCode(text, 0);
    assert.match(text.stdout, /3 generation\(s\) retained \(1\.\.3\)/);
    assert.match(text.stdout, /generation 3 \(head\) .*\n  7 file\(s\), [^;]+; \+1 added ~1 changed -1 deleted\n/);
    assert.match(text.stdout, /generation 2 .*\n  7 file\(s\), [^;]+; \+2 added ~1 changed -1 deleted\n/);
    assert.match(text.stdout, /generation 1 .*\n  6 file\(s\), [^;]+; \+6 added ~0 changed -0 deleted\n/);
    const json = await ctx.cli(["log", url, ...flags, "--json", "--verbose"]);
    expectCode(json, 0);
    const doc = JSON.parse(json.stdout) as { head: { generation: number }; retained: number[]; generations: { generation: number; added: number; changed: number; deleted: number; writer: string; paths: { added: string[]; changed: string[]; deleted: string[] } }[] };
    assert.equal(doc.head.generation, 3);
    assert.deepEqual(doc.retained, [1, 2, 3]);
    assert.deepEqual(doc.generations.map((g) => [g.generation, g.added, g.changed, g.deleted]), [[3, 1, 1, 1], [2, 2, 1, 1], [1, 6, 0, 0]]);
    assert.deepEqual(doc.generations[0]?.paths, { added: ["blog/post.html"], changed: ["about.html"], deleted: ["css/site.css"] });
    assert.ok(doc.generations.every((g) => typeof g.writer === "string" && g.writer !== ""), "every generation names its writer");
    const verbose = await ctx.cli(["log", url, ...flags, "-v", "--limit", "1"]);
    expectCode(verbose, 0);
    assert.match(verbose.stdout, /    \+ blog\/post\.html\n    ~ about\.html\n    - css\/site\.css\n$/);
    assert.ok(!verbose.stdout.includes("generation 2"), "--limit 1 shows only the head");

    // A node that is at generation 3 before the rollback.
    const nodeB = ctx.tmp("node-b");
    const nodeBState = ctx.tmp("pull-b");
    expectCode(await ctx.cli(["pull", url, nodeB, ...ctx.flags(nodeBState)]), 0);
    assert.equal((await readFile(path.join(nodeB, "about.html"))).toString(), "<p>about v3</p>");

    const before = await bucketState(bucket);
    const refused = await ctx.cli(["rollback", url, "--to", "1", ...flags]);
    expectCode(refused, 2);
    assert.match(refused.stderr, /3 file\(s\) have no source .*: css\/site\.css, img\/logo\.png, index\.html; nothing was changed/);
    assert.match(refused.stderr, /--from/);
    assert.equal((await readHeadDoc(ctx.server.client, bucket, "www/")).generation, 3);
    assert.deepEqual(await bucketState(bucket), before, "no object was written or deleted");

    // The backup holds generation 1's files at other paths: matched by sha256, not by name.
    const backup = ctx.tmp("backup");
    await writeTree(backup, Object.fromEntries(Object.entries(GEN1).map(([p, c]) => [`site-2024/${p}`, c])));
    await writeTree(backup, { "unrelated.bin": seededBytes(3, 5000) });

    const dry = await ctx.cli(["rollback", url, "--to", "1", "--from", backup, "--dry-run", ...flags]);
    expectCode(dry, 0);
    assert.match(dry.stdout, /dry run: rolling .* back to generation 1 would publish generation 4: 0 copied from old versions, 1 copied from current objects, 3 uploaded \([^)]+\), 0 metadata-only, 2 unchanged, 3 deleted; nothing changed/);
    assert.deepEqual(dry.logs.filter((l) => l.op === "delete").map((l) => l.path), ["backup/about-old.html", "blog/post.html", "news.html"]);
    assert.deepEqual(await bucketState(bucket), before, "a dry run changes nothing");

    const guarded = await ctx.cli(["rollback", url, "--to", "1", "--from", backup, "--max-delete", "2", ...flags]);
    expectCode(guarded, 5);
    assert.match(guarded.stderr, /refusing to delete 3 of 7 files/);
    assert.deepEqual(await bucketState(bucket), before, "the delete guard refused before any write");

    const done = await ctx.cli(["rollback", url, "--to", "1", "--from", backup, ...flags]);
    expectCode(done, 0);
    assert.deepEqual(ops(done.logs), {
      // Dedup: generation 1's about.html still exists at backup/about-old.html: copied server-side.
      "about.html": "copy backup/about-old.html",
      "css/site.css": "upload site-2024/css/site.css",
      "img/logo.png": "upload site-2024/img/logo.png",
      "index.html": "upload site-2024/index.html",
    });
    assert.match(done.stdout, /generation 4 has the content of generation 1 \(was generation 3\)/);
    assert.match(done.stderr, /warning: a running uploader .* re-publishes the master's docroot/);
    const head = await readHeadDoc(ctx.server.client, bucket, "www/");
    assert.equal(head.generation, 4);
    assert.match(head.writer as string, /^rollback:/);
    // The journal is the delta from generation 3, so nodes apply it as a small journal.
    const journal = JSON.parse((await getBytes(ctx.server.client, bucket, "www/.fansync/journal/000000000004.json")).toString()) as { puts: { path: string }[]; deletes: string[] };
    assert.deepEqual(journal.puts.map((p) => p.path).sort(), ["about.html", "css/site.css", "img/logo.png", "index.html"]);
    assert.deepEqual([...journal.deletes].sort(), ["backup/about-old.html", "blog/post.html", "news.html"]);
    const keys = (await listKeys(ctx.server.client, bucket, "www/")).filter((k) => !k.startsWith("www/.fansync/"));
    assert.deepEqual(keys, Object.keys(GEN1).map((p) => `www/${p}`).sort(), "removed paths deleted after the head");
    for (const [p, c] of Object.entries(GEN1)) assert.ok((await getBytes(ctx.server.client, bucket, `www/${p}`)).equals(Buffer.from(c)), `object ${p}`);

    const nodeA = ctx.tmp("node-a");
    const fresh = await ctx.cli(["pull", url, nodeA, ...ctx.flags(ctx.tmp("pull-a"))]);
    expectCode(fresh, 0);
    await assertGen1(nodeA, site);
    await assertGen1Bytes(nodeA);
    // The node at generation 3 applies journal 4: downloads, then deletions.
    const back = await ctx.cli(["pull", url, nodeB, ...ctx.flags(nodeBState)]);
    expectCode(back, 0);
    await assertGen1(nodeB, site);
    await assertGen1Bytes(nodeB);

    const after = await ctx.cli(["log", url, ...flags, "--json"]);
    const g4 = (JSON.parse(after.stdout) as { generations: { generation: number; added: number; changed: number; deleted: number; writer: string }[] }).generations[0];
    assert.deepEqual([g4?.generation, g4?.added, g4?.changed, g4?.deleted], [4, 2, 2, 3]);
    assert.match(g4?.writer ?? "", /^rollback:/);
  });

  test("on a versioned bucket, rollback restores from old versions (checked to still exist) without --from", async (t) => {
    const bucket = await ctx.server.bucket("hist-ver");
    // Check what the server does rather than trusting a feature table: fauxqs answers 200 to
    // PutBucketVersioning but keeps no versions; some servers answer 501.
    const unsupported = await versioningSupport(ctx.server.client, bucket);
    if (unsupported !== undefined) return t.skip(`${ctx.server.label} does not keep object versions: ${unsupported}`);
    const site = await threeGenerations(bucket);
    const flags = ctx.flags(ctx.tmp("op-state"));
    const node = ctx.tmp("node");
    expectCode(await ctx.cli(["pull", site.url, node, ...ctx.flags(ctx.tmp("pull"))]), 0);
    // An old version that is gone (a lifecycle rule expired it) is checked for, not assumed:
    // without another source the rollback refuses before writing anything.
    const gen1 = gunzipSync(await getBytes(ctx.server.client, bucket, "www/.fansync/manifests/000000000001.ndjson.gz")).toString().split("\n").filter(Boolean).slice(1).map((l) => JSON.parse(l) as { path: string; versionId?: string });
    const logoVersion = gen1.find((e) => e.path === "img/logo.png")?.versionId;
    assert.ok(logoVersion, "versioned entries carry their VersionId");
    await ctx.server.client.send(new DeleteObjectCommand({ Bucket: bucket, Key: "www/img/logo.png", VersionId: logoVersion }));
    const before = await bucketState(bucket);
    const refused = await ctx.cli(["rollback", site.url, "--to", "1", ...flags]);
    expectCode(refused, 2);
    assert.match(refused.stderr, /1 file\(s\) have no source .*: img\/logo\.png;/);
    assert.deepEqual(await bucketState(bucket), before);
    const backup = ctx.tmp("backup");
    await writeTree(backup, { "img/logo.png": GEN1["img/logo.png"] as Buffer });
    const r = await ctx.cli(["rollback", site.url, "--to", "1", "--from", backup, ...flags]);
    expectCode(r, 0);
    // A copy of an old version onto its own key keeps that version's headers and metadata, also where
    // the server refuses such a copy with the metadata kept (LocalStack: 400 "copy an object to
    // itself") and fansync copies with MetadataDirective REPLACE instead.
    for (const p of ["about.html", "css/site.css", "index.html"]) {
      const old = await ctx.server.client.send(new HeadObjectCommand({ Bucket: bucket, Key: `www/${p}`, VersionId: gen1.find((e) => e.path === p)?.versionId }));
      const now = await headObject(ctx.server.client, bucket, `www/${p}`);
      assert.deepEqual([now.ContentType, now.CacheControl, now.Metadata], [old.ContentType, old.CacheControl, old.Metadata], `headers of ${p}`);
      assert.equal(now.Metadata?.sha256, site.gen1.get(p)?.sha256, `sha256 metadata of ${p}`);
    }
    // Every other changed or deleted path from its own old version, even about.html, whose bytes are
    // also at backup/about-old.html: the version is preferred.
    assert.deepEqual(ops(r.logs), { "about.html": "copy-version", "css/site.css": "copy-version", "img/logo.png": "upload img/logo.png", "index.html": "copy-version" });
    assert.match(r.stdout, /3 copied from old versions, 0 copied from current objects, 1 uploaded/);
    expectCode(await ctx.cli(["pull", site.url, node, ...ctx.flags(ctx.tmp("pull"))]), 0);
    await assertGen1Bytes(node);
    const fresh = ctx.tmp("fresh");
    expectCode(await ctx.cli(["pull", site.url, fresh, ...ctx.flags(ctx.tmp("pull-fresh"))]), 0);
    await assertGen1(fresh, site);
  });

  test("--to a generation that is current, pruned, in the future or not a number: a clear usage error; log marks the oldest kept generation", async () => {
    const bucket = await ctx.server.bucket("hist-retain");
    const master = ctx.tmp("master");
    const state = ctx.tmp("state");
    const url = `s3://${bucket}/p`;
    for (let i = 1; i <= 3; i++) {
      await writeTree(master, { "a.html": `a${i}`, [`f${i}.txt`]: `file ${i}` });
      expectCode(await ctx.cli(["push", master, url, ...ctx.flags(state), "--retain", "2"]), 0);
    }
    const flags = ctx.flags(ctx.tmp("op-state"));
    const cases: [string[], RegExp][] = [
      [["--to", "1"], /generation 1 is not retained .*retained: 2\.\.3/],
      [["--to", "3"], /generation 3 is the current generation/],
      [["--to", "9"], /generation 9 does not exist .*the current generation is 3/],
      [["--to", "abc"], /--to "abc" is not a generation number/],
      [["--to", "0"], /--to "0" is not a generation number/],
      [[], /no --to <generation> given/],
    ];
    for (const [args, want] of cases) {
      const r = await ctx.cli(["rollback", url, ...args, ...flags]);
      expectCode(r, 2);
      assert.match(r.stderr, want, args.join(" "));
    }
    assert.equal((await readHeadDoc(ctx.server.client, bucket, "p/")).generation, 3);
    const log = await ctx.cli(["log", url, ...flags]);
    expectCode(log, 0);
    assert.match(log.stdout, /2 generation\(s\) retained \(2\.\.3\)/);
    assert.match(log.stdout, /generation 2 .*\n  3 file\(s\), [^;]+; 2 added or changed -0 deleted \(generation 1 is pruned\)\n/);
    assert.ok(!/generation 1 /.test(log.stdout.replace("generation 1 is pruned", "")));
    const none = await ctx.cli(["log", `s3://${bucket}/nothing-here`, ...flags]);
    expectCode(none, 2);
    assert.match(none.stderr, /nothing is published/);
  });

  test("a restore that fails publishes nothing and deletes nothing (exit 4); the same rollback run again completes", async () => {
    // Unversioned: css/site.css comes from --from (a PUT), and the limit without versioning is checked.
    const bucket = await ctx.server.bucket("hist-fail", { versioning: false });
    const site = await threeGenerations(bucket);
    const backup = ctx.tmp("backup");
    await writeTree(backup, GEN1);
    const opState = ctx.tmp("op-state");
    // css/site.css is uploaded from --from; the server refuses that one PUT.
    const proxy = await startProxy(ctx.server.endpoint);
    proxy.fault = (req) => (req.method === "PUT" && req.url.includes("/www/css/site.css") ? { kind: "status", status: 403, code: "AccessDenied" } : { kind: "none" });
    const failed = await ctx.cli(["rollback", site.url, "--to", "1", "--from", backup, "--endpoint-url", proxy.url, "--state-dir", opState, "--log-format", "json"]).finally(() => proxy.close());
    expectCode(failed, 4);
    assert.match(failed.stderr, /1 of 4 transfers failed; no generation was published and nothing was deleted; run the same rollback again \(first: css\/site\.css/);
    // A 403 is the server's decision, not a glitch: no promise that the next run retries it away.
    assert.doesNotMatch(failed.stderr, /the next run retries/);
    assert.match(failed.stderr, /what to do: 1 of the failures is a refusal by the server \(HTTP 4xx\), which a rerun meets again: fix its cause first/);
    assert.equal((await readHeadDoc(ctx.server.client, bucket, "www/")).generation, 3);
    for (const p of ["news.html", "blog/post.html", "backup/about-old.html"]) assert.ok(await getBytes(ctx.server.client, bucket, `www/${p}`), `${p} not deleted`);
    // The documented limit without versioning: paths already rewritten no longer hold the bytes the
    // head names. It is said, and a node refuses them (If-Match) rather than mixing generations.
    assert.ok(failed.logs.some((l) => typeof l.msg === "string" && l.msg.includes("already hold the old bytes")), "the run says which state it left");
    const early = ctx.tmp("early");
    expectCode(await ctx.cli(["pull", site.url, early, ...ctx.flags(ctx.tmp("pull-early"))]), 4);
    assert.deepEqual([...(await snapshot(early)).keys()], [], "nothing committed on the node");
    const again = await ctx.cli(["rollback", site.url, "--to", "1", "--from", backup, ...ctx.flags(opState)]);
    expectCode(again, 0);
    const node = ctx.tmp("node");
    expectCode(await ctx.cli(["pull", site.url, node, ...ctx.flags(ctx.tmp("pull"))]), 0);
    await assertGen1(node, site);
    await assertGen1Bytes(node);
    const keys = (await listKeys(ctx.server.client, bucket, "www/")).filter((k) => !k.startsWith("www/.fansync/"));
    assert.deepEqual(keys, Object.keys(GEN1).map((p) => `www/${p}`).sort());
  });

  test("rollback refuses while an uploader holds the write lease (exit 6: stop the uploader first), and runs once it stopped", async () => {
    const bucket = await ctx.server.bucket("hist-lease");
    const master = ctx.tmp("master");
    const state = ctx.tmp("state");
    const url = `s3://${bucket}/site`;
    await writeTree(master, { "a.html": "one", "b.html": "b" });
    expectCode(await ctx.cli(["push", master, url, ...ctx.flags(state)]), 0);
    await writeFile(path.join(master, "a.html"), "two");
    expectCode(await ctx.cli(["push", master, url, ...ctx.flags(state)]), 0);
    const backup = ctx.tmp("backup");
    await writeTree(backup, { "a.html": "one" });
    const flags = ctx.flags(ctx.tmp("op-state"));
    const daemon = startCli(["watch", master, url, ...ctx.flags(state), "--delay", "100ms"]);
    try {
      const deadline = Date.now() + 20_000;
      while (!daemon.out.stdout.includes('"watching"') && Date.now() < deadline) await sleep(100);
      const refused = await ctx.cli(["rollback", url, "--to", "1", "--from", backup, ...flags]);
      expectCode(refused, 6);
      assert.match(refused.stderr, /holds the write lease/);
      assert.match(refused.stderr, /stop the uploader \(systemctl stop fansync-watch/);
      assert.equal((await readHeadDoc(ctx.server.client, bucket, "site/")).generation, 2);
    } finally {
      daemon.kill("SIGTERM");
    }
    expectCode(await waitCli(daemon, 40_000), 0);
    const r = await ctx.cli(["rollback", url, "--to", "1", "--from", backup, ...flags]);
    expectCode(r, 0);
    assert.equal((await getBytes(ctx.server.client, bucket, "site/a.html")).toString(), "one");
    assert.equal((await readHeadDoc(ctx.server.client, bucket, "site/")).generation, 3);
  });
});
