/**
 * The single executable passes the same smoke flow as `node bin/fansync.js`: push, pull (with a
 * status file and a node report), status (local and fleet), doctor, against moto; the two must
 * agree on every exit code and doctor verdict. The executable runs with no Node.js on PATH, and
 * what it bundles lazily (pretty logs) works; its `fansync demo` says in one line how to get the demo.
 */
import assert from "node:assert/strict";
import { mkdir, readFile } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { CreateBucketCommand, PutBucketVersioningCommand } from "@aws-sdk/client-s3";
import { type FansyncCommand, NODE_LAUNCHER, runCli } from "../helpers/cli.ts";
import { loadRelease } from "../helpers/release.ts";
import { readHeadDoc } from "../helpers/s3.ts";
import { freePort, launch, testEnv, type TestServer } from "../helpers/s3-server.ts";
import { snapshot, tempDir, writeTree } from "../helpers/tree.ts";

const rel = await loadRelease();
const SITE = { "index.html": "<h1>smoke</h1>\n", "css/a.css": "a{}\n", "img/x.bin": Buffer.alloc(70_000, 7) };

let s3: TestServer;
const cleanups: (() => void)[] = [];
before(async () => {
  Object.assign(process.env, testEnv());
  s3 = await launch("moto", await freePort());
});
after(async () => {
  await s3?.stop();
  for (const c of cleanups) c();
});

/** What a flow observed, for comparing the two launchers. */
interface Flow {
  codes: Record<string, number | null>;
  doctor: { name: string; status: string }[];
}
const flows = new Map<string, Flow>();

// The executable gets a PATH with no node on it (and nothing else): it must need none.
const launchers: [string, FansyncCommand, Record<string, string>][] = [
  ["node bin/fansync.js", NODE_LAUNCHER, {}],
  ["the single executable", [rel.binary(rel.host)], { PATH: "/nonexistent" }],
];

