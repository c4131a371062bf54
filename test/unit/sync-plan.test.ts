import assert from "node:assert/strict";
import { test } from "node:test";
import { appliedBetween, type FileFacts, heldForApply, localWins, mergeApplied, planApply, planSync, type SyncPlanInput, UNKNOWN_SHA256 } from "../../src/core/sync-plan.ts";
import type { Entry } from "../../src/core/manifest.ts";

const f = (sha: string, mtimeMs = 1000, mode = 0o644): FileFacts => ({ size: sha.length, mtimeMs, mode, sha256: sha.padEnd(64, "0") });
const m = (o: Record<string, FileFacts>) => new Map(Object.entries(o));
const plan = (i: Partial<SyncPlanInput> & Pick<SyncPlanInput, "base" | "local" | "remote">) => planSync({ owns: () => true, rule: "newer", joining: false, ...i });

test("a local change the head does not touch is published; a remote one is taken; the same change on both sides is nothing", () => {
  const base = m({ a: f("a"), b: f("b"), c: f("c") });
  const p = plan({ base, local: m({ a: f("a2", 2000), b: f("b"), c: f("c3", 3000) }), remote: m({ a: f("a"), b: f("b2", 2000), c: f("c3", 3000) }) });
  assert.deepEqual(p.publish, ["a"]);
  assert.deepEqual(p.restore, []);
  assert.deepEqual(p.conflicts, []);
  assert.deepEqual(p.keep, []);
});

test("both modified: the newer mtime wins, the loser is kept; every node decides the same", () => {
  const base = m({ x: f("x") });
  const mine = f("mine", 5000);
  const theirs = f("theirs", 4000);
  const p = plan({ base, local: m({ x: mine }), remote: m({ x: theirs }) });
  assert.deepEqual(p.publish, ["x"]);
  assert.deepEqual(p.conflicts, [{ path: "x", winner: "local", kind: "both-modified" }]);
  assert.deepEqual(p.keep, [{ path: "x", from: "remote", reason: "conflict" }]);
  // The other node sees the same two versions the other way round and picks the same one.
  const q = plan({ base, local: m({ x: theirs }), remote: m({ x: mine }) });
  assert.deepEqual(q.restore, ["x"]);
  assert.deepEqual(q.keep, [{ path: "x", from: "local", reason: "conflict" }]);
  // Same millisecond: the sha256 decides, symmetrically.
  const s1 = f("aaa", 7000);
  const s2 = f("bbb", 7000);
  assert.notEqual(localWins(s1, s2, "newer"), localWins(s2, s1, "newer"));
});

test("--conflict remote / local", () => {
  const base = m({ x: f("x") });
  assert.deepEqual(plan({ base, local: m({ x: f("l", 9000) }), remote: m({ x: f("r", 1) }), rule: "remote" }).restore, ["x"]);
  assert.deepEqual(plan({ base, local: m({ x: f("l", 1) }), remote: m({ x: f("r", 9000) }), rule: "local" }).publish, ["x"]);
});

test("delete vs modify keeps the modification, whichever side deleted", () => {
  const base = m({ x: f("x"), y: f("y") });
  const p = plan({ base, local: m({ y: f("y2", 2000) }), remote: m({ x: f("x2", 2000) }) });
  assert.deepEqual(p.publish, ["y"]);
  assert.deepEqual(p.restore, ["x"]);
  assert.deepEqual(p.conflicts.map((c) => [c.path, c.kind, c.winner]), [["x", "local-deleted", "remote"], ["y", "remote-deleted", "local"]]);
  assert.deepEqual(p.keep, []);
});

