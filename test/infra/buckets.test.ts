// Synthesised bucket hardening: every fansync bucket, primary and regional, gets the same.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { Template } from "aws-cdk-lib/assertions";
import { evaluate, onlyResource, resolverFor, synth } from "./helpers.ts";

const deployment = synth({ "fansync:noncurrentMetaDays": 5, "fansync:abortMultipartDays": "3" });
const templates: [string, Template][] = [["fs-primary", deployment.primary], ...deployment.regional];

test("the deployment has the primary and one stack per regional bucket", () => {
  assert.deepEqual(templates.map(([name]) => name), ["fs-primary", "fs-us", "fs-jp"]);
});

for (const [name, template] of templates) {
  describe(`bucket ${name}`, () => {
    const bucket = onlyResource(template, "AWS::S3::Bucket");
    const props = bucket.Properties;

    test("has the configured name and is retained on stack deletion", () => {
      assert.equal(props.BucketName, name);
      assert.equal((bucket as unknown as { DeletionPolicy: string }).DeletionPolicy, "Retain");
    });

    test("is versioned", () => {
      assert.deepEqual(props.VersioningConfiguration, { Status: "Enabled" });
    });

    test("encrypts with SSE-S3", () => {
      assert.deepEqual(props.BucketEncryption, {
        ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: "AES256" } }],
      });
    });

    test("blocks all public access and disables ACLs", () => {
      assert.deepEqual(props.PublicAccessBlockConfiguration, {
        BlockPublicAcls: true, BlockPublicPolicy: true, IgnorePublicAcls: true, RestrictPublicBuckets: true,
      });
      assert.deepEqual(props.OwnershipControls, { Rules: [{ ObjectOwnership: "BucketOwnerEnforced" }] });
    });

    test("expires noncurrent meta versions and aborts incomplete multipart uploads", () => {
      assert.deepEqual(props.LifecycleConfiguration, {
        Rules: [
          { Id: "expire-noncurrent-meta", Prefix: "site/.fansync/", NoncurrentVersionExpiration: { NoncurrentDays: 5 }, ExpiredObjectDeleteMarker: true, Status: "Enabled" },
          { Id: "abort-incomplete-multipart", AbortIncompleteMultipartUpload: { DaysAfterInitiation: 3 }, Status: "Enabled" },
        ],
      });
    });

    test("bucket policy denies every request without TLS, and allows nothing by itself", () => {
      const policy = onlyResource(template, "AWS::S3::BucketPolicy").Properties.PolicyDocument as { Statement: Record<string, unknown>[] };
      const resolve = resolverFor(template, {});
      const req = (resource: string, secure: string) => ({
        principal: { AWS: "arn:aws:iam::123456789012:role/anyone" },
        action: "s3:GetObject",
        resource,
        context: { "aws:SecureTransport": secure, "s3:TlsVersion": "1.3" },
      });
      assert.equal(evaluate(policy.Statement, req(`arn:aws:s3:::${name}/site/index.html`, "false"), resolve), "deny");
      assert.equal(evaluate(policy.Statement, req(`arn:aws:s3:::${name}`, "false"), resolve), "deny");
      // Over TLS the bucket policy grants nothing: access comes only from identity policies.
      assert.equal(evaluate(policy.Statement, req(`arn:aws:s3:::${name}/site/index.html`, "true"), resolve), "deny");
      const tlsDeny = policy.Statement.find((s) => JSON.stringify(s.Condition) === JSON.stringify({ Bool: { "aws:SecureTransport": "false" } }));
      assert.ok(tlsDeny, "a Deny on aws:SecureTransport=false");
      assert.equal(tlsDeny.Effect, "Deny");
      assert.equal(tlsDeny.Action, "s3:*");
      assert.deepEqual(tlsDeny.Principal, { AWS: "*" });
    });
  });
}

test("noncurrent content versions expire only when asked", () => {
  const withRule = onlyResource(synth({ "fansync:noncurrentContentDays": 30 }).primary, "AWS::S3::Bucket");
  const rules = (withRule.Properties.LifecycleConfiguration as { Rules: Record<string, unknown>[] }).Rules;
  assert.deepEqual(rules.find((r) => r.Id === "expire-noncurrent-content"), {
    Id: "expire-noncurrent-content", Prefix: "site/", NoncurrentVersionExpiration: { NoncurrentDays: 30 }, Status: "Enabled",
  });
  const defaults = onlyResource(deployment.primary, "AWS::S3::Bucket");
  const ids = (defaults.Properties.LifecycleConfiguration as { Rules: { Id: string }[] }).Rules.map((r) => r.Id);
  assert.deepEqual(ids, ["expire-noncurrent-meta", "abort-incomplete-multipart"]);
});
