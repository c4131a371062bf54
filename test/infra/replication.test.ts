// Native S3 Cross-Region Replication: off by default, and when on, one rule per regional bucket
// with a role that may do exactly what CRR needs on fansync's prefixes.
import assert from "node:assert/strict";
import { test } from "node:test";
import { normalizePolicy, onlyResource, resourcesOf, synth } from "./helpers.ts";

test("without fansync:crr there is no replication configuration and no role", () => {
  const { primary } = synth();
  assert.equal(onlyResource(primary, "AWS::S3::Bucket").Properties.ReplicationConfiguration, undefined);
  assert.deepEqual(resourcesOf(primary, "AWS::IAM::Role"), {});
});

test("with fansync:crr every regional bucket gets a prioritised rule on the prefix, deletes included", () => {
  const { primary } = synth({ "fansync:crr": "true" });
  const replication = onlyResource(primary, "AWS::S3::Bucket").Properties.ReplicationConfiguration as { Role: unknown; Rules: unknown[] };
  const roleIds = Object.keys(resourcesOf(primary, "AWS::IAM::Role"));
  assert.equal(roleIds.length, 1);
  assert.deepEqual(replication.Role, { "Fn::GetAtt": [roleIds[0], "Arn"] });
  const destination = (bucket: string) => ({ Bucket: { "Fn::Join": ["", ["arn:", { Ref: "AWS::Partition" }, `:s3:::${bucket}`]] } });
  assert.deepEqual(replication.Rules, [
    { Id: "fansync-to-fs-us", Priority: 1, Status: "Enabled", Filter: { Prefix: "site/" }, DeleteMarkerReplication: { Status: "Enabled" }, Destination: destination("fs-us") },
    { Id: "fansync-to-fs-jp", Priority: 2, Status: "Enabled", Filter: { Prefix: "site/" }, DeleteMarkerReplication: { Status: "Enabled" }, Destination: destination("fs-jp") },
  ]);
});

test("the replication role trusts only S3 and holds the documented CRR permissions on fansync's prefixes", () => {
  const { primary } = synth({ "fansync:crr": true });
  const role = onlyResource(primary, "AWS::IAM::Role").Properties;
  assert.deepEqual(role.AssumeRolePolicyDocument, {
    Version: "2012-10-17",
    Statement: [{ Action: "sts:AssumeRole", Effect: "Allow", Principal: { Service: "s3.amazonaws.com" } }],
  });
  assert.equal(role.ManagedPolicyArns, undefined);
  const policies = role.Policies as { PolicyName: string; PolicyDocument: unknown }[];
  assert.equal(policies.length, 1);
  assert.deepEqual(normalizePolicy(policies[0]?.PolicyDocument), {
    Version: "2012-10-17",
    Statement: [
      { Sid: "ReadReplicationConfiguration", Effect: "Allow", Action: ["s3:GetReplicationConfiguration", "s3:ListBucket"], Resource: ["arn:aws:s3:::fs-primary"] },
      {
        Sid: "ReadSourceVersions", Effect: "Allow",
        Action: ["s3:GetObjectVersionForReplication", "s3:GetObjectVersionAcl", "s3:GetObjectVersionTagging"],
        Resource: ["arn:aws:s3:::fs-primary/site/*", "arn:aws:s3:::fs-primary/site/.fansync/*"],
      },
      {
        Sid: "ReplicateToTargets", Effect: "Allow",
        Action: ["s3:ReplicateObject", "s3:ReplicateDelete", "s3:ReplicateTags"],
        Resource: ["arn:aws:s3:::fs-us/site/*", "arn:aws:s3:::fs-us/site/.fansync/*", "arn:aws:s3:::fs-jp/site/*", "arn:aws:s3:::fs-jp/site/.fansync/*"],
      },
    ],
  });
});

test("a meta prefix outside the content prefix is replicated by a rule of its own", () => {
  const { primary } = synth({ "fansync:crr": true, "fansync:metaPrefix": "control/" });
  const rules = (onlyResource(primary, "AWS::S3::Bucket").Properties.ReplicationConfiguration as { Rules: { Id: string; Priority: number; Filter: unknown }[] }).Rules;
  assert.deepEqual(rules.map((r) => [r.Id, r.Priority, r.Filter]), [
    ["fansync-to-fs-us", 1, { Prefix: "site/" }],
    ["fansync-to-fs-us-meta", 2, { Prefix: "control/" }],
    ["fansync-to-fs-jp", 3, { Prefix: "site/" }],
    ["fansync-to-fs-jp-meta", 4, { Prefix: "control/" }],
  ]);
});

test("the regional stacks deploy before the primary that replicates into them", () => {
  const { stacks } = synth({ "fansync:crr": true });
  assert.deepEqual(stacks.primary.dependencies.map((d) => d.stackName).sort(), ["fansync-regional-fs-jp", "fansync-regional-fs-us"]);
  assert.deepEqual(stacks.regional.map((r) => [r.stackName, r.region]), [["fansync-regional-fs-us", "us-east-1"], ["fansync-regional-fs-jp", "ap-northeast-1"]]);
  assert.equal(stacks.primary.region, "eu-west-1");
});
