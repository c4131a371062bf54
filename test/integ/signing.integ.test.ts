/**
 * Signed generations against a real S3 server: the uploader and rollback sign every head, the
 * replicator carries the primary's signature into each region unchanged, and a node with
 * --trusted-key verifies it. Then a hostile bucket: a forged head, an unsigned one, a replayed old
 * one, the same generation number with other content, a swapped or edited manifest, a head from
 * another site's bucket, and a frozen mirror (--max-age). Each is refused with exit 8, nothing is
 * written, and the status file says ERROR (STALE for the frozen mirror) with the reason.
 */
import assert from "node:assert/strict";
import { cp, readdir, readFile, rm } from "node:fs/promises";
import path from "node:path";
import { describe, test } from "node:test";
import { type Entry, type FileMap, metaKeys, serializeManifest, sha256Hex } from "../../src/core/manifest.ts";
import { generateSigningKeyPair, parsePrivateKey, type SigningKey } from "../../src/core/signing.ts";
import { expectCode, useServer } from "../helpers/ctx.ts";
import { keygen as keygenWith, manifestOf as manifestIn, plant as plantIn } from "../helpers/signing.ts";
import { SEED, useFigures } from "../helpers/faults.ts";
import { getBytes, listKeys, putBytes, readHeadDoc, readManifestDoc } from "../helpers/s3.ts";
import { snapshot, writeTree } from "../helpers/tree.ts";
import { skipEngineTier } from "../helpers/integ-tiers.ts";

const ctx = useServer();
const fig = useFigures("signing");
const server = process.env.FANSYNC_TEST_SERVER ?? "moto";
const META = "site/.fansync/";

const keygen = (tag: string) => keygenWith(ctx, tag);

/** A signed primary, a region, a master tree and a node that follows the region with the key. */
async function setup(tag: string) {
  const [primary, region] = await Promise.all([ctx.server.bucket(`${tag}-p`, { versioning: true }), ctx.server.bucket(`${tag}-r`)]);
  const k = await keygen(`${tag}-key`);
  const dirs = { master: ctx.tmp("master"), node: ctx.tmp("node"), mstate: ctx.tmp("mstate"), nstate: ctx.tmp("nstate"), rstate: ctx.tmp("rstate"), statusDir: ctx.tmp("status") };
  const purl = `s3://${primary}/site`;
  const rurl = `s3://${region}/site`;
  const statusFile = path.join(dirs.statusDir, "status.json");
  await writeTree(dirs.master, { "index.html": "<h1>home</h1>\n", "css/site.css": "body{}\n", "about/index.html": "<h1>about</h1>\n" });
  const push = async (...extra: string[]) => ctx.cli(["push", dirs.master, purl, ...ctx.flags(dirs.mstate), "--signing-key", k.key, ...extra]);
  const replicate = async () => ctx.cli(["replicate", purl, rurl, ...ctx.flags(dirs.rstate)]);
  const pull = (from: string, ...extra: string[]) => ctx.cli(["pull", from, dirs.node, ...ctx.flags(dirs.nstate), "--trusted-key", k.pub, "--status-file", statusFile, ...extra]);
  const status = async () => JSON.parse(await readFile(statusFile, "utf8")) as { status: string; generation: number; lastError: string | null };
  return { primary, region, purl, rurl, k, ...dirs, push, replicate, pull, status };
}

type Setup = Awaited<ReturnType<typeof setup>>;

/** A pull that must be refused: exit 8, the reason on stderr and in the status file, the docroot as it was. */
async function refused(s: Setup, what: string, run: Promise<{ code: number | null; stderr: string }>, reason: RegExp, status = "ERROR"): Promise<void> {
  const before = await snapshot(s.node);
  const r = await run;
  assert.equal(r.code, 8, `${what}: exit ${r.code}\n${r.stderr}`);
  assert.match(r.stderr, reason, what);
  assert.match(r.stderr, /what to do:/, `${what}: the message says what to do`);
  assert.deepEqual(await snapshot(s.node), before, `${what}: the docroot changed`);
  assert.deepEqual((await readdir(s.node, { recursive: true })).filter((n) => n.includes(".fansync-tmp-")), [], `${what}: temp files left`);
  const st = await s.status();
  assert.equal(st.status, status, `${what}: status ${st.status}`);
  assert.match(st.lastError ?? "", reason, `${what}: the status file gives the reason`);
  fig.hostile++;
}

