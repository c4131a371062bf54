// The managed policy of each role, as synthesised: exact statements, and the puller's read-only
// guarantee checked independently of how the policy is written.
import assert from "node:assert/strict";
import { test } from "node:test";
import { pullerPolicy, uploaderPolicy } from "../../infra/src/policies.ts";
import { managedPolicyDocument, normalizePolicy, resourcesOf, synth } from "./helpers.ts";

const { primary } = synth();
const doc = (name: string) => normalizePolicy(managedPolicyDocument(primary, name));

test("the uploader writes its prefix and meta prefix and lists only below them", () => {
  assert.deepEqual(doc("fansync-uploader"), {
    Version: "2012-10-17",
    Statement: [
      {
        Sid: "WriteContentAndMeta",
        Effect: "Allow",
        Action: ["s3:PutObject", "s3:GetObject", "s3:GetObjectVersion", "s3:DeleteObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
        Resource: ["arn:aws:s3:::fs-primary/site/*", "arn:aws:s3:::fs-primary/site/.fansync/*"],
      },
      {
        Sid: "ListPrefix",
        Effect: "Allow",
        Action: ["s3:ListBucket"],
        Resource: ["arn:aws:s3:::fs-primary"],
        Condition: { StringLike: { "s3:prefix": ["site/*", "site/.fansync/*"] } },
      },
    ],
  });
});

test("the replicator reads the primary prefix and writes every regional prefix", () => {
  const write = ["s3:PutObject", "s3:GetObject", "s3:GetObjectVersion", "s3:DeleteObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"];
  const list = (bucket: string, sid: string) => ({
    Sid: sid, Effect: "Allow", Action: ["s3:ListBucket"], Resource: [`arn:aws:s3:::${bucket}`],
    Condition: { StringLike: { "s3:prefix": ["site/*", "site/.fansync/*"] } },
  });
  assert.deepEqual(doc("fansync-replicator"), {
    Version: "2012-10-17",
    Statement: [
      { Sid: "ReadSource", Effect: "Allow", Action: ["s3:GetObject", "s3:GetObjectVersion"], Resource: ["arn:aws:s3:::fs-primary/site/*", "arn:aws:s3:::fs-primary/site/.fansync/*"] },
      list("fs-primary", "ListSource"),
      {
        Sid: "WriteTargets", Effect: "Allow", Action: write,
        Resource: ["arn:aws:s3:::fs-us/site/*", "arn:aws:s3:::fs-us/site/.fansync/*", "arn:aws:s3:::fs-jp/site/*", "arn:aws:s3:::fs-jp/site/.fansync/*"],
      },
      list("fs-us", "ListTarget0"),
      list("fs-jp", "ListTarget1"),
    ],
  });
});

test("the puller may only read its sources' prefixes, and write its node report key", () => {
  assert.deepEqual(doc("fansync-puller"), {
    Version: "2012-10-17",
    Statement: [
      {
        Sid: "ReadContent",
        Effect: "Allow",
        Action: ["s3:GetObject", "s3:GetObjectVersion"],
        Resource: [
          "arn:aws:s3:::fs-us/site/*", "arn:aws:s3:::fs-us/site/.fansync/*",
          "arn:aws:s3:::fs-jp/site/*", "arn:aws:s3:::fs-jp/site/.fansync/*",
          "arn:aws:s3:::fs-primary/site/*", "arn:aws:s3:::fs-primary/site/.fansync/*",
        ],
      },
      {
        Sid: "WriteOwnNodeReport",
        Effect: "Allow",
        Action: ["s3:PutObject"],
        Resource: ["arn:aws:s3:::fs-us/site/.fansync/nodes/*.json", "arn:aws:s3:::fs-jp/site/.fansync/nodes/*.json", "arn:aws:s3:::fs-primary/site/.fansync/nodes/*.json"],
      },
    ],
  });
});

test("no action the puller's policy allows can write content, delete, replicate or administer", () => {
  // Independent of the exact list above: every allowed action, wildcards included, must be a read,
  // except PutObject confined to node report keys.
  const statements = (managedPolicyDocument(primary, "fansync-puller") as { Statement: Record<string, unknown>[] }).Statement;
  assert.ok(statements.length > 0);
  for (const s of statements) {
    if (s.Sid === "WriteOwnNodeReport") {
      assert.deepEqual(([] as unknown[]).concat(s.Action), ["s3:PutObject"]);
      for (const r of ([] as unknown[]).concat(s.Resource)) assert.match(r as string, /^arn:aws:s3:::[a-z0-9.-]+\/site\/\.fansync\/nodes\/[^/]*\.json$/);
      continue;
    }
    assert.equal(s.Effect, "Allow");
    assert.equal(s.NotAction, undefined, "NotAction would allow everything else");
    assert.equal(s.NotResource, undefined);
    const actions = ([] as unknown[]).concat(s.Action);
    assert.ok(actions.length > 0);
    for (const a of actions) {
      assert.equal(typeof a, "string");
      assert.doesNotMatch(a as string, /\*|\?/, `wildcard action ${String(a)}`);
      assert.match(a as string, /^s3:Get/, `${String(a)} is not a read`);
      assert.doesNotMatch(a as string, /Put|Delete|Write|Create|Replicate|Restore|Abort|Update|Bypass|Tagging|Acl|Policy/i);
    }
    for (const r of ([] as unknown[]).concat(s.Resource)) assert.match(r as string, /^arn:aws:s3:::[a-z0-9.-]+\/site\//);
  }
});

test("roles not asked for get no policy", () => {
  const only = synth({ "fansync:roles": "puller" }).primary;
  const names = Object.values(resourcesOf(only, "AWS::IAM::ManagedPolicy")).map((r) => r.Properties.ManagedPolicyName);
  assert.deepEqual(names, ["fansync-puller"]);
  const prefixed = synth({ "fansync:namePrefix": "blog" }).primary;
  assert.deepEqual(
    Object.values(resourcesOf(prefixed, "AWS::IAM::ManagedPolicy")).map((r) => r.Properties.ManagedPolicyName),
    ["blog-uploader", "blog-replicator", "blog-puller"],
  );
});

test("a whole-bucket deployment drops the s3:prefix condition, which would break unprefixed lists", () => {
  const loc = { bucket: "b", prefix: "", metaPrefix: ".fansync/" };
  assert.deepEqual(uploaderPolicy(loc).Statement[1], { Sid: "ListPrefix", Effect: "Allow", Action: ["s3:ListBucket"], Resource: ["arn:aws:s3:::b"] });
  assert.deepEqual(uploaderPolicy(loc).Statement[0]?.Resource, ["arn:aws:s3:::b/*", "arn:aws:s3:::b/.fansync/*"]);
});

test("with a node id variable each puller may write its own report key alone", () => {
  const loc = { bucket: "b", prefix: "www/", metaPrefix: "www/.fansync/" };
  assert.deepEqual(pullerPolicy([loc], "aws", "${aws:PrincipalTag/fansync-node}").Statement[1]?.Resource, ["arn:aws:s3:::b/www/.fansync/nodes/${aws:PrincipalTag/fansync-node}.json"]);
});

test("another partition and a meta prefix outside the content prefix are both covered", () => {
  const loc = { bucket: "b", prefix: "www/", metaPrefix: "control/www/" };
  assert.deepEqual(pullerPolicy([loc], "aws-cn").Statement[0]?.Resource, ["arn:aws-cn:s3:::b/www/*", "arn:aws-cn:s3:::b/control/www/*"]);
  assert.deepEqual(uploaderPolicy(loc).Statement[1]?.Condition, { StringLike: { "s3:prefix": ["www/*", "control/www/*"] } });
});

test("with events, nodes and the replicator may read their queues and nodes may register their own; with a CDN, writers may invalidate it", () => {
  const { primary: withEvents } = synth({ "fansync:eventGroups": "web", "fansync:cloudFrontBucket": "fs-primary" });
  const statements = (name: string) => (normalizePolicy(managedPolicyDocument(withEvents, name)) as { Statement: { Sid: string }[] }).Statement;
  const bySid = (name: string, sid: string) => statements(name).find((s) => s.Sid === sid);
  const receive = { Sid: "ReceiveEvents", Effect: "Allow", Action: ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ListQueueTags"], Resource: ["arn:aws:sqs:*:*:fansync-*"] };
  assert.deepEqual(bySid("fansync-puller", "ReceiveEvents"), receive);
  assert.deepEqual(bySid("fansync-replicator", "ReceiveEvents"), receive);
  assert.equal(bySid("fansync-uploader", "ReceiveEvents"), undefined, "the uploader reads no queue");
  assert.deepEqual(bySid("fansync-puller", "OwnEventQueue"), {
    Sid: "OwnEventQueue", Effect: "Allow",
    Action: ["sqs:CreateQueue", "sqs:GetQueueAttributes", "sqs:SetQueueAttributes", "sqs:TagQueue", "sqs:ListQueueTags", "sqs:DeleteQueue", "sqs:GetQueueUrl"],
    Resource: ["arn:aws:sqs:*:*:fansync-*"],
  });
  assert.deepEqual(bySid("fansync-puller", "SubscribeToHeadTopics"), {
    Sid: "SubscribeToHeadTopics", Effect: "Allow", Action: ["sns:Subscribe", "sns:Unsubscribe", "sns:GetTopicAttributes", "sns:ListSubscriptionsByTopic"], Resource: ["arn:aws:sns:*:*:fansync-*"],
  });
  const invalidate = { Sid: "InvalidateCdn", Effect: "Allow", Action: ["cloudfront:CreateInvalidation", "cloudfront:GetInvalidation"], Resource: ["arn:aws:cloudfront::*:distribution/*"] };
  assert.deepEqual(bySid("fansync-uploader", "InvalidateCdn"), invalidate);
  assert.deepEqual(bySid("fansync-replicator", "InvalidateCdn"), invalidate);
  assert.equal(bySid("fansync-puller", "InvalidateCdn"), undefined);
  // Events add no S3 action: the puller's S3 statements are those of a deployment without events.
  const s3Of = (t: typeof withEvents) => (normalizePolicy(managedPolicyDocument(t, "fansync-puller")) as { Statement: { Action: string[] }[] }).Statement.filter((s) => s.Action.some((a) => a.startsWith("s3:")));
  assert.deepEqual(s3Of(withEvents), s3Of(primary));
  // Every event action of the puller is on the deployment's own queues and topics only.
  for (const s of statements("fansync-puller") as unknown as { Action: string[]; Resource: string[] }[]) {
    for (const a of s.Action.filter((x) => /^(sqs|sns):/.test(x))) assert.ok(s.Resource.every((r) => /:(sqs|sns):\*:\*:fansync-\*$/.test(r)), `${a} on ${s.Resource.join(", ")}`);
  }
});
