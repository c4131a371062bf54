import assert from "node:assert/strict";
import { test } from "node:test";
import { gzipSync } from "node:zlib";
import { IntegrityError } from "../../src/core/errors.ts";
import { compareUtf8 } from "../../src/core/paths.ts";
import { applyJournal, type Entry, JOURNAL_FORMAT, MANIFEST_FORMAT, metaKeys, parseHead, parseJournal, parseManifest, serializeHead, serializeJournal, serializeManifest, sha256Hex } from "../../src/core/manifest.ts";

const e = (path: string, n = 1): Entry => ({ path, size: n, mtimeMs: 1700000000000, mode: 0o644, sha256: sha256Hex(path), etag: `"${n}"` });

test("a manifest round-trips and is verified against the head's sha256", async () => {
  const files = new Map([e("b.html"), e("a/x.css", 2), e("caf\u00e9", 3), e("cafe\u0301", 4)].map((x) => [x.path, x]));
  const bytes = await serializeManifest(7, files);
  const back = await parseManifest(bytes, sha256Hex(bytes), 7);
  const byPath = (a: Entry, b: Entry) => compareUtf8(a.path, b.path);
  assert.deepEqual([...back.values()].sort(byPath), [...files.values()].sort(byPath));
  assert.equal(back.size, 4, "NFC and NFD twins both survive");
  assert.deepEqual([...(await parseManifest(bytes, sha256Hex(bytes), 7, 4)).keys()], [...back.keys()], "with the head's count");
  await assert.rejects(parseManifest(bytes, "0".repeat(64), 7), /corrupt or truncated/);
  await assert.rejects(parseManifest(bytes, sha256Hex(bytes), 8), /says generation 7/);
  await assert.rejects(parseManifest(bytes, sha256Hex(bytes), 7, 3), /announces 4 files, the head 3/);
  const truncated = bytes.subarray(0, bytes.length - 10);
  await assert.rejects(parseManifest(truncated, sha256Hex(truncated), 7), IntegrityError);
});

test("hostile manifests are rejected with the offending path", async () => {
  const mk = (entries: object[], announced = entries.length) => {
    const text = [JSON.stringify({ format: MANIFEST_FORMAT, generation: 1, files: announced }), ...entries.map((x) => JSON.stringify(x))].join("\n");
    const b = gzipSync(text);
    return parseManifest(b, sha256Hex(b), 1);
  };
  await assert.rejects(mk([{ ...e("ok"), path: "../../etc/passwd" }]), /"\.\."/);
  await assert.rejects(mk([{ ...e("ok"), path: "/etc/passwd" }]), /absolute/);
  await assert.rejects(mk([{ ...e("ok"), path: "a\u0000b" }]), /NUL/);
  await assert.rejects(mk([e("dup"), e("dup")]), /duplicate/);
  await assert.rejects(mk([e("d"), e("d/f")]), /both a file and a directory/);
  await assert.rejects(mk([{ ...e("x"), sha256: "nothex" }]), /sha256/);
  await assert.rejects(mk([{ ...e("x"), size: -1 }]), /size/);
  await assert.rejects(mk([{ ...e("x"), mode: 0o100000 }]), /mode/);
  await assert.rejects(mk([e("a"), e("b")], 1), /more than the 1 entries its header announces/);
  await assert.rejects(mk([e("a")], 2), /announces 2 files, body has 1/);
});

test("a gzip bomb stops at the first line that no manifest has, whatever it inflates to", async () => {
  const header = gzipSync(JSON.stringify({ format: MANIFEST_FORMAT, generation: 1, files: 2 }) + "\n");
  const bomb = (unit: Buffer, times: number) => {
    const member = gzipSync(unit, { level: 9 });
    return Buffer.concat([header, ...Array.from({ length: times }, () => member)]);
  };
  // 256 MiB each once inflated; each fails within its first chunks.
  const cases: [string, Buffer, RegExp][] = [
    ["an endless line", bomb(Buffer.alloc(1 << 20, 0x41), 256), /line 2 is longer than 8192 bytes/],
    ["endless empty lines", bomb(Buffer.alloc(1 << 20, 0x0a), 256), /line 2 is empty/],
    ["the same entry over and over", bomb(Buffer.from((JSON.stringify(e("x")) + "\n").repeat(5000)), 256), /duplicate path/],
  ];
  for (const [what, b, re] of cases) {
    const t = Date.now();
    await assert.rejects(parseManifest(b, sha256Hex(b), 1, 2), re, what);
    assert.ok(Date.now() - t < 2000, `${what}: stopped early`);
  }
});

