/**
 * Pullers with several sources: fallback to the primary while the region is down and back after,
 * the lag rule (a region lagging by more than --max-lag is passed over), and native-replication
 * (CRR) style arrival out of order: a head before its manifest or objects never changes the docroot.
 */
import assert from "node:assert/strict";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { after, before, test } from "node:test";
import { runCli } from "../helpers/cli.ts";
import { downableBucket } from "../helpers/region.ts";
import { startS3Server, type TestServer } from "../helpers/s3-server.ts";
import { getBytes, putBytes, readHeadDoc, readManifestDoc } from "../helpers/s3.ts";
import { seededBytes, snapshot, tempDir, writeTree } from "../helpers/tree.ts";

let server: TestServer;
before(async () => {
  server = await startS3Server();
});
after(async () => {
  await server?.stop();
});

interface Status {
  status: string;
  generation: number;
  source: string;
}

test("a puller falls back to the primary while its region is down, returns after, and passes over a region that lags", async () => {
  const t = tempDir("fallback");
  // The region: a bucket behind its own port, which goes down and comes back.
  const second = await downableBucket(server, "region");
  try {
    const primary = await server.bucket("primary");
    const region = second.bucket;
    const master = path.join(t.dir, "master");
    const config = path.join(t.dir, "fansync.yaml");
    await writeFile(config, `locations:\n  - url: s3://${region}/site\n    endpointUrl: ${second.endpoint}\n`);
    const common = ["-c", config, "--endpoint-url", server.endpoint, "--log-format", "json"];
    const up = [...common, "--state-dir", path.join(t.dir, "up")];
    const P = `s3://${primary}/site/`;
    const R = `s3://${region}/site/`;
    const push = async () => assert.equal((await runCli(["push", master, P, ...up])).code, 0);
    const replicate = async () => {
      const r = await runCli(["replicate", P, R, ...up]);
      assert.equal(r.code, 0, r.stderr);
    };
    const node = path.join(t.dir, "node");
    const statusFile = path.join(t.dir, "node-status.json");
    await mkdir(node);
    const pull = async (extra: string[] = [], dir = node, status = statusFile, state = "node-state") => {
      const r = await runCli(["pull", R, dir, "--source", P, "--status-file", status, "--state-dir", path.join(t.dir, state), ...common, ...extra]);
      return { ...r, status: JSON.parse(await readFile(status, "utf8")) as Status };
    };

    await writeTree(master, { "index.html": "<h1>v1</h1>\n", "img/a.bin": seededBytes(1, 3000) });
    await push();
    await replicate();
    let r = await pull();
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual([r.status.source, r.status.generation], [R, 1]);

    // The region's server goes away; the master publishes generation 2.
    await second.down();
    await writeTree(master, { "index.html": "<h1>v2</h1>\n" });
    await push();
    r = await pull();
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual([r.status.status, r.status.source, r.status.generation], ["OK", P, 2], "served by the primary");
    assert.deepEqual(await snapshot(node), await snapshot(master));
    assert.ok(r.logs.some((l) => l.msg === "served by a fallback source"));

    // Back (empty: the server lost its data); until the region holds generation 2 the node stays on
    // the primary (a lower generation from the region would look like the site going backwards).
    await second.up({ lostData: true });
    r = await pull();
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.status.source, P, "the region has nothing yet: stay on the primary");
    await replicate();
    r = await pull();
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual([r.status.source, r.status.generation], [R, 2], "back on the region once it caught up");
    assert.deepEqual(await snapshot(node), await snapshot(master));

    // The lag rule: the region stays at 2 while the primary moves to 4.
    for (const v of ["v3", "v4"]) {
      await writeTree(master, { "index.html": `<h1>${v}</h1>\n` });
      await push();
    }
    const lax = path.join(t.dir, "lax");
    const strict = path.join(t.dir, "strict");
    await mkdir(lax);
    await mkdir(strict);
    const laxRun = await pull([], lax, path.join(t.dir, "lax.json"), "lax-state");
    assert.deepEqual([laxRun.status.source, laxRun.status.generation], [R, 2], "a lag within --max-lag (default 10) keeps the region");
    const strictRun = await pull(["--max-lag", "1"], strict, path.join(t.dir, "strict.json"), "strict-state");
    assert.equal(strictRun.code, 0, strictRun.stderr);
    assert.deepEqual([strictRun.status.source, strictRun.status.generation], [P, 4], "a region lagging by 2 > 1 is passed over");
    assert.ok(strictRun.logs.some((l) => l.msg === "source chosen by the lag rule" && l.reason === "preferred-lags"));
    assert.deepEqual(await snapshot(strict), await snapshot(master));
    await replicate();
    const back = await pull(["--max-lag", "1"], strict, path.join(t.dir, "strict.json"), "strict-state");
    assert.deepEqual([back.status.source, back.status.generation], [R, 4], "back on the region once it caught up");
    assert.equal(back.logs.find((l) => l.msg === "docroot at generation")?.downloads, 0, "switching back downloads nothing");
  } finally {
    await second.close();
    t.cleanup();
  }
});

