// The release build's cache (release/build.ts): a build of the same inputs is taken from
// ~/.cache/fansync-release/builds/<key> instead of being built again; an incomplete entry, or one of
// other sources or another .deb compression, is not.
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { test } from "node:test";

const cache = mkdtempSync(path.join(tmpdir(), "fansync-release-cache-"));
process.env.FANSYNC_RELEASE_CACHE = cache;
delete process.env.FANSYNC_DEB_COMPRESSION;
const { buildKey, cachedBuildDir, restoreBuild } = await import("../../release/build.ts");
const { debCompression } = await import("../../release/deb.ts");

/** A cached build of `hash` holding one artifact of `bytes` bytes (the manifest says `claimed`). */
function plant(hash: string, bytes: number, claimed = bytes, compression = debCompression().label): string {
  const dir = cachedBuildDir(buildKey(hash, compression));
  mkdirSync(path.join(dir, "out"), { recursive: true });
  mkdirSync(path.join(dir, "work"), { recursive: true });
  for (const f of ["fansync.cjs", "fansync.blob"]) writeFileSync(path.join(dir, "work", f), "x");
  writeFileSync(path.join(dir, "out", "fansync_0.1.0_amd64.deb"), Buffer.alloc(bytes, 7));
  const manifest = { version: "0.1.0", nodeVersion: "24", sourceHash: hash, bundleBytes: 1, debCompression: compression, workDir: path.join(dir, "work"), artifacts: [{ kind: "deb", arch: "x64", file: "fansync_0.1.0_amd64.deb", bytes: claimed }] };
  writeFileSync(path.join(dir, "out", "manifest.json"), JSON.stringify(manifest));
  return dir;
}

test.after(() => rmSync(cache, { recursive: true, force: true }));

test("the key changes with the sources and with the .deb compression", () => {
  assert.notEqual(buildKey("a".repeat(64)), buildKey("b".repeat(64)));
  assert.notEqual(buildKey("a".repeat(64), "xz -1"), buildKey("a".repeat(64), "xz -6"));
  assert.equal(buildKey("a".repeat(64)), buildKey("a".repeat(64)));
});

test("a complete cached build of the same sources becomes out/release; other sources or an incomplete entry do not", async () => {
  const out = path.join(cache, "out-release");
  plant("1".repeat(64), 100);
  const m = await restoreBuild("1".repeat(64), out);
  assert.equal(m?.sourceHash, "1".repeat(64));
  assert.equal(readFileSync(path.join(out, "fansync_0.1.0_amd64.deb")).length, 100);
  assert.ok(readFileSync(path.join(out, "manifest.json"), "utf8").includes("1".repeat(64)));

  assert.equal(await restoreBuild("2".repeat(64), path.join(cache, "out-2")), undefined, "no build of these sources");
  plant("3".repeat(64), 100, 200);
  assert.equal(await restoreBuild("3".repeat(64), path.join(cache, "out-3")), undefined, "an artifact cut short");
  const gone = plant("4".repeat(64), 100);
  rmSync(path.join(gone, "work", "fansync.blob"));
  assert.equal(await restoreBuild("4".repeat(64), path.join(cache, "out-4")), undefined, "intermediates the release tests read are gone");
  plant("5".repeat(64), 100, 100, "xz -6");
  assert.equal(await restoreBuild("5".repeat(64), path.join(cache, "out-5")), undefined, "built with another compression");
});
