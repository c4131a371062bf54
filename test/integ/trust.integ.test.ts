/**
 * Issue 22, "nothing is signed, copied or applied that was not verified first": a bucket writer
 * without the key must not get bytes onto a node with --trusted-key through any writer that holds
 * or carries a signature. Each test is a laundering that worked before: a `sync` node applying and
 * then re-signing a forged generation, `rollback --signing-key` re-signing a retained manifest an
 * attacker edited, and `replicate` copying a forged primary generation into a region.
 *
 * Needs conditional writes for `sync` and versioning for the rollback (moto); the replicate test
 * runs anywhere. Run once with FANSYNC_DATA_PATH=sdk as well.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { describe, test } from "node:test";
import { gunzipSync, gzipSync } from "node:zlib";
import { PutObjectCommand } from "@aws-sdk/client-s3";
import { type Entry, type FileMap, metaKeys } from "../../src/core/manifest.ts";
import { chmod } from "node:fs/promises";
import { runCli, startCli, waitCli } from "../helpers/cli.ts";
import { expectCode, useServer } from "../helpers/ctx.ts";
import { getBytes, putBytes, readHeadDoc } from "../helpers/s3.ts";
import { serverLabel } from "../helpers/s3-server.ts";
import { keygen, manifestOf, plant } from "../helpers/signing.ts";
import { snapshot, writeTree } from "../helpers/tree.ts";

const ctx = useServer();
const META = "site/.fansync/";
const LEGIT = "<h1>home</h1>\n";
const DEFACED = "<h1>pwned</h1><script>steal()</script>\n";

// Root reads any file: a file is unreadable to the CLI only without these capabilities.
const NO_DAC = process.getuid?.() === 0 ? ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--inh-caps=-dac_override,-dac_read_search"] : [];

const sha256 = (s: string | Buffer) => createHash("sha256").update(s).digest("hex");
const text = (f: string) => readFile(f, "utf8").catch(() => undefined);

/** Poll `fn` until it returns something (not undefined/false) or the time is up. */
async function until<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 30_000, logs: () => string = () => ""): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n${logs()}`);
    await new Promise((r) => setTimeout(r, 150));
  }
}

/** As a bucket writer without the key: put `body` at the path-keyed object of `p`; its manifest entry. */
async function putObject(bucket: string, p: string, body: string, like: Entry): Promise<Entry> {
  const r = await ctx.server.client.send(new PutObjectCommand({ Bucket: bucket, Key: `site/${p}`, Body: body }));
  const { versionId: _v, ...rest } = like;
  return { ...rest, size: Buffer.byteLength(body), sha256: sha256(body), etag: r.ETag as string, ...(r.VersionId && r.VersionId !== "null" ? { versionId: r.VersionId } : {}) };
}

/** Generation `gen`'s files with `p` replaced by `e`. */
function withEntry(files: FileMap, e: Entry): FileMap {
  return new Map([...files, [e.path, e]]);
}

describe(`trust: nothing is signed, copied or applied that was not verified first (${serverLabel()})`, () => {
  test("sync with --signing-key neither applies nor re-signs a generation no trusted key signed; a trusted pull never installs it", async (t) => {
    if (!ctx.server.features.conditionalWrites) {
      t.skip(`${ctx.server.kind} ignores conditional writes: sync refuses to run there`);
      return;
    }
    const bucket = await ctx.server.bucket("trust-sync");
    const url = `s3://${bucket}/site`;
    const k = await keygen(ctx, "trust-sync-key");
    const master = ctx.tmp("trust-sync-master");
    await writeTree(master, { "index.html": LEGIT, "about.html": "about\n" });
    expectCode(await ctx.cli(["push", master, url, ...ctx.flags(ctx.tmp("trust-sync-mstate")), "--signing-key", k.key]), 0);

    const root = path.join(ctx.tmp("trust-sync-a"), "www");
    const statusFile = path.join(ctx.tmp("trust-sync-status"), "sync.json");
    const child = startCli(["sync", root, url, ...ctx.flags(ctx.tmp("trust-sync-astate")), "--node-id", "a", "--delay", "150ms", "--max-delay", "1s", "--interval", "300ms", "--signing-key", k.key, "--status-file", statusFile]);
    const logs = () => `${child.out.stdout.slice(-4000)}\n${child.out.stderr.slice(-2000)}`;
    const status = async () => JSON.parse((await text(statusFile)) ?? "{}") as { status?: string; lastError?: string | null; lastAttempt?: string; generation?: number };
    try {
      await until("the sync node applied generation 1", async () => (await text(path.join(root, "index.html"))) === LEGIT, 30_000, logs);

      // A bucket writer without the key publishes generation 2: the home page defaced, unsigned.
      const g1 = await manifestOf(ctx, bucket, META, 1);
      await plant(ctx, bucket, META, 2, withEntry(g1, await putObject(bucket, "index.html", DEFACED, g1.get("index.html") as Entry)));
      const seen = await until("the sync node looked at generation 2", async () => {
        if ((await text(path.join(root, "index.html"))) === DEFACED) return "applied";
        const st = await status();
        return st.status === "ERROR" && /generation 2/.test(st.lastError ?? "") ? "refused" : undefined;
      }, 30_000, logs);
      assert.equal(seen, "refused", "the sync node applied a generation no trusted key signed");
      assert.equal(await text(path.join(root, "index.html")), LEGIT);
      const st = await status();
      assert.match(st.lastError ?? "", /not signed/, "the status says why, as a pull's does");
      // The log gives the refusal as a pull's does (an error, with the reason), right after the status.
      await until("the refusal in the log", async () => child.out.stdout.split("\n").some((l) => l.includes('"level":50') && /generation 2\) is not signed/.test(l)), 10_000, logs);

      // An ordinary edit on the sync node: before, it published generation 3 signed with its key.
      const edited = Date.now();
      await writeFile(path.join(root, "news.html"), "news\n");
      await until("two rounds after the edit", async () => {
        const s = await status();
        if (((await readHeadDoc(ctx.server.client, bucket, "site/")).generation as number) > 2) return true;
        return s.status === "ERROR" && Date.parse(s.lastAttempt ?? "") > edited + 1_500;
      }, 30_000, logs);
      const head = await readHeadDoc(ctx.server.client, bucket, "site/");
      assert.equal(head.generation, 2, "the sync node published (and signed) over a generation it could not verify");
    } finally {
      child.kill("SIGTERM");
      expectCode(await waitCli(child, 40_000), 0);
    }

    // A node that trusts the key: refuses generation 2 (exit 8) and never holds the defaced page.
    const node = ctx.tmp("trust-sync-node");
    const r = await ctx.cli(["pull", url, node, ...ctx.flags(ctx.tmp("trust-sync-nstate")), "--trusted-key", k.pub]);
    assert.equal(r.code, 8, r.stderr);
    assert.match(r.stderr, /not signed/);
    assert.notEqual(await text(path.join(node, "index.html")), DEFACED);
  });

  test("watch --signing-key never signs a path it carries from a head it cannot verify: a forged page stays out of its next generation", async () => {
    const bucket = await ctx.server.bucket("trust-watch");
    const url = `s3://${bucket}/site`;
    const k = await keygen(ctx, "trust-watch-key");
    const master = ctx.tmp("trust-watch-master");
    await writeTree(master, { "index.html": LEGIT, "about.html": "about\n" });
    const child = startCli(["watch", master, url, ...ctx.flags(ctx.tmp("trust-watch-state")), "--signing-key", k.key, "--delay", "150ms", "--max-delay", "1s"]);
    const logs = () => `${child.out.stdout.slice(-4000)}\n${child.out.stderr.slice(-2000)}`;
    const headGen = async () => (await readHeadDoc(ctx.server.client, bucket, "site/")).generation as number;
    try {
      await until("generation 1", async () => (await headGen()) >= 1, 30_000, logs);
      // A bucket writer without the key publishes generation 2 with the home page defaced.
      const g1 = await manifestOf(ctx, bucket, META, 1);
      await plant(ctx, bucket, META, 2, withEntry(g1, await putObject(bucket, "index.html", DEFACED, g1.get("index.html") as Entry)));
      // An edit elsewhere: before, the batch carried the defaced entry into generation 3, signed.
      await writeFile(path.join(master, "news.html"), "news\n");
      const gen = await until("the next generation", async () => { const g = await headGen(); return g >= 3 ? g : undefined; }, 30_000, logs);
      const files = await manifestOf(ctx, bucket, META, gen);
      assert.equal(files.get("index.html")?.sha256, sha256(LEGIT), "the writer signed the forged page it carried from the head");
      assert.ok(files.has("news.html"));
    } finally {
      child.kill("SIGTERM");
      expectCode(await waitCli(child, 40_000), 0);
    }
    const node = ctx.tmp("trust-watch-node");
    expectCode(await ctx.cli(["pull", url, node, ...ctx.flags(ctx.tmp("trust-watch-nstate")), "--trusted-key", k.pub]), 0);
    assert.equal(await text(path.join(node, "index.html")), LEGIT);
  });

  test("push --signing-key never signs what it carries from a head it cannot verify: an unreadable file or a failed upload keeps no forged entry", async () => {
    const bucket = await ctx.server.bucket("trust-push-carry");
    const url = `s3://${bucket}/site`;
    const k = await keygen(ctx, "trust-push-key");
    const master = ctx.tmp("trust-push-master");
    const flags = ctx.flags(ctx.tmp("trust-push-state"));
    await writeTree(master, { "index.html": LEGIT, "about.html": "about\n" });
    expectCode(await ctx.cli(["push", master, url, ...flags, "--signing-key", k.key]), 0);
    // A bucket writer without the key publishes generation 2 with the home page defaced.
    const g1 = await manifestOf(ctx, bucket, META, 1);
    await plant(ctx, bucket, META, 2, withEntry(g1, await putObject(bucket, "index.html", DEFACED, g1.get("index.html") as Entry)));
    // The master cannot read its own index.html this time (a permission slip), and edits a page.
    await writeFile(path.join(master, "news.html"), "news\n");
    await chmod(path.join(master, "index.html"), 0o000);
    try {
      const r = await runCli(["push", master, url, ...flags, "--signing-key", k.key], { wrap: NO_DAC });
      // Before: exit 4, generation 3 carried the defaced entry for the unreadable path, signed.
      expectCode(r, 8);
      assert.match(r.stderr, /index\.html/);
      assert.match(r.stderr, /could not be read|does not verify/);
      assert.equal((await readHeadDoc(ctx.server.client, bucket, "site/")).generation, 2, "nothing was published over the forged head");
    } finally {
      await chmod(path.join(master, "index.html"), 0o644);
    }
    // Readable again: the push publishes the docroot whole, signed, and a trusted node gets the real page.
    expectCode(await ctx.cli(["push", master, url, ...flags, "--signing-key", k.key]), 0);
    const node = ctx.tmp("trust-push-node");
    expectCode(await ctx.cli(["pull", url, node, ...ctx.flags(ctx.tmp("trust-push-nstate")), "--trusted-key", k.pub]), 0);
    assert.equal(await text(path.join(node, "index.html")), LEGIT);
    assert.equal(await text(path.join(node, "news.html")), "news\n");
  });

  test("sync says at start when signing is configured on one side only: checks but does not sign; neither checks nor signs a signed location", async (t) => {
    if (!ctx.server.features.conditionalWrites) {
      t.skip(`${ctx.server.kind} ignores conditional writes: sync refuses to run there`);
      return;
    }
    const bucket = await ctx.server.bucket("trust-sync-warn");
    const url = `s3://${bucket}/site`;
    const k = await keygen(ctx, "trust-sync-warn-key");
    const master = ctx.tmp("trust-sync-warn-master");
    await writeTree(master, { "index.html": LEGIT });
    expectCode(await ctx.cli(["push", master, url, ...ctx.flags(ctx.tmp("trust-sync-warn-mstate")), "--signing-key", k.key]), 0);
    for (const [what, extra, warning] of [
      ["checks, does not sign", ["--trusted-key", k.pub], /checks signatures but does not sign/],
      ["neither", [], /the head is signed, but this node neither checks nor signs/],
    ] as const) {
      const root = path.join(ctx.tmp("trust-sync-warn"), "www");
      const child = startCli(["sync", root, url, ...ctx.flags(ctx.tmp("trust-sync-warn-state")), "--interval", "300ms", ...extra]);
      try {
        await until(`the warning (${what})`, async () => warning.test(child.out.stdout), 20_000, () => child.out.stdout + child.out.stderr);
      } finally {
        child.kill("SIGTERM");
        expectCode(await waitCli(child, 40_000), 0);
      }
    }
  });

  test("rollback --signing-key refuses a retained generation that no longer verifies: an edited manifest, or an old version with other bytes", async (t) => {
    if (!ctx.server.features.versioning) {
      t.skip(`${ctx.server.kind} keeps no old versions`);
      return;
    }
    const bucket = await ctx.server.bucket("trust-rb", { versioning: true });
    const url = `s3://${bucket}/site`;
    const k = await keygen(ctx, "trust-rb-key");
    const master = ctx.tmp("trust-rb-master");
    const mstate = ctx.tmp("trust-rb-mstate");
    await writeTree(master, { "index.html": LEGIT, "a.html": "a1\n" });
    expectCode(await ctx.cli(["push", master, url, ...ctx.flags(mstate), "--signing-key", k.key]), 0);
    await writeTree(master, { "a.html": "a2\n" });
    expectCode(await ctx.cli(["push", master, url, ...ctx.flags(mstate), "--signing-key", k.key]), 0);

    // The attacker leaves a version of index.html holding their bytes, then the legitimate bytes on top.
    const g1 = await manifestOf(ctx, bucket, META, 1);
    const evil = await putObject(bucket, "index.html", DEFACED, g1.get("index.html") as Entry);
    await putObject(bucket, "index.html", LEGIT, g1.get("index.html") as Entry);
    const key1 = metaKeys.manifest(META, 1);
    const original = await getBytes(ctx.server.client, bucket, key1);
    /** Retained manifest 1 with the line of `p` replaced (the header line, and any signature in it, kept). */
    const editManifest1 = async (e: Entry, p = "index.html") => {
      const lines = gunzipSync(original).toString("utf8").split("\n");
      const i = lines.findIndex((l) => l.includes(`"path":"${p}"`));
      lines[i] = JSON.stringify(e);
      await putBytes(ctx.server.client, bucket, key1, gzipSync(lines.join("\n")));
    };
    const rollback = (...extra: string[]) => ctx.cli(["rollback", url, "--to", "1", ...ctx.flags(ctx.tmp("trust-rb-state")), ...extra]);
    const headGen = async () => (await readHeadDoc(ctx.server.client, bucket, "site/")).generation as number;

    // 1. Manifest 1 names the attacker's version, with its sha256 and size.
    await editManifest1(evil);
    const r1 = await rollback("--signing-key", k.key);
    assert.equal(r1.code, 8, `an edited retained manifest was re-signed: exit ${r1.code}\n${r1.stderr}`);
    assert.match(r1.stderr, /generation 1/);
    assert.match(r1.stderr, /does not match the signed generation/);
    assert.equal(await headGen(), 2, "nothing was published");
    // With --trusted-key alone (no signing) the retained manifest is checked all the same.
    const r1b = await rollback("--trusted-key", k.pub);
    assert.equal(r1b.code, 8, r1b.stderr);

    // 2. Manifest 1 keeps a.html's signed sha256 and size but names a version holding other bytes.
    const evilA = await putObject(bucket, "a.html", DEFACED, g1.get("a.html") as Entry);
    await putObject(bucket, "a.html", "a2\n", g1.get("a.html") as Entry);
    await editManifest1({ ...(g1.get("a.html") as Entry), etag: evilA.etag, ...(evilA.versionId ? { versionId: evilA.versionId } : {}) }, "a.html");
    const r2 = await rollback("--signing-key", k.key);
    assert.equal(r2.code, 8, `a version with other bytes than the signed sha256 was restored: exit ${r2.code}\n${r2.stderr}`);
    assert.match(r2.stderr, /a\.html/, "the message names the file whose bytes differ");
    assert.match(r2.stderr, /sha256/);
    assert.equal(await headGen(), 2, "nothing was published");

    // A node that trusts the key never installs the defaced page.
    const node = ctx.tmp("trust-rb-node");
    expectCode(await ctx.cli(["pull", url, node, ...ctx.flags(ctx.tmp("trust-rb-nstate")), "--trusted-key", k.pub]), 0);
    assert.equal(await text(path.join(node, "index.html")), LEGIT);

    // The untouched manifest verifies and restores.
    await putBytes(ctx.server.client, bucket, key1, original);
    expectCode(await rollback("--signing-key", k.key, "--trusted-key", k.pub), 0);
    const node2 = ctx.tmp("trust-rb-node2");
    expectCode(await ctx.cli(["pull", url, node2, ...ctx.flags(ctx.tmp("trust-rb-n2state")), "--trusted-key", k.pub]), 0);
    assert.equal(await text(path.join(node2, "index.html")), LEGIT);
    assert.equal(await text(path.join(node2, "a.html")), "a1\n");
  });

  test("replicate --trusted-key copies no forged primary generation into a region; a trusted regional pull never installs it", async () => {
    const [primary, region] = await Promise.all([ctx.server.bucket("trust-rep-p"), ctx.server.bucket("trust-rep-r")]);
    const purl = `s3://${primary}/site`;
    const rurl = `s3://${region}/site`;
    const k = await keygen(ctx, "trust-rep-key");
    const attacker = await keygen(ctx, "trust-rep-attacker");
    const master = ctx.tmp("trust-rep-master");
    await writeTree(master, { "index.html": LEGIT, "about.html": "about\n" });
    expectCode(await ctx.cli(["push", master, purl, ...ctx.flags(ctx.tmp("trust-rep-mstate")), "--signing-key", k.key]), 0);
    const rstate = ctx.tmp("trust-rep-rstate");
    const replicate = (...extra: string[]) => ctx.cli(["replicate", purl, rurl, ...ctx.flags(rstate), ...extra]);

    // Without --trusted-key over a signed primary: replicated, and a warning says nothing was checked.
    const plain = await replicate();
    expectCode(plain, 0);
    assert.match(plain.stdout, /signed, but this replicator does not check/);
    expectCode(await replicate("--trusted-key", k.pub), 0);

    const g1 = await manifestOf(ctx, primary, META, 1);
    const regionBefore = await readHeadDoc(ctx.server.client, region, "site/");
    const forged = withEntry(g1, await putObject(primary, "index.html", DEFACED, g1.get("index.html") as Entry));
    for (const [what, opts] of [["unsigned", {}], ["signed with a key the replicator does not trust", { key: attacker.signing, site: `${purl}/` }]] as const) {
      await plant(ctx, primary, META, 2, forged, opts);
      const r = await replicate("--trusted-key", k.pub);
      assert.notEqual(r.code, 0, `${what}: replicated\n${r.stderr}`);
      assert.match(r.stderr, /not signed|does not trust/, what);
      assert.deepEqual(await readHeadDoc(ctx.server.client, region, "site/"), regionBefore, `${what}: the region's head moved`);
      assert.notEqual((await getBytes(ctx.server.client, region, "site/index.html")).toString(), DEFACED, `${what}: the forged bytes reached the region`);
    }
    const node = ctx.tmp("trust-rep-node");
    // A node that checks nothing while the master signs is told so (and here installs the forgery).
    const unchecked = await ctx.cli(["pull", purl, ctx.tmp("trust-rep-plain"), ...ctx.flags(ctx.tmp("trust-rep-plainstate"))]);
    expectCode(unchecked, 0);
    assert.match(unchecked.stdout, /the head is signed, but this node checks no signatures/);
    expectCode(await ctx.cli(["pull", rurl, node, ...ctx.flags(ctx.tmp("trust-rep-nstate")), "--trusted-key", k.pub]), 0);
    assert.deepEqual([...(await snapshot(node)).keys()].sort(), ["about.html", "index.html"]);
    assert.equal(await text(path.join(node, "index.html")), LEGIT);

    // The master publishes over the forgery (signed): replicated, its signature carried unchanged.
    await writeTree(master, { "news.html": "news\n" });
    expectCode(await ctx.cli(["push", master, purl, ...ctx.flags(ctx.tmp("trust-rep-mstate")), "--signing-key", k.key]), 0);
    expectCode(await replicate("--trusted-key", k.pub), 0);
    const [ph, rh] = await Promise.all([readHeadDoc(ctx.server.client, primary, "site/"), readHeadDoc(ctx.server.client, region, "site/")]);
    assert.equal(rh.generation, 3);
    assert.deepEqual(rh.signature, ph.signature, "the region carries the primary's signature");
    expectCode(await ctx.cli(["pull", rurl, node, ...ctx.flags(ctx.tmp("trust-rep-nstate")), "--trusted-key", k.pub]), 0);
    assert.equal(await text(path.join(node, "index.html")), LEGIT);
    assert.equal(await text(path.join(node, "news.html")), "news\n");
  });
});
