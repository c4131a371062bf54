/**
 * The .deb, installed into a fresh Debian root as root, and the README's "Deploying" section run
 * in it command by command (issue 15). Every ```sh block of that section is marked with the step
 * it belongs to and run here verbatim; `systemctl enable --now UNIT` is split into the real
 * `systemctl enable UNIT` (in the root) and a start of UNIT as systemd would start it, from the
 * installed unit file (see test/helpers/debian-root.ts: there is no systemd PID 1 here). The
 * example configs are used as installed, pointed at a local moto server (endpointUrl, pathStyle)
 * with the status pages on free ports; credentials come from the environment, as an instance
 * role's would. The example bucket names (fansync-primary, -us, -jp, -uk) exist on that server.
 *
 * Steady states: the uploader publishes (and publishes an edit), the replicator copies every
 * generation to the three regions, the timer's one-shot pull converges the docroot and exits 0,
 * the cron line converges it too (its output reaching syslog through `logger`), the daemons stop
 * on SIGTERM with exit 0, and purge cleans up.
 */
import assert from "node:assert/strict";
import { chmod, copyFile, mkdir, readFile, readlink, stat, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:net";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { PutBucketVersioningCommand, CreateBucketCommand } from "@aws-sdk/client-s3";
import { parseDocument } from "yaml";
import { type CapturedChild, waitCli } from "../helpers/cli.ts";
import { DebianRoot, DEFAULT_ENV } from "../helpers/debian-root.ts";
import { loadRelease, type Release } from "../helpers/release.ts";
import { readHeadDoc, readManifestDoc } from "../helpers/s3.ts";
import { freePort, launch, testEnv, type TestServer } from "../helpers/s3-server.ts";
import { snapshot, writeTree } from "../helpers/tree.ts";
import { readmeDeploySteps, normalizeOutput } from "./readme-steps.ts";

const PRIMARY = "fansync-primary";
const REGIONS = ["fansync-us", "fansync-jp", "fansync-uk"];
// A stand-in for the instance role: the AWS chain finds these in the environment.
const CREDENTIALS = { AWS_ACCESS_KEY_ID: "test", AWS_SECRET_ACCESS_KEY: "test", AWS_REGION: "us-east-1" };

const SITE: Record<string, string> = {
  "index.html": "<!doctype html><h1>fansync, installed</h1>\n",
  "about/index.html": "<h1>about</h1>\n",
  "css/site.css": "body { color: #222 }\n",
  "assets/app.js": "console.log('app');\n",
};

let rel: Release;
let root: DebianRoot;
let s3: TestServer;
let steps: Awaited<ReturnType<typeof readmeDeploySteps>>;
// The master's docroot (a host directory bind-mounted on /var/www/html for the uploader only: the
// web node's /var/www/html in the same root is the puller's).
let masterDocroot: string;
const daemons = new Map<string, CapturedChild>();
const toStart = new Set<string>();

/** Poll `probe` until it returns a value that is not undefined. */
async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 60_000, alive?: CapturedChild): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe().catch(() => undefined);
    if (v !== undefined) return v;
    if (alive && alive.exitCode !== null) throw new Error(`${what}: the process exited ${alive.exitCode} first\n${alive.out.stdout.slice(-3000)}\n${alive.out.stderr.slice(-3000)}`);
    if (Date.now() > deadline) throw new Error(`${what}: not reached in ${timeoutMs} ms${alive ? `\n${alive.out.stdout.slice(-3000)}\n${alive.out.stderr.slice(-2000)}` : ""}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function generationOf(bucket: string): Promise<number | undefined> {
  return (await readHeadDoc(s3.client, bucket, "site/").catch(() => undefined))?.generation as number | undefined;
}

/** Run a README step's commands in the root, as root; `enable --now` is split (see the file comment). */
async function runStep(step: string): Promise<string> {
  const block = steps.blocks.get(step);
  assert.ok(block, `README "Deploying" has no block for step ${step}`);
  let out = "";
  for (const cmd of block.commands) {
    const now = /^systemctl enable --now (\S+)$/.exec(cmd);
    const script = now ? `systemctl enable ${now[1]}` : cmd;
    // Commands run where the operator has the package file: /root.
    const r = await root.sh(`cd /root\n${script}`, { ...DEFAULT_ENV, ...CREDENTIALS, AWS_ENDPOINT_URL_S3: s3.endpoint });
    assert.equal(r.code, 0, `README step ${step}: \`${cmd}\` exited ${r.code}\n${r.stdout}\n${r.stderr}`);
    if (now) toStart.add(now[1] as string);
    out += r.stdout;
  }
  return out;
}