test("a path the node does not own is never published: restored, and the local version kept", () => {
  const owns = (p: string) => p.startsWith("uploads/");
  const base = m({ "index.html": f("i") });
  const p = plan({ base, owns, local: m({ "index.html": f("hacked", 2000), "uploads/a.jpg": f("jpg", 2000), "stray.txt": f("s", 2000) }), remote: base });
  assert.deepEqual(p.publish, ["uploads/a.jpg"]);
  assert.deepEqual(p.notOwned, ["index.html", "stray.txt"]);
  assert.deepEqual(p.restore, ["index.html", "stray.txt"]);
  assert.deepEqual(p.keep.map((k) => k.path), ["index.html", "stray.txt"]);
});

test("joining: a local file older than the base takes the head's version (kept); a newer one is a local change", () => {
  const base = m({ old: f("o", 5000), new: f("n", 5000) });
  const p = plan({ base, joining: true, local: m({ old: f("o-snapshot", 4000), new: f("n-edit", 6000) }), remote: m({ old: f("o", 5000), new: f("n", 5000) }) });
  assert.deepEqual(p.publish, ["new"]);
  assert.deepEqual(p.restore, ["old"]);
  assert.deepEqual(p.keep, [{ path: "old", from: "local", reason: "older-than-base" }]);
  // After joining the same difference is an edit.
  assert.deepEqual(plan({ base, local: m({ old: f("o-edit", 4000), new: f("n", 5000) }), remote: base }).publish, ["old"]);
});

test("no base (a new node with files): files the head lacks are published, different ones settled by the rule", () => {
  const p = plan({ base: new Map(), local: m({ mine: f("m", 2000), both: f("b1", 9000), same: f("s") }), remote: m({ both: f("b2", 1000), same: f("s"), theirs: f("t") }) });
  assert.deepEqual(p.publish, ["both", "mine"]);
  assert.deepEqual(p.keep, [{ path: "both", from: "remote", reason: "conflict" }]);
});

test("heldForApply: the puller leaves published paths alone and replaces restored ones", () => {
  const e = (p: string, sha: string): Entry => ({ path: p, size: 1, mtimeMs: 1, mode: 0o644, sha256: sha.padEnd(64, "0"), etag: '"e"' });
  const base = new Map([["a", e("a", "a")], ["b", e("b", "b")], ["c", e("c", "c")]]);
  const remote = new Map([["a", e("a", "a2")], ["b", e("b", "b")], ["c", e("c", "c2")]]);
  const held = heldForApply(base, remote, { publish: ["a", "n"], restore: ["c", "stray"], conflicts: [], notOwned: [], keep: [] });
  assert.equal(held.get("a")?.sha256, remote.get("a")?.sha256);
  assert.equal(held.has("n"), false);
  assert.equal(held.get("b")?.sha256, base.get("b")?.sha256);
  assert.equal(held.get("c")?.sha256, UNKNOWN_SHA256);
  assert.equal(held.get("stray")?.sha256, UNKNOWN_SHA256);
});

// Issue 27 item 1: a file on one side where the other has a directory cannot both be in a tree.
// The directory wins (it may hold many files, of several nodes); the file is kept like any loser.
test("file↔directory: local dir→file while the head adds under the dir: the directory wins, the local file is kept", () => {
  const base = m({ "d/one.html": f("1"), "d/two.html": f("2"), "p.html": f("p") });
  const p = plan({ base, local: m({ d: f("file", 5000), "p.html": f("p") }), remote: m({ "d/one.html": f("1"), "d/two.html": f("2"), "d/new.html": f("new", 3000), "p.html": f("p") }) });
  // The deletions under d are this node's own changes and stand; the file d does not.
  assert.deepEqual(p.publish, ["d/one.html", "d/two.html"]);
  assert.deepEqual(p.restore, ["d"]);
  assert.deepEqual(p.conflicts, [{ path: "d", winner: "remote", kind: "file-directory" }]);
  assert.deepEqual(p.keep, [{ path: "d", from: "local", reason: "conflict" }]);
});

