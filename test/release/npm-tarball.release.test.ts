/**
 * The npm tarball: what it holds, and installed as `npm install -g` would (into a temp prefix,
 * from npm's cache): it runs on Node >= 22, publishes and pulls, refuses an older Node with one
 * clear message and exit 2, carries nothing of the demo's server and says so when asked for the demo.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdir, readdir } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { after, before, test } from "node:test";
import { CreateBucketCommand } from "@aws-sdk/client-s3";
import { nodeRuntime } from "../../release/node-runtime.ts";
import { runCli } from "../helpers/cli.ts";
import { loadRelease } from "../helpers/release.ts";
import { freePort, launch, testEnv, type TestServer } from "../helpers/s3-server.ts";
import { snapshot, tempDir, writeTree } from "../helpers/tree.ts";

const run = promisify(execFile);
const rel = await loadRelease();

let prefix: { dir: string; cleanup: () => void };
let s3: TestServer;
before(async () => {
  prefix = tempDir("npm-prefix");
  Object.assign(process.env, testEnv());
  // npm's cache already holds every dependency (npm ci put them there): no registry needed.
  await run("npm", ["install", "--global", "--prefix", prefix.dir, "--prefer-offline", "--no-audit", "--no-fund", rel.npm], { maxBuffer: 16 << 20 });
  s3 = await launch("moto", await freePort());
});
after(async () => {
  await s3?.stop();
  prefix?.cleanup();
});

const bin = () => path.join(prefix.dir, "bin", "fansync");
// Node 24 (the one running the tests) first on PATH, as an operator would have it.
const node24Path = () => `${path.dirname(process.execPath)}:/usr/bin:/bin`;

test("the tarball holds the CLI, the units, configs, cron line and IAM policies, and no sources or tests", async () => {
  const { stdout } = await run("tar", ["-tzf", rel.npm], { maxBuffer: 16 << 20 });
  const files = stdout.split("\n").filter(Boolean).map((f) => f.replace(/^package\//, ""));
  for (const f of ["bin/fansync.js", "dist/cli/main.js", "package.json", "README.md", "infra/systemd/fansync-watch.service", "infra/systemd/fansync-replicate.service",
    "infra/systemd/fansync-pull.service", "infra/systemd/fansync-pull.timer", "infra/config/master.yaml", "infra/config/replicator.yaml",
    "infra/config/node-us.yaml", "infra/cron/fansync-pull.cron", "infra/iam/puller.json", "infra/iam/README.md"]) {
    assert.ok(files.includes(f), `${f} is in the tarball`);
  }
  assert.deepEqual(files.filter((f) => /^(src|test|release|bench|localstack|out)\//.test(f)), []);
  const pkg = JSON.parse((await run("tar", ["-xzOf", rel.npm, "package/package.json"])).stdout) as { dependencies: Record<string, string>; engines: { node: string } };
  assert.equal(pkg.engines.node, ">=22");
  for (const dep of ["fauxqs", "fastify"]) assert.equal(pkg.dependencies[dep], undefined, `${dep} is no runtime dependency`);
});

test("installed, it has no demo server among its packages", async () => {
  const modules = await readdir(path.join(prefix.dir, "lib", "node_modules", "fansync", "node_modules"));
  assert.ok(modules.includes("pino"), "runtime dependencies are installed");
  for (const dep of ["fauxqs", "fastify", "@fastify"]) assert.ok(!modules.includes(dep), `${dep} is not installed`);
});

test("on Node >= 22 it runs: --version, push and pull", { timeout: 120_000 }, async () => {
  const env = { PATH: node24Path() };
  const v = await runCli(["--version"], { command: [bin()], env });
  assert.equal(v.stdout.trim(), rel.version, v.stderr);
  const t = tempDir("npm-run");
  try {
    await s3.client.send(new CreateBucketCommand({ Bucket: "npm-tarball" }));
    await writeTree(path.join(t.dir, "master"), { "index.html": "<h1>npm</h1>\n", "a/b.txt": "b\n" });
    await mkdir(path.join(t.dir, "node"));
    const flags = ["--endpoint-url", s3.endpoint, "--log-format", "json"];
    const push = await runCli(["push", path.join(t.dir, "master"), "s3://npm-tarball/site/", "--state-dir", path.join(t.dir, "s1"), ...flags], { command: [bin()], env });
    assert.equal(push.code, 0, push.stderr);
    const pull = await runCli(["pull", "s3://npm-tarball/site/", path.join(t.dir, "node"), "--state-dir", path.join(t.dir, "s2"), ...flags], { command: [bin()], env });
    assert.equal(pull.code, 0, pull.stderr);
    assert.deepEqual([...(await snapshot(path.join(t.dir, "node"))).keys()].sort(), ["a/b.txt", "index.html"]);
  } finally {
    t.cleanup();
  }
});

/** A Node.js older than 22: the machine's /usr/bin/node when it is one, else Node 20 from the npm registry (cached). */
async function oldNode(): Promise<string> {
  const system = await run("/usr/bin/node", ["-p", "process.versions.node"]).then((r) => r.stdout.trim(), () => undefined);
  if (system && Number(system.split(".")[0]) < 22) return "/usr/bin/node";
  return (await nodeRuntime(rel.host, "20.20.2")).bin;
}

test("on an older Node it refuses to start: one clear message, exit 2", async () => {
  const old = await oldNode();
  const version = (await run(old, ["-p", "process.versions.node"])).stdout.trim();
  assert.ok(Number(version.split(".")[0]) < 22, `the old Node is ${version}`);
  // `#!/usr/bin/env node` finds the old one first on PATH, as a host's /usr/bin/node would be.
  const r = await runCli(["pull", "--config", "/etc/fansync/node.yaml"], { command: [bin()], env: { PATH: `${path.dirname(old)}:/usr/bin:/bin` } });
  assert.equal(r.code, 2);
  assert.equal(r.stdout, "");
  assert.match(r.stderr, new RegExp(`^fansync: Node\\.js ${version.replace(/\./g, "\\.")} \\(.+\\) is too old: fansync needs Node\\.js 22 or newer\\.\\n  what to do: .+\\n$`));
});

test("`fansync demo` from the tarball says in one line how to get the demo (exit 2)", async () => {
  const r = await runCli(["demo"], { command: [bin()], env: { PATH: node24Path() } });
  assert.equal(r.code, 2);
  assert.equal(r.stderr, "fansync: the demo's embedded S3 server (the fauxqs package) is not part of a release: run `npm ci && npx fansync demo` in a clone of fansync's repository\n");
});
