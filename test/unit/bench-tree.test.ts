import { test } from "node:test";
import assert from "node:assert/strict";
import { compareUtf8, contentFor, contentSlice, listingDigest, planTree, type TreeSpec } from "../../bench/lib/tree.ts";

const spec: TreeSpec = { name: "t", files: 3_000, dirs: 30, minSize: 1024, maxSize: 20 * 1024, bigFiles: 0, bigMinSize: 0, bigMaxSize: 0, unicode: true };

test("same seed gives the same listing", () => {
  assert.deepEqual(planTree(spec, 7), planTree(spec, 7));
  assert.equal(listingDigest(planTree(spec, 7)), listingDigest(planTree(spec, 7)));
});

test("another seed gives another listing", () => {
  assert.notEqual(listingDigest(planTree(spec, 7)), listingDigest(planTree(spec, 8)));
});

test("exact file count, unique paths, sizes in range, sorted in UTF-8 byte order", () => {
  const entries = planTree(spec, 1);
  assert.equal(entries.length, spec.files);
  assert.equal(new Set(entries.map((e) => e.path)).size, spec.files);
  for (const e of entries) {
    assert.ok(e.size >= spec.minSize && e.size <= spec.maxSize, `${e.path}: ${e.size}`);
    assert.ok(!e.path.startsWith("/") && !e.path.includes("//"), e.path);
  }
  for (let i = 1; i < entries.length; i++) {
    assert.ok(compareUtf8((entries[i - 1] as { path: string }).path, (entries[i] as { path: string }).path) < 0);
  }
});

test("directories nest and number about as asked", () => {
  const dirs = new Set(planTree(spec, 1).map((e) => e.path.split("/").slice(0, -1).join("/")));
  assert.ok(dirs.size > 10 && dirs.size <= spec.dirs, `${dirs.size} dirs`);
  assert.ok([...dirs].some((d) => d.split("/").length >= 3), "some nesting");
});

test("unicode trees hold NFC/NFD twins that are distinct names", () => {
  const paths = planTree(spec, 1).map((e) => e.path);
  // Twins exist as whole names (directory or file names), each written once in NFC and once in NFD.
  const names = new Set(paths.flatMap((p) => p.split("/")));
  const nfd = [...names].filter((n) => n !== n.normalize("NFC"));
  assert.ok(nfd.length > 0, "has NFD names");
  for (const n of nfd) assert.ok(names.has(n.normalize("NFC")), `NFC twin of ${n}`);
  assert.ok(paths.some((p) => p !== p.normalize("NFC") && paths.includes(p.normalize("NFC"))), "some file paths are twins");
  const plain = planTree({ ...spec, unicode: false }, 1).map((e) => e.path);
  assert.ok(plain.every((p) => /^[\x20-\x7e]+$/.test(p)));
});

test("big files are planned with sizes in their own range", () => {
  const big = planTree({ ...spec, files: 50, dirs: 5, bigFiles: 3, bigMinSize: 50 << 20, bigMaxSize: 200 << 20 }, 3);
  const bigOnes = big.filter((e) => e.size > 20 * 1024);
  assert.equal(bigOnes.length, 3);
  for (const e of bigOnes) assert.ok(e.size >= 50 << 20 && e.size <= 200 << 20);
});

test("content is deterministic, sized, and differs by version", () => {
  const a = contentFor("x/a.html", 5000, 1);
  assert.equal(a.length, 5000);
  assert.ok(a.equals(contentFor("x/a.html", 5000, 1)));
  assert.ok(!a.equals(contentFor("x/a.html", 5000, 1, 1)));
  assert.ok(!a.equals(contentFor("x/b.html", 5000, 1)));
  // Streaming slices of a big body join up to the whole body.
  const whole = contentFor("v.mp4", 3 << 20, 2);
  const joined = Buffer.concat([contentSlice("v.mp4", 2, 0, 0, 1 << 20), contentSlice("v.mp4", 2, 0, 1 << 20, 2 << 20)]);
  assert.ok(whole.equals(joined));
});
