// The optional CloudFront distribution: S3 origin through Origin Access Control, and the meta
// prefix really not served, checked two ways: the bucket policy judged for CloudFront's own
// requests, and the edge function executed on viewer URIs.
import assert from "node:assert/strict";
import { runInNewContext } from "node:vm";
import { describe, test } from "node:test";
import type { Template } from "aws-cdk-lib/assertions";
import { evaluate, onlyResource, resolverFor, resourcesOf, synth } from "./helpers.ts";

const ACCOUNT = "123456789012";
const DISTRIBUTION_ID = "E2EXAMPLE";

type Handler = (event: { request: { uri: string } }) => { statusCode?: number; uri?: string };

/** The function code from the template, compiled in a fresh context like CloudFront would. */
function edgeHandler(template: Template): Handler {
  const fn = onlyResource(template, "AWS::CloudFront::Function").Properties;
  assert.equal((fn.FunctionConfig as { Runtime: string }).Runtime, "cloudfront-js-2.0");
  return runInNewContext(`${fn.FunctionCode as string}\nhandler;`, {}) as Handler;
}

/** The bucket policy's decision for a GetObject that CloudFront (OAC) makes on a key. */
function cloudFrontGet(template: Template, bucket: string, key: string, distributionId = DISTRIBUTION_ID): "allow" | "deny" {
  const distributionLogicalId = Object.keys(resourcesOf(template, "AWS::CloudFront::Distribution"))[0] as string;
  const resolve = resolverFor(template, { "AWS::Partition": "aws", "AWS::AccountId": ACCOUNT, [distributionLogicalId]: DISTRIBUTION_ID });
  const policy = onlyResource(template, "AWS::S3::BucketPolicy").Properties.PolicyDocument as { Statement: Record<string, unknown>[] };
  return evaluate(policy.Statement, {
    principal: { Service: "cloudfront.amazonaws.com" },
    action: "s3:GetObject",
    resource: `arn:aws:s3:::${bucket}/${key}`,
    context: {
      "aws:SecureTransport": "true",
      "s3:TlsVersion": "1.3",
      "AWS:SourceArn": `arn:aws:cloudfront::${ACCOUNT}:distribution/${distributionId}`,
    },
  }, resolve);
}

test("no distribution unless fansync:cloudFrontBucket names a bucket", () => {
  const { primary, regional } = synth();
  for (const t of [primary, ...regional.values()]) {
    assert.deepEqual(resourcesOf(t, "AWS::CloudFront::Distribution"), {});
    assert.deepEqual(resourcesOf(t, "AWS::CloudFront::Function"), {});
  }
});

