/**
 * `fansync sync`: several writers on one location, each a real daemon (child process) on its own
 * docroot and state directory, against a real S3 server over HTTP. What is asserted: bytes on
 * disk, the objects and generations in the bucket, the kept losing versions, exit codes and text.
 */
import assert from "node:assert/strict";
import { readFile, rm, utimes, writeFile, mkdir, readdir } from "node:fs/promises";
import path from "node:path";
import { describe, test } from "node:test";
import { startCli } from "../helpers/cli.ts";
import { expectCode, useServer } from "../helpers/ctx.ts";
import { readHeadDoc, readManifestDoc } from "../helpers/s3.ts";
import { serverLabel } from "../helpers/s3-server.ts";
import { allEqualHead as allEqualHeadOf, startSync, stopSync, type SyncNode, syncNode, syncStatusOf, textOf, until } from "../helpers/sync-nodes.ts";
import { snapshot, writeTree } from "../helpers/tree.ts";
import { skipEngineTier } from "../helpers/integ-tiers.ts";

const ctx = useServer();

type Node = SyncNode;
const node = (name: string): Node => syncNode(ctx, name);
const start = (n: Node, url: string, extra: readonly string[] = []): void => startSync(ctx, n, url, extra);
const stop = stopSync;
const text = textOf;
const allEqualHead = (bucket: string, nodes: readonly Node[]): Promise<number | undefined> => allEqualHeadOf(ctx, bucket, "w/", nodes);

async function generation(bucket: string): Promise<number> {
  return (await readHeadDoc(ctx.server.client, bucket, "w/")).generation as number;
}

async function listKept(n: Node): Promise<string[]> {
  const out: string[] = [];
  const walk = async (dir: string, rel: string) => {
    for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
      if (e.isDirectory()) await walk(path.join(dir, e.name), rel ? `${rel}/${e.name}` : e.name);
      else out.push(rel ? `${rel}/${e.name}` : e.name);
    }
  };
  const top = (await readdir(n.state)).find((d) => d.startsWith("sync-"));
  if (top) await walk(path.join(n.state, top, "conflicts"), "");
  return out.sort();
}

const syncStatus = syncStatusOf;

