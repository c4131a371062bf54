// Parsing of the fansync:* CDK context: defaults, both value forms, and every error at once.
import assert from "node:assert/strict";
import { test } from "node:test";
import { parseInfraContext } from "../../infra/src/context.ts";

const parse = (ctx: Record<string, unknown>) => parseInfraContext((k) => ctx[k]);

test("minimal context gets the documented defaults", () => {
  const r = parse({ "fansync:primaryBucket": "p-bucket", "fansync:primaryRegion": "eu-west-1" });
  assert.ok(r.ok);
  assert.deepEqual({ ...r.config }, {
    account: undefined, partition: "aws", namePrefix: "fansync", prefix: "", metaPrefix: ".fansync/",
    primary: { bucketName: "p-bucket", region: "eu-west-1" }, regional: [], roles: ["uploader", "puller"],
    crr: false, cloudFrontBucket: undefined, noncurrentMetaDays: 7, abortMultipartDays: 7, noncurrentContentDays: undefined,
    nodeIdVariable: undefined,
    eventGroups: [],
  });
  assert.ok(Object.isFrozen(r.config));
});

test("command-line strings and cdk.json values mean the same", () => {
  const fromCli = parse({
    "fansync:primaryBucket": "p-bucket", "fansync:primaryRegion": "eu-west-1", "fansync:regionalBuckets": "r-us@us-east-1, r-jp@ap-northeast-1",
    "fansync:roles": "uploader,puller", "fansync:crr": "true", "fansync:noncurrentMetaDays": "3", "fansync:prefix": "site/", "fansync:account": "123456789012",
  });
  const fromJson = parse({
    "fansync:primaryBucket": "p-bucket", "fansync:primaryRegion": "eu-west-1",
    "fansync:regionalBuckets": [{ bucketName: "r-us", region: "us-east-1" }, { bucketName: "r-jp", region: "ap-northeast-1" }],
    "fansync:roles": ["uploader", "puller"], "fansync:crr": true, "fansync:noncurrentMetaDays": 3, "fansync:prefix": "site/", "fansync:account": "123456789012",
  });
  assert.ok(fromCli.ok && fromJson.ok);
  assert.deepEqual(fromCli.config, fromJson.config);
  assert.equal(fromCli.config.metaPrefix, "site/.fansync/");
});

test("every problem is reported at once, each with its key", () => {
  const r = parse({
    "fansync:primaryBucket": "Bad_Bucket", "fansync:primaryRegion": "eu-west-1", "fansync:prefix": "/site",
    "fansync:roles": "uploader,admin", "fansync:crr": "yes", "fansync:cloudFrontBucket": "elsewhere", "fansync:account": "42",
    "fansync:abortMultipartDays": 0,
  });
  assert.equal(r.ok, false);
  if (r.ok) return;
  const keys = r.errors.map((e) => e.split(":").slice(0, 2).join(":"));
  assert.deepEqual(keys.sort(), [
    "fansync:abortMultipartDays", "fansync:account", "fansync:cloudFrontBucket", "fansync:crr", "fansync:prefix", "fansync:primaryBucket", "fansync:roles",
  ]);
});

test("replication and the replicator role need a regional bucket; names must be unique", () => {
  const r = parse({ "fansync:primaryBucket": "p-bucket", "fansync:primaryRegion": "eu-west-1", "fansync:crr": true, "fansync:roles": "replicator" });
  assert.equal(r.ok, false);
  if (!r.ok) {
    assert.ok(r.errors.some((e) => e.startsWith("fansync:crr: needs at least one")));
    assert.ok(r.errors.some((e) => e.startsWith("fansync:roles: replicator needs")));
  }
  const dup = parse({ "fansync:primaryBucket": "p-bucket", "fansync:primaryRegion": "eu-west-1", "fansync:regionalBuckets": "p-bucket@us-east-1" });
  assert.equal(dup.ok, false);
  if (!dup.ok) assert.deepEqual(dup.errors, ["fansync:regionalBuckets: bucket p-bucket is named twice"]);
  const missing = parse({});
  assert.equal(missing.ok, false);
  if (!missing.ok) assert.deepEqual(missing.errors, ["fansync:primaryBucket and fansync:primaryRegion are required"]);
});
