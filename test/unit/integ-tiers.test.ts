// The integration suite's tiers (test/helpers/integ-tiers.ts): every file has one, the marks in the
// files agree with it, test/run.sh takes its file lists from it, and docs/testing.md shows it.
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { test } from "node:test";
import { filesFor, INTEG_TIERS, integFiles, tierTable } from "../helpers/integ-tiers.ts";

const ROOT = path.join(import.meta.dirname, "..", "..");
const source = (f: string) => readFileSync(path.join(ROOT, "test", "integ", `${f}.integ.test.ts`), "utf8");
const MARK = /if \(skipEngineTier\(t\)\) return;/g;

test("every integration test file has a tier, and every tier names a file that exists", () => {
  const files = integFiles();
  assert.deepEqual(files.filter((f) => !INTEG_TIERS[f]), [], "files without a tier: add them to INTEG_TIERS");
  assert.deepEqual(Object.keys(INTEG_TIERS).filter((f) => !files.includes(f)), [], "tiers for files that are gone");
});

test("a file with no tier makes the file list fail, naming it, instead of being left out", () => {
  const dir = mkdtempSync(path.join(tmpdir(), "fansync-tiers-"));
  try {
    writeFileSync(path.join(dir, "push.integ.test.ts"), "");
    writeFileSync(path.join(dir, "brand-new.integ.test.ts"), "");
    assert.throws(() => filesFor("all", dir), /no tier for brand-new\.integ\.test\.ts/);
    assert.throws(() => filesFor("edge", dir), /no tier for brand-new\.integ\.test\.ts/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("mixed files mark their engine-logic tests, and only mixed files do", () => {
  for (const [f, e] of Object.entries(INTEG_TIERS)) {
    const src = source(f);
    const marks = src.match(MARK)?.length ?? 0;
    const tests = src.match(/^\s*test\(/gm)?.length ?? 0;
    if (e.tier === "mixed") {
      assert.ok(marks > 0, `${f} is mixed but marks no test: make it edge`);
      assert.ok(marks < tests, `${f} is mixed but marks every test: make it engine`);
    } else assert.equal(marks, 0, `${f} is ${e.tier}: a skipEngineTier mark there does nothing useful`);
    // Whatever its tier, a file that calls skipEngineTier must import it (and the other way round).
    assert.equal(src.includes("skipEngineTier } from"), e.tier === "mixed", f);
  }
});

test("the edge tier runs every edge and mixed file and no engine file; the reference server runs all", () => {
  const all = filesFor("all").map((p) => path.basename(p, ".integ.test.ts"));
  const edge = filesFor("edge").map((p) => path.basename(p, ".integ.test.ts"));
  assert.deepEqual(all, integFiles());
  assert.deepEqual(edge, integFiles().filter((f) => INTEG_TIERS[f]?.tier !== "engine"));
  assert.ok(edge.includes("object-store-contract") && edge.includes("faults-race") && !edge.includes("operator"));
});

test("every engine or mixed file says where its engine logic is tested without a server (or that it is not yet)", () => {
  for (const [f, e] of Object.entries(INTEG_TIERS)) if (e.tier !== "edge") assert.ok(e.twin && e.twin.length > 0, f);
});

test("docs/testing.md shows the tiers as they are (node test/helpers/integ-tiers.ts table)", () => {
  assert.ok(readFileSync(path.join(ROOT, "docs", "testing.md"), "utf8").includes(tierTable()), "docs/testing.md's tier table is out of date: paste `node test/helpers/integ-tiers.ts table`");
});

test("test/run.sh takes the integration files from the tier list, per server", () => {
  const run = readFileSync(path.join(ROOT, "test", "run.sh"), "utf8");
  assert.match(run, /node test\/helpers\/integ-tiers\.ts files/);
  assert.doesNotMatch(run, /'test\/integ\/\*\*\/\*\.integ\.test\.ts'/, "no glob that would bypass the tiers");
});
