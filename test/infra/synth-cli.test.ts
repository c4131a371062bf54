// `cdk synth` (the infra:synth script) works offline from infra/cdk.json, and bad context fails it.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, readFile, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { promisify } from "node:util";

const ROOT = join(import.meta.dirname, "..", "..");
const CDK = join(ROOT, "node_modules", ".bin", "cdk");
const run = promisify(execFile);
const out = await mkdtemp(join(tmpdir(), "fansync-synth-"));
after(() => rm(out, { recursive: true, force: true }));

// No credentials and no instance metadata: synthesis must need neither.
const env = { ...process.env, AWS_EC2_METADATA_DISABLED: "true", AWS_ACCESS_KEY_ID: "", AWS_SECRET_ACCESS_KEY: "", AWS_PROFILE: "" };

test("cdk synth with infra/cdk.json writes a template per stack", { timeout: 120_000 }, async () => {
  await run(CDK, ["synth", "--quiet", "--output", out], { cwd: join(ROOT, "infra"), env });
  const templates = (await readdir(out)).filter((f) => f.endsWith(".template.json")).sort();
  assert.deepEqual(templates, [
    "fansync-primary.template.json",
    "fansync-regional-fansync-jp.template.json",
    "fansync-regional-fansync-uk.template.json",
    "fansync-regional-fansync-us.template.json",
  ]);
  const primary = JSON.parse(await readFile(join(out, "fansync-primary.template.json"), "utf8")) as { Resources: Record<string, { Type: string }> };
  const types = Object.values(primary.Resources).map((r) => r.Type).sort();
  assert.deepEqual(types, ["AWS::IAM::ManagedPolicy", "AWS::IAM::ManagedPolicy", "AWS::IAM::ManagedPolicy", "AWS::S3::Bucket", "AWS::S3::BucketPolicy"]);
});

test("cdk synth fails with every context problem listed", { timeout: 120_000 }, async () => {
  await assert.rejects(
    run(CDK, ["synth", "--quiet", "--output", join(out, "bad"), "-c", "fansync:prefix=/x", "-c", "fansync:crr=maybe"], { cwd: join(ROOT, "infra"), env }),
    (err: { code?: number; stderr?: string }) => {
      assert.notEqual(err.code, 0);
      assert.match(err.stderr ?? "", /fansync:prefix: expected/);
      assert.match(err.stderr ?? "", /fansync:crr: expected true or false/);
      return true;
    },
  );
});
