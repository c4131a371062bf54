/**
 * The hash index keeps its records compact (issue 25, memory): sha256 as 32 bytes, numbers in typed
 * arrays. What goes in comes out unchanged (hex ⇄ bytes, large mtimes and inodes), slots freed by a
 * prune are reused without mixing records up, and the file on disk keeps its format
 * (`[path, [size, mtimeMs, ino, sha256]]` lines) both ways.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, test } from "node:test";
import { HashIndex, type IndexEntry, IndexSlots } from "../../src/adapters/hash-index.ts";
import type { ScannedFile } from "../../src/adapters/local-tree.ts";
import { sha256Hex } from "../../src/core/manifest.ts";
import { readNdjsonMap } from "../../src/adapters/state-files.ts";

const root = mkdtempSync(path.join(os.tmpdir(), "fansync-hash-index-"));
after(() => rmSync(root, { recursive: true, force: true }));

const sha = (s: string) => sha256Hex(s);
const scanned = (p: string, e: IndexEntry): ScannedFile => ({ path: p, size: e[0], mtimeMs: e[1], mode: 0o644, ino: e[2] });

test("index slots: a record comes back as it went in (sha256 hex ⇄ bytes, mtimes and inodes past 2^32)", () => {
  const slots = new IndexSlots();
  const records: [string, IndexEntry][] = [];
  for (let i = 0; i < 3000; i++) records.push([`d${i % 7}/f${i}.html`, [i * 13, 1_765_000_000_000 + i, 2 ** 40 + i, sha(`content ${i}`)]]);
  // Edge digests: all zero bytes, all 0xff, leading zero nibbles.
  records.push(["zero", [0, 0, 0, "0".repeat(64)]], ["ff", [1, -1, 1, "f".repeat(64)]], ["mixed", [5, 6, 7, "0a".repeat(32)]]);
  for (const [p, e] of records) slots.set(p, e);
  assert.equal(slots.size, records.length);
  for (const [p, e] of records) {
    assert.deepEqual(slots.get(p), e);
    assert.equal(slots.shaIs(p, e[3]), true);
    assert.equal(slots.matches(p, e[0], e[1], e[2]), true);
  }
  assert.equal(slots.shaIs("d0/f0.html", sha("content 1")), false);
  assert.equal(slots.shaIs("d0/f0.html", "not hex"), false);
  assert.equal(slots.matches("d0/f0.html", 0, 1_765_000_000_000, 2 ** 40 + 1), false);
  assert.equal(slots.get("absent"), undefined);
  assert.throws(() => slots.set("bad", [1, 2, 3, "ABC"]), TypeError);
});

test("index slots: freed slots are reused and an overwritten record replaces the old one", () => {
  const slots = new IndexSlots();
  for (let i = 0; i < 100; i++) slots.set(`f${i}`, [i, i, i, sha(String(i))]);
  for (let i = 0; i < 100; i += 2) slots.delete(`f${i}`);
  for (let i = 0; i < 60; i++) slots.set(`g${i}`, [1000 + i, i, i, sha(`g${i}`)]);
  slots.set("f1", [7, 8, 9, sha("new f1")]);
  assert.equal(slots.size, 50 + 60);
  assert.deepEqual(slots.get("f1"), [7, 8, 9, sha("new f1")]);
  for (let i = 3; i < 100; i += 2) assert.deepEqual(slots.get(`f${i}`), [i, i, i, sha(String(i))]);
  for (let i = 0; i < 60; i++) assert.deepEqual(slots.get(`g${i}`), [1000 + i, i, i, sha(`g${i}`)]);
  for (let i = 0; i < 100; i += 2) assert.equal(slots.get(`f${i}`), undefined);
});

test("hash index: saved as [path, [size, mtimeMs, ino, sha256]] lines, read back from that format", async () => {
  const file = path.join(root, "index.ndjson");
  // An index written before the compact records (the same format): read as it is.
  const before: [string, IndexEntry][] = [["a.html", [10, 1_765_000_000_123, 42, sha("a")]], ["dir/é b.css", [20, 1_765_000_000_456, 2 ** 33, sha("b")]]];
  writeFileSync(file, before.map((l) => JSON.stringify(l)).join("\n") + "\n");
  const index = await new HashIndex(file).load();
  assert.deepEqual(index.get("a.html"), before[0]?.[1]);
  assert.deepEqual(index.known(scanned("dir/é b.css", before[1]?.[1] as IndexEntry)), before[1]?.[1]);
  // A changed mtime is not known; the manifest's own string comes back when it is that sha256.
  assert.equal(index.knownSha({ ...scanned("a.html", before[0]?.[1] as IndexEntry), mtimeMs: 1 }), undefined);
  const manifestSha = [sha("a")].join("");
  assert.equal(index.knownSha(scanned("a.html", before[0]?.[1] as IndexEntry), manifestSha), manifestSha);
  assert.equal(index.knownSha(scanned("a.html", before[0]?.[1] as IndexEntry), sha("other")), sha("a"));
  index.set("c.js", [30, 5, 6, sha("c")]);
  index.prune((p) => p !== "a.html");
  await index.save();
  const onDisk = await readNdjsonMap<IndexEntry>(file);
  assert.deepEqual([...onDisk].sort(), [["c.js", [30, 5, 6, sha("c")]], ["dir/é b.css", before[1]?.[1]]].sort());
  assert.equal(readFileSync(file, "utf8").split("\n").filter((l) => l !== "").length, 2);
});

test("hash index: a damaged index file is dropped whole (every file is hashed again), not half read", async () => {
  const file = path.join(root, "damaged.ndjson");
  writeFileSync(file, JSON.stringify(["a", [1, 2, 3, sha("a")]]) + "\n" + JSON.stringify(["b", [1, 2, 3, "xyz"]]) + "\n");
  const index = await new HashIndex(file).load();
  assert.equal(index.get("a"), undefined);
  assert.equal(index.get("b"), undefined);
});
