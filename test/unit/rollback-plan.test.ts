import assert from "node:assert/strict";
import { test } from "node:test";
import type { Entry, FileMap } from "../../src/core/manifest.ts";
import { EMPTY_SHA256, isNoopRollback, type LocalSource, planRollback, restoreCandidates, type RollbackPlan } from "../../src/core/rollback-plan.ts";

const sha = (c: string) => c.repeat(64).slice(0, 64);
const entry = (path: string, c: string, opts: { size?: number; mtimeMs?: number; mode?: number; versionId?: string } = {}): Entry => ({
  path,
  size: opts.size ?? 10,
  mtimeMs: opts.mtimeMs ?? 1000,
  mode: opts.mode ?? 0o644,
  sha256: c === "" ? EMPTY_SHA256 : sha(c),
  etag: `"${c}"`,
  ...(opts.versionId ? { versionId: opts.versionId } : {}),
});
const empty = (path: string): Entry => entry(path, "", { size: 0 });
const local = (path: string, c: string, size = 10): LocalSource => ({ path, size, sha256: sha(c) });
const map = (...es: Entry[]): FileMap => new Map(es.map((e) => [e.path, e]));

/** The plan as one line per path: what happens to it and from where. */
function describe(p: RollbackPlan): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of p.metaOnly) out[m.entry.path] = "meta";
  for (const e of p.copyVersions) out[e.path] = `version ${e.versionId}`;
  for (const c of p.copies) out[c.entry.path] = `copy ${c.from.path}${c.from.versionId ? `@${c.from.versionId}` : ""}`;
  for (const u of p.uploads) out[u.entry.path] = u.local === undefined ? "empty" : `upload ${u.local}`;
  for (const d of p.deletes) out[d] = "delete";
  for (const e of p.missing) out[e.path] = "missing";
  return out;
}

interface Case {
  readonly name: string;
  readonly target: FileMap;
  readonly current: FileMap;
  readonly versions?: readonly string[];
  readonly local?: readonly LocalSource[];
  readonly want: Record<string, string>;
  readonly unchanged: number;
}

