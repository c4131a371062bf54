/**
 * Every command takes its locations and docroot from `--config` alone, as a systemd unit runs it
 * (`fansync <command> --config /etc/fansync/<role>.yaml`, issue 15): push and watch (docroot,
 * target), replicate (source, targets, watch), pull (sources, docroot). A missing location is a
 * one-line usage error (exit 2), not commander's help dump.
 */
import assert from "node:assert/strict";
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { stringify } from "yaml";
import { startCli, waitCli } from "../helpers/cli.ts";
import { expectCode, useServer } from "../helpers/ctx.ts";
import { readHeadDoc } from "../helpers/s3.ts";
import { snapshot, writeTree } from "../helpers/tree.ts";

const ctx = useServer();

const SITE = { "index.html": "<h1>from a config file</h1>\n", "css/site.css": "body{}\n" };

/** Write a config file holding `doc` plus the test server's endpoint; returns its path. */
async function configFile(dir: string, name: string, doc: Record<string, unknown>): Promise<string> {
  const file = path.join(dir, name);
  await writeFile(file, stringify({ endpointUrl: ctx.server.endpoint, pathStyle: true, logFormat: "json", ...doc }));
  return file;
}

test("push, replicate and pull run from --config alone", { timeout: 120_000 }, async () => {
  const dir = ctx.tmp("cfgpos");
  const primary = await ctx.server.bucket("cfgpos-primary");
  const region = await ctx.server.bucket("cfgpos-region");
  const master = path.join(dir, "master");
  const node = path.join(dir, "node");
  await writeTree(master, SITE);
  await mkdir(node);

  const push = await configFile(dir, "master.yaml", { docroot: master, target: `s3://${primary}/site/`, stateDir: path.join(dir, "state-master") });
  expectCode(await ctx.cli(["push", "--config", push]), 0);
  assert.equal((await readHeadDoc(ctx.server.client, primary, "site/")).generation, 1);

  // watch: true in the file (the replicator unit's daemon); --no-watch makes it one run here.
  const rep = await configFile(dir, "replicator.yaml", { source: `s3://${primary}/site/`, targets: [`s3://${region}/site/`], watch: true, stateDir: path.join(dir, "state-rep") });
  expectCode(await ctx.cli(["replicate", "--no-watch", "--config", rep]), 0);
  assert.equal((await readHeadDoc(ctx.server.client, region, "site/")).generation, 1);

  const pull = await configFile(dir, "node.yaml", { sources: [`s3://${region}/site/`, `s3://${primary}/site/`], docroot: node, stateDir: path.join(dir, "state-node") });
  expectCode(await ctx.cli(["pull", "--config", pull]), 0);
  assert.deepEqual([...(await snapshot(node)).keys()].sort(), Object.keys(SITE).sort());
});

test("replicate with watch: true in the config file keeps running until SIGTERM", { timeout: 60_000 }, async () => {
  const dir = ctx.tmp("cfgpos-watch");
  const primary = await ctx.server.bucket("cfgpos-wp");
  const region = await ctx.server.bucket("cfgpos-wr");
  const master = path.join(dir, "master");
  await writeTree(master, SITE);
  expectCode(await ctx.cli(["push", master, `s3://${primary}/site/`, ...ctx.flags(path.join(dir, "state-master"))]), 0);
  const rep = await configFile(dir, "replicator.yaml", { source: `s3://${primary}/site/`, targets: [`s3://${region}/site/`], watch: true, interval: "200ms", stateDir: path.join(dir, "state-rep") });
  const child = startCli(["replicate", "--config", rep]);
  const deadline = Date.now() + 30_000;
  while ((await readHeadDoc(ctx.server.client, region, "site/").catch(() => undefined))?.generation !== 1) {
    assert.ok(child.exitCode === null, `replicate exited early (${child.exitCode}):\n${child.out.stderr}`);
    assert.ok(Date.now() < deadline, "the region never got generation 1");
    await new Promise((r) => setTimeout(r, 100));
  }
  child.kill("SIGTERM");
  const r = await waitCli(child, 30_000);
  expectCode(r, 0);
  assert.ok(r.logs.some((l) => l.msg === "stopped"), "the daemon drained and said so");
});

test("watch takes docroot and target from --config", { timeout: 60_000 }, async () => {
  const dir = ctx.tmp("cfgpos-uploader");
  const primary = await ctx.server.bucket("cfgpos-up");
  const master = path.join(dir, "master");
  await writeTree(master, SITE);
  const cfg = await configFile(dir, "master.yaml", { docroot: master, target: `s3://${primary}/site/`, stateDir: path.join(dir, "state"), delay: "50ms", maxDelay: "200ms" });
  const child = startCli(["watch", "--config", cfg]);
  const deadline = Date.now() + 30_000;
  while ((await readHeadDoc(ctx.server.client, primary, "site/").catch(() => undefined))?.generation !== 1) {
    assert.ok(child.exitCode === null, `watch exited early (${child.exitCode}):\n${child.out.stderr}`);
    assert.ok(Date.now() < deadline, "watch never published generation 1");
    await new Promise((r) => setTimeout(r, 100));
  }
  child.kill("SIGTERM");
  expectCode(await waitCli(child, 30_000), 0);
});

test("a command without its locations says which is missing in one line (exit 2)", async () => {
  const dir = ctx.tmp("cfgpos-missing");
  const cfg = await configFile(dir, "empty.yaml", { stateDir: path.join(dir, "state") });
  for (const [cmd, missing, key] of [["replicate", "no primary location given", "source"], ["pull", "no source location given", "sources"], ["push", "no docroot given", "docroot"]] as const) {
    const r = await ctx.cli([cmd, "--config", cfg]);
    expectCode(r, 2);
    assert.match(r.stderr, new RegExp(`^fansync: ${missing} \\(an argument, or \`${key}\` in the config file\\)\n`), `${cmd}: ${r.stderr}`);
    assert.doesNotMatch(r.stderr, /Usage:/, `${cmd}: no help dump`);
  }
});