test("native replication out of order (head before manifest, manifest before objects) never puts a partial state on disk", async () => {
  const t = tempDir("crr");
  try {
    // Unversioned: S3 replication keeps version ids, this stand-in (a copy by PUT) cannot, and a
    // versioned manifest names the primary's version ids.
    const [primary, region] = await Promise.all([server.bucket("crr-primary", { versioning: false }), server.bucket("crr-region", { versioning: false })]);
    const master = path.join(t.dir, "master");
    const node = path.join(t.dir, "node");
    await mkdir(node);
    const common = ["--endpoint-url", server.endpoint, "--log-format", "json"];
    const statusFile = path.join(t.dir, "status.json");
    const pull = () => runCli(["pull", `s3://${region}/site`, node, "--status-file", statusFile, "--state-dir", path.join(t.dir, "node-state"), ...common]);
    // CRR copies keys byte for byte: single-part ETags (MD5s) are the same in both buckets, so the
    // primary's manifest is valid in the region. Keys to copy come from the manifest, never a listing.
    const crr = async (keys: string[]) => {
      for (const k of keys) await putBytes(server.client, region, k, await getBytes(server.client, primary, k));
    };
    const contentKeys = async () => (await readManifestDoc(server.client, primary, "site/")).entries.map((e) => `site/${e.path as string}`);
    const meta = (gen: number) => ({
      head: "site/.fansync/head.json",
      manifest: `site/.fansync/manifests/${String(gen).padStart(12, "0")}.ndjson.gz`,
      journal: `site/.fansync/journal/${String(gen).padStart(12, "0")}.json`,
    });

    await writeTree(master, { "index.html": "<h1>one</h1>\n", "a.css": "a{}\n", "old.txt": "old\n", "img/x.bin": seededBytes(3, 5000) });
    assert.equal((await runCli(["push", master, `s3://${primary}/site`, "--state-dir", path.join(t.dir, "up"), ...common])).code, 0);
    await crr([...(await contentKeys()), meta(1).manifest, meta(1).journal, meta(1).head]);
    assert.equal((await pull()).code, 0);
    const one = await snapshot(node);
    assert.deepEqual(one, await snapshot(master));

    await writeTree(master, { "index.html": "<h1>two</h1>\n", "new/page.html": "<p>new</p>\n", "img/x.bin": seededBytes(4, 6000) });
    await rm(path.join(master, "old.txt"));
    assert.equal((await runCli(["push", master, `s3://${primary}/site`, "--state-dir", path.join(t.dir, "up"), ...common])).code, 0);
    assert.equal((await readHeadDoc(server.client, primary, "site/")).generation, 2);

    // 1. The head arrives first: its manifest is missing.
    await crr([meta(2).head]);
    let r = await pull();
    assert.notEqual(r.code, 0, "a head without its manifest fails the run");
    assert.deepEqual(await snapshot(node), one, "the docroot is untouched (no temp file left either)");
    // 2. Manifest and journal arrive; the changed objects do not (old bytes, or missing).
    await crr([meta(2).manifest, meta(2).journal]);
    r = await pull();
    assert.equal(r.code, 4, r.stderr);
    assert.deepEqual(await snapshot(node), one, "still untouched: nothing is committed unless every object is there");
    const st = JSON.parse(await readFile(statusFile, "utf8")) as Status;
    assert.equal(st.generation, 1);
    assert.notEqual(st.status, "OK");
    // 3. Some objects arrive, not all.
    await crr(["site/new/page.html"]);
    r = await pull();
    assert.equal(r.code, 4);
    assert.deepEqual(await snapshot(node), one);
    // 4. Everything arrived: the next run converges.
    await crr(await contentKeys());
    r = await pull();
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(await snapshot(node), await snapshot(master));
    assert.equal((JSON.parse(await readFile(statusFile, "utf8")) as Status).generation, 2);
  } finally {
    t.cleanup();
  }
});