const cases: readonly Case[] = [
  {
    name: "identical generations: nothing to do",
    target: map(entry("a", "a"), entry("b", "b")),
    current: map(entry("a", "a"), entry("b", "b")),
    want: {},
    unchanged: 2,
  },
  {
    name: "same bytes, other mtime or mode: manifest-only change",
    target: map(entry("a", "a", { mtimeMs: 5 }), entry("b", "b", { mode: 0o600 })),
    current: map(entry("a", "a"), entry("b", "b")),
    want: { a: "meta", b: "meta" },
    unchanged: 0,
  },
  {
    name: "paths added since are deleted, in UTF-8 order",
    target: map(entry("a", "a")),
    current: map(entry("a", "a"), entry("z", "z"), entry("b", "b")),
    want: { b: "delete", z: "delete" },
    unchanged: 1,
  },
  {
    name: "a changed path whose old version still exists: copy of that version",
    target: map(entry("a", "a", { versionId: "v1" })),
    current: map(entry("a", "x", { versionId: "v2" })),
    versions: ["a"],
    want: { a: "version v1" },
    unchanged: 0,
  },
  {
    name: "the version is preferred over a current twin and a local file",
    target: map(entry("a", "a", { versionId: "v1" })),
    current: map(entry("a", "x"), entry("twin", "a")),
    versions: ["a"],
    local: [local("a", "a")],
    want: { a: "version v1", twin: "delete" },
    unchanged: 0,
  },
  {
    name: "an old VersionId that is gone falls back to a current twin",
    target: map(entry("a", "a", { versionId: "v1" })),
    current: map(entry("a", "x"), entry("twin", "a")),
    want: { a: "copy twin", twin: "delete" },
    unchanged: 0,
  },
  {
    name: "a deleted path restored by copying a current object with the same bytes",
    target: map(entry("old.html", "o"), entry("keep", "k")),
    current: map(entry("keep", "k"), entry("renamed.html", "o")),
    want: { "old.html": "copy renamed.html", "renamed.html": "delete" },
    unchanged: 1,
  },
  {
    name: "a twin that is unchanged itself serves as the source",
    target: map(entry("a", "s"), entry("b", "s")),
    current: map(entry("a", "s"), entry("b", "x")),
    want: { b: "copy a" },
    unchanged: 1,
  },
  {
    name: "twins of different sizes are not the same content",
    target: map(entry("a", "a", { size: 10 })),
    current: map(entry("b", "a", { size: 11 })),
    want: { a: "missing", b: "delete" },
    unchanged: 0,
  },
  {
    name: "swapped files, no versioning: an overwritten path is no source; local files restore them",
    target: map(entry("a", "A"), entry("b", "B")),
    current: map(entry("a", "B"), entry("b", "A")),
    local: [local("x/a", "A"), local("x/b", "B")],
    want: { a: "upload x/a", b: "upload x/b" },
    unchanged: 0,
  },
  {
    name: "swapped files, no versioning, no local files: both missing",
    target: map(entry("a", "A"), entry("b", "B")),
    current: map(entry("a", "B"), entry("b", "A")),
    want: { a: "missing", b: "missing" },
    unchanged: 0,
  },
  {
    name: "swapped files whose current entries name versions: copies by version",
    target: map(entry("a", "A"), entry("b", "B")),
    current: map(entry("a", "B", { versionId: "va" }), entry("b", "A", { versionId: "vb" })),
    want: { a: "copy b@vb", b: "copy a@va" },
    unchanged: 0,
  },
  {
    name: "a stable twin is preferred over an overwritten one read by version",
    target: map(entry("a", "A"), entry("c", "C")),
    current: map(entry("a", "C", { versionId: "va" }), entry("c", "A", { versionId: "vc" }), entry("z", "A")),
    want: { a: "copy z", c: "copy a@va", z: "delete" },
    unchanged: 0,
  },
  {
    name: "a local file at the same path is preferred over one elsewhere",
    target: map(entry("p/i.html", "i")),
    current: map(entry("p/i.html", "x")),
    local: [local("a-first", "i"), local("p/i.html", "i")],
    want: { "p/i.html": "upload p/i.html" },
    unchanged: 0,
  },
  {
    name: "a local file at the same path with other bytes is not used; one elsewhere is",
    target: map(entry("i.html", "i")),
    current: map(entry("i.html", "x")),
    local: [local("i.html", "x"), local("backup/i.html", "i")],
    want: { "i.html": "upload backup/i.html" },
    unchanged: 0,
  },
  {
    name: "empty files are written from nothing, never copied",
    target: map(empty("e"), empty("f")),
    current: map(empty("f"), entry("e", "x"), empty("other")),
    want: { e: "empty", other: "delete" },
    unchanged: 1,
  },
  {
    name: "paths with no source are missing; the rest is still planned",
    target: map(entry("gone", "g"), entry("here", "h"), entry("keep", "k")),
    current: map(entry("keep", "k"), entry("dup", "h")),
    want: { gone: "missing", here: "copy dup", dup: "delete" },
    unchanged: 1,
  },
];

for (const c of cases) {
  test(`rollback plan: ${c.name}`, () => {
    const plan = planRollback(c.target, c.current, { versions: new Set(c.versions ?? []), local: c.local ?? [] });
    assert.deepEqual(describe(plan), c.want);
    assert.equal(plan.unchanged, c.unchanged);
    const total = plan.unchanged + plan.metaOnly.length + plan.copyVersions.length + plan.copies.length + plan.uploads.length + plan.missing.length;
    assert.equal(total, c.target.size, "every old path is accounted for exactly once");
  });
}

test("rollback plan: upload bytes count only local uploads", () => {
  const plan = planRollback(map(entry("a", "a", { size: 7 }), empty("e"), entry("b", "b", { size: 5 })), map(entry("keep", "k")), {
    versions: new Set(),
    local: [local("a", "a", 7), local("b", "b", 5)],
  });
  assert.equal(plan.uploadBytes, 12);
});

test("rollback plan: a plan with nothing to do is recognised; inputs are not mutated", () => {
  const target = map(entry("a", "a"), entry("b", "b", { versionId: "v" }));
  const current = map(entry("a", "a"), entry("b", "b", { versionId: "v" }));
  const before = JSON.stringify([[...target], [...current]]);
  const plan = planRollback(target, current, { versions: new Set(["b"]), local: [] });
  assert.ok(isNoopRollback(plan));
  assert.equal(JSON.stringify([[...target], [...current]]), before);
  assert.ok(!isNoopRollback(planRollback(target, map(entry("a", "a")), { versions: new Set(), local: [] })));
});

test("restore candidates: old entries whose bytes differ from the current path, sorted", () => {
  const got = restoreCandidates(map(entry("z", "z"), entry("same", "s", { mode: 0o600 }), entry("a", "a")), map(entry("same", "s"), entry("a", "x")));
  assert.deepEqual(got.map((e) => e.path), ["a", "z"]);
});
