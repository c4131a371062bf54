/**
 * `fansync sync` states that must heal (issue 27): a file↔directory conflict settled by the rule
 * instead of wedging a node, edits made while daemons were frozen (SIGSTOP) rebased before anything
 * is applied over them, names sync cannot carry reported. Real daemons against a real S3 server.
 */
import assert from "node:assert/strict";
import { rm, utimes, writeFile } from "node:fs/promises";
import path from "node:path";
import { describe, test } from "node:test";
import { expectCode, useServer } from "../helpers/ctx.ts";
import { readHeadDoc } from "../helpers/s3.ts";
import { serverLabel } from "../helpers/s3-server.ts";
import { allEqualHead, keptContents, startSync, stopSync, syncNode, syncStatusOf, textOf, until } from "../helpers/sync-nodes.ts";
import { snapshot, writeTree } from "../helpers/tree.ts";
import { skipEngineTier } from "../helpers/integ-tiers.ts";

const ctx = useServer();
const generation = async (bucket: string) => (await readHeadDoc(ctx.server.client, bucket, "w/")).generation as number;

describe(`sync heals (${serverLabel()})`, () => {
  test("dir→file on a while b adds d/new: the directory wins, a's file is kept, and a goes on publishing and applying", async (t) => {
    if (!ctx.server.features.conditionalWrites) return t.skip("needs conditional writes");
    const bucket = await ctx.server.bucket("sync-flip-a");
    const url = `s3://${bucket}/w`;
    const a = syncNode(ctx, "a");
    const b = syncNode(ctx, "b");
    const nodes = [a, b];
    await writeTree(a.root, { "d/one.html": "one", "d/two.html": "two", "p5.html": "p5 v1" });
    startSync(ctx, a, url);
    startSync(ctx, b, url);
    try {
      await until("b in step", async () => (await textOf(b, "d/two.html")) === "two" && (await allEqualHead(ctx, bucket, "w/", nodes)), 30_000, nodes);
      // Frozen together: neither sees the other's change before making its own.
      for (const n of nodes) n.child?.kill("SIGSTOP");
      await rm(path.join(a.root, "d"), { recursive: true });
      await writeFile(path.join(a.root, "d"), "d is a file on a");
      await writeTree(b.root, { "d/new-on-b.html": "new on b" });
      b.child?.kill("SIGCONT");
      await until("b's addition published", async () => (await allEqualHead(ctx, bucket, "w/", [b])) !== undefined && (await textOf(b, "d/new-on-b.html")) === "new on b", 30_000, nodes);
      a.child?.kill("SIGCONT");
      await until("one tree everywhere, the directory side", async () => ((await textOf(a, "d/new-on-b.html")) === "new on b" ? allEqualHead(ctx, bucket, "w/", nodes) : undefined), 30_000, nodes);
      assert.ok((await keptContents(a)).some((k) => k.path === "d" && k.text === "d is a file on a"), "a's file d is kept");
      // Not wedged: a later, unrelated edit on a is published and applied on b, and one on b reaches a.
      await writeTree(a.root, { "p5.html": "p5 v2 from a" });
      await until("a's later edit on b", async () => (await textOf(b, "p5.html")) === "p5 v2 from a", 30_000, nodes);
      await writeTree(b.root, { "later-b.html": "later" });
      await until("b's later edit on a", async () => (await textOf(a, "later-b.html")) === "later", 30_000, nodes);
      await until("all equal", () => allEqualHead(ctx, bucket, "w/", nodes), 30_000, nodes);
      for (const n of nodes) assert.equal((await syncStatusOf(n)).status, "OK", `${n.name}'s status`);
    } finally {
      for (const n of nodes) await stopSync(n);
    }
  });

  test("file→dir on b while a edits index.html: the directory wins, a's edit is kept, and b goes on publishing and applying", async (t) => {
    if (skipEngineTier(t)) return;
    if (!ctx.server.features.conditionalWrites) return t.skip("needs conditional writes");
    // A known limit, not a pass: versitygw refuses b's index.html/index.html while the object
    // index.html exists, and this ordering does not heal there yet (docs/guarantees.md §11).
    if (ctx.server.kind === "versitygw") return t.skip("known limit on versitygw: a file→directory flip racing another node's edit of the file is refused (ObjectParentIsFile) and does not heal yet");
    const bucket = await ctx.server.bucket("sync-flip-b");
    const url = `s3://${bucket}/w`;
    const a = syncNode(ctx, "a");
    const b = syncNode(ctx, "b");
    const nodes = [a, b];
    await writeTree(a.root, { "index.html": "home v1", "p5.html": "p5 v1" });
    startSync(ctx, a, url);
    startSync(ctx, b, url);
    try {
      await until("b in step", async () => (await textOf(b, "p5.html")) === "p5 v1" && (await allEqualHead(ctx, bucket, "w/", nodes)), 30_000, nodes);
      for (const n of nodes) n.child?.kill("SIGSTOP");
      await writeFile(path.join(a.root, "index.html"), "home v2 edited on a");
      await rm(path.join(b.root, "index.html"));
      await writeTree(b.root, { "index.html/index.html": "now a directory on b" });
      a.child?.kill("SIGCONT");
      await until("a's edit published", async () => (await allEqualHead(ctx, bucket, "w/", [a])) !== undefined && (await textOf(a, "index.html")) === "home v2 edited on a", 30_000, nodes);
      b.child?.kill("SIGCONT");
      await until("one tree everywhere, the directory side", async () => ((await textOf(a, "index.html/index.html")) === "now a directory on b" ? allEqualHead(ctx, bucket, "w/", nodes) : undefined), 30_000, nodes);
      assert.ok((await keptContents(b)).some((k) => k.path === "index.html" && k.text === "home v2 edited on a"), "a's edit is kept");
      await writeTree(b.root, { "p5.html": "p5 v2 from b" });
      await until("b's later edit on a", async () => (await textOf(a, "p5.html")) === "p5 v2 from b", 30_000, nodes);
      await writeTree(a.root, { "later-a.html": "later" });
      await until("a's later edit on b", async () => (await textOf(b, "later-a.html")) === "later", 30_000, nodes);
      await until("all equal", () => allEqualHead(ctx, bucket, "w/", nodes), 30_000, nodes);
      for (const n of nodes) assert.equal((await syncStatusOf(n)).status, "OK", `${n.name}'s status`);
    } finally {
      for (const n of nodes) await stopSync(n);
    }
  });

  test("names sync cannot carry (newline, TAB, backslash, invalid UTF-8) are reported like push does: log once per name, status, /metrics", async (t) => {
    if (skipEngineTier(t)) return;
    if (!ctx.server.features.conditionalWrites) return t.skip("needs conditional writes");
    const bucket = await ctx.server.bucket("sync-names");
    const url = `s3://${bucket}/w`;
    const a = syncNode(ctx, "a");
    const b = syncNode(ctx, "b");
    const nodes = [a, b];
    await writeTree(a.root, { "index.html": "home" });
    const odd = ["new\nline.html", "tab\there.html", "back\\slash.html"];
    for (const n of odd) await writeFile(path.join(a.root, n), "odd");
    await writeFile(Buffer.from(path.join(a.root, "bad") + "\xff.html", "latin1"), "bad");
    startSync(ctx, a, url, ["--http", "127.0.0.1:0"]);
    startSync(ctx, b, url);
    try {
      await until("b has the site", async () => (await textOf(b, "index.html")) === "home", 30_000, nodes);
      // Several rounds later (edits make a round scan): still one warning per name.
      for (let i = 0; i < 3; i++) {
        await writeTree(a.root, { "index.html": `home ${i}` });
        await until(`edit ${i} on b`, async () => (await textOf(b, "index.html")) === `home ${i}`, 30_000, nodes);
      }
      const warnings = (a.child?.out.stdout ?? "").split("\n").filter((l) => l.includes('"msg":"skipped"')).map((l) => JSON.parse(l) as { path: string; reason: string });
      assert.equal(warnings.length, 4, `one warning per name: ${JSON.stringify(warnings)}`);
      for (const n of odd) assert.ok(warnings.some((w) => w.path === n), `a warning for ${JSON.stringify(n)}`);
      assert.ok(warnings.some((w) => /not valid UTF-8/.test(w.reason)), "a warning for the invalid UTF-8 name");
      const st = await until("a's status lists them", async () => {
        const s = await syncStatusOf(a);
        return (s.skipped as unknown[] | undefined)?.length === 4 ? s : undefined;
      }, 10_000, nodes);
      assert.equal(st.status, "OK");
      assert.match(String(st.line), /^OK \d+ \(4 path\(s\) skipped/);
      const page = /"url":"(http:[^"]+)"[^\n]*"msg":"status page listening"/.exec(a.child?.out.stdout ?? "")?.[1];
      assert.ok(page, "the status page listens");
      assert.match(await (await fetch(new URL("/metrics", page))).text(), /fansync_skipped_paths\{role="sync"\} 4/);
      for (const n of odd) assert.equal(await textOf(b, n), undefined, "nothing of them reached b");
      const shown = await ctx.cli(["status", "--state-dir", a.state]);
      expectCode(shown, 0);
      assert.match(shown.stdout, /4 path\(s\) skipped \(cannot be carried\)/);
    } finally {
      for (const n of nodes) await stopSync(n);
    }
  });

  test("sync --dry-run prints one round's plan (publish, apply, remove, keep) and changes nothing", async (t) => {
    if (skipEngineTier(t)) return;
    if (!ctx.server.features.conditionalWrites) return t.skip("needs conditional writes");
    const bucket = await ctx.server.bucket("sync-dry");
    const url = `s3://${bucket}/w`;
    const a = syncNode(ctx, "a");
    const b = syncNode(ctx, "b");
    const nodes = [a, b];
    const old = new Date(Date.now() - 3_600_000);
    await writeTree(a.root, { "c.html": "c v1", "d.html": "d v1", "gone-on-b.html": "g" }, old);
    startSync(ctx, a, url);
    startSync(ctx, b, url);
    try {
      await until("b in step", async () => (await textOf(b, "d.html")) === "d v1" && (await allEqualHead(ctx, bucket, "w/", nodes)), 30_000, nodes);
      await stopSync(a);
      await writeTree(b.root, { "c.html": "c from b (older)", "r.html": "new on b" }, new Date(Date.now() - 60_000));
      await rm(path.join(b.root, "gone-on-b.html"));
      await until("b's edits published", async () => (await allEqualHead(ctx, bucket, "w/", [b])) !== undefined && (await generation(bucket)) >= 2, 30_000, nodes);
      await stopSync(b);
      await writeTree(a.root, { "c.html": "c from a (newer)", "mine.html": "new on a" }, new Date(Date.now() - 10_000));
      await rm(path.join(a.root, "d.html"));
      const before = await snapshot(a.root);
      const g = await generation(bucket);
      const r = await ctx.cli(["sync", a.root, url, ...ctx.flags(a.state), "--node-id", "a", "--dry-run"]);
      expectCode(r, 0);
      const ops = r.logs.filter((l) => typeof l.op === "string").map((l) => `${String(l.op)} ${String(l.path)}`).sort();
      assert.deepEqual(ops, ["delete d.html", "get r.html", "keep c.html", "put c.html", "put mine.html", "remove gone-on-b.html"]);
      assert.ok(r.logs.some((l) => l.msg === "would settle a conflict" && l.path === "c.html" && l.winner === "local"), "the conflict and its winner");
      assert.ok(r.logs.some((l) => l.msg === "dry run: nothing changed" && l.publish === 2 && l.publishDeletes === 1 && l.apply === 1 && l.remove === 1 && l.keep === 1));
      assert.deepEqual([...(await snapshot(a.root))].map(([p, f]) => [p, f.sha256]).sort(), [...before].map(([p, f]) => [p, f.sha256]).sort(), "the docroot is unchanged");
      assert.equal(await generation(bucket), g, "nothing published");
      assert.deepEqual(await keptContents(a), [], "nothing kept");
    } finally {
      for (const n of nodes) await stopSync(n);
    }
  });

  test("the head records which command wrote it; push refuses to publish over sync writers' generation without --force (exit 5), and warns with it", async (t) => {
    if (skipEngineTier(t)) return;
    if (!ctx.server.features.conditionalWrites) return t.skip("needs conditional writes");
    const bucket = await ctx.server.bucket("sync-kind");
    const url = `s3://${bucket}/w`;
    const a = syncNode(ctx, "a");
    await writeTree(a.root, { "index.html": "home", "uploads/cat.jpg": "meow" });
    startSync(ctx, a, url);
    try {
      await until("a published", async () => (await allEqualHead(ctx, bucket, "w/", [a])) !== undefined && (await generation(bucket)) >= 1, 30_000, [a]);
    } finally {
      await stopSync(a);
    }
    const head = await readHeadDoc(ctx.server.client, bucket, "w/");
    assert.equal(head.writerKind, "sync");
    const g = head.generation as number;
    // A master's docroot without the sync node's upload.
    const master = ctx.tmp("kind-master");
    await writeTree(master, { "index.html": "home v2" });
    const state = ctx.tmp("kind-master-state");
    const refused = await ctx.cli(["push", master, url, ...ctx.flags(state)]);
    expectCode(refused, 5);
    assert.match(refused.stderr, /refusing to publish: generation \d+ .* was published by a two-way `fansync sync` node/);
    assert.equal(await generation(bucket), g, "nothing published");
    const forced = await ctx.cli(["push", master, url, ...ctx.flags(state), "--force"]);
    expectCode(forced, 0);
    assert.ok(forced.logs.some((l) => l.level === 40 && /published by a two-way `fansync sync` node .*--force: publishing anyway/.test(String(l.msg))), "--force warns");
    const after = await readHeadDoc(ctx.server.client, bucket, "w/");
    assert.equal(after.writerKind, "push");
    // Over push's own generation, push goes on as before.
    await writeTree(master, { "index.html": "home v3" });
    expectCode(await ctx.cli(["push", master, url, ...ctx.flags(state)]), 0);
  });

  test("edits made while both daemons were frozen: newer mtime wins and a modification beats a deletion, whichever resumes first", async (t) => {
    if (skipEngineTier(t)) return;
    if (!ctx.server.features.conditionalWrites) return t.skip("needs conditional writes");
    const bucket = await ctx.server.bucket("sync-frozen");
    const url = `s3://${bucket}/w`;
    const a = syncNode(ctx, "a");
    const b = syncNode(ctx, "b");
    const nodes = [a, b];
    await writeTree(a.root, { "f.txt": "f v1", "g.txt": "g v1" }, new Date(Date.now() - 3_600_000));
    startSync(ctx, a, url);
    startSync(ctx, b, url);
    try {
      await until("b in step", async () => (await textOf(b, "g.txt")) === "g v1" && (await allEqualHead(ctx, bucket, "w/", nodes)), 30_000, nodes);
      // Idle for a while first: b's rounds after its own apply have scanned, and it now polls without scanning.
      await new Promise((r) => setTimeout(r, 1500));
      // rclone bisync's scenario: A writes an older edit of f.txt, B a newer one; A deletes g.txt, B edits it.
      for (const n of nodes) n.child?.kill("SIGSTOP");
      const T = Date.now() - 60_000;
      await writeFile(path.join(a.root, "f.txt"), "f older edit on a");
      await utimes(path.join(a.root, "f.txt"), new Date(T), new Date(T));
      await writeFile(path.join(b.root, "f.txt"), "f newer edit on b");
      await utimes(path.join(b.root, "f.txt"), new Date(T + 30_000), new Date(T + 30_000));
      await rm(path.join(a.root, "g.txt"));
      await writeFile(path.join(b.root, "g.txt"), "g edited on b");
      a.child?.kill("SIGCONT");
      await new Promise((r) => setTimeout(r, 4000));
      b.child?.kill("SIGCONT");
      await until("one tree everywhere", () => allEqualHead(ctx, bucket, "w/", nodes), 30_000, nodes);
      await new Promise((r) => setTimeout(r, 1500));
      await until("one tree everywhere, settled", () => allEqualHead(ctx, bucket, "w/", nodes), 30_000, nodes);
      for (const n of nodes) {
        assert.equal(await textOf(n, "f.txt"), "f newer edit on b", `${n.name}: the newer mtime wins`);
        assert.equal(await textOf(n, "g.txt"), "g edited on b", `${n.name}: the modification beats the deletion`);
      }
      const kept = [...(await keptContents(a)), ...(await keptContents(b))];
      assert.ok(kept.some((k) => k.path === "f.txt" && k.text === "f older edit on a" && k.reason === "conflict"), `a's older edit kept as a conflict loser: ${JSON.stringify(kept)}`);
      assert.ok(!kept.some((k) => k.reason === "changed-during-apply"), `nothing applied over an unrebased edit: ${JSON.stringify(kept)}`);
    } finally {
      for (const n of nodes) await stopSync(n);
    }
  });
});

