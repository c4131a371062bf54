import assert from "node:assert/strict";
import { test } from "node:test";
import { gzipSync } from "node:zlib";
import { type Entry, type FileMap, sha256Hex } from "../../src/core/manifest.ts";
import { DEFAULT_PACK_FETCH, type Pack, PACK_INDEX_FORMAT, type PackIndex, type PackTuning, parsePackIndex, planPackFetch, planPacks, pullUsesPacks, serializePackIndex } from "../../src/core/pack-format.ts";

const e = (path: string, size = 100, tag = ""): Entry => ({ path, size, mtimeMs: 1700000000000, mode: 0o644, sha256: sha256Hex(path + tag), etag: '"x"' });
const map = (entries: Entry[]): FileMap => new Map(entries.map((x) => [x.path, x]));
const T: PackTuning = { maxFileSize: 1000, packSize: 1000, minLive: 0.5, minNewFiles: 5 };

/** A pack holding `entries` back to back, as the writer would cut it. */
function packOf(entries: readonly Entry[], id = sha256Hex(entries.map((x) => x.path).join())): Pack {
  let offset = 0;
  const files = entries.map((x) => {
    const f = { path: x.path, offset, length: x.size, sha256: x.sha256 };
    offset += x.size;
    return f;
  });
  return { id, size: offset, files };
}
const index = (packs: Pack[], retiring: string[] = []): PackIndex => ({ format: PACK_INDEX_FORMAT, generation: 3, time: "t", packs, retiring });

test("the first plan packs every small file, in path order, cut at about packSize", () => {
  const files = map([e("b", 400), e("a", 400), e("c", 400), e("big", 5000), e("d", 400)]);
  const p = planPacks(undefined, files, T);
  assert.equal(p.changed, true);
  assert.equal(p.reason, "no pack index yet");
  assert.deepEqual(p.build.map((g) => g.map((x) => x.path)), [["a", "b"], ["c", "d"]], "files above maxFileSize are never packed");
  assert.deepEqual(p.retire, []);
});

test("a small change leaves the index alone (no PUT); enough new files make a new pack", () => {
  const base = [e("a", 400), e("b", 400), e("c", 400), e("d", 400)];
  const prev = index([packOf(base.slice(0, 2)), packOf(base.slice(2))]);
  const oneChanged = map([...base.slice(0, 3), e("d", 400, "v2"), e("new1")]);
  const p = planPacks(prev, oneChanged, T);
  assert.equal(p.changed, false, "one stale file of four and one new file: nothing rewritten");
  assert.equal(p.build.length, 0);
  const many = map([...base, ...["n1", "n2", "n3", "n4", "n5"].map((n) => e(n))]);
  const q = planPacks(prev, many, T);
  assert.equal(q.changed, true);
  assert.deepEqual(q.keep.map((k) => k.id), prev.packs.map((k) => k.id), "packs still live are kept as they are");
  assert.deepEqual(q.build.map((g) => g.map((x) => x.path)), [["n1", "n2", "n3", "n4", "n5"]]);
});

test("a pack whose live share falls below minLive is dropped, its live files packed again, and kept as retiring", () => {
  const base = [e("a", 400), e("b", 400), e("c", 400), e("d", 400)];
  const p1 = packOf(base.slice(0, 2));
  const p2 = packOf(base.slice(2));
  const prev = index([p1, p2], ["f".repeat(64)]);
  // b changed and d is gone: p2 is 50% live (kept), p1 holds... a changed too → p1 0% live.
  const files = map([e("a", 400, "v2"), e("b", 400, "v2"), e("c", 400)]);
  const p = planPacks(prev, files, T);
  assert.equal(p.changed, true);
  assert.match(p.reason, /fell below 50% live/);
  assert.deepEqual(p.keep.map((k) => k.id), [p2.id]);
  assert.deepEqual(p.keep[0]?.files.map((f) => f.path), ["c"], "a kept pack lists only its live files");
  assert.deepEqual(p.retire, [p1.id]);
  assert.deepEqual(p.build.map((g) => g.map((x) => x.path)), [["a", "b"]]);
});

test("repack drops every pack and packs everything again", () => {
  const base = [e("a", 400), e("b", 400)];
  const prev = index([packOf(base)]);
  const p = planPacks(prev, map(base), T, true);
  assert.equal(p.changed, true);
  assert.deepEqual(p.keep, []);
  assert.equal(p.retire.length, 1);
  assert.deepEqual(p.build.map((g) => g.length), [2]);
});

test("an index round-trips", () => {
  const idx = index([packOf([e("a/x.html", 10), e("caf\u00e9", 20)])], ["e".repeat(64)]);
  assert.deepEqual(parsePackIndex(serializePackIndex(idx), 1e6), idx);
});

