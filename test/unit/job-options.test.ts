/**
 * The options commands build alike (commands/job-options.ts): what `--exclude-from` adds, which
 * files a node keeps to itself (its status file and the .txt twin), and what a sync node's puller
 * leaves to the pull command. Real temp files, no server.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, test } from "node:test";
import { checkCommand, validateConfig } from "../../src/core/config.ts";
import { UsageError } from "../../src/core/errors.ts";
import { docrootFilter, nodeName, pullerOptions, readExcludes, statusFiles } from "../../src/commands/job-options.ts";

const dir = mkdtempSync(path.join(os.tmpdir(), "fansync-job-options-"));
after(() => rmSync(dir, { recursive: true, force: true }));

test("--exclude-from adds its patterns (comments and blank lines aside) to --exclude; a file that cannot be read is a usage error naming it", () => {
  const list = path.join(dir, "excludes");
  writeFileSync(list, "# drafts\n*.tmp\n\nprivate/\n");
  const cfg = validateConfig({ docroot: dir, target: "s3://bucket/site", exclude: ["*.bak"], excludeFrom: list });
  const filter = docrootFilter(cfg, dir);
  assert.deepEqual(["a.html", "a.bak", "b.tmp", "private/x.html"].filter((p) => filter.matches(p)), ["a.html"]);
  const missing = validateConfig({ docroot: dir, target: "s3://bucket/site", excludeFrom: path.join(dir, "nope") });
  assert.throws(() => readExcludes(missing), (e: unknown) => e instanceof UsageError && e.message === `cannot read --exclude-from ${path.join(dir, "nope")}: ENOENT`);
});

test("a status file inside the docroot, and its .txt twin, are never published, and the puller keeps both", async () => {
  const docroot = path.join(dir, "www");
  const cfg = checkCommand(validateConfig({ docroot, target: "s3://bucket/site", statusFile: path.join(docroot, "health/status.json") }), "sync", []).cfg;
  const st = statusFiles(cfg);
  assert.deepEqual(st?.both, [path.join(docroot, "health/status.json"), path.join(docroot, "health/status.txt")]);
  const filter = docrootFilter(cfg, docroot, st?.both);
  assert.deepEqual(["health/status.json", "health/status.txt", "health/other.json"].filter((p) => filter.matches(p)), ["health/other.json"]);
  const puller = await pullerOptions(cfg, "sync", undefined);
  assert.deepEqual(puller.keep, st?.both);
});

test("a sync node's puller only applies: the pull command's dry run, extraneous deletions, --verify and --max-age stay with pull", async () => {
  const raw = { docroot: dir, sources: ["s3://bucket/site"], target: "s3://bucket/site", dryRun: true, deleteExtraneous: true, verify: true, checksum: true, maxAge: "1h", nodeId: "web-1" };
  const pull = await pullerOptions(checkCommand(validateConfig(raw), "pull", []).cfg, "pull", undefined);
  assert.deepEqual([pull.dryRun, pull.deleteExtraneous, pull.verify, pull.checksum, pull.maxAgeMs], [true, true, true, true, 3_600_000]);
  const sync = await pullerOptions(checkCommand(validateConfig(raw), "sync", []).cfg, "sync", undefined);
  assert.deepEqual([sync.dryRun, sync.deleteExtraneous, sync.verify, sync.checksum, sync.maxAgeMs], [false, false, false, false, undefined]);
  assert.equal(nodeName(validateConfig(raw)), "web-1");
});