test("journals apply puts and deletes without mutating the input", () => {
  const base = new Map([e("a"), e("b")].map((x) => [x.path, x]));
  const j = parseJournal(serializeJournal({ format: JOURNAL_FORMAT, generation: 2, puts: [e("c"), e("a", 9)], deletes: ["b"], time: "t" }), 2);
  const next = applyJournal(base, j);
  assert.deepEqual([...next.keys()].sort(), ["a", "c"]);
  assert.equal(next.get("a")?.size, 9);
  assert.equal(base.size, 2);
  assert.throws(() => parseJournal(serializeJournal({ format: JOURNAL_FORMAT, generation: 3, puts: [], deletes: [], time: "" }), 2), /says generation 3/);
  assert.throws(() => parseJournal(Buffer.from("{not json"), 2), /not valid JSON/);
  // A directory that became a file: put "d", delete "d/f". Only the result may not clash.
  const dirToFile = parseJournal(serializeJournal({ format: JOURNAL_FORMAT, generation: 2, puts: [e("d")], deletes: ["d/f"], time: "" }), 2);
  assert.deepEqual([...applyJournal(new Map([["d/f", e("d/f")]]), dirToFile).keys()], ["d"]);
  assert.throws(() => applyJournal(new Map([["d/f", e("d/f")], ["d/g", e("d/g")]]), dirToFile), /both a file and a directory/);
  assert.throws(() => parseJournal(serializeJournal({ format: JOURNAL_FORMAT, generation: 2, puts: [e("d"), e("d/f")], deletes: [], time: "" }), 2), /both a file and a directory/);
});

test("a head must name its own generation's manifest under the meta prefix", () => {
  const meta = "site/.fansync/";
  const good = { format: "fansync-head/1", generation: 3, manifestKey: metaKeys.manifest(meta, 3), manifestSha256: "a".repeat(64), files: 1, bytes: 1, oldestJournal: 0, writer: "w", time: "t" };
  assert.equal(parseHead(Buffer.from(JSON.stringify(good)), meta).generation, 3);
  assert.throws(() => parseHead(Buffer.from(JSON.stringify({ ...good, manifestKey: "../../x" })), meta), /not the manifest of generation 3/);
  assert.throws(() => parseHead(Buffer.from(JSON.stringify({ ...good, generation: 0 })), meta), /positive integer/);
  assert.throws(() => parseHead(Buffer.from("<html>"), meta), /not valid JSON/);
});

// Issue 27 item 9: the head says which command wrote it; an unknown kind reads as not recorded.
test("a head records its writer kind; absent or unknown reads as undefined", () => {
  const meta = "site/.fansync/";
  const good = { format: "fansync-head/1", generation: 3, manifestKey: metaKeys.manifest(meta, 3), manifestSha256: "a".repeat(64), files: 1, bytes: 1, oldestJournal: 0, writer: "w", time: "t" };
  assert.equal(parseHead(Buffer.from(JSON.stringify({ ...good, writerKind: "sync" })), meta).writerKind, "sync");
  assert.equal(parseHead(serializeHead(parseHead(Buffer.from(JSON.stringify({ ...good, writerKind: "watch" })), meta)), meta).writerKind, "watch");
  assert.equal(parseHead(Buffer.from(JSON.stringify(good)), meta).writerKind, undefined);
  assert.equal(parseHead(Buffer.from(JSON.stringify({ ...good, writerKind: "teleport" })), meta).writerKind, undefined);
});
