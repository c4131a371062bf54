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