/** Point an installed example config at the test server; the status page (if any) on a free port. */
async function pointAtTestServer(file: string): Promise<void> {
  const doc = parseDocument(await readFile(root.host(file), "utf8"));
  doc.set("endpointUrl", s3.endpoint);
  doc.set("pathStyle", true);
  if (doc.has("http")) doc.set("http", `127.0.0.1:${await freePort()}`);
  await writeFile(root.host(file), doc.toString());
}

/** Start a unit the README enabled with --now, as systemd would. */
async function startUnit(unit: string, binds?: { from: string; to: string }[]): Promise<CapturedChild & { argv: string[] }> {
  assert.ok(toStart.has(unit), `the README never enables --now ${unit}`);
  const child = await root.startService(unit, { binds, env: CREDENTIALS });
  daemons.set(unit, child);
  return child;
}

async function healthz(file: string): Promise<number | undefined> {
  const doc = parseDocument(await readFile(root.host(file), "utf8"));
  const addr = doc.get("http") as string;
  const r = await fetch(`http://${addr}/healthz`, { signal: AbortSignal.timeout(2000) });
  return r.status;
}

/** The master's tree as a puller must reproduce it: path → sha256. */
async function masterTree(): Promise<Map<string, string>> {
  return new Map([...(await snapshot(masterDocroot))].map(([p, f]) => [p, f.sha256]));
}

async function nodeMatchesMaster(): Promise<boolean> {
  const want = await masterTree();
  const got = new Map([...(await snapshot(root.host("var/www/html")))].map(([p, f]) => [p, f.sha256]));
  return want.size === got.size && [...want].every(([p, h]) => got.get(p) === h);
}

