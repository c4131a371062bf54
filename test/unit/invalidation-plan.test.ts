/** The CDN invalidation plan (core/invalidation-plan.ts), table-driven. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { encodeCloudFrontPath, planInvalidation, type InvalidationOptions } from "../../src/core/invalidation-plan.ts";

const roomy: InvalidationOptions = { collapseAbove: 100, pathBudget: 3000, wildcardBudget: 15 };

test("paths are encoded as CloudFront matches them", () => {
  const cases: [string, string][] = [
    ["index.html", "/index.html"],
    ["css/site.css", "/css/site.css"],
    ["a b.html", "/a%20b.html"],
    ["café.html", "/caf%C3%A9.html"],
    ["q?x.html", "/q%3Fx.html"],
    ["h#1.html", "/h%231.html"],
    ["100%.html", "/100%25.html"],
    ["~user/x", "/%7Euser/x"],
    ["a+b=c&d;e:f@g$h!i'j(k)l,m.html", "/a+b=c&d;e:f@g$h!i'j(k)l,m.html"],
    ["日本/索引.html", "/%E6%97%A5%E6%9C%AC/%E7%B4%A2%E5%BC%95.html"],
  ];
  for (const [rel, want] of cases) assert.equal(encodeCloudFrontPath(rel), want, rel);
});

test("plans", () => {
  const many = (dir: string, n: number) => Array.from({ length: n }, (_, i) => `${dir}f${String(i).padStart(3, "0")}.html`);
  const cases: { name: string; changed: string[]; deleted?: string[]; o?: Partial<InvalidationOptions>; want: ReturnType<typeof planInvalidation> }[] = [
    { name: "nothing changed", changed: [], want: { kind: "none" } },
    { name: "exact changed and deleted paths, sorted", changed: ["b.css", "a.html"], deleted: ["old.js"], want: { kind: "paths", paths: ["/a.html", "/b.css", "/old.js"], wildcards: 0 } },
    { name: "an index.html also invalidates its directory", changed: ["index.html", "docs/index.html"], want: { kind: "paths", paths: ["/", "/docs/", "/docs/index.html", "/index.html"], wildcards: 0 } },
    { name: "a name with * goes through its directory's wildcard", changed: ["img/a*b.png", "img/c.png", "x.html"], want: { kind: "paths", paths: ["/x.html", "/img/*"], wildcards: 1 } },
    { name: "a * at the top level is everything", changed: ["*.html", "x.html"], want: { kind: "paths", paths: ["/*"], wildcards: 1 } },
    { name: "at the threshold: still exact", changed: many("a/", 5), o: { collapseAbove: 5 }, want: { kind: "paths", paths: many("/a/", 5), wildcards: 0 } },
    { name: "above it: the fullest directory collapses first", changed: [...many("a/", 4), ...many("b/", 2)], o: { collapseAbove: 4 }, want: { kind: "paths", paths: ["/b/f000.html", "/b/f001.html", "/a/*"], wildcards: 1 } },
    { name: "a wildcard covers its subdirectories", changed: [...many("a/", 3), ...many("a/b/", 1), "a/b/c/x.css"], o: { collapseAbove: 3 }, want: { kind: "paths", paths: ["/a/*"], wildcards: 1 } },
    { name: "one path per directory and too many: everything", changed: ["a/1", "b/1", "c/1"], o: { collapseAbove: 2 }, want: { kind: "paths", paths: ["/*"], wildcards: 1 } },
    { name: "more wildcards than allowed: everything", changed: [...many("a/", 2), ...many("b/", 2), ...many("c/", 2)], o: { collapseAbove: 3, wildcardBudget: 2 }, want: { kind: "paths", paths: ["/*"], wildcards: 1 } },
    { name: "the path budget left in progress caps the plan", changed: [...many("a/", 3), "b.html"], o: { pathBudget: 2 }, want: { kind: "paths", paths: ["/b.html", "/a/*"], wildcards: 1 } },
    { name: "no budget at all: wait", changed: ["a.html"], o: { pathBudget: 0 }, want: { kind: "wait", reason: "CloudFront's limit of invalidations in progress is reached" } },
    { name: "no wildcard left and too many paths: wait", changed: many("a/", 3), o: { collapseAbove: 2, wildcardBudget: 0 }, want: { kind: "wait", reason: "CloudFront's limit of invalidations in progress is reached" } },
    { name: "duplicates count once", changed: ["a.html", "a.html"], deleted: ["a.html"], want: { kind: "paths", paths: ["/a.html"], wildcards: 0 } },
  ];
  for (const c of cases) {
    assert.deepEqual(planInvalidation(c.changed, c.deleted ?? [], { ...roomy, ...c.o }), c.want, c.name);
  }
});

test("a plan never exceeds CloudFront's limits", () => {
  const files = Array.from({ length: 5000 }, (_, i) => `d${i % 40}/s${i % 7}/f${i}.html`);
  for (const collapseAbove of [1, 10, 100, 3000]) {
    const p = planInvalidation(files, [], { collapseAbove, pathBudget: 3000, wildcardBudget: 15 });
    assert.equal(p.kind, "paths");
    if (p.kind !== "paths") return;
    assert.ok(p.paths.length <= collapseAbove || p.paths.length === 1, `${collapseAbove}: ${p.paths.length} paths`);
    assert.ok(p.wildcards <= 15);
    assert.equal(p.paths.filter((x) => x.endsWith("*")).length, p.wildcards);
  }
});
