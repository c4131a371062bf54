import assert from "node:assert/strict";
import { test } from "node:test";
import { compileCacheControl, compileFilter, parseFilterFile } from "../../src/core/filters.ts";
import { contentTypeFor } from "../../src/core/content-type.ts";

test("excludes match basenames at any depth and whole directories", () => {
  const f = compileFilter({ exclude: ["*.tmp", "cache/", ".git", "private/**"], include: [] });
  assert.equal(f.matches("index.html"), true);
  assert.equal(f.matches("a/b/x.tmp"), false);
  assert.equal(f.matches("cache/x.html"), false);
  assert.equal(f.matches("a/cache/x.html"), false);
  assert.equal(f.matches(".git/config"), false);
  assert.equal(f.matches("private/a/b"), false);
  assert.equal(f.matches("public/private.html"), true);
  assert.equal(f.prunesDir("cache"), true);
  assert.equal(f.prunesDir("assets"), false);
});

test("includes re-admit what an exclude matched", () => {
  const f = compileFilter({ exclude: ["*.log"], include: ["keep.log"] });
  assert.equal(f.matches("a/keep.log"), true);
  assert.equal(f.matches("a/other.log"), false);
});

test("filter files skip blanks and comments", () => {
  assert.deepEqual(parseFilterFile("# c\n*.tmp\n\n  cache/ \r\n"), ["*.tmp", "cache/"]);
});

test("cache-control: first matching glob wins", () => {
  const cc = compileCacheControl([{ glob: "*.html", value: "max-age=60" }, { glob: "assets/**", value: "max-age=31536000, immutable" }]);
  assert.equal(cc("a/index.html"), "max-age=60");
  assert.equal(cc("assets/app.js"), "max-age=31536000, immutable");
  assert.equal(cc("robots.txt"), undefined);
});

test("content types carry a charset for text", () => {
  assert.equal(contentTypeFor("a/index.html"), "text/html; charset=utf-8");
  assert.equal(contentTypeFor("app.js"), "text/javascript; charset=utf-8");
  assert.equal(contentTypeFor("logo.png"), "image/png");
  assert.equal(contentTypeFor("LICENSE"), "application/octet-stream");
});

// Issue 27 item 7: a leading "/" anchors a glob to the docroot (rsync, rclone, .gitignore).
test("a leading / anchors a glob to the root; without it a name matches at any depth", () => {
  const cases: [exclude: string, path: string, synced: boolean][] = [
    ["/fileZ.txt", "fileZ.txt", false],
    ["/fileZ.txt", "sub/fileZ.txt", true],
    ["fileZ.txt", "sub/fileZ.txt", false],
    ["/cache/", "cache/a.html", false],
    ["/cache/", "a/cache/b.html", true],
    ["/*.tmp", "x.tmp", false],
    ["/*.tmp", "a/x.tmp", true],
    ["/a/b.html", "a/b.html", false],
    ["/a/b.html", "z/a/b.html", true],
  ];
  for (const [ex, p, synced] of cases) assert.equal(compileFilter({ exclude: [ex], include: [] }).matches(p), synced, `--exclude ${ex} on ${p}`);
  const f = compileFilter({ exclude: ["*.log"], include: ["/keep.log"] });
  assert.equal(f.matches("keep.log"), true);
  assert.equal(f.matches("a/keep.log"), false);
  assert.equal(compileFilter({ exclude: ["/cache"], include: [] }).prunesDir("cache"), true);
  assert.equal(compileFilter({ exclude: ["/cache"], include: [] }).prunesDir("a/cache"), false);
  const cc = compileCacheControl([{ glob: "/index.html", value: "no-cache" }]);
  assert.equal(cc("index.html"), "no-cache");
  assert.equal(cc("a/index.html"), undefined);
});
