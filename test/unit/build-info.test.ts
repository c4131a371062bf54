/** /metrics names and the build information `fansync version` and `fansync_build_info` carry. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { Metrics } from "../../src/adapters/metrics.ts";
import { BUILD_INFO, formatVersion } from "../../src/adapters/version.ts";

test("/metrics uses the standard process_* names and fansync_build_info carries version, commit and Node version", async () => {
  const m = new Metrics(BUILD_INFO);
  try {
    const { body } = await m.text();
    assert.match(body, /^process_cpu_seconds_total \d/m);
    assert.match(body, /^process_resident_memory_bytes \d/m);
    assert.doesNotMatch(body, /fansync_process_/);
    const line = body.split("\n").find((l) => l.startsWith("fansync_build_info{")) ?? "";
    assert.match(line, new RegExp(`version="${BUILD_INFO.version.replace(/\./g, "\\.")}"`));
    assert.match(line, /commit="[0-9a-f]{7,40}|unknown"/);
    assert.match(line, new RegExp(`nodeVersion="${process.version}"`));
    assert.match(line, / 1$/);
  } finally {
    m.close();
  }
});

test("fansync version names version, commit, build date, Node.js and platform", () => {
  const t = formatVersion({ version: "1.2.3", commit: "abcdef0", buildDate: "2026-12-07T00:00:00Z" });
  assert.equal(t, `fansync 1.2.3\n- commit: abcdef0\n- build date: 2026-12-07T00:00:00Z\n- node: ${process.version}\n- platform: ${process.platform}/${process.arch}\n`);
});
