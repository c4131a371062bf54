/**
 * Operator experience (issue 16), through the CLI as a child process: what a person sees and the
 * exit code, for the cases that sent operators the wrong way.
 */
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
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