const manifestOf = (bucket: string, gen: number): Promise<FileMap> => manifestIn(ctx, bucket, META, gen);
const plant = (bucket: string, gen: number, files: FileMap, opts: Parameters<typeof plantIn>[5] = {}) => plantIn(ctx, bucket, META, gen, files, opts);

describe(`signed generations (${server}, seed ${SEED})`, () => {
  test("push signs, replicate carries the signature into the region, a node verifies it; rollback and a key rotation stay signed", async () => {
    const s = await setup("sign-ok");
    assert.match(s.k.line, /^ed25519:[A-Za-z0-9_-]{43}$/, "keygen prints the public key");
    assert.equal((await import("node:fs")).statSync(s.k.key).mode & 0o777, 0o600, "the private key is mode 0600");
    const again = await ctx.cli(["keygen", s.k.key]);
    assert.equal(again.code, 2, "keygen never overwrites a key");
    assert.match(again.stderr, /already exists; refusing to overwrite/);

    // A backup of generation 1 for the rollback below (fauxqs keeps no old versions).
    const backup = ctx.tmp("backup");
    await cp(s.master, backup, { recursive: true, preserveTimestamps: true });
    const p1 = await s.push();
    expectCode(p1, 0);
    assert.ok(!p1.stdout.includes("PRIVATE KEY") && !p1.stderr.includes("PRIVATE KEY"), "the key is never logged");
    expectCode(await s.replicate(), 0);
    const ph = await readHeadDoc(ctx.server.client, s.primary, "site/");
    const rh = await readHeadDoc(ctx.server.client, s.region, "site/");
    assert.equal((ph.signature as { keyId: string }).keyId, s.k.signing.keyId, "the primary's head is signed with the key");
    assert.equal((ph.signature as { site: string }).site, `${s.purl}/`, "the site defaults to the primary's s3:// URL");
    assert.deepEqual(rh.signature, ph.signature, "the region's head carries the primary's signature unchanged");
    // With versioning the primary's entries carry version ids the region's do not: other manifest bytes, the same signature.
    if (ctx.server.features.versioning) assert.notEqual(rh.manifestSha256, ph.manifestSha256, "the region's manifest is its own, yet the signature fits");
    expectCode(await s.pull(s.rurl), 0);
    assert.deepEqual(await snapshot(s.node), await snapshot(s.master));
    assert.equal((await s.status()).status, "OK");

    // Generation 2 reaches the node through the region's journal, checked against the signature.
    await writeTree(s.master, { "index.html": "<h1>home v2</h1>\n", "new.html": "new\n" });
    await rm(path.join(s.master, "about/index.html"));
    expectCode(await s.push(), 0);
    expectCode(await s.replicate(), 0);
    expectCode(await s.pull(s.rurl), 0);
    assert.deepEqual(await snapshot(s.node), await snapshot(s.master));

    // Key rotation: the nodes trust the new key first, then the master signs with it. The push has
    // nothing to upload, yet publishes an unchanged generation 3 under the new key.
    const k2 = await keygen("sign-ok-key2");
    const both = ["--trusted-key", s.k.line, "--trusted-key", k2.line];
    const rot = await ctx.cli(["push", s.master, s.purl, ...ctx.flags(s.mstate), "--signing-key", k2.key]);
    expectCode(rot, 0);
    assert.ok(rot.logs.some((l) => l.msg === "nothing changed: published an unchanged, signed generation"), rot.stdout);
    expectCode(await s.replicate(), 0);
    await refused(s, "a node that does not trust the new key yet", s.pull(s.rurl), /does not trust/);
    expectCode(await s.pull(s.rurl, ...both), 0);
    assert.equal((await s.status()).generation, 3);

    // A rollback publishes generation 4, signed (with the new key): a node with the key takes it.
    // Generation 1 was signed with the old key: the rollback verifies it first, so it must trust
    // that key too (issue 22: nothing is signed that was not verified).
    const rbOld = await ctx.cli(["rollback", s.purl, "--to", "1", "--from", backup, "--signing-key", k2.key, ...ctx.flags(ctx.tmp("rbstate"))]);
    assert.equal(rbOld.code, 8, rbOld.stderr);
    assert.match(rbOld.stderr, /the manifest of retained generation 1 at .* is signed by key [0-9a-f]{16}, which this node does not trust/);
    const rb = await ctx.cli(["rollback", s.purl, "--to", "1", "--from", backup, "--signing-key", k2.key, "--trusted-key", s.k.pub, ...ctx.flags(ctx.tmp("rbstate"))]);
    expectCode(rb, 0);
    assert.equal(((await readHeadDoc(ctx.server.client, s.primary, "site/")).signature as { keyId: string }).keyId, k2.signing.keyId);
    expectCode(await s.replicate(), 0);
    expectCode(await s.pull(s.rurl, ...both), 0);
    assert.equal((await s.status()).generation, 4);
    assert.deepEqual([...(await snapshot(s.node)).keys()].sort(), ["about/index.html", "css/site.css", "index.html"]);
    fig.verified({ files: (await snapshot(s.node)).size });
  });

  test("a hostile bucket: forged, unsigned, replayed, same number with other content, swapped or edited manifest: each refused, nothing written", async (t) => {
    if (skipEngineTier(t)) return;
    const s = await setup("sign-hostile");
    const site = `${s.purl}/`;
    expectCode(await s.push(), 0);
    const head1 = await getBytes(ctx.server.client, s.primary, `${META}head.json`);
    await writeTree(s.master, { "index.html": "<h1>v2</h1>\n" });
    expectCode(await s.push(), 0);
    expectCode(await s.pull(s.purl), 0);
    const head2 = await getBytes(ctx.server.client, s.primary, `${META}head.json`);
    const m2 = await manifestOf(s.primary, 2);
    // The attacker can write the bucket: an object of its own, and entries naming it.
    await putBytes(ctx.server.client, s.primary, "site/evil.html", "<script>evil()</script>");
    const evil: Entry = { path: "index.html", size: 23, mtimeMs: Date.now(), mode: 0o644, sha256: sha256Hex("<script>evil()</script>"), etag: "\"x\"" };
    const m3evil: FileMap = new Map([...m2, ["index.html", evil]]);
    const attacker = parsePrivateKey(generateSigningKeyPair().privatePem) as SigningKey;

    await plant(s.primary, 3, m3evil, { key: attacker, site });
    await refused(s, "a head signed by another key", s.pull(s.purl), /signed by key [0-9a-f]{16}, which this node does not trust/);
    // A trusted key id on a signature made for other fields (generation 2's, moved to 3): forged.
    const forged = JSON.parse(head2.toString()) as Record<string, unknown>;
    await putBytes(ctx.server.client, s.primary, metaKeys.manifest(META, 3), await serializeManifest(3, m2));
    await putBytes(ctx.server.client, s.primary, `${META}head.json`, JSON.stringify({ ...forged, generation: 3, manifestKey: metaKeys.manifest(META, 3), manifestSha256: sha256Hex(await serializeManifest(3, m2)), oldestJournal: 3 }));
    await refused(s, "a signature moved to another generation", s.pull(s.purl), /does not verify: the head was forged or altered/);
    await plant(s.primary, 3, m3evil);
    await refused(s, "an unsigned head", s.pull(s.purl), /is not signed, and this node only accepts signed generations/);
    await putBytes(ctx.server.client, s.primary, `${META}head.json`, head1);
    await refused(s, "a replayed old head", s.pull(s.purl), /went backwards: generation 1, this node already has 2/);
    // The master's own key signing a second, different generation 2 (a fork, a reset bucket).
    await plant(s.primary, 2, m3evil, { key: s.k.signing, site });
    await refused(s, "the same generation number with other content", s.pull(s.purl), /is generation 2 with other content than the generation 2 this node applied/);
    await putBytes(ctx.server.client, s.primary, metaKeys.manifest(META, 2), await serializeManifest(2, m2));
    await putBytes(ctx.server.client, s.primary, `${META}head.json`, head2);
    expectCode(await s.pull(s.purl), 0);

    // A real generation 3, then its manifest swapped for generation 2's (header edited to say 3) and
    // its journal edited: the head's manifestSha256 is not signed, so the attacker updates it.
    await writeTree(s.master, { "css/site.css": "body{color:red}\n" });
    expectCode(await s.push(), 0);
    const head3 = await getBytes(ctx.server.client, s.primary, `${META}head.json`);
    const manifest3 = await getBytes(ctx.server.client, s.primary, metaKeys.manifest(META, 3));
    const journal3 = await getBytes(ctx.server.client, s.primary, metaKeys.journal(META, 3));
    const h3 = JSON.parse(head3.toString()) as Record<string, unknown>;
    const swapped = await serializeManifest(3, m2);
    await putBytes(ctx.server.client, s.primary, metaKeys.manifest(META, 3), swapped);
    await putBytes(ctx.server.client, s.primary, `${META}head.json`, JSON.stringify({ ...h3, manifestSha256: sha256Hex(swapped) }));
    const j = JSON.parse(journal3.toString()) as { puts: Entry[] };
    await putBytes(ctx.server.client, s.primary, metaKeys.journal(META, 3), JSON.stringify({ ...j, puts: [evil] }));
    await refused(s, "a manifest swapped for another generation's (and an edited journal)", s.pull(s.purl), /manifest of generation 3 .* does not match the signed generation/);
    const edited = await serializeManifest(3, new Map([...(await manifestOf(s.primary, 2)), ["css/site.css", { ...evil, path: "css/site.css" }]]));
    await putBytes(ctx.server.client, s.primary, metaKeys.manifest(META, 3), edited);
    await putBytes(ctx.server.client, s.primary, `${META}head.json`, JSON.stringify({ ...h3, manifestSha256: sha256Hex(edited) }));
    await refused(s, "an edited manifest", s.pull(s.purl), /does not match the signed generation/);

    // The real generation 3 back: the node converges; nothing of the attacks stuck.
    await putBytes(ctx.server.client, s.primary, metaKeys.manifest(META, 3), manifest3);
    await putBytes(ctx.server.client, s.primary, metaKeys.journal(META, 3), journal3);
    await putBytes(ctx.server.client, s.primary, `${META}head.json`, head3);
    expectCode(await s.pull(s.purl), 0);
    assert.deepEqual(await snapshot(s.node), await snapshot(s.master));
    assert.equal((await s.status()).status, "OK");
  });

  test("a head from another site's bucket (mix-and-match, one key for two sites) is refused: the site is pinned on first use or given with --site", async (t) => {
    if (skipEngineTier(t)) return;
    const a = await setup("sign-site-a");
    const other = await ctx.server.bucket("sign-site-b");
    const bmaster = ctx.tmp("bmaster");
    const bstate = ctx.tmp("bstate");
    await writeTree(bmaster, { "index.html": "<h1>site b</h1>\n", "b-only.html": "b\n" });
    expectCode(await a.push(), 0);
    expectCode(await a.pull(a.purl), 0);
    // Site b, signed with the same key, two generations (ahead of site a).
    for (const v of ["1", "2"]) {
      await writeTree(bmaster, { "v.txt": v });
      expectCode(await ctx.cli(["push", bmaster, `s3://${other}/site`, ...ctx.flags(bstate), "--signing-key", a.k.key]), 0);
    }
    // The attacker copies site b's head, manifest and objects into site a's bucket.
    for (const key of await listKeys(ctx.server.client, other, "site/")) {
      if (key.includes("/lease.json") || key.includes("/probe/")) continue;
      await putBytes(ctx.server.client, a.primary, key, await getBytes(ctx.server.client, other, key));
    }
    const why = new RegExp(`signed for site "s3://${other}/site/", but this node follows site "s3://${a.primary}/site/"`);
    await refused(a, "another site's head, to a node that pinned its site", a.pull(a.purl), why);
    // A fresh node told its site refuses it too.
    const fresh = { ...a, node: ctx.tmp("fresh"), nstate: ctx.tmp("fresh-state") };
    const r = await ctx.cli(["pull", a.purl, fresh.node, ...ctx.flags(fresh.nstate), "--trusted-key", a.k.pub, "--site", `s3://${a.primary}/site/`, "--status-file", path.join(a.statusDir, "status.json")]);
    assert.equal(r.code, 8, r.stderr);
    assert.match(r.stderr, why);
    assert.deepEqual(await readdir(fresh.node), []);
    fig.hostile++;
  });

  test("--max-age: a frozen mirror is STALE and nothing is applied; a heartbeat keeps a quiet site fresh", async (t) => {
    if (skipEngineTier(t)) return;
    const s = await setup("sign-age");
    expectCode(await s.push(), 0);
    expectCode(await s.replicate(), 0);
    const signedAt = Date.parse((await readHeadDoc(ctx.server.client, s.region, "site/")).time as string);
    expectCode(await s.pull(s.rurl, "--max-age", "6s"), 0);
    // The master moves on; the region's replicator has stopped (a frozen mirror).
    await writeTree(s.master, { "index.html": "<h1>v2</h1>\n" });
    expectCode(await s.push(), 0);
    await new Promise((r) => setTimeout(r, Math.max(0, signedAt + 6500 - Date.now())));
    await refused(s, "a frozen mirror (the head unchanged: 304)", s.pull(s.rurl, "--max-age", "6s"), /was signed \d+s ago, longer than --max-age 6s: the source stopped updating/, "STALE");
    // The replicator resumes; the master's heartbeat re-signs a quiet site: fresh again.
    expectCode(await s.replicate(), 0);
    const hb = await s.push("--heartbeat", "1s");
    expectCode(hb, 0);
    assert.ok(hb.logs.some((l) => l.msg === "nothing changed: published an unchanged, signed generation"), hb.stdout);
    expectCode(await s.replicate(), 0);
    expectCode(await s.pull(s.rurl, "--max-age", "6s"), 0);
    assert.equal((await s.status()).status, "OK");
    assert.deepEqual(await snapshot(s.node), await snapshot(s.master));
    assert.equal((await readManifestDoc(ctx.server.client, s.region, "site/")).header.generation, 3, "the heartbeat is generation 3");
  });

  test("an approval of deletions is signed: nodes that check signatures accept it (also after the fact, through a region); one added without the key is ignored", async (t) => {
    if (skipEngineTier(t)) return;
    const s = await setup("sig-approve");
    await writeTree(s.master, Object.fromEntries(Array.from({ length: 5 }, (_, i) => [`p${i}.html`, `<p>${i}</p>\n`])));
    expectCode(await s.push(), 0);
    expectCode(await s.replicate(), 0);
    expectCode(await s.pull(s.rurl, "--max-delete", "1"), 0);
    for (const i of [0, 1, 2]) await rm(path.join(s.master, `p${i}.html`));
    expectCode(await s.push(), 0);
    expectCode(await s.replicate(), 0);
    const before = await snapshot(s.node);
    expectCode(await s.pull(s.rurl, "--max-delete", "1"), 5);
    // Someone without the key writes an approval into the region's head: not signed, not counted.
    const head = await readHeadDoc(ctx.server.client, s.region, "site/");
    await putBytes(ctx.server.client, s.region, `${META}head.json`, JSON.stringify({ ...head, approvedDeletes: 3 }));
    expectCode(await s.pull(s.rurl, "--max-delete", "1"), 5);
    assert.deepEqual(await snapshot(s.node), before, "nothing applied");
    fig.hostile++;
    // The master approves (and signs) after the fact; the replicator carries it into the region.
    const approve = await s.push("--approve-deletes");
    expectCode(approve, 0);
    assert.equal((await readHeadDoc(ctx.server.client, s.primary, "site/") as { signature?: { approvedDeletes?: number } }).signature?.approvedDeletes, 3);
    expectCode(await s.replicate(), 0);
    expectCode(await s.pull(s.rurl, "--max-delete", "1"), 0);
    assert.deepEqual(await snapshot(s.node), await snapshot(s.master));
  });
});