test("file↔directory: local file→dir while the head edits the file: the directory is published, the head's file kept", () => {
  const base = m({ "index.html": f("v1"), "p.html": f("p") });
  const p = plan({ base, local: m({ "index.html/index.html": f("dir", 5000), "p.html": f("p") }), remote: m({ "index.html": f("v2", 9000), "p.html": f("p") }) });
  assert.deepEqual(p.publish, ["index.html", "index.html/index.html"]);
  assert.deepEqual(p.restore, []);
  assert.deepEqual(p.conflicts, [{ path: "index.html", winner: "local", kind: "file-directory" }]);
  assert.deepEqual(p.keep, [{ path: "index.html", from: "remote", reason: "conflict" }]);
});

test("file↔directory, the other node's view: a local edit of a file the head turned into a directory loses and is kept", () => {
  const base = m({ "index.html": f("v1") });
  const p = plan({ base, local: m({ "index.html": f("v2", 9000) }), remote: m({ "index.html/index.html": f("dir", 5000) }) });
  assert.deepEqual(p.publish, []);
  assert.deepEqual(p.restore, ["index.html"]);
  assert.deepEqual(p.conflicts, [{ path: "index.html", winner: "remote", kind: "file-directory" }]);
  assert.deepEqual(p.keep, [{ path: "index.html", from: "local", reason: "conflict" }]);
  // The head adds a file where this node made a directory (no base on either): the directory stays.
  const q = plan({ base: new Map(), local: m({ "x/a.html": f("a", 5000) }), remote: m({ x: f("x", 9000) }) });
  assert.deepEqual(q.publish, ["x", "x/a.html"]);
  assert.deepEqual(q.keep, [{ path: "x", from: "remote", reason: "conflict" }]);
});

test("file↔directory where the node does not own the file: its own files under the directory lose instead", () => {
  const owns = (p: string) => p.startsWith("up/");
  const p = plan({ base: new Map(), owns, local: m({ "up/a.jpg": f("a", 5000) }), remote: m({ up: f("x", 9000) }) });
  assert.deepEqual(p.publish, []);
  assert.deepEqual(p.restore, ["up/a.jpg"]);
  assert.deepEqual(p.keep, [{ path: "up/a.jpg", from: "local", reason: "conflict" }]);
});

test("planApply (sync --dry-run): what the head writes and removes, published paths left alone", () => {
  const base = m({ a: f("a"), b: f("b"), c: f("c"), d: f("d") });
  const local = m({ a: f("a2", 5000), b: f("b"), c: f("c"), d: f("d"), n: f("n", 5000) });
  const remote = m({ a: f("a"), b: f("b3", 3000), d: f("d"), r: f("r") });
  const p = plan({ base, local, remote });
  assert.deepEqual(p.publish, ["a", "n"]);
  assert.deepEqual(planApply(base, remote, p), { fetch: ["b", "r"], remove: ["c"] });
  // A restored path is fetched even when the head has the base's version (the docroot's is the loser).
  const owned = plan({ base, local: m({ ...Object.fromEntries(base), d: f("mine", 5000) }), remote: base, owns: (x) => x !== "d" });
  assert.deepEqual(planApply(base, base, owned), { fetch: ["d"], remove: [] });
});

test("a healed generation's paths (--on-apply): what the docroot changed from the old base, merged with a later apply by each path's last operation", () => {
  const healed = appliedBetween(m({ a: f("a"), b: f("b"), c: f("c") }), m({ a: f("a2"), c: f("c"), d: f("d") }), 2);
  assert.deepEqual(healed, { generation: 2, changed: ["a", "d"], deleted: ["b"] });
  assert.equal(appliedBetween(m({ a: f("a") }), m({ a: f("a") }), 2), undefined, "nothing changed: no hook");
  assert.deepEqual(mergeApplied(healed, { generation: 3, changed: ["b", "e"], deleted: ["d"] }), { generation: 3, changed: ["a", "b", "e"], deleted: ["d"] });
  assert.deepEqual(mergeApplied(healed, undefined), healed);
  assert.deepEqual(mergeApplied(undefined, healed), healed);
});