describe("distribution on a regional bucket with prefix site/", () => {
  const { primary, regional } = synth({ "fansync:cloudFrontBucket": "fs-us" });
  const template = regional.get("fs-us") as Template;

  test("lives in the stack of the bucket it serves, and only there", () => {
    assert.equal(Object.keys(resourcesOf(template, "AWS::CloudFront::Distribution")).length, 1);
    assert.deepEqual(resourcesOf(primary, "AWS::CloudFront::Distribution"), {});
    assert.deepEqual(resourcesOf(regional.get("fs-jp") as Template, "AWS::CloudFront::Distribution"), {});
  });

  test("its only origin is the bucket through Origin Access Control, at the prefix", () => {
    const config = onlyResource(template, "AWS::CloudFront::Distribution").Properties.DistributionConfig as Record<string, unknown>;
    const bucketId = Object.keys(resourcesOf(template, "AWS::S3::Bucket"))[0];
    const oacId = Object.keys(resourcesOf(template, "AWS::CloudFront::OriginAccessControl"))[0];
    const origins = config.Origins as Record<string, unknown>[];
    assert.equal(origins.length, 1);
    assert.deepEqual(origins[0]?.DomainName, { "Fn::GetAtt": [bucketId, "RegionalDomainName"] });
    assert.deepEqual(origins[0]?.OriginAccessControlId, { "Fn::GetAtt": [oacId, "Id"] });
    // An empty OAI: the legacy Origin Access Identity is not used.
    assert.deepEqual(origins[0]?.S3OriginConfig, { OriginAccessIdentity: "" });
    assert.equal(origins[0]?.OriginPath, "/site");
    const oac = onlyResource(template, "AWS::CloudFront::OriginAccessControl").Properties.OriginAccessControlConfig as Record<string, unknown>;
    assert.equal(oac.OriginAccessControlOriginType, "s3");
    assert.equal(oac.SigningBehavior, "always");
    assert.equal(oac.SigningProtocol, "sigv4");
    const def = config.DefaultCacheBehavior as Record<string, unknown>;
    assert.equal(def.ViewerProtocolPolicy, "redirect-to-https");
    assert.deepEqual(def.AllowedMethods, ["GET", "HEAD"]);
  });

  test("the edge function guards every request, and a /.fansync/* behaviour exists", () => {
    const config = onlyResource(template, "AWS::CloudFront::Distribution").Properties.DistributionConfig as Record<string, unknown>;
    const fnId = Object.keys(resourcesOf(template, "AWS::CloudFront::Function"))[0];
    const association = [{ EventType: "viewer-request", FunctionARN: { "Fn::GetAtt": [fnId, "FunctionARN"] } }];
    assert.deepEqual((config.DefaultCacheBehavior as Record<string, unknown>).FunctionAssociations, association);
    const behaviours = config.CacheBehaviors as Record<string, unknown>[];
    assert.deepEqual(behaviours.map((b) => b.PathPattern), ["/.fansync/*"]);
    assert.deepEqual(behaviours[0]?.FunctionAssociations, association);
  });

  test("the edge function answers 403 for the meta prefix in any spelling, and passes content", () => {
    const handler = edgeHandler(template);
    for (const uri of ["/.fansync/head.json", "/.fansync/manifests/00000042", "/.fansync/", "/.fansync", "/%2Efansync/head.json", "/%2efansync%2fhead.json", "/%E0%A4%A"]) {
      assert.equal(handler({ request: { uri } }).statusCode, 403, uri);
    }
    for (const uri of ["/", "/index.html", "/.well-known/security.txt", "/.fansyncish/x", "/docs/.fansync/x.html"]) {
      assert.deepEqual(handler({ request: { uri } }), { uri }, uri);
    }
  });

  test("the bucket policy lets this distribution read content but never the meta prefix or other prefixes", () => {
    assert.equal(cloudFrontGet(template, "fs-us", "site/index.html"), "allow");
    assert.equal(cloudFrontGet(template, "fs-us", "site/.well-known/security.txt"), "allow");
    assert.equal(cloudFrontGet(template, "fs-us", "site/.fansync/head.json"), "deny");
    assert.equal(cloudFrontGet(template, "fs-us", "site/.fansync/journal/00000007"), "deny");
    assert.equal(cloudFrontGet(template, "fs-us", "backups/db.sql"), "deny");
    assert.equal(cloudFrontGet(template, "fs-us", "site/index.html", "EOTHERDISTRO"), "deny", "another distribution");
  });
});

describe("distribution on a whole-bucket primary (prefix \"\")", () => {
  const { primary } = synth({ "fansync:prefix": "", "fansync:cloudFrontBucket": "fs-primary" });

  test("has no origin path and still refuses the meta prefix at the edge and at the bucket", () => {
    const config = onlyResource(primary, "AWS::CloudFront::Distribution").Properties.DistributionConfig as Record<string, unknown>;
    assert.equal((config.Origins as Record<string, unknown>[])[0]?.OriginPath, undefined);
    assert.equal(edgeHandler(primary)({ request: { uri: "/.fansync/head.json" } }).statusCode, 403);
    assert.equal(cloudFrontGet(primary, "fs-primary", ".fansync/head.json"), "deny");
    assert.equal(cloudFrontGet(primary, "fs-primary", "index.html"), "allow");
  });
});

describe("meta prefix outside the content prefix", () => {
  const { primary } = synth({ "fansync:metaPrefix": "control/", "fansync:cloudFrontBucket": "fs-primary" });

  test("is unreachable through the origin path, so no edge function is needed, and denied at the bucket", () => {
    assert.deepEqual(resourcesOf(primary, "AWS::CloudFront::Function"), {});
    assert.equal(cloudFrontGet(primary, "fs-primary", "control/head.json"), "deny");
    assert.equal(cloudFrontGet(primary, "fs-primary", "site/index.html"), "allow");
  });
});
