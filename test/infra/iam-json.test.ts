// infra/iam/*.json are generated from infra/src/policies.ts: the committed files must match the
// generator now, and match what the CDK app synthesises for the same placeholder deployment.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFile, readdir } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { promisify } from "node:util";
import { App } from "aws-cdk-lib";
import { Template } from "aws-cdk-lib/assertions";
import { IAM_PLACEHOLDERS, placeholderConfig, planIamFiles } from "../../infra/src/iam-files.ts";
import { addFansyncStacks } from "../../infra/src/stacks.ts";
import { managedPolicyDocument, normalizePolicy } from "./helpers.ts";

const IAM_DIR = join(import.meta.dirname, "..", "..", "infra", "iam");

test("infra/iam holds exactly one JSON file per role", async () => {
  const files = (await readdir(IAM_DIR)).filter((f) => f.endsWith(".json")).sort();
  assert.deepEqual(files, ["puller.json", "replicator.json", "uploader.json"]);
});

test("the committed JSON files equal what the generator produces now", async () => {
  const planned = planIamFiles();
  assert.equal(planned.size, 3);
  for (const [name, content] of planned) {
    assert.equal(await readFile(join(IAM_DIR, name), "utf8"), content, `${name} is stale: run npm run infra:iam`);
  }
});

test("the committed JSON files equal the policy documents the CDK app synthesises", async () => {
  const app = new App({ analyticsReporting: false });
  const { primary } = addFansyncStacks(app, placeholderConfig());
  const template = Template.fromStack(primary);
  for (const role of ["uploader", "replicator", "puller"]) {
    const committed: unknown = JSON.parse(await readFile(join(IAM_DIR, `${role}.json`), "utf8"));
    const synthesised = managedPolicyDocument(template, `fansync-${role}`);
    assert.ok(synthesised, `no fansync-${role} managed policy in the template`);
    assert.deepEqual(normalizePolicy(synthesised), normalizePolicy(committed), role);
  }
});

test("the files use the documented placeholders and README.md explains them", async () => {
  const readme = await readFile(join(IAM_DIR, "README.md"), "utf8");
  for (const placeholder of Object.values(IAM_PLACEHOLDERS)) {
    assert.ok(readme.includes(placeholder), `README.md does not mention ${placeholder}`);
  }
  assert.match(await readFile(join(IAM_DIR, "uploader.json"), "utf8"), /arn:aws:s3:::example-primary-bucket\/example-prefix\/\*/);
  assert.match(await readFile(join(IAM_DIR, "puller.json"), "utf8"), /arn:aws:s3:::example-regional-bucket\/example-prefix\/\.fansync\/\*/);
});

test("write-iam --check passes on the committed files", async () => {
  const script = join(IAM_DIR, "..", "scripts", "write-iam.ts");
  const { stderr } = await promisify(execFile)(process.execPath, [script, "--check"]);
  assert.equal(stderr, "");
});
