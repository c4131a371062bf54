/**
 * Hostile and broken input: manifests, journals and heads written straight into the bucket; symlink
 * tricks in the docroot; bad config and command lines; rejected credentials and clock skew; a full
 * disk on a node; files that change while they are uploaded. Each: a clear error, the documented
 * exit code, nothing written outside the docroot, the docroot unchanged.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, readdir, readFile, rename, rm, stat, symlink, utimes, writeFile } from "node:fs/promises";
import path from "node:path";
import { gzipSync } from "node:zlib";
import { describe, test } from "node:test";
import { expectCode, useServer } from "../helpers/ctx.ts";
import { checkDocrootEqualsTree, checkHeadComplete, rng, SEED, sleep, useFigures } from "../helpers/faults.ts";
import { startProxy } from "../helpers/proxy.ts";
import { getBytes, putBytes, readHeadDoc } from "../helpers/s3.ts";
import { seededBytes, snapshot, writeTree } from "../helpers/tree.ts";
import { serverLabel } from "../helpers/s3-server.ts";
import { skipEngineTier } from "../helpers/integ-tiers.ts";

const ctx = useServer();
const fig = useFigures("faults-hostile");
const server = serverLabel();
const sha = (b: Buffer | string) => createHash("sha256").update(b).digest("hex");
const pad = (g: number) => String(g).padStart(12, "0");

/** A master at generation 1 and a node that pulled it. */
async function setup(tag: string) {
  const bucket = await ctx.server.bucket(tag);
  const master = ctx.tmp("master");
  const node = ctx.tmp("node");
  const mstate = ctx.tmp("mstate");
  const nstate = ctx.tmp("nstate");
  const outside = ctx.tmp("outside");
  await writeTree(master, { "a.html": "a", "sub/b.html": "bb", "sub/c.css": "ccc" });
  const url = `s3://${bucket}/site`;
  const push = async (...extra: string[]) => expectCode(await ctx.cli(["push", master, url, ...ctx.flags(mstate), ...extra]), 0);
  const pull = (...extra: string[]) => ctx.cli(["pull", url, node, ...ctx.flags(nstate), ...extra]);
  await push();
  expectCode(await pull(), 0);
  return { bucket, master, node, mstate, nstate, outside, url, push, pull };
}

type Setup = Awaited<ReturnType<typeof setup>>;

