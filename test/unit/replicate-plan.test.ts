/** planReplicate / applyJournals: pure, table-driven. */
import assert from "node:assert/strict";
import { test } from "node:test";
import type { Entry, FileMap, Journal } from "../../src/core/manifest.ts";
import { applyJournals, canUseJournals, planReplicate } from "../../src/core/replicate-plan.ts";

const sha = (c: string) => c.repeat(64).slice(0, 64);
const e = (path: string, c: string, etag: string, extra: Partial<Entry> = {}): Entry => ({ path, size: 10, mtimeMs: 1000, mode: 0o644, sha256: sha(c), etag, ...extra });
const map = (...es: Entry[]): FileMap => new Map(es.map((x) => [x.path, x]));

test("a region that holds nothing transfers each distinct content once and copies twins inside the region", () => {
  const plan = planReplicate(map(e("a.css", "a", "P1"), e("b.css", "a", "P1"), e("c.js", "c", "P2")), new Map());
  assert.deepEqual(plan.transfers.map((x) => x.path), ["a.css", "c.js"]);
  assert.deepEqual(plan.twins.map((t) => [t.entry.path, t.of]), [["b.css", "a.css"]]);
  assert.equal(plan.transferBytes, 20);
  assert.deepEqual(plan.deletes, []);
});

test("bytes already in the region keep the region's ETag; content under another key is copied inside the region", () => {
  const region = map(e("same", "s", "R1", { versionId: "rv1" }), e("touched", "t", "R2"), e("old", "o", "R3"), e("gone", "g", "R4"));
  const target = map(e("same", "s", "P1", { versionId: "pv1" }), e("touched", "t", "P2", { mtimeMs: 2000 }), e("moved", "o", "P3"), e("new", "n", "P4"));
  const plan = planReplicate(target, region);
  assert.equal(plan.unchanged, 1);
  assert.deepEqual(plan.metaOnly, [{ ...e("touched", "t", "R2"), mtimeMs: 2000, versionId: undefined }]);
  assert.deepEqual(plan.regionCopies.map((c) => [c.entry.path, c.from.path, c.from.etag]), [["moved", "old", "R3"]]);
  assert.deepEqual(plan.transfers.map((x) => x.path), ["new"]);
  assert.deepEqual(plan.deletes, ["gone", "old"]);
});

test("a changed path is transferred even though a stale copy sits at the same key", () => {
  const plan = planReplicate(map(e("a", "b", "P")), map(e("a", "a", "R")));
  assert.deepEqual(plan.transfers.map((x) => x.etag), ["P"]);
});

test("journals applied on top of the region's map give the primary's generation", () => {
  const region = map(e("a", "a", "R1"), e("b", "b", "R2"));
  const j = (generation: number, puts: Entry[], deletes: string[]): Journal => ({ format: "fansync-journal/1", generation, puts, deletes, time: "" });
  const files = applyJournals(region, [j(2, [e("c", "c", "P3")], ["a"]), j(3, [e("c", "d", "P4")], [])]);
  assert.deepEqual([...files.keys()].sort(), ["b", "c"]);
  assert.equal(files.get("b")?.etag, "R2");
  assert.equal(files.get("c")?.etag, "P4");
  assert.equal(region.size, 2, "the input is not mutated");
});

for (const [have, want, oldest, max, expected] of [
  [0, 3, 0, 20, false],
  [2, 3, 0, 20, true],
  [2, 30, 0, 20, false],
  [2, 5, 3, 20, false],
  [3, 3, 0, 20, false],
] as const) {
  test(`canUseJournals(${have} → ${want}, oldest ${oldest}, max ${max}) is ${expected}`, () => {
    assert.equal(canUseJournals(have, want, oldest, max), expected);
  });
}
