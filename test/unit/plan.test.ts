import assert from "node:assert/strict";
import { test } from "node:test";
import type { Entry, FileMap } from "../../src/core/manifest.ts";
import { isEmptyPlan, type LocalFile, planPull, planPush } from "../../src/core/plan.ts";

const sha = (c: string) => c.repeat(64).slice(0, 64);
const entry = (path: string, c: string, size = 10, mtimeMs = 1000, mode = 0o644): Entry => ({ path, size, mtimeMs, mode, sha256: sha(c), etag: `"${c}"` });
const local = (path: string, c: string, size = 10, mtimeMs = 1000, mode = 0o644): LocalFile => ({ path, size, mtimeMs, mode, sha256: sha(c) });
const map = (...es: Entry[]): FileMap => new Map(es.map((e) => [e.path, e]));

test("push plan: new, changed, unchanged, metadata-only and deleted files", () => {
  const remote = map(entry("same", "a"), entry("changed", "b"), entry("touched", "c"), entry("gone", "d"));
  const plan = planPush([local("same", "a"), local("changed", "e"), local("touched", "c", 10, 2000), local("new", "f")], remote);
  assert.deepEqual(plan.uploads.map((f) => f.path).sort(), ["changed", "new"]);
  assert.deepEqual(plan.metaOnly.map((m) => m.file.path), ["touched"]);
  assert.deepEqual(plan.deletes, ["gone"]);
  assert.equal(plan.unchanged, 1);
  assert.equal(plan.uploadBytes, 20);
});

test("push plan: a rename becomes a server-side copy plus a delete", () => {
  const remote = map(entry("old/name.html", "a"));
  const plan = planPush([local("new/name.html", "a")], remote);
  assert.equal(plan.uploads.length, 0);
  assert.deepEqual(plan.copies.map((c) => [c.file.path, c.from.path]), [["new/name.html", "old/name.html"]]);
  assert.deepEqual(plan.deletes, ["old/name.html"]);
});

test("push plan: empty files are never deduplicated (nothing to save)", () => {
  const plan = planPush([local("b", "z", 0)], map(entry("a", "z", 0)));
  assert.equal(plan.copies.length, 0);
  assert.equal(plan.uploads.length, 1);
});

test("push plan of identical listings is empty, and the input map is not mutated", () => {
  const remote = map(entry("x", "a"), entry("y", "b"));
  const before = JSON.stringify([...remote]);
  const plan = planPush([local("x", "a"), local("y", "b")], remote);
  assert.ok(isEmptyPlan(plan));
  assert.equal(JSON.stringify([...remote]), before);
});

test("pull plan: downloads, metadata-only, deletes of held files, extraneous only when asked", () => {
  const target = map(entry("keep", "a"), entry("new", "b", 5), entry("chmod", "c", 10, 1000, 0o755), entry("big", "d", 999));
  const held = new Map([
    ["keep", { size: 10, mtimeMs: 1000, mode: 0o644, sha256: sha("a") }],
    ["chmod", { size: 10, mtimeMs: 1000, mode: 0o644, sha256: sha("c") }],
    ["removed", { size: 10, mtimeMs: 1000, mode: 0o644, sha256: sha("e") }],
  ]);
  const plan = planPull(target, held, ["stray.txt"]);
  assert.deepEqual(plan.downloads.map((e) => e.path), ["new", "big"], "smaller files first");
  assert.deepEqual(plan.metaOnly.map((e) => e.path), ["chmod"]);
  assert.deepEqual(plan.deletes, ["removed", "stray.txt"]);
  assert.equal(plan.unchanged, 1);
  assert.equal(plan.downloadBytes, 1004);
  assert.deepEqual(planPull(target, held).deletes, ["removed"]);
});

test("planPush: a moved object is uploaded again even when its entry matches, and is never a copy source", () => {
  const e = (p: string, sha: string): Entry => ({ path: p, size: 3, mtimeMs: 1, mode: 0o644, sha256: sha, etag: `"${sha}"` });
  const remote: FileMap = new Map([["a", e("a", "s1")], ["b", e("b", "s2")]]);
  const local = [{ path: "a", size: 3, mtimeMs: 1, mode: 0o644, sha256: "s1" }, { path: "c", size: 3, mtimeMs: 1, mode: 0o644, sha256: "s1" }, { path: "b", size: 3, mtimeMs: 1, mode: 0o644, sha256: "s2" }];
  const plan = planPush(local, remote, { moved: new Set(["a"]) });
  assert.deepEqual(plan.uploads.map((f) => f.path).sort(), ["a", "c"]);
  assert.equal(plan.copies.length, 0);
  assert.equal(plan.unchanged, 1);
});

test("planPush: an object this plan overwrites is never a copy source, unless read by version (a rename and a new file under the old name in one batch)", () => {
  // Found by the two-way convergence test on moto (which ignores CopySourceIfMatch): the copy ran
  // after the upload of the new index.html and published its bytes under the old content's sha256.
  const remote = map(entry("index.html", "a"));
  const plan = planPush([local("moved/index.html", "a"), local("index.html", "b")], remote);
  assert.equal(plan.copies.length, 0);
  assert.deepEqual(plan.uploads.map((f) => f.path).sort(), ["index.html", "moved/index.html"]);
  // With a version id the copy reads the old bytes whatever happens to the key meanwhile.
  const versioned = map({ ...entry("index.html", "a"), versionId: "v1" });
  const p2 = planPush([local("moved/index.html", "a"), local("index.html", "b")], versioned);
  assert.deepEqual(p2.copies.map((c) => [c.file.path, c.from.path]), [["moved/index.html", "index.html"]]);
});
