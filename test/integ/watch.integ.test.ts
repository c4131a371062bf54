import assert from "node:assert/strict";
import { mkdir, rename, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { describe, test } from "node:test";
import { startCli, waitCli } from "../helpers/cli.ts";
import { useServer } from "../helpers/ctx.ts";
import { readManifestDoc } from "../helpers/s3.ts";
import { snapshot, writeTree } from "../helpers/tree.ts";
import { serverLabel } from "../helpers/s3-server.ts";

const ctx = useServer();

/** Poll until the bucket's manifest equals the docroot's snapshot (path → sha256), or time out. */
async function converged(bucket: string, root: string, timeoutMs = 20_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let last = "";
  for (;;) {
    const snap = await snapshot(root);
    const want = JSON.stringify([...snap].map(([p, s]) => [p, s.sha256]).sort());
    try {
      const { header, entries } = await readManifestDoc(ctx.server.client, bucket, "w/");
      last = JSON.stringify(entries.map((e) => [e.path, e.sha256]).sort());
      if (last === want) return header.generation as number;
    } catch {
      // not published yet
    }
    if (Date.now() > deadline) throw new Error(`bucket did not converge:\nwant ${want.slice(0, 500)}\ngot  ${last.slice(0, 500)}`);
    await new Promise((r) => setTimeout(r, 150));
  }
}

describe(`watch (${serverLabel()})`, () => {
  test("picks up create, modify, delete and rename; an event storm becomes a few generations; SIGTERM exits 0", async () => {
    const bucket = await ctx.server.bucket("watch");
    const root = ctx.tmp("master");
    const state = ctx.tmp("state");
    await writeTree(root, { "index.html": "home", "old/page.html": "page" });
    const child = startCli(["watch", root, `s3://${bucket}/w`, ...ctx.flags(state), "--delay", "200ms", "--max-delay", "2s"]);
    try {
      const g1 = await converged(bucket, root);
      await writeFile(path.join(root, "new.html"), "created");
      await converged(bucket, root);
      await writeFile(path.join(root, "index.html"), "modified home");
      await converged(bucket, root);
      await rm(path.join(root, "new.html"));
      await converged(bucket, root);
      await rename(path.join(root, "old"), path.join(root, "renamed"));
      const g5 = await converged(bucket, root);
      assert.ok(g5 > g1, `generations advanced (${g1} → ${g5})`);
      // Storm: 10,000 files written as fast as possible.
      await mkdir(path.join(root, "storm"));
      for (let d = 0; d < 100; d++) {
        await mkdir(path.join(root, "storm", `d${d}`));
        await Promise.all(Array.from({ length: 100 }, (_, i) => writeFile(path.join(root, "storm", `d${d}`, `f${i}.txt`), `storm ${d}/${i}`)));
      }
      const g6 = await converged(bucket, root, 120_000);
      assert.ok(g6 - g5 <= 10, `10,000 files became ${g6 - g5} generations, not thousands`);
    } finally {
      child.kill("SIGTERM");
    }
    const r = await waitCli(child, 40_000);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.logs.some((l) => l.msg === "stopped"), "drained and said so");
  });
});