describe("the .deb in a fresh Debian root, deployed as README \"Deploying\" says", { timeout: 600_000 }, () => {
  before(async () => {
    rel = await loadRelease();
    steps = await readmeDeploySteps();
    // moto: the uploader's head write needs conditional writes, which fauxqs lacks. The test's own
    // S3 client takes the test credentials from the environment.
    Object.assign(process.env, testEnv());
    [root, s3] = await Promise.all([DebianRoot.create(), freePort().then((p) => launch("moto", p))]);
    for (const b of [PRIMARY, ...REGIONS]) {
      await s3.client.send(new CreateBucketCommand({ Bucket: b }));
      // As the CDK app creates them.
      await s3.client.send(new PutBucketVersioningCommand({ Bucket: b, VersioningConfiguration: { Status: "Enabled" } }));
    }
    masterDocroot = root.host("srv/test-master-docroot");
    await writeTree(masterDocroot, SITE);
    // The docroot as a web server's package leaves it: root's, world-readable.
    await mkdir(root.host("var/www/html"), { recursive: true, mode: 0o755 });
  });

  after(async () => {
    for (const d of daemons.values()) if (d.exitCode === null && d.signalCode === null) d.kill("SIGKILL");
    await s3?.stop();
    await root?.remove();
  });

  test("every shell block of the README's Deploying section is one this test runs", () => {
    assert.deepEqual([...steps.blocks.keys()].sort(), ["check", "install", "master", "replicator", "web-node", "web-node-cron"].sort());
    assert.equal(steps.unmarked.length, 0, `unmarked shell blocks: ${steps.unmarked.join(" | ")}`);
    // The install line names the file `npm run release` builds for this machine.
    assert.ok(steps.blocks.get("install")?.commands.some((c) => c.includes(path.basename(rel.deb(rel.host)))), "README installs the .deb by its file name");
  });

  test("README install: apt-get installs the .deb offline, as root", async () => {
    await copyFile(rel.deb(rel.host), root.host(`root/${path.basename(rel.deb(rel.host))}`));
    await runStep("install");
    const files = ["usr/bin/fansync", "usr/lib/systemd/system/fansync-watch.service", "usr/lib/systemd/system/fansync-replicate.service",
      "usr/lib/systemd/system/fansync-pull.service", "usr/lib/systemd/system/fansync-pull.timer", "usr/lib/systemd/system/fansync-sync.service",
      "etc/fansync/master.yaml", "etc/fansync/replicator.yaml", "etc/fansync/node.yaml", "etc/fansync/sync.yaml", "usr/share/fansync/fansync-pull.cron"];
    for (const f of files) await stat(root.host(f));
    // Nothing of the demo's embedded S3 server came with it.
    const list = await root.exec(["dpkg-query", "-L", "fansync"]);
    assert.doesNotMatch(list.stdout, /fauxqs|fastify|node_modules/);
    const conf = await root.exec(["dpkg-query", "-W", "-f=${Conffiles}", "fansync"]);
    for (const c of ["/etc/fansync/master.yaml", "/etc/fansync/replicator.yaml", "/etc/fansync/node.yaml", "/etc/fansync/sync.yaml"]) assert.match(conf.stdout, new RegExp(c));
  });

  test("the package created the fansync system user and /var/lib/fansync, owned by it", async () => {
    const u = await root.user("fansync");
    assert.ok(u, "user fansync exists");
    assert.ok(u.uid < 1000, `a system uid, got ${u.uid}`);
    assert.equal(u.home, "/var/lib/fansync");
    assert.equal(u.shell, "/usr/sbin/nologin");
    assert.equal(await root.groupName(u.gid), "fansync");
    const st = await stat(root.host("var/lib/fansync"));
    assert.equal(st.uid, u.uid);
    assert.equal(st.gid, u.gid);
    assert.equal(st.mode & 0o7777, 0o750);
  });

  test("fansync --version runs with no Node.js anywhere in the root, as root and as fansync", async () => {
    const which = await root.sh("command -v node nodejs || echo none");
    assert.equal(which.stdout.trim(), "none");
    const asRoot = await root.exec(["fansync", "--version"], { env: { PATH: "/usr/bin:/bin" } });
    assert.equal(asRoot.code, 0, asRoot.stderr);
    assert.equal(asRoot.stdout.trim(), rel.version);
    const asUser = await root.exec(["/usr/bin/fansync", "--version"], { user: { name: "fansync", group: "fansync" }, env: { PATH: "/usr/bin:/bin" } });
    assert.equal(asUser.stdout.trim(), rel.version, asUser.stderr);
  });

  test("systemd-analyze verify passes the installed units against the real binary", async () => {
    const units = ["fansync-watch.service", "fansync-replicate.service", "fansync-pull.service", "fansync-pull.timer", "fansync-sync.service"];
    const r = await root.exec(["systemd-analyze", "verify", "--man=no", ...units.map((u) => `/usr/lib/systemd/system/${u}`)]);
    // verify exits 0 on many mistakes, so any diagnostic counts as a failure too.
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.equal((r.stdout + r.stderr).trim(), "");
    // And the check would see a missing binary: the same units against a root without it fail.
    const moved = await root.sh("mv /usr/bin/fansync /usr/bin/fansync.away\nrc=0\nsystemd-analyze verify --man=no /usr/lib/systemd/system/fansync-watch.service || rc=$?\nmv /usr/bin/fansync.away /usr/bin/fansync\nexit $rc");
    assert.notEqual(moved.code, 0);
    assert.match(moved.stderr, /fansync-watch\.service: Command \/usr\/bin\/fansync is not executable/);
  });

  test("master: README's block, then fansync-watch.service publishes the docroot and each edit", async () => {
    await pointAtTestServer("etc/fansync/master.yaml");
    await runStep("master");
    assert.equal(await readlink(root.host("etc/systemd/system/multi-user.target.wants/fansync-watch.service")), "/lib/systemd/system/fansync-watch.service");
    const watch = await startUnit("fansync-watch.service", [{ from: masterDocroot, to: "/var/www/html" }]);
    assert.deepEqual(watch.argv, ["/usr/bin/fansync", "watch", "--config", "/etc/fansync/master.yaml"]);
    await until("the primary at generation 1", async () => ((await generationOf(PRIMARY)) === 1 ? true : undefined), 60_000, watch);
    const m = await readManifestDoc(s3.client, PRIMARY, "site/");
    assert.deepEqual(m.entries.map((e) => e.path).sort(), Object.keys(SITE).sort());
    // The daemon keeps publishing: an edit becomes generation 2.
    await writeFile(path.join(masterDocroot, "index.html"), "<!doctype html><h1>edited on the master</h1>\n");
    await until("the edit published as generation 2", async () => ((await generationOf(PRIMARY)) === 2 ? true : undefined), 60_000, watch);
    assert.equal(await until("/healthz 200", async () => ((await healthz("etc/fansync/master.yaml")) === 200 ? 200 : undefined), 30_000, watch), 200);
  });

  test("replicator: README's block, then fansync-replicate.service copies each generation to the three regions", async () => {
    await pointAtTestServer("etc/fansync/replicator.yaml");
    await runStep("replicator");
    const rep = await startUnit("fansync-replicate.service");
    assert.deepEqual(rep.argv, ["/usr/bin/fansync", "replicate", "--config", "/etc/fansync/replicator.yaml"]);
    for (const r of REGIONS) await until(`${r} at generation 2`, async () => ((await generationOf(r)) === 2 ? true : undefined), 60_000, rep);
    // Still running (a daemon, from watch: true in the config), so the next generation follows.
    await writeFile(path.join(masterDocroot, "about/team.html"), "<h1>team</h1>\n");
    await until("generation 3 on the primary", async () => ((await generationOf(PRIMARY)) === 3 ? true : undefined), 60_000, daemons.get("fansync-watch.service"));
    for (const r of REGIONS) await until(`${r} at generation 3`, async () => ((await generationOf(r)) === 3 ? true : undefined), 60_000, rep);
    assert.equal(await until("/healthz 200", async () => ((await healthz("etc/fansync/replicator.yaml")) === 200 ? 200 : undefined), 30_000, rep), 200);
  });

  test("web node: README's block, then the timer's fansync-pull.service one-shot converges the docroot and exits 0", async () => {
    await pointAtTestServer("etc/fansync/node.yaml");
    await runStep("web-node");
    assert.equal(await readlink(root.host("etc/systemd/system/timers.target.wants/fansync-pull.timer")), "/lib/systemd/system/fansync-pull.timer");
    // What the timer starts is the unit its Unit= names.
    const timer = await root.unit("fansync-pull.timer");
    const service = timer.get("Timer")?.get("Unit")?.at(-1);
    assert.equal(service, "fansync-pull.service");
    assert.ok(toStart.has("fansync-pull.timer"));
    const pull = await root.startService(service as string, { env: CREDENTIALS });
    assert.deepEqual(pull.argv, ["/usr/bin/fansync", "pull", "--config", "/etc/fansync/node.yaml"]);
    const r = await waitCli(pull, 120_000);
    assert.equal(r.code, 0, `${r.stdout.slice(-3000)}\n${r.stderr}`);
    assert.ok(await nodeMatchesMaster(), "the node's docroot equals the master's");
    const st = JSON.parse(await readFile(root.host("var/www/fansync/status.json"), "utf8")) as { status: string; generation: number; source: string };
    assert.equal(st.status, "OK");
    assert.equal(st.generation, 3);
    assert.equal(st.source, "s3://fansync-us/site/", "served by its region, the first source");
    // A second run is the no-op one a timer makes every minute: exit 0 again.
    const again = await waitCli(await root.startService(service as string, { env: CREDENTIALS }), 60_000);
    assert.equal(again.code, 0, again.stderr);
  });

  test("web node with cron: README's block, then the cron line converges the docroot, its output in syslog", async () => {
    // syslog's socket in the root, where `logger` writes.
    const received: string[] = [];
    const sock = root.host("dev/log");
    const syslog: Server = createServer((c) => c.on("data", (d: Buffer) => received.push(d.toString())));
    await new Promise<void>((resolve) => syslog.listen(sock, resolve));
    await chmod(sock, 0o666);
    try {
      await runStep("web-node-cron");
      await writeFile(path.join(masterDocroot, "css/print.css"), "@media print { nav { display: none } }\n");
      // Every region, not only the node's: the check step below shows them all in step.
      for (const r of REGIONS) await until(`${r} at generation 4`, async () => ((await generationOf(r)) === 4 ? true : undefined), 60_000, daemons.get("fansync-replicate.service"));
      const r = await root.runCronJob("etc/cron.d/fansync-pull", { env: CREDENTIALS });
      assert.equal(r.command, "/usr/bin/fansync pull --config /etc/fansync/node.yaml 2>&1 | logger -t fansync-pull");
      assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
      assert.ok(await nodeMatchesMaster(), "the node's docroot equals the master's");
      const st = JSON.parse(await readFile(root.host("var/www/fansync/status.json"), "utf8")) as { status: string; generation: number };
      assert.deepEqual([st.status, st.generation], ["OK", 4]);
      await until("fansync's log lines in syslog", async () => (received.join("").includes("fansync-pull") ? true : undefined), 10_000);
      const lines = received.join("");
      assert.match(lines, /fansync-pull(\[\d+\])?: \{"level":30/, "JSON log lines, tagged fansync-pull");
      assert.doesNotMatch(lines, /"level":(50|60)/, "no error logged");
    } finally {
      await new Promise((r) => syslog.close(r));
    }
  });

  test("check: README's commands print what its output block shows", async () => {
    const out = await runStep("check");
    const shown = steps.outputs.get("check");
    assert.ok(shown, "README shows the output of the check step");
    const actual = normalizeOutput(out, { host: os.hostname() });
    assert.deepEqual(actual, normalizeOutput(shown, { host: "web-us-1" }), `README's check output differs from this run's:\n${out}`);
  });

  test("the daemons stop on SIGTERM within their TimeoutStopSec, with exit 0", async () => {
    for (const [unit, child] of daemons) {
      const u = await root.unit(unit);
      const stopSec = Number(/^(\d+)s$/.exec(u.get("Service")?.get("TimeoutStopSec")?.at(-1) ?? "")?.[1]);
      assert.ok(stopSec > 0, `${unit} has a TimeoutStopSec`);
      child.kill("SIGTERM");
      const r = await waitCli(child, stopSec * 1000);
      assert.equal(r.signal, null, `${unit} was killed (${r.signal}) instead of stopping`);
      assert.equal(r.code, 0, `${unit}: ${r.stderr}`);
      assert.ok(r.logs.some((l) => l.msg === "stopped"), `${unit} says it stopped`);
      assert.ok(!r.logs.some((l) => (l.level as number) >= 50), `${unit} logged no error: ${r.stdout.slice(-2000)}`);
    }
  });

  test("purge removes the configs and every enable symlink (the two-way unit's too); the operator's data and the user stay", async () => {
    const r = await root.sh("systemctl enable fansync-sync.service && apt-get purge -y fansync");
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout + r.stderr, /fansync: kept \/var\/lib\/fansync/);
    assert.ok((await stat(root.host("var/lib/fansync"))).isDirectory(), "state, credentials and kept conflict versions stay");
    for (const gone of ["usr/bin/fansync", "etc/fansync/master.yaml", "etc/systemd/system/multi-user.target.wants/fansync-sync.service", "etc/systemd/system/timers.target.wants/fansync-pull.timer", "etc/systemd/system/multi-user.target.wants/fansync-watch.service"]) {
      await assert.rejects(stat(root.host(gone)), { code: "ENOENT" }, `${gone} is gone`);
    }
    assert.ok(await root.user("fansync"), "the user stays (files it owns may remain, e.g. a docroot)");
  });
});
