import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { test } from "node:test";
import { checkCommand, type CommandName, validateConfig } from "../../src/core/config.ts";
import { readConfigFile } from "../../src/cli/settings.ts";

const dir = new URL("../../infra/config/", import.meta.url);
const files = readdirSync(dir).filter((f) => f.endsWith(".yaml"));

test("the example configs exist for the master, a node and the replicator", () => {
  assert.ok(files.includes("master.yaml") && files.includes("replicator.yaml") && files.some((f) => f.startsWith("node-")), files.join(", "));
});

for (const f of files) {
  test(`infra/config/${f} passes the config validator`, async () => {
    const raw = await readConfigFile(new URL(f, dir).pathname);
    const cfg = validateConfig(raw, f);
    if (f === "master.yaml") assert.ok(cfg.target && cfg.docroot, "a master names its docroot and target");
    if (f.startsWith("node-")) assert.ok(cfg.sources.length >= 2 && cfg.docroot && cfg.statusFile, "a node names sources (regional, then primary), docroot and status file");
    if (f === "replicator.yaml") assert.ok(cfg.source && cfg.targets.length >= 1, "a replicator names its source and targets");
    assert.ok(!Object.keys(raw).some((k) => /secret|accesskey|password/i.test(k)), "no credentials in examples");
    // Every key it sets is read by the command it is written for (push reads the master's too).
    if (f.startsWith("sync-")) assert.ok(cfg.target && cfg.docroot && cfg.owns.length > 0, "a two-way node names its docroot, target and what it owns");
    const roles: CommandName[] = f === "master.yaml" ? ["watch", "push"] : f === "replicator.yaml" ? ["replicate"] : f.startsWith("sync-") ? ["sync"] : ["pull"];
    for (const role of roles) {
      const { unused } = checkCommand(cfg, role, Object.keys(raw));
      assert.deepEqual(unused.filter((k) => role === "watch" || !["delay", "maxDelay", "rescanInterval", "http", "fleet", "healthMaxLag"].includes(k)), [], `${f} for ${role}`);
    }
  });
}
