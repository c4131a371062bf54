// The deployment docs say what the files do (issue 15): the IAM README's table names every action
// each policy allows, and the README bootstraps every region infra/cdk.json deploys to.
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";

const ROOT = join(import.meta.dirname, "..", "..");

for (const role of ["uploader", "replicator", "puller"]) {
  test(`infra/iam/README.md names every action ${role}.json allows`, async () => {
    const policy = JSON.parse(await readFile(join(ROOT, "infra", "iam", `${role}.json`), "utf8")) as { Statement: { Action: string[] }[] };
    const readme = await readFile(join(ROOT, "infra", "iam", "README.md"), "utf8");
    const row = readme.split("\n").find((l) => l.startsWith(`| \`${role}.json\``));
    assert.ok(row, `a table row for ${role}.json`);
    const actions = new Set(policy.Statement.flatMap((s) => s.Action).map((a) => a.replace(/^s3:/, "")));
    for (const a of actions) {
      // The replicator's row refers to the uploader's six object actions instead of repeating them.
      const named = row.includes(a) || (role === "replicator" && row.includes("the uploader's six object actions"));
      assert.ok(named, `${role}.json allows s3:${a}; its README row does not say so`);
    }
  });
}

test("docs/aws.md's cdk bootstrap line names every region infra/cdk.json deploys to", async () => {
  const cdk = JSON.parse(await readFile(join(ROOT, "infra", "cdk.json"), "utf8")) as { context: Record<string, unknown> };
  const regions = [cdk.context["fansync:primaryRegion"] as string, ...(cdk.context["fansync:regionalBuckets"] as { region: string }[]).map((b) => b.region)];
  const readme = await readFile(join(ROOT, "docs", "aws.md"), "utf8");
  const line = readme.split("\n").find((l) => l.startsWith("npx cdk bootstrap"));
  assert.ok(line);
  const named = [...line.matchAll(/aws:\/\/ACCOUNT\/([a-z0-9-]+)/g)].map((m) => m[1]);
  assert.deepEqual(named.sort(), [...new Set(regions)].sort());
});
