import assert from "node:assert/strict";
import { test } from "node:test";
import { checkPathKeys, checkPathSet, checkRelativePath, compareUtf8 } from "../../src/core/paths.ts";

test("accepts ordinary relative paths, unicode and spaces", () => {
  for (const p of ["index.html", "a/b/c.css", "caf\u00e9/menu.html", "cafe\u0301/menu.html", "with space/x y.txt", ".well-known/x"]) {
    assert.equal(checkRelativePath(p), undefined, p);
  }
});

test("rejects hostile paths with the reason", () => {
  const cases: [unknown, RegExp][] = [
    ["../etc/passwd", /"\.\."/],
    ["a/../../x", /"\.\."/],
    ["/etc/passwd", /absolute/],
    ["a\u0000b", /NUL/],
    ["a\nb", /control/],
    ["a\u001bb", /control/],
    ["a//b", /empty segment/],
    ["a/", /empty segment/],
    ["./a", /"\."/],
    ["", /empty/],
    ["a\\b", /backslash/],
    [".fansync/head.json", /reserved/],
    ["x/.fansync-tmp-abc", /temp-file/],
    ["a".repeat(300), /longer than 255/],
    [("abcdefgh/".repeat(120)) + "x", /longer than 960/],
    ["\ud800x", /Unicode/],
    [42, /not a string/],
  ];
  for (const [p, re] of cases) assert.match(checkRelativePath(p) ?? "accepted", re, JSON.stringify(p));
});

test("a path set rejects duplicates and file/directory clashes", () => {
  assert.deepEqual(checkPathSet(["a", "b/c"]), []);
  assert.match(checkPathSet(["a", "a"]).join(), /duplicate/);
  assert.match(checkPathSet(["a", "a/b"]).join(), /both a file and a directory/);
  assert.match(checkPathSet(["x/y", "x/y/z/w"]).join(), /both a file and a directory/);
});

test("the keys of a map are checked in place as a path set is", () => {
  const sets: string[][] = [["a", "b/c"], ["a", "a/b"], ["x/y", "x/y/z/w"], ["ok", "../up", "/abs"], ["d/.fansync-tmp-1", "d"]];
  for (const paths of sets) {
    const map = new Map(paths.map((p) => [p, 0]));
    assert.deepEqual(checkPathKeys(map), checkPathSet(paths), JSON.stringify(paths));
    assert.deepEqual(checkPathKeys(new Set(paths)), checkPathSet(paths), JSON.stringify(paths));
  }
  assert.match(checkPathKeys(new Map([["x/y", 1], ["x/y/z", 2]])).join(), /"x\/y": is both a file and a directory/);
});

test("UTF-8 byte order differs from UTF-16 order where S3 cares", () => {
  // U+FF5E (3 bytes in UTF-8) sorts before U+1F600 (4 bytes) in both, but U+E000 vs U+1F600 differ in UTF-16.
  assert.ok(compareUtf8("\ue000", "\u{1f600}") < 0);
  assert.ok("\ue000" > "\u{1f600}");
});

test("compareUtf8 orders as UTF-8 bytes do (surrogate pairs above U+E000–U+FFFF)", () => {
  const alphabet = ["a", "z", "/", "-", ".", "\u00e9", "e\u0301", "\u00ff", "\u0800", "\ud7ff", "\ue000", "\uffff", "\ud83d\ude00", "\ud800\udc00", "\udbff\udfff", "\u4e2d"];
  let seed = 7;
  const next = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
  const words = Array.from({ length: 400 }, () => Array.from({ length: 1 + Math.floor(next() * 4) }, () => alphabet[Math.floor(next() * alphabet.length)]).join(""));
  for (const a of words) {
    for (const b of words.slice(0, 60)) {
      const want = Math.sign(Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8")));
      assert.equal(Math.sign(compareUtf8(a, b)), want, `${JSON.stringify(a)} vs ${JSON.stringify(b)}`);
    }
  }
});