test("hostile indexes are refused with a clear error", () => {
  const good = packOf([e("a", 10), e("b", 10)]);
  const raw = (packs: unknown, extra: object = {}) => gzipSync(JSON.stringify({ format: PACK_INDEX_FORMAT, generation: 1, time: "t", packs, retiring: [], ...extra }));
  const with1 = (f: unknown[], size = 100) => raw([{ id: good.id, size, files: [f] }]);
  const sha = "a".repeat(64);
  const cases: [Buffer, RegExp][] = [
    [with1(["../etc/passwd", 0, 10, sha]), /invalid path/],
    [with1(["/abs", 0, 10, sha]), /invalid path/],
    [with1([".fansync/head.json", 0, 10, sha]), /invalid path/],
    [with1(["a\u0000b", 0, 10, sha]), /invalid path/],
    [with1(["a", 95, 10, sha]), /beyond the pack's 100 bytes/],
    [with1(["a", 0, 2 ** 40, sha]), /beyond the pack/],
    [with1(["a", -1, 10, sha]), /offset/],
    [with1(["a", 0, 10, "zz"]), /sha256/],
    [with1(["a", 0, 10, sha], 2 ** 40), /size/],
    [raw([{ id: good.id, size: 100, files: [["a", 0, 10, sha], ["b", 5, 10, sha]] }]), /overlaps/],
    [raw([{ id: good.id, size: 100, files: [["a", 0, 10, sha]] }, { id: "b".repeat(64), size: 100, files: [["a", 0, 10, sha]] }]), /duplicate/],
    [raw([{ id: good.id, size: 100, files: [["a", 0, 10, sha]] }, { id: good.id, size: 100, files: [] }]), /listed twice/],
    [raw([{ id: "../../x", size: 100, files: [] }]), /id is not a sha256/],
    [raw([], { format: "other/1" }), /unknown format/],
    [raw([], { retiring: ["../x"] }), /retiring/],
    [Buffer.from("not gzip"), /not valid gzip/],
    [gzipSync(Buffer.alloc(10_000_000, 32)), /inflates to more than/],
  ];
  for (const [bytes, why] of cases) assert.throws(() => parsePackIndex(bytes, 1_000_000), why);
});

test("a puller takes from a pack only files whose size and sha256 are the manifest's, and only packs worth a GET", () => {
  const files = Array.from({ length: 20 }, (_, i) => e(`f${String(i).padStart(2, "0")}`, 100));
  const p1 = packOf(files.slice(0, 10));
  const p2 = packOf(files.slice(10));
  const idx = index([p1, p2]);
  const wanted = [...files.slice(0, 10).map((x, i) => (i === 3 ? e(x.path, 100, "new") : x)), files[10] as Entry];
  const { fetches, covered } = planPackFetch(idx, wanted, DEFAULT_PACK_FETCH);
  assert.deepEqual(fetches.map((f) => f.pack.id), [p1.id], "p2 would give one file: not worth its GET");
  assert.equal(covered.size, 9, "the changed file comes path-keyed");
  assert.ok(!covered.has("f03"));
  assert.deepEqual(fetches[0]?.files.map((f) => f.offset).slice(0, 3), [0, 100, 200]);
  assert.equal(planPackFetch(idx, files.slice(0, 4), DEFAULT_PACK_FETCH).fetches.length, 0, "fewer than minFilesPerPack");
});

test("config: packs is off by default, read by push and watch only; repack needs packs", async () => {
  const { commandsReading, validateConfig } = await import("../../src/core/config.ts");
  assert.equal(validateConfig({}).packs, false);
  assert.equal(validateConfig({ packs: "true" }).packs, true);
  assert.deepEqual(commandsReading("packs").sort(), ["push", "watch"]);
  assert.deepEqual(commandsReading("repack"), ["push"]);
  assert.throws(() => validateConfig({ repack: true }), /repack: needs packs/);
  assert.throws(() => validateConfig({ packs: "yes" }), /packs: expected true or false/);
});

test("a pull reads the pack index only when packs can pay: 64 downloads and 1% of the site", () => {
  assert.equal(pullUsesPacks(10_000, 10_000), true, "a new node");
  assert.equal(pullUsesPacks(63, 300), false, "a small change of a small site");
  assert.equal(pullUsesPacks(64, 300), true);
  assert.equal(pullUsesPacks(500, 100_000), false, "an everyday change of a large site: 64 GETs beat a 5 MB index");
  assert.equal(pullUsesPacks(1000, 100_000), true);
});