for (const [name, command, env] of launchers) {
  describe(name, () => {
    test("push, pull, status, doctor", { timeout: 180_000 }, async () => {
      const t = tempDir("smoke");
      cleanups.push(t.cleanup);
      const bucket = `smoke-${flows.size}-${Date.now() % 100000}`;
      await s3.client.send(new CreateBucketCommand({ Bucket: bucket }));
      await s3.client.send(new PutBucketVersioningCommand({ Bucket: bucket, VersioningConfiguration: { Status: "Enabled" } }));
      const url = `s3://${bucket}/site/`;
      const master = path.join(t.dir, "master");
      const node = path.join(t.dir, "node");
      await writeTree(master, SITE);
      await mkdir(node);
      const common = ["--endpoint-url", s3.endpoint, "--log-format", "json"];
      const cli = (args: string[]) => runCli([...args, ...common], { command, env });
      const codes: Record<string, number | null> = {};
      const expect0 = (what: string, r: Awaited<ReturnType<typeof cli>>) => {
        codes[what] = r.code;
        assert.equal(r.code, 0, `${what}: exit ${r.code}\n${r.stdout.slice(-2000)}\n${r.stderr}`);
      };

      expect0("push", await cli(["push", master, url, "--state-dir", path.join(t.dir, "s-master")]));
      assert.equal((await readHeadDoc(s3.client, bucket, "site/")).generation, 1);

      const statusFile = path.join(t.dir, "status.json");
      const pulled = await cli(["pull", url, node, "--state-dir", path.join(t.dir, "s-node"), "--status-file", statusFile, "--report", "--node-id", "smoke-node"]);
      expect0("pull", pulled);
      const want = [...(await snapshot(master))].map(([p, f]) => [p, f.sha256]).sort();
      assert.deepEqual([...(await snapshot(node))].map(([p, f]) => [p, f.sha256]).sort(), want);
      assert.equal((JSON.parse(await readFile(statusFile, "utf8")) as { status: string }).status, "OK");

      const local = await cli(["status", "--status-file", statusFile]);
      expect0("status (local)", local);
      assert.match(local.stdout, /OK/);
      const fleet = await cli(["status", url]);
      expect0("status (fleet)", fleet);
      assert.match(fleet.stdout, new RegExp(`${url.replace(/[/.]/g, "\\$&")}\\s+generation 1`));
      assert.match(fleet.stdout, /^smoke-node\s+OK\s+1\s/m);

      const doc = await cli(["doctor", url, "--json"]);
      expect0("doctor", doc);
      const checks = JSON.parse(doc.stdout.split("\n").find((l) => l.startsWith("[")) ?? "[]") as { name: string; status: string }[];
      assert.ok(checks.length >= 5, doc.stdout);
      assert.ok(!checks.some((c) => c.status === "FAIL"), doc.stdout);

      // Pretty logs: pino-pretty loads lazily, the executable has it bundled.
      const pretty = await runCli(["push", master, url, "--state-dir", path.join(t.dir, "s-master"), "--endpoint-url", s3.endpoint, "--log-format", "pretty"], { command, env });
      codes["push (pretty logs)"] = pretty.code;
      assert.equal(pretty.code, 0, pretty.stderr);
      assert.match(pretty.stdout, /^\[\d\d:\d\d:\d\d\.\d{3}\] INFO/m, `pretty log lines, got:\n${pretty.stdout.slice(0, 500)}`);
      assert.doesNotMatch(pretty.stdout, /^\{"level"/m);
      flows.set(name, { codes, doctor: checks.map((c) => ({ name: c.name, status: c.status })) });
    });

    test("a push and a pull of 250 small files run on a transfer thread and leave the master's bytes", { timeout: 180_000 }, async () => {
      const t = tempDir("smoke-threads");
      cleanups.push(t.cleanup);
      const bucket = `smoke-threads-${flows.size}-${Date.now() % 100000}`;
      await s3.client.send(new CreateBucketCommand({ Bucket: bucket }));
      const url = `s3://${bucket}/site/`;
      const master = path.join(t.dir, "master");
      const node = path.join(t.dir, "node");
      const files: Record<string, string> = {};
      for (let i = 0; i < 250; i++) files[`d${i % 5}/f${i}.txt`] = `file ${i} `.repeat(i + 1);
      await writeTree(master, files);
      // The executable has no module file to start a thread from: it runs the script its build bundled in.
      const cli = (args: string[]) => runCli([...args, "--endpoint-url", s3.endpoint, "--log-format", "json", "--log-level", "debug", "--threads", "1"], { command, env });
      for (const r of [await cli(["push", master, url, "--state-dir", path.join(t.dir, "s-master")]), await cli(["pull", url, node, "--state-dir", path.join(t.dir, "s-node")])]) {
        assert.equal(r.code, 0, r.stderr);
        assert.match(r.stdout, /transfers run on transfer threads/);
      }
      const want = [...(await snapshot(master))].map(([p, f]) => [p, f.sha256]).sort();
      assert.deepEqual([...(await snapshot(node))].map(([p, f]) => [p, f.sha256]).sort(), want);
    });
  });
}

test("both launchers agree: the same exit codes and doctor verdicts", () => {
  const [a, b] = launchers.map(([n]) => flows.get(n));
  assert.ok(a && b, "both flows ran");
  assert.deepEqual(b.codes, a.codes);
  assert.deepEqual(b.doctor, a.doctor);
});

test("the single executable's `fansync demo` says in one line how to get the demo (exit 2)", async () => {
  const t = tempDir("smoke-demo");
  cleanups.push(t.cleanup);
  const r = await runCli(["demo", "--dir", t.dir], { command: [rel.binary(rel.host)], env: { PATH: "/nonexistent" } });
  assert.equal(r.code, 2, r.stderr);
  assert.equal(r.stderr, "fansync: the demo's embedded S3 server (the fauxqs package) is not part of a release: run `npm ci && npx fansync demo` in a clone of fansync's repository\n");
});

test("the single executable's version and help need no Node.js", async () => {
  const v = await runCli(["--version"], { command: [rel.binary(rel.host)], env: { PATH: "/nonexistent" } });
  assert.equal(v.stdout.trim(), rel.version);
  const h = await runCli(["replicate", "--help"], { command: [rel.binary(rel.host)], env: { PATH: "/nonexistent" } });
  assert.equal(h.code, 0);
  assert.match(h.stdout, /Usage: fansync replicate \[options\] \[primary\] \[regions\.\.\.\]/);
});
