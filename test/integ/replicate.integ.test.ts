/**
 * `fansync replicate` against a real S3 server: two regions converge with their own ETags, a puller
 * from a region reproduces the master, and an unreachable region neither stalls the other nor stays
 * behind once it is back (the daemon; that region is a bucket behind its own proxy port, which is
 * closed and reopened, so a different endpoint: objects stream across instead of a server-side copy).
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdir, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { after, before, test } from "node:test";
import { StateDir } from "../../src/adapters/state-dir.ts";
import { runCli, startCli, waitCli } from "../helpers/cli.ts";
import { downableBucket } from "../helpers/region.ts";
import { startS3Server, type TestServer } from "../helpers/s3-server.ts";
import { assertMediaType, getBytes, headObject, readHeadDoc, readManifestDoc } from "../helpers/s3.ts";
import { seededBytes, snapshot, tempDir, writeTree } from "../helpers/tree.ts";

let server: TestServer;
before(async () => {
  server = await startS3Server();
});
after(async () => {
  await server?.stop();
});

const site = () => ({
  "index.html": "<!doctype html><h1>home</h1>\n",
  "about/index.html": "<h1>about</h1>\n",
  "css/site.css": "body { color: #333 }\n",
  // Same bytes as site.css under another name: copied inside the region, not transferred twice.
  "css/print.css": "body { color: #333 }\n",
  "js/app.js": "console.log('app');\n",
  "img/logo.png": seededBytes(7, 20_000),
});

async function expectRegionMatchesPrimary(primary: string, region: string): Promise<void> {
  const p = await readManifestDoc(server.client, primary, "site/");
  const r = await readManifestDoc(server.client, region, "site/");
  const ph = await readHeadDoc(server.client, primary, "site/");
  const rh = await readHeadDoc(server.client, region, "site/");
  assert.equal(rh.generation, ph.generation, "the region's generation is the primary's");
  assert.deepEqual(r.entries.map((e) => [e.path, e.sha256, e.size, e.mtimeMs, e.mode]), p.entries.map((e) => [e.path, e.sha256, e.size, e.mtimeMs, e.mode]));
  for (const e of r.entries) {
    const key = `site/${e.path as string}`;
    const [rb, pb] = await Promise.all([getBytes(server.client, region, key), getBytes(server.client, primary, key)]);
    assert.ok(rb.equals(pb), `${key} is byte-identical in the region`);
    assert.equal(createHash("sha256").update(rb).digest("hex"), e.sha256);
    const h = await headObject(server.client, region, key);
    // The region's manifest names the region's own object: its ETag (and VersionId where versioned).
    assert.equal(e.etag, h.ETag, `${key}: the region manifest carries the region's ETag`);
    if (h.VersionId && h.VersionId !== "null") {
      assert.equal(e.versionId, h.VersionId, `${key}: the region manifest carries the region's VersionId`);
      const pe = p.entries.find((x) => x.path === e.path);
      assert.notEqual(e.versionId, pe?.versionId, "version ids differ across buckets");
    }
    assert.equal(h.Metadata?.sha256, e.sha256, `${key}: user metadata came along`);
  }
}

test("replicate to two regions converges; a puller from a region reproduces the master", async () => {
  const t = tempDir("repl");
  try {
    const [primary, ra, rb] = await Promise.all([server.bucket("primary", { versioning: true }), server.bucket("region-a", { versioning: true }), server.bucket("region-b")]);
    const master = path.join(t.dir, "master");
    const common = ["--endpoint-url", server.endpoint, "--state-dir", path.join(t.dir, "state"), "--log-format", "json"];
    await writeTree(master, site());
    const push = async () => assert.equal((await runCli(["push", master, `s3://${primary}/site`, ...common])).code, 0);
    const replicate = () => runCli(["replicate", `s3://${primary}/site`, `s3://${ra}/site`, `s3://${rb}/site`, ...common]);
    await push();
    const r1 = await replicate();
    assert.equal(r1.code, 0, r1.stderr);
    const done = r1.logs.filter((l) => l.msg === "region at generation");
    assert.equal(done.length, 2);
    for (const l of done) {
      assert.equal(l.generation, 1);
      assert.equal(l.transfers, 5, "five distinct contents cross over");
      assert.equal(l.regionCopies, 1, "the duplicate is copied inside the region");
    }
    for (const r of [ra, rb]) await expectRegionMatchesPrimary(primary, r);
    const twin = await headObject(server.client, ra, "site/css/print.css");
    assertMediaType(twin.ContentType, "text/css", "a deduplicated copy keeps its own headers");

    // Generation 2: modify, delete, add, rename. The regions catch up through the primary's journal.
    await writeTree(master, { "index.html": "<!doctype html><h1>home v2</h1>\n", "new/page.html": "<p>new</p>\n" });
    await rm(path.join(master, "js/app.js"));
    await rename(path.join(master, "img/logo.png"), path.join(master, "img/brand.png"));
    await push();
    const r2 = await replicate();
    assert.equal(r2.code, 0, r2.stderr);
    for (const r of [ra, rb]) {
      await expectRegionMatchesPrimary(primary, r);
      await assert.rejects(getBytes(server.client, r, "site/js/app.js"), "a deleted file is deleted in the region after its head moved");
      const j = JSON.parse((await getBytes(server.client, r, "site/.fansync/journal/000000000002.json")).toString()) as { puts: { path: string; etag: string }[]; deletes: string[] };
      assert.deepEqual(j.deletes.sort(), ["img/logo.png", "js/app.js"]);
      for (const e of j.puts) assert.equal(e.etag, (await headObject(server.client, r, `site/${e.path}`)).ETag, "journal entries carry the region's ETags");
    }
    // Nothing to do: a no-op round publishes nothing.
    const r3 = await replicate();
    assert.equal(r3.code, 0);
    assert.equal(r3.logs.filter((l) => l.msg === "published generation").length, 0);

    const node = path.join(t.dir, "node");
    await mkdir(node);
    const pull = await runCli(["pull", `s3://${ra}/site`, node, ...common]);
    assert.equal(pull.code, 0, pull.stderr);
    assert.deepEqual(await snapshot(node), await snapshot(master));

    const status = await runCli(["status", "--json", "--state-dir", path.join(t.dir, "state")]);
    assert.equal(status.code, 0, status.stderr);
    const report = JSON.parse(status.stdout) as { regions: { region: string; status: string; generation: number; lag: { generations: number } }[] };
    assert.deepEqual(report.regions.map((r) => [r.status, r.generation, r.lag.generations]), [["OK", 2, 0], ["OK", 2, 0]]);
  } finally {
    t.cleanup();
  }
});

test("an unreachable region does not stall the other and catches up when it is back (replicate --watch)", async () => {
  const t = tempDir("repl-down");
  // Region b: a bucket behind its own port, which goes down and comes back.
  const second = await downableBucket(server, "region-b");
  let daemon: ReturnType<typeof startCli> | undefined;
  try {
    const [primary, ra] = await Promise.all([server.bucket("primary"), server.bucket("region-a")]);
    const rb = second.bucket;
    const master = path.join(t.dir, "master");
    const stateDir = path.join(t.dir, "state");
    const config = path.join(t.dir, "fansync.yaml");
    // Region b lives on its own server: per-location endpoint from the config's `locations`.
    await writeFile(config, `locations:\n  - url: s3://${rb}/site\n    endpointUrl: ${second.endpoint}\n`);
    const common = ["--endpoint-url", server.endpoint, "--state-dir", stateDir, "--log-format", "json"];
    await writeTree(master, site());
    assert.equal((await runCli(["push", master, `s3://${primary}/site`, ...common])).code, 0);
    daemon = startCli(["replicate", "-c", config, `s3://${primary}/site`, `s3://${ra}/site`, `s3://${rb}/site`, "--watch", "--interval", "200ms", ...common]);
    const genOf = async (s: TestServer, bucket: string) => Number((await readHeadDoc(s.client, bucket, "site/").catch(() => ({ generation: 0 }))).generation);
    await until(async () => (await genOf(server, ra)) === 1 && (await genOf(server, rb)) === 1, 20_000, "both regions at generation 1");
    await expectRegionMatchesPrimary(primary, ra);

    await second.down();
    await writeTree(master, { "index.html": "<h1>while b is down</h1>\n", "extra.txt": "x\n" });
    assert.equal((await runCli(["push", master, `s3://${primary}/site`, ...common])).code, 0);
    const started = Date.now();
    await until(async () => (await genOf(server, ra)) === 2, 10_000, "region a at generation 2 while b is down");
    assert.ok(Date.now() - started < 10_000);
    await expectRegionMatchesPrimary(primary, ra);
    const statusB = async () => JSON.parse(await readFile(await regionFile(stateDir, `s3://${rb}/site/`), "utf8").catch(() => "{}")) as Record<string, unknown>;
    await until(async () => (await statusB()).status === "ERROR" && (await statusB()).primaryGeneration === 2, 15_000, "region b's status says ERROR, behind generation 2");
    const sb = await statusB();
    assert.equal(sb.generation, 1);
    assert.equal(sb.primaryGeneration, 2);
    assert.deepEqual((sb.lag as { generations: number }).generations, 1);
    assert.ok(daemon.out.stdout.includes('"msg":"region failed"'), "the failure is logged");

    // Back, empty (the server lost its data): the region jumps straight to the primary's generation.
    await second.up({ lostData: true });
    await until(async () => (await genOf(server, rb)) === 2, 45_000, "region b caught up");
    const rbManifest = await readManifestDoc(server.client, rb, "site/");
    const pManifest = await readManifestDoc(server.client, primary, "site/");
    assert.deepEqual(rbManifest.entries.map((e) => [e.path, e.sha256]), pManifest.entries.map((e) => [e.path, e.sha256]));
    for (const e of rbManifest.entries) {
      const key = `site/${e.path as string}`;
      assert.ok((await getBytes(server.client, rb, key)).equals(await getBytes(server.client, primary, key)), `${key} streamed across endpoints intact`);
      assert.equal(e.etag, (await headObject(server.client, rb, key)).ETag);
    }
    await until(async () => (await statusB()).status === "OK", 10_000, "region b's status says OK");

    daemon.kill("SIGTERM");
    // The drain deadline is 30 s: a loaded machine may use some of it, never more.
    const res = await waitCli(daemon, 45_000);
    daemon = undefined;
    assert.equal(res.code, 0, res.stderr);
  } finally {
    daemon?.kill("SIGKILL");
    await second.close();
    t.cleanup();
  }
});

async function regionFile(stateDir: string, url: string): Promise<string> {
  // The replicator's directory is the only replicate-* one in this test's state dir.
  const dir = (await readdir(stateDir)).find((d) => d.startsWith("replicate-")) ?? "";
  return new StateDir(path.join(stateDir, dir)).regionStatus(url);
}

async function until(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

test("watch --replicate-to replicates each published generation and drains on SIGTERM", async () => {
  const t = tempDir("repl-hook");
  let daemon: ReturnType<typeof startCli> | undefined;
  try {
    const [primary, region] = await Promise.all([server.bucket("primary"), server.bucket("region")]);
    const master = path.join(t.dir, "master");
    await writeTree(master, { "index.html": "<h1>one</h1>\n", "a.css": "a{}\n" });
    daemon = startCli(["watch", master, `s3://${primary}/site`, "--replicate-to", `s3://${region}/site`, "--delay", "100ms", "--max-delay", "500ms", "--endpoint-url", server.endpoint, "--state-dir", path.join(t.dir, "state"), "--log-format", "json"]);
    const genOf = async (bucket: string) => Number((await readHeadDoc(server.client, bucket, "site/").catch(() => ({ generation: 0 }))).generation);
    await until(async () => (await genOf(region)) === 1, 20_000, "region at generation 1");
    await writeTree(master, { "index.html": "<h1>two</h1>\n" });
    await until(async () => (await genOf(region)) === 2, 20_000, "region at generation 2");
    await expectRegionMatchesPrimary(primary, region);
    daemon.kill("SIGTERM");
    const res = await waitCli(daemon, 20_000);
    daemon = undefined;
    assert.equal(res.code, 0, res.stderr);
    assert.ok(res.logs.some((l) => l.component === "replicator" && l.msg === "region at generation" && l.generation === 2));
  } finally {
    daemon?.kill("SIGKILL");
    t.cleanup();
  }
});