/** Entries of the current generation, as stored. */
async function entries(s: Setup): Promise<Record<string, unknown>[]> {
  const head = await readHeadDoc(ctx.server.client, s.bucket, "site/");
  const lines = (await import("node:zlib")).gunzipSync(await getBytes(ctx.server.client, s.bucket, head.manifestKey as string)).toString("utf8").split("\n").filter(Boolean);
  return lines.slice(1).map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** Plant generation `gen`: a manifest of `list` (or raw bytes) and a head naming it. */
async function plant(s: Setup, gen: number, list: readonly Record<string, unknown>[] | Buffer, headPatch: Record<string, unknown> = {}): Promise<void> {
  const body = Buffer.isBuffer(list) ? list : gzipSync([JSON.stringify({ format: "fansync-manifest/1", generation: gen, files: list.length }), ...list.map((e) => JSON.stringify(e))].join("\n") + "\n");
  const key = `site/.fansync/manifests/${pad(gen)}.ndjson.gz`;
  await putBytes(ctx.server.client, s.bucket, key, body);
  const head = await readHeadDoc(ctx.server.client, s.bucket, "site/");
  await putBytes(ctx.server.client, s.bucket, "site/.fansync/head.json", JSON.stringify({ ...head, generation: gen, manifestKey: key, manifestSha256: sha(body), files: Buffer.isBuffer(list) ? 0 : list.length, oldestJournal: gen, ...headPatch }));
}

/** The node and the directory next to it are exactly as before; nothing appeared outside. */
async function unchanged(s: Setup, before: Awaited<ReturnType<typeof snapshot>>, what: string): Promise<void> {
  assert.deepEqual(await snapshot(s.node), before, `${what}: the docroot changed`);
  assert.deepEqual(await readdir(s.outside), [], `${what}: something was written outside the docroot`);
  assert.ok(!existsSync("/tmp/pwned.txt"), `${what}: an absolute path was written`);
  fig.hostile++;
}

describe(`hostile and broken input (${server}, seed ${SEED})`, () => {
  test("hostile manifests: each fails with exit 8 and a clear message; the docroot is untouched", async (t) => {
    if (skipEngineTier(t)) return;
    const s = await setup("hostile-manifest");
    const before = await snapshot(s.node);
    const good = await entries(s);
    const goodHead = await getBytes(ctx.server.client, s.bucket, "site/.fansync/head.json");
    const e = (p: string, content = "x") => ({ path: p, size: Buffer.byteLength(content), mtimeMs: 1, mode: 0o644, sha256: sha(content), etag: "\"x\"" });
    const escape = `../${path.basename(s.outside)}/pwned.txt`;
    const cases: [string, readonly Record<string, unknown>[] | Buffer, RegExp][] = [
      ["a .. segment", [...good, e(escape)], /invalid path.*"\.\."/],
      ["an absolute path", [...good, e("/tmp/pwned.txt")], /absolute/],
      ["a NUL", [...good, e("a\u0000b.html")], /NUL/],
      ["a control character", [...good, e("a\u001b[31m.html")], /control character/],
      ["a very long name", [...good, e(`${"x".repeat(300)}.html`)], /longer than 255 bytes/],
      ["a very long path", [...good, e(`${"d/".repeat(500)}x.html`)], /longer than 960 bytes/],
      ["a duplicate path", [...good, e("a.html", "dup")], /duplicate path/],
      ["a file that is also a directory", [...good, e("a.html/inner.html")], /both a file and a directory/],
      ["the reserved meta prefix", [...good, e(".fansync/head.json")], /reserved/],
      ["a backslash", [...good, e("..\\..\\pwned.txt")], /backslash/],
      ["a non-JSON manifest", gzipSync("this is not json\n"), /not valid JSON/],
      ["a manifest that is not gzip", Buffer.from("plain text"), /not valid gzip/],
      ["a truncated manifest", gzipSync(JSON.stringify(good)).subarray(0, 20), /not valid gzip/],
      ["an entry with a bad sha256", [...good, { ...e("z.html"), sha256: "nothex" }], /sha256 is not 64 hex digits/],
      ["an entry with a negative size", [...good, { ...e("z.html"), size: -1 }], /size is not a non-negative integer/],
    ];
    for (const [what, list, msg] of cases) {
      await plant(s, 2, list);
      const r = await s.pull();
      assert.equal(r.code, 8, `${what}: exit ${r.code}\n${r.stderr}`);
      assert.match(r.stderr, msg, what);
      assert.match(r.stderr, /what to do:/, `${what}: the message says what to do`);
      await unchanged(s, before, what);
    }
    // Heads: not JSON, truncated, naming a missing manifest, a manifest with another sha256, backwards.
    const headCases: [string, string, RegExp][] = [
      ["a non-JSON head", "<html>not json</html>", /head\.json is not valid JSON/],
      ["a truncated head", JSON.stringify(await readHeadDoc(ctx.server.client, s.bucket, "site/")).slice(0, 30), /head\.json is not valid JSON/],
      ["a head naming a missing manifest", JSON.stringify({ ...(await readHeadDoc(ctx.server.client, s.bucket, "site/")), generation: 9, manifestKey: `site/.fansync/manifests/${pad(9)}.ndjson.gz`, oldestJournal: 9 }), /does not exist/],
      ["a head with the wrong manifest sha256", JSON.stringify({ ...(await readHeadDoc(ctx.server.client, s.bucket, "site/")), generation: 2, manifestKey: `site/.fansync/manifests/${pad(2)}.ndjson.gz`, manifestSha256: "0".repeat(64), oldestJournal: 2 }), /corrupt or truncated/],
      ["a head with generation 0", JSON.stringify({ ...(await readHeadDoc(ctx.server.client, s.bucket, "site/")), generation: 0 }), /not a positive integer/],
      ["a head whose manifest key leaves the meta prefix", JSON.stringify({ ...(await readHeadDoc(ctx.server.client, s.bucket, "site/")), generation: 2, manifestKey: "other/manifest" }), /is not the manifest of generation 2/],
    ];
    for (const [what, body, msg] of headCases) {
      await putBytes(ctx.server.client, s.bucket, "site/.fansync/head.json", body);
      const r = await s.pull();
      assert.equal(r.code, 8, `${what}: exit ${r.code}\n${r.stderr}`);
      assert.match(r.stderr, msg, what);
      await unchanged(s, before, what);
    }
    // Back to the real head (the uploader, too, refuses to build on a broken one), then a
    // generation 3 and a head that goes back to 2.
    await putBytes(ctx.server.client, s.bucket, "site/.fansync/head.json", goodHead);
    await s.push("--force");
    await writeTree(s.master, { "new.html": "n" });
    await s.push();
    expectCode(await s.pull(), 0);
    const at = await snapshot(s.node);
    const head = await readHeadDoc(ctx.server.client, s.bucket, "site/");
    await putBytes(ctx.server.client, s.bucket, "site/.fansync/head.json", JSON.stringify({ ...head, generation: (head.generation as number) - 1, manifestKey: `site/.fansync/manifests/${pad((head.generation as number) - 1)}.ndjson.gz`, oldestJournal: 0 }));
    const back = await s.pull();
    assert.equal(back.code, 8, back.stderr);
    assert.match(back.stderr, /went backwards/);
    assert.deepEqual(await snapshot(s.node), at);
    fig.hostile++;
  });

  test("hostile and broken journals: exit 8, nothing applied", async (t) => {
    if (skipEngineTier(t)) return;
    const s = await setup("hostile-journal");
    await writeTree(s.master, { "d.html": "d" });
    await s.push();
    const before = await snapshot(s.node);
    const key = `site/.fansync/journal/${pad(2)}.json`;
    const j = JSON.parse((await getBytes(ctx.server.client, s.bucket, key)).toString()) as Record<string, unknown>;
    const put = (p: string) => ({ path: p, size: 1, mtimeMs: 1, mode: 0o644, sha256: sha("x"), etag: "\"x\"" });
    const cases: [string, string, RegExp][] = [
      ["a .. put", JSON.stringify({ ...j, puts: [put(`../${path.basename(s.outside)}/x`)] }), /invalid paths/],
      ["an absolute delete", JSON.stringify({ ...j, deletes: ["/etc/passwd"] }), /absolute/],
      ["a control character", JSON.stringify({ ...j, puts: [put("x\u0007.html")] }), /control character/],
      ["a wrong generation", JSON.stringify({ ...j, generation: 7 }), /says generation 7/],
      ["not JSON", "{{{", /not valid JSON/],
      ["truncated", JSON.stringify(j).slice(0, 25), /not valid JSON/],
    ];
    for (const [what, body, msg] of cases) {
      await putBytes(ctx.server.client, s.bucket, key, body);
      const r = await s.pull();
      assert.equal(r.code, 8, `${what}: exit ${r.code}\n${r.stderr}`);
      assert.match(r.stderr, msg, what);
      await unchanged(s, before, what);
    }
  });

  test("content that does not match the manifest's sha256: that file fails, nothing is committed (exit 8)", async (t) => {
    if (skipEngineTier(t)) return;
    const s = await setup("hostile-sha");
    const before = await snapshot(s.node);
    await writeTree(s.master, { "a.html": "A2", "e.html": "e" });
    await s.push();
    // Same size, other bytes: not a truncation, a corrupt or substituted object.
    const list = await entries(s);
    const forged = list.map((x) => (x.path === "e.html" ? { ...x, sha256: sha("f") } : x));
    await plant(s, 3, forged);
    const r = await s.pull();
    assert.equal(r.code, 8, r.stderr);
    assert.match(r.stderr, /e\.html.*sha256/);
    await unchanged(s, before, "wrong sha256");
    assert.deepEqual((await readdir(s.node, { recursive: true })).filter((n) => n.includes(".fansync-tmp-")), []);
  });

  test("symlinks in the docroot: nothing is written, chmodded or deleted through them", async (t) => {
    if (skipEngineTier(t)) return;
    const s = await setup("hostile-symlink");
    // A directory replaced by a symlink to a directory outside, between two runs.
    await writeFile(path.join(s.outside, "b.html"), "outside b");
    await rm(path.join(s.node, "sub"), { recursive: true });
    await symlink(s.outside, path.join(s.node, "sub"));
    const outsideBefore = await snapshot(s.outside);
    await writeTree(s.master, { "sub/b.html": "bb2", "sub/new.html": "new" });
    await rm(path.join(s.master, "sub/c.css"));
    await s.push();
    const r = await s.pull();
    assert.equal(r.code, 8, r.stderr);
    assert.match(r.stderr, /"sub" is a symlink/);
    assert.deepEqual(await snapshot(s.outside), outsideBefore, "nothing written or deleted through the symlink");
    fig.hostile++;
    // A file replaced by a symlink to a file outside, and a generation that only changes its mtime.
    await rm(path.join(s.node, "sub"));
    expectCode(await s.pull(), 0);
    const target = path.join(s.outside, "victim.txt");
    await writeFile(target, "victim");
    await utimes(target, new Date(1_000_000), new Date(1_000_000));
    const victimBefore = await stat(target);
    await rm(path.join(s.node, "a.html"));
    await symlink(target, path.join(s.node, "a.html"));
    await utimes(path.join(s.master, "a.html"), new Date(1_700_000_000_000), new Date(1_700_000_000_000));
    await s.push();
    const r2 = await s.pull();
    assert.ok([0, 8].includes(r2.code ?? -1), r2.stderr);
    const victimAfter = await stat(target);
    assert.equal(victimAfter.mtimeMs, victimBefore.mtimeMs, "the file outside kept its mtime");
    assert.equal(victimAfter.mode, victimBefore.mode, "the file outside kept its mode");
    assert.equal(await readFile(target, "utf8"), "victim");
    fig.hostile++;
  });

  test("config and command line: unknown keys, wrong types, bad URLs, missing bucket, unreachable endpoint", async (t) => {
    if (skipEngineTier(t)) return;
    const s = await setup("hostile-cli");
    const cfg = path.join(ctx.tmp("cfg"), "fansync.yaml");
    const cases: [string, string[], number, RegExp][] = [];
    await writeFile(cfg, "concurency: 4\nbogus: 1\n");
    cases.push(["unknown keys", ["pull", s.url, s.node, "-c", cfg, ...ctx.flags(s.nstate)], 3, /concurency: unknown key \(did you mean "concurrency"\?\)[\s\S]*bogus: unknown key/]);
    const cfg2 = cfg.replace(".yaml", "2.yaml");
    await writeFile(cfg2, "concurrency: lots\nforce: maybe\nmaxDelete: -3\n");
    cases.push(["wrong types", ["pull", s.url, s.node, "-c", cfg2, ...ctx.flags(s.nstate)], 3, /concurrency: expected a non-negative integer[\s\S]*force: expected true or false/]);
    const cfg3 = cfg.replace(".yaml", "3.yaml");
    await writeFile(cfg3, "secretAccessKey: abc\n");
    cases.push(["a secret in the config", ["pull", s.url, s.node, "-c", cfg3, ...ctx.flags(s.nstate)], 3, /credentials do not belong in a config file/]);
    const cfg4 = cfg.replace(".yaml", "4.yaml");
    await writeFile(cfg4, "a: [unclosed\n");
    cases.push(["not YAML", ["pull", s.url, s.node, "-c", cfg4, ...ctx.flags(s.nstate)], 3, /not valid YAML/]);
    cases.push(["a malformed s3 URL", ["pull", "s3:/bucket", s.node, ...ctx.flags(s.nstate)], 2, /not an s3 location/]);
    cases.push(["an invalid bucket name", ["pull", "s3://UPPER_case/x", s.node, ...ctx.flags(s.nstate)], 2, /invalid bucket name/]);
    cases.push(["a .. prefix", ["pull", "s3://bucket/a/../b", s.node, ...ctx.flags(s.nstate)], 2, /invalid prefix/]);
    cases.push(["an unknown flag", ["pull", s.url, s.node, "--frobnicate"], 2, /unknown option/]);
    cases.push(["a bad duration", ["pull", s.url, s.node, "--interval", "soon", ...ctx.flags(s.nstate)], 2, /interval: expected a duration/]);
    cases.push(["a missing bucket", ["pull", "s3://no-such-bucket-fansync/x", s.node, ...ctx.flags(s.nstate)], 7, /bucket does not exist/]);
    cases.push(["an unreachable endpoint", ["pull", s.url, s.node, "--endpoint-url", "http://127.0.0.1:9", "--state-dir", s.nstate], 7, /cannot reach http:\/\/127\.0\.0\.1:9/]);
    cases.push(["a bad endpoint URL", ["pull", s.url, s.node, "--endpoint-url", "ftp://x", "--state-dir", s.nstate], 2, /endpointUrl: expected an http\(s\):\/\/ URL/]);
    cases.push(["a missing docroot for push", ["push", path.join(s.master, "nope"), s.url, ...ctx.flags(s.mstate)], 9, /does not exist/]);
    const before = await snapshot(s.node);
    for (const [what, args, code, msg] of cases) {
      const r = await ctx.cli(args);
      assert.equal(r.code, code, `${what}: exit ${r.code}\n${r.stderr}`);
      assert.match(r.stderr, msg, what);
      await unchanged(s, before, what);
    }
  });

  test("rejected credentials and clock skew: exit 7 with a clear message; the secret is never logged", async () => {
    const s = await setup("hostile-auth");
    const proxy = await startProxy(ctx.server.endpoint);
    const secret = `SECRET-${randomBytes(8).toString("hex")}`;
    const env = { AWS_ACCESS_KEY_ID: "AKIDFANSYNCTEST", AWS_SECRET_ACCESS_KEY: secret };
    const before = await snapshot(s.node);
    try {
      const cases: [string, number, string, RegExp][] = [
        ["InvalidAccessKeyId", 403, "InvalidAccessKeyId", /credentials were rejected \(InvalidAccessKeyId\)/],
        ["SignatureDoesNotMatch", 403, "SignatureDoesNotMatch", /credentials were rejected \(SignatureDoesNotMatch\)/],
        ["ExpiredToken", 400, "ExpiredToken", /credentials were rejected \(ExpiredToken\)/],
        ["RequestTimeTooSkewed", 403, "RequestTimeTooSkewed", /clock is wrong[\s\S]*NTP/],
        ["AccessDenied", 403, "AccessDenied", /access denied/],
      ];
      for (const [what, status, code, msg] of cases) {
        proxy.fault = () => ({ kind: "status", status, code });
        for (const cmd of [["pull", s.url, s.node], ["push", s.master, s.url]]) {
          const r = await ctx.cli([...cmd, "--endpoint-url", proxy.url, "--state-dir", cmd[0] === "pull" ? s.nstate : s.mstate, "--log-format", "json", "--log-level", "trace"], env);
          assert.equal(r.code, 7, `${what} (${cmd[0]}): exit ${r.code}\n${r.stderr}`);
          assert.match(r.stderr, msg, `${what} (${cmd[0]})`);
          assert.ok(!r.stdout.includes(secret) && !r.stderr.includes(secret), `${what}: the secret key appeared in the output`);
          await unchanged(s, before, what);
        }
      }
      fig.faults += proxy.injected;
    } finally {
      await proxy.close();
    }
  });

  test("a full disk on a node: exit 9 saying so, nothing half-written; the run after space is freed converges", async (t) => {
    if (skipEngineTier(t)) return;
    const mnt = ctx.tmp("tmpfs");
    try {
      execFileSync("mount", ["-t", "tmpfs", "-o", "size=512k", "fansync-test", mnt], { stdio: "pipe" });
    } catch (err) {
      t.skip(`cannot mount a tmpfs (${String((err as Error).message).split("\n")[0]}): needs root`);
      return;
    }
    try {
      const bucket = await ctx.server.bucket("hostile-disk");
      const master = ctx.tmp("master");
      const nstate = ctx.tmp("nstate");
      const r = rng(SEED + 31);
      const files: Record<string, Buffer> = {};
      for (let i = 0; i < 8; i++) files[`f${i}.bin`] = seededBytes(r.int(1, 1e9), 120 * 1024);
      await writeTree(master, files);
      const url = `s3://${bucket}/site`;
      expectCode(await ctx.cli(["push", master, url, ...ctx.flags(ctx.tmp("mstate"))]), 0);
      const node = path.join(mnt, "www");
      await mkdir(node);
      await writeFile(path.join(node, "keep.txt"), "a file that was there");
      const before = await snapshot(node);
      const full = await ctx.cli(["pull", url, node, ...ctx.flags(nstate), "--status-file", path.join(mnt, "status.json")]);
      assert.equal(full.code, 9, full.stderr);
      assert.match(full.stderr, /ENOSPC[\s\S]*disk is full/);
      assert.deepEqual(await snapshot(node), before, "the docroot is as it was, no temp file left");
      fig.hostile++;
      execFileSync("mount", ["-o", "remount,size=4m", mnt]);
      expectCode(await ctx.cli(["pull", url, node, ...ctx.flags(nstate)]), 0);
      const eq = await checkDocrootEqualsTree(node, master, (rel) => rel === "keep.txt");
      assert.deepEqual(eq.problems, []);
      fig.verified(eq);
    } finally {
      execFileSync("umount", ["-l", mnt]);
    }
  });

  test("files that change while they are uploaded are never published with a sha256 that does not match the bytes", async (t) => {
    if (skipEngineTier(t)) return;
    const bucket = await ctx.server.bucket("hostile-churn", { versioning: true });
    const master = ctx.tmp("master");
    const mstate = ctx.tmp("mstate");
    const r = rng(SEED + 32);
    await writeTree(master, { "stable.html": "s", "hot.txt": "0", "big.bin": seededBytes(1, 6 * 1024 * 1024) });
    const url = `s3://${bucket}/site`;
    const args = ["push", master, url, ...ctx.flags(mstate), "--multipart-threshold", "5MiB", "--part-size", "5MiB"];
    expectCode(await ctx.cli(args), 0);
    let stop = false;
    let writes = 0;
    const writer = (async () => {
      while (!stop) {
        await writeFile(path.join(master, "hot.txt"), seededBytes(r.int(1, 1e9), r.int(1, 300_000)));
        if (writes % 20 === 0) {
          const tmp = path.join(master, ".big.tmp");
          await writeFile(tmp, seededBytes(r.int(1, 1e9), 6 * 1024 * 1024));
          // Half the time in place (a torn file), half by rename (an atomic replace).
          if (r.next() < 0.5) await rename(tmp, path.join(master, "big.bin"));
          else {
            await writeFile(path.join(master, "big.bin"), await readFile(tmp));
            await rm(tmp);
          }
        }
        writes++;
        await sleep(1);
      }
    })();
    try {
      for (let i = 0; i < 4; i++) {
        const res = await ctx.cli([...args, "--exclude", ".big.tmp"]);
        assert.ok([0, 4].includes(res.code ?? -1), res.stderr);
        const h = await checkHeadComplete(ctx.server.client, bucket, "site/", { strict: ctx.server.features.versioning });
        fig.verified(h);
      }
    } finally {
      stop = true;
      await writer;
    }
    fig.hostile++;
    assert.ok(writes > 10, `the writer changed the files ${writes} times`);
    expectCode(await ctx.cli([...args, "--exclude", ".big.tmp"]), 0);
    await checkHeadComplete(ctx.server.client, bucket, "site/", { strict: true });
  });
});
