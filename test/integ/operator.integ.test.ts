/**
 * Operator experience (issue 16), through the CLI as a child process: what a person sees and the
 * exit code, for the cases that sent operators the wrong way.
 */
import assert from "node:assert/strict";
import { readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { describe, test } from "node:test";
import { startCli, waitCli } from "../helpers/cli.ts";
import { expectCode, useServer } from "../helpers/ctx.ts";
import { writeTree } from "../helpers/tree.ts";

const ctx = useServer();
const server = process.env.FANSYNC_TEST_SERVER ?? "moto";

describe(`operator experience (${server})`, () => {
  test("pull into a docroot that does not exist: created when its parent exists (rsync's rule), refused with exit 9 when the parent is missing too", async () => {
    const bucket = await ctx.server.bucket("op-newroot");
    const master = ctx.tmp("master");
    const url = `s3://${bucket}/site/`;
    await writeTree(master, { "index.html": "<p>hi</p>\n" });
    expectCode(await ctx.cli(["push", master, url, ...ctx.flags(ctx.tmp("ms"))]), 0);
    const parent = ctx.tmp("parent");
    const fresh = path.join(parent, "www");
    const r = await ctx.cli(["pull", url, fresh, ...ctx.flags(ctx.tmp("ns"))]);
    expectCode(r, 0);
    assert.equal(await readFile(path.join(fresh, "index.html"), "utf8"), "<p>hi</p>\n");
    assert.ok(r.logs.some((l) => l.msg === "created the docroot (its parent exists)"));
    const unmounted = path.join(parent, "not-mounted", "www");
    const bad = await ctx.cli(["pull", url, unmounted, ...ctx.flags(ctx.tmp("ns2"))]);
    expectCode(bad, 9);
    assert.match(bad.stderr, /does not exist or cannot be read \(ENOENT, nor does its parent .*not-mounted\)/);
    assert.match(bad.stderr, /what to do: is the volume mounted\?/);
  });

  test("a deletion the master approves reaches every node past its --max-delete; until then the node applies nothing and its status line says what to run", async () => {
    const bucket = await ctx.server.bucket("op-approve");
    const master = ctx.tmp("master");
    const node = ctx.tmp("node");
    const url = `s3://${bucket}/site/`;
    const mflags = ctx.flags(ctx.tmp("ms"));
    const status = path.join(ctx.tmp("st"), "status.json");
    const nstate = ctx.tmp("ns");
    const pull = () => ctx.cli(["pull", url, node, ...ctx.flags(nstate), "--max-delete", "2", "--status-file", status]);
    await writeTree(master, Object.fromEntries([["index.html", "v1\n"], ...Array.from({ length: 7 }, (_, i) => [`p${i}.html`, `${i}\n`])]));
    expectCode(await ctx.cli(["push", master, url, ...mflags]), 0);
    expectCode(await pull(), 0);
    for (const i of [0, 1, 2]) await rm(path.join(master, `p${i}.html`));
    await writeFile(path.join(master, "index.html"), "v2\n");
    expectCode(await ctx.cli(["push", master, url, ...mflags]), 0);
    const refused = await pull();
    expectCode(refused, 5);
    assert.equal(await readFile(path.join(node, "index.html"), "utf8"), "v1\n", "a refused generation applies nothing");
    const line = await readFile(status.replace(/\.json$/, ".txt"), "utf8");
    assert.match(line, /^ERROR 1 GuardError: refusing to delete 3 of 8 files .* -- if the master meant these deletions: run `fansync push --approve-deletes` there/);
    // The master approves once, for the whole fleet: nothing new to publish, the head records it.
    const approve = await ctx.cli(["push", master, url, ...mflags, "--approve-deletes"]);
    expectCode(approve, 0);
    assert.ok(approve.logs.some((l) => l.msg === "approved the head generation's deletions for every node" && l.approvedDeletes === 3), approve.stdout);
    expectCode(await pull(), 0);
    assert.equal(await readFile(path.join(node, "index.html"), "utf8"), "v2\n");
    await assert.rejects(readFile(path.join(node, "p0.html")));
    assert.match(await readFile(status.replace(/\.json$/, ".txt"), "utf8"), /^OK 2/);
  });

  test("a first pull with --delete-extraneous into a docroot holding a stray file downloads the site (the guard counts the site, not the stray)", async () => {
    const bucket = await ctx.server.bucket("op-extra");
    const master = ctx.tmp("master");
    const node = ctx.tmp("node");
    const url = `s3://${bucket}/site/`;
    await writeTree(master, { "index.html": "hi\n", "a.html": "a\n", "b.html": "b\n" });
    await writeTree(node, { "stray.html": "left by hand\n" });
    expectCode(await ctx.cli(["push", master, url, ...ctx.flags(ctx.tmp("ms"))]), 0);
    expectCode(await ctx.cli(["pull", url, node, ...ctx.flags(ctx.tmp("ns")), "--delete-extraneous"]), 0);
    assert.equal(await readFile(path.join(node, "index.html"), "utf8"), "hi\n");
    await assert.rejects(readFile(path.join(node, "stray.html")));
  });

  test("watch started on a head a rollback published warns, naming the generation, before it publishes over it", async () => {
    const bucket = await ctx.server.bucket("op-rbwatch");
    const master = ctx.tmp("master");
    const url = `s3://${bucket}/site/`;
    const flags = ctx.flags(ctx.tmp("ms"));
    await writeTree(master, { "index.html": "one\n", "a.html": "a\n" });
    expectCode(await ctx.cli(["push", master, url, ...flags]), 0);
    // The old bytes of index.html stay in the bucket under another name: the rollback needs no --from.
    await writeTree(master, { "index.html": "two\n", "old.html": "one\n" });
    expectCode(await ctx.cli(["push", master, url, ...flags]), 0);
    expectCode(await ctx.cli(["rollback", url, "--to", "1", ...flags]), 0);
    const w = startCli(["watch", master, url, ...flags, "--delay", "200ms", "--max-delay", "1s"]);
    let warned = false;
    for (let i = 0; i < 60 && !warned; i++) {
      await new Promise((r) => setTimeout(r, 200));
      warned = w.out.stdout.includes("was published by a rollback");
    }
    w.kill("SIGTERM");
    const res = await waitCli(w);
    assert.ok(warned, res.stdout.slice(-3000));
    const line = res.logs.find((l) => String(l.msg).includes("was published by a rollback"));
    assert.equal(line?.generation, 3);
    assert.equal(line?.level, 40);
    assert.equal(res.code, 0, res.stderr);
  });
});