describe(`sync (${serverLabel()})`, () => {
  test("a server without conditional writes: sync refuses to start, says why, exit 2", async (t) => {
    if (ctx.server.features.conditionalWrites) {
      t.skip(`${ctx.server.kind} enforces conditional writes (this is fauxqs' test)`);
      return;
    }
    const bucket = await ctx.server.bucket("sync-refuse");
    const a = node("a");
    await mkdir(a.root, { recursive: true });
    await writeTree(a.root, { "index.html": "home" });
    const r = await ctx.cli(["sync", a.root, `s3://${bucket}/w`, ...ctx.flags(a.state)]);
    expectCode(r, 2);
    assert.match(r.stderr, /refusing to sync .* ignores conditional writes/);
    assert.equal(await text(a, "index.html"), "home", "the docroot is untouched");
  });

  test("from --config: a wrong conflict rule is a config error (exit 3) naming the key; a good file runs the daemon", async (t) => {
    if (skipEngineTier(t)) return;
    const bucket = await ctx.server.bucket("sync-config");
    const a = node("a");
    await mkdir(a.root, { recursive: true });
    await writeTree(a.root, { "index.html": "home" });
    const file = path.join(a.state, "sync.yaml");
    await writeFile(file, `docroot: ${a.root}\ntarget: s3://${bucket}/w\nowns: ["uploads/**"]\nconflict: mine\n`);
    const bad = await ctx.cli(["sync", "--config", file, ...ctx.flags(a.state)]);
    expectCode(bad, 3);
    assert.match(bad.stderr, /conflict: expected one of newer, remote, local, got "mine"/);
    if (!ctx.server.features.conditionalWrites) return;
    await writeFile(file, `docroot: ${a.root}\ntarget: s3://${bucket}/w\nconflict: remote\ninterval: 300ms\ndelay: 150ms\n`);
    a.child = startCli(["sync", "--config", file, ...ctx.flags(a.state)]);
    try {
      await until("the docroot published from the config's settings", async () => (await readManifestDoc(ctx.server.client, bucket, "w/")).entries.some((e) => e.path === "index.html"), 30_000, [a]);
      assert.match(a.child.out.stdout, /"conflict":"remote"/);
    } finally {
      await stop(a);
    }
  });

  test("--report: a two-way node reports like a puller, so `fansync status` shows it at the head (issue 23: the demo showed web-us BEHIND after it switched to sync)", async (t) => {
    if (skipEngineTier(t)) return;
    if (!ctx.server.features.conditionalWrites) return t.skip("needs conditional writes");
    const bucket = await ctx.server.bucket("sync-report");
    const url = `s3://${bucket}/w`;
    const a = node("a");
    await writeTree(a.root, { "index.html": "home" });
    start(a, url, ["--report"]);
    try {
      await until("a published", async () => (await generation(bucket)) >= 1, 30_000, [a]);
      await writeTree(a.root, { "two.html": "two" });
      await until("a published its edit", async () => (await generation(bucket)) >= 2, 30_000, [a]);
      const head = await generation(bucket);
      const st = await until("a's report at the head", async () => {
        const r = await ctx.cli(["status", url, ...ctx.flags(ctx.tmp("st")), "--json"]);
        const n = (JSON.parse(r.stdout) as { fleet: { nodes: { node: string; generation: number; behind: number; status: string }[] } }).fleet.nodes.find((x) => x.node === "a");
        return n && n.generation === head ? n : undefined;
      }, 30_000, [a]);
      assert.equal(st.behind, 0);
      assert.equal(st.status, "OK");
    } finally {
      await stop(a);
    }
  });

  test("two writers: disjoint edits meet, renames and deletes travel, nothing echoes back", async (t) => {
    if (!ctx.server.features.conditionalWrites) return t.skip("needs conditional writes");
    const bucket = await ctx.server.bucket("sync-two");
    const url = `s3://${bucket}/w`;
    const a = node("a");
    const b = node("b");
    const nodes = [a, b];
    await writeTree(a.root, { "index.html": "home", "css/site.css": "body{}" });
    start(a, url);
    start(b, url);
    try {
      await until("b to receive a's site", async () => (await text(b, "index.html")) === "home" && (await text(b, "css/site.css")) === "body{}", 30_000, nodes);
      await writeTree(b.root, { "b.html": "from b" });
      await writeTree(a.root, { "a.html": "from a" });
      await until("both edits everywhere", async () => (await text(a, "b.html")) === "from b" && (await text(b, "a.html")) === "from a", 30_000, nodes);
      await rm(path.join(a.root, "b.html"));
      await mkdir(path.join(b.root, "moved"), { recursive: true });
      const { rename } = await import("node:fs/promises");
      await rename(path.join(b.root, "css"), path.join(b.root, "moved", "css"));
      const g = await until("deletes and renames everywhere", async () => {
        if ((await text(b, "b.html")) !== undefined || (await text(a, "moved/css/site.css")) !== "body{}" || (await text(a, "css/site.css")) !== undefined) return undefined;
        return allEqualHead(bucket, nodes);
      }, 30_000, nodes);
      // Echo suppression: what a node applied is never published again; with nothing changing the head stays.
      await new Promise((r) => setTimeout(r, 2500));
      assert.equal(await generation(bucket), g, "no generation after convergence (applied changes do not echo)");
      const published = (n: Node) => n.child?.out.stdout.split("\n").filter((l) => l.includes('"msg":"published"')).length ?? 0;
      assert.ok(published(a) + published(b) <= g, `each generation published once (${published(a)} + ${published(b)} ≤ ${g})`);
    } finally {
      await stop(a);
      await stop(b);
    }
  });

  test("a burst of 1,000 files on one node is a few generations, and the other node applies them without publishing any", async (t) => {
    if (skipEngineTier(t)) return;
    if (!ctx.server.features.conditionalWrites) return t.skip("needs conditional writes");
    const bucket = await ctx.server.bucket("sync-burst");
    const url = `s3://${bucket}/w`;
    const a = node("a");
    const b = node("b");
    const nodes = [a, b];
    await writeTree(a.root, { "index.html": "home" });
    start(a, url);
    start(b, url);
    try {
      const g0 = await until("b in step", async () => (await text(b, "index.html")) === "home" && (await allEqualHead(bucket, nodes)), 30_000, nodes);
      for (let d = 0; d < 10; d++) {
        await mkdir(path.join(a.root, "burst", `d${d}`), { recursive: true });
        await Promise.all(Array.from({ length: 100 }, (_, i) => writeFile(path.join(a.root, "burst", `d${d}`, `f${i}.txt`), `burst ${d}/${i}`)));
      }
      const g1 = await until("the burst everywhere", async () => ((await snapshot(b.root)).size === 1001 ? allEqualHead(bucket, nodes) : undefined), 120_000, nodes);
      assert.ok(g1 - g0 <= 5, `1,000 files became ${g1 - g0} generations`);
      await new Promise((r) => setTimeout(r, 2000));
      assert.equal(await generation(bucket), g1, "b applied the burst and published nothing of it");
      assert.ok(!(b.child?.out.stdout ?? "").includes('"msg":"published"'), "b never published");
    } finally {
      await stop(a);
      await stop(b);
    }
  });

  test("the same path edited on two nodes in the same second: the newer wins everywhere, the other is kept and listed", async (t) => {
    if (skipEngineTier(t)) return;
    if (!ctx.server.features.conditionalWrites) return t.skip("needs conditional writes");
    const bucket = await ctx.server.bucket("sync-conflict");
    const url = `s3://${bucket}/w`;
    const a = node("a");
    const b = node("b");
    const nodes = [a, b];
    await writeTree(a.root, { "page.html": "v1", "keep.html": "k1", "gone.html": "g1" }, new Date(Date.now() - 3_600_000));
    start(a, url);
    start(b, url);
    try {
      await until("b in step", async () => (await text(b, "gone.html")) === "g1" && (await allEqualHead(bucket, nodes)), 30_000, nodes);
      await stop(b);
      // While b is down: a edits page.html at T+0.7s, b's copy gets T+0.3s (the same second, older).
      // And delete vs modify both ways: a modifies keep.html, b deletes it; a deletes gone.html, b modifies it.
      const T = Math.floor(Date.now() / 1000) * 1000 - 1000;
      await writeFile(path.join(a.root, "page.html"), "a's edit");
      await utimes(path.join(a.root, "page.html"), new Date(T + 700), new Date(T + 700));
      await writeFile(path.join(a.root, "keep.html"), "a modified");
      await rm(path.join(a.root, "gone.html"));
      await until("a's edits published", async () => {
        const { entries } = await readManifestDoc(ctx.server.client, bucket, "w/");
        return entries.some((e) => e.path === "keep.html" && e.size === 10) && !entries.some((e) => e.path === "gone.html");
      }, 30_000, nodes);
      await writeFile(path.join(b.root, "page.html"), "b's edit");
      await utimes(path.join(b.root, "page.html"), new Date(T + 300), new Date(T + 300));
      await rm(path.join(b.root, "keep.html"));
      await writeFile(path.join(b.root, "gone.html"), "b modified");
      start(b, url, ["--http", "127.0.0.1:0"]);
      await until("the same files everywhere", async () => {
        if ((await text(b, "page.html")) !== "a's edit") return undefined;
        if ((await text(a, "gone.html")) !== "b modified") return undefined;
        return allEqualHead(bucket, nodes);
      }, 30_000, nodes);
      assert.equal(await text(b, "keep.html"), "a modified", "delete vs modify: the modification stays (b's deletion lost)");
      assert.equal(await text(a, "gone.html"), "b modified", "delete vs modify: the modification comes back (a's deletion lost)");
      // b's version of page.html lost: kept outside the docroot, listed, and nothing of it served.
      const kept = await listKept(b);
      const mine = kept.filter((k) => k.startsWith("page.sync-conflict-") && k.includes("-b-local-") && k.endsWith(".html"));
      assert.equal(mine.length, 1, `b kept its losing version (${kept.join(", ")})`);
      const top = (await readdir(b.state)).find((d) => d.startsWith("sync-")) as string;
      assert.equal(await readFile(path.join(b.state, top, "conflicts", mine[0] as string), "utf8"), "b's edit");
      const st = await until("b's status lists the kept version", async () => {
        const s = await syncStatus(b);
        return (s.keptTotal as number) >= 1 ? s : undefined;
      }, 10_000, nodes);
      assert.ok((st.kept as { path: string; reason: string }[]).some((k) => k.path === "page.html" && k.reason === "conflict"));
      assert.ok(b.child?.out.stdout.includes('"msg":"conflict"'), "the conflict is logged");
      const page = /"url":"(http:[^"]+)"[^\n]*"msg":"status page listening"/.exec(b.child?.out.stdout ?? "")?.[1];
      assert.ok(page, "the status page listens");
      const metrics = await (await fetch(new URL("/metrics", page))).text();
      assert.match(metrics, /fansync_sync_kept_versions_total\{reason="conflict"\} [1-9]/);
      assert.match(metrics, /fansync_sync_conflicts_total [1-9]/);
      // A two-way node serves the generation its docroot converged to: /healthz says so.
      const health = await fetch(new URL("/healthz", page));
      assert.equal(health.status, 200);
      assert.match(await health.text(), /^OK generation [1-9]\d*\n$/);
      const shown = await ctx.cli(["status", "--state-dir", b.state]);
      expectCode(shown, 0);
      assert.match(shown.stdout, /sync +OK +generation \d+ .* node b/);
      assert.match(shown.stdout, /page\.html +conflict, local version → page\.sync-conflict-/);
      for (const n of nodes) assert.ok(!(await snapshot(n.root)).has(mine[0] as string), "no conflict copy in a docroot");
    } finally {
      await stop(a);
      await stop(b);
    }
  });

  test("three writers edit one path in the same second (and a file each): the newest wins on every node, both others are kept", async (t) => {
    if (skipEngineTier(t)) return;
    if (!ctx.server.features.conditionalWrites) return t.skip("needs conditional writes");
    const bucket = await ctx.server.bucket("sync-three");
    const url = `s3://${bucket}/w`;
    const nodes = [node("a"), node("b"), node("c")];
    const [a, b, c] = nodes as [Node, Node, Node];
    await writeTree(a.root, { "shared.html": "v0" }, new Date(Date.now() - 3_600_000));
    for (const n of nodes) start(n, url);
    try {
      await until("all three in step", async () => (await text(c, "shared.html")) === "v0" && (await text(b, "shared.html")) === "v0" && (await allEqualHead(bucket, nodes)), 30_000, nodes);
      // Frozen together, so that none sees another's edit before making its own.
      for (const n of nodes) n.child?.kill("SIGSTOP");
      const T = Math.floor(Date.now() / 1000) * 1000 - 2000;
      for (const [i, n] of nodes.entries()) {
        await writeTree(n.root, { "shared.html": `edit by ${n.name}`, [`${n.name}.html`]: `only ${n.name}` }, new Date(T + 100 * (i + 1)));
      }
      for (const n of nodes) n.child?.kill("SIGCONT");
      await until("one version everywhere", async () => {
        for (const n of nodes) for (const o of nodes) if ((await text(n, `${o.name}.html`)) !== `only ${o.name}`) return undefined;
        return allEqualHead(bucket, nodes);
      }, 30_000, nodes);
      for (const n of nodes) assert.equal(await text(n, "shared.html"), "edit by c", `${n.name}: the newest mtime (c's) won`);
      // a's and b's versions were each kept by some node (their own, or the one that beat them).
      const keptBytes: string[] = [];
      for (const n of nodes) {
        const top = (await readdir(n.state)).find((d) => d.startsWith("sync-")) as string;
        for (const k of await listKept(n)) keptBytes.push(await readFile(path.join(n.state, top, "conflicts", k), "utf8"));
      }
      assert.ok(keptBytes.includes("edit by a") && keptBytes.includes("edit by b"), `kept: ${JSON.stringify(keptBytes)}`);
    } finally {
      for (const n of nodes) n.child?.kill("SIGCONT");
      for (const n of nodes) await stop(n);
    }
  });

  test("the delete guard holds a node's mass deletion: nothing published, the other node keeps its files, the status says why", async (t) => {
    if (skipEngineTier(t)) return;
    if (!ctx.server.features.conditionalWrites) return t.skip("needs conditional writes");
    const bucket = await ctx.server.bucket("sync-guard");
    const url = `s3://${bucket}/w`;
    const a = node("a");
    const b = node("b");
    const nodes = [a, b];
    await writeTree(a.root, { "1.html": "1", "2.html": "2", "3.html": "3", "4.html": "4" });
    start(a, url);
    start(b, url);
    try {
      const g = await until("b in step", async () => (await text(b, "4.html")) === "4" && (await allEqualHead(bucket, nodes)), 30_000, nodes);
      for (const f of ["1.html", "2.html", "3.html"]) await rm(path.join(b.root, f));
      await until("b's status says the guard refused", async () => {
        const s = await syncStatus(b);
        return s.status === "ERROR" && /refusing to delete 3 of 4/.test(String(s.lastError));
      }, 20_000, nodes);
      assert.equal(await generation(bucket), g, "nothing published");
      for (const f of ["1.html", "2.html", "3.html"]) assert.equal(await text(a, f), f.slice(0, 1), `a still has ${f}`);
    } finally {
      await stop(a);
      await stop(b);
    }
  });

  test("a docroot restored from an old snapshot: older files take the head's version (kept), newer ones and new files are published", async (t) => {
    if (skipEngineTier(t)) return;
    if (!ctx.server.features.conditionalWrites) return t.skip("needs conditional writes");
    const bucket = await ctx.server.bucket("sync-restore");
    const url = `s3://${bucket}/w`;
    const a = node("a");
    const b = node("b");
    const nodes = [a, b];
    const old = new Date(Date.now() - 7_200_000);
    await writeTree(a.root, { "x.html": "x1", "y.html": "y1" }, old);
    start(a, url);
    start(b, url);
    try {
      await until("b in step", async () => (await text(b, "y.html")) === "y1" && (await allEqualHead(bucket, nodes)), 30_000, nodes);
      await writeTree(a.root, { "x.html": "x2" }, new Date(Date.now() - 60_000));
      await until("b has x2", async () => (await text(b, "x.html")) === "x2", 30_000, nodes);
      await stop(b);
      // b's docroot comes back from last night's backup (its state directory is current): x.html is
      // the old x1 (older than what b last applied); y.html was edited since; z.html is new.
      await rm(b.root, { recursive: true });
      await writeTree(b.root, { "x.html": "x1", "y.html": "y1" }, old);
      await writeTree(b.root, { "y.html": "y edited on b", "z.html": "new on b" });
      start(b, url);
      await until("a and b agree", async () => {
        if ((await text(a, "z.html")) !== "new on b" || (await text(a, "y.html")) !== "y edited on b") return undefined;
        return allEqualHead(bucket, nodes);
      }, 30_000, nodes);
      assert.equal(await text(b, "x.html"), "x2", "the restored older x.html took the head's version");
      const st = await until("the old x.html listed as kept", async () => {
        const s = await syncStatus(b);
        return (s.kept as { path: string; reason: string }[]).some((k) => k.path === "x.html" && k.reason === "older-than-base") ? s : undefined;
      }, 10_000, nodes);
      const rec = (st.kept as { path: string; kept: string }[]).find((k) => k.path === "x.html") as { kept: string };
      const top = (await readdir(b.state)).find((d) => d.startsWith("sync-")) as string;
      assert.equal(await readFile(path.join(b.state, top, "conflicts", rec.kept), "utf8"), "x1");
    } finally {
      await stop(a);
      await stop(b);
    }
  });

  test("an app server owning uploads/**: its uploads reach the master and a plain pull node; its other edits are undone and kept", async (t) => {
    if (skipEngineTier(t)) return;
    if (!ctx.server.features.conditionalWrites) return t.skip("needs conditional writes");
    const bucket = await ctx.server.bucket("sync-owns");
    const url = `s3://${bucket}/w`;
    const master = node("master");
    const app = node("app");
    const nodes = [master, app];
    await writeTree(master.root, { "index.html": "home" });
    start(master, url);
    start(app, url, ["--owns", "uploads/**"]);
    const web = node("web");
    try {
      await until("the app server in step", async () => (await text(app, "index.html")) === "home", 30_000, nodes);
      await writeTree(app.root, { "uploads/2026/cat.jpg": "meow", "index.html": "defaced" });
      await until("the upload on the master", async () => (await text(master, "uploads/2026/cat.jpg")) === "meow", 30_000, nodes);
      await until("the app server's unowned edit undone", async () => (await text(app, "index.html")) === "home", 30_000, nodes);
      assert.equal(await text(master, "index.html"), "home");
      const kept = await listKept(app);
      assert.ok(kept.some((k) => k.startsWith("index.sync-conflict-") && k.includes("-app-local-")), `kept: ${kept.join(", ")}`);
      // The status is written when the round ends, a moment after the restore.
      await until("the app server's status lists the kept edit", async () => {
        const st = await syncStatus(app);
        return (st.kept as { path: string; reason: string }[]).some((k) => k.path === "index.html" && k.reason === "not-owned");
      }, 10_000, nodes);
      // A plain pull node reads the same bucket format.
      const r = await ctx.cli(["pull", url, web.root, ...ctx.flags(web.state)]);
      expectCode(r, 0);
      assert.equal(await text(web, "uploads/2026/cat.jpg"), "meow");
      assert.equal(await text(web, "index.html"), "home");
      // The master edits what it owns; the app server applies it.
      await writeTree(master.root, { "index.html": "new home" });
      await until("the master's edit on the app server", async () => (await text(app, "index.html")) === "new home", 30_000, nodes);
    } finally {
      await stop(master);
      await stop(app);
    }
  });
});
