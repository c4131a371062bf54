/**
 * `fansync demo` end to end, as a child process with a temp --dir: it starts its own embedded S3
 * server and children, makes its edits, and exits 0 only when every web docroot equals the master.
 * (It does not use the suite's server: the demo embeds fauxqs whatever FANSYNC_TEST_SERVER says.)
 */
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { test } from "node:test";
import { runCli } from "../helpers/cli.ts";
import { snapshot, tempDir } from "../helpers/tree.ts";

test("fansync demo converges every node and exits 0", { timeout: 150_000 }, async () => {
  const t = tempDir("demo");
  try {
    const r = await runCli(["demo", "--dir", t.dir], { timeoutMs: 140_000 });
    assert.equal(r.code, 0, `${r.stdout.slice(-3000)}\n${r.stderr}`);
    assert.match(r.stdout, /✓ all 3 web docroots equal the master byte for byte \(1012 files/);
    // Buckets are counted as locations, pullers as web nodes; the end says where everything is.
    assert.match(r.stdout, /✓ generation \d+ in all 4 locations and on all 3 web nodes in /);
    assert.match(r.stdout, new RegExp(`Kept in ${t.dir.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}: the master's docroot in .*, logs in `));
    const summary = r.stdout.slice(r.stdout.indexOf("Summary:"));
    for (const row of ["initial site", "add blog/post-4.html", "modify css/site.css", "delete about.html", "rename img/hero.png", "burst of 1,000 files", "user upload on web-us: uploads/2026/user-photo.jpg"]) {
      const line = summary.split("\n").find((l) => l.startsWith(row));
      assert.ok(line, `summary row for ${row}`);
      // Seven timings per row (primary, three regions, three web nodes), none missing.
      assert.equal(line.trim().split(/\s+/).slice(-7).filter((c) => /^\d+\.\d$/.test(c)).length, 7, line);
    }
    // Events: the web nodes poll every 10 minutes, so a change that reached them within the demo's
    // 60 s per change came by a message; the relay in the demo's gate stands in for S3's notification.
    assert.match(r.stdout, /events: each web node long-polls its own SQS queue .*--interval 10m/);
    assert.match(r.stdout, /Events: 4 of 4 web node processes woken by events \(web-us \(pull, before the two-way act\), web-us \(sync\), web-jp, web-uk\); their poll interval is 10m/);
    for (const node of ["web-us \\(pull, before the two-way act\\)", "web-us \\(sync\\)", "web-jp", "web-uk"]) {
      assert.match(r.stdout, new RegExp(`^  ${node}: [1-9]\\d* message\\(s\\), queue listening$`, "m"), node);
    }
    assert.match(r.stdout, /the relay published [1-9]\d* head write\(s\) to the buckets' SNS topics, standing in for S3's ObjectCreated notification \(fauxqs's S3 sends none\)/);
    // --dir keeps the files: check the docroots ourselves, byte for byte.
    const master = await snapshot(path.join(t.dir, "master"));
    // The two-way act: the file a "user" uploaded on the US web node (a sync writer owning uploads/**)
    // is in the master's docroot, published by the US node, and on every other web node.
    assert.equal(master.size, 1012);
    const upload = master.get("uploads/2026/user-photo.jpg");
    assert.ok(upload, "the user upload reached the master's docroot");
    assert.equal(upload.size, 4096);
    assert.match(r.stdout, /✓ uploads\/2026\/user-photo\.jpg is in the master's docroot too/);
    for (const node of ["us", "jp", "uk"]) {
      const got = await snapshot(path.join(t.dir, "nodes", node, "www"));
      assert.deepEqual([...got].map(([p, f]) => [p, f.sha256]).sort(), [...master].map(([p, f]) => [p, f.sha256]).sort(), `web node ${node}`);
      const status = JSON.parse(await readFile(path.join(t.dir, "nodes", node, "status.json"), "utf8")) as { status: string; source?: string; target?: string; node?: string };
      assert.equal(status.status, "OK");
      if (node === "us") {
        // After the two-way act the US node is a sync writer on the primary.
        assert.equal(status.target, "s3://fansync-demo-primary/site/");
        assert.equal(status.node, "web-us");
      } else assert.equal(status.source, `s3://fansync-demo-${node}/site/`, "each pulling node is served by its own region");
    }
    // Every child was stopped with SIGTERM and drained cleanly.
    for (const name of ["uploader", "replicator", "puller-us", "puller-jp", "puller-uk", "sync-master", "sync-us"]) {
      const log = await readFile(path.join(t.dir, "logs", `${name}.log`), "utf8");
      assert.match(log, /"msg":"stopped"/, `${name} stopped cleanly`);
    }
  } finally {
    t.cleanup();
  }
});
