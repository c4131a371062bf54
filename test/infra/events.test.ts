// Events in the CDK stacks (infra/src/fansync-events.ts): each bucket's head notification goes to
// its topic, and each node group (plus the replicator on the primary) gets a queue subscribed to it.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Match } from "aws-cdk-lib/assertions";
import { resourcesOf, synth } from "./helpers.ts";

test("without eventGroups there are no topics, queues or notifications", () => {
  const { primary, regional } = synth();
  for (const t of [primary, ...regional.values()]) {
    t.resourceCountIs("AWS::SNS::Topic", 0);
    t.resourceCountIs("AWS::SQS::Queue", 0);
    t.resourceCountIs("Custom::S3BucketNotifications", 0);
  }
});

test("eventGroups: a head topic per bucket, a queue per group subscribed with raw delivery, the head notification filtered to head.json", () => {
  const { primary, regional } = synth({ "fansync:eventGroups": "web,api" });
  primary.resourceCountIs("AWS::SNS::Topic", 1);
  primary.hasResourceProperties("AWS::SNS::Topic", { TopicName: "fansync-fs-primary-head" });
  const queueNames = (t: typeof primary) => Object.values(resourcesOf(t, "AWS::SQS::Queue")).map((r) => r.Properties.QueueName as string).sort();
  assert.deepEqual(queueNames(primary), ["fansync-fs-primary-api", "fansync-fs-primary-replicator", "fansync-fs-primary-web"]);
  assert.deepEqual(queueNames(regional.get("fs-jp") as typeof primary), ["fansync-fs-jp-api", "fansync-fs-jp-web"]);
  primary.hasResourceProperties("AWS::SQS::Queue", { QueueName: "fansync-fs-primary-web", MessageRetentionPeriod: 3600, ReceiveMessageWaitTimeSeconds: 20 });
  primary.resourceCountIs("AWS::SNS::Subscription", 3);
  primary.hasResourceProperties("AWS::SNS::Subscription", { Protocol: "sqs", RawMessageDelivery: true });
  // Only the topic may send to a queue.
  primary.hasResourceProperties("AWS::SQS::QueuePolicy", {
    PolicyDocument: { Statement: Match.arrayWith([Match.objectLike({ Action: "sqs:SendMessage", Principal: { Service: "sns.amazonaws.com" }, Condition: { ArnEquals: { "aws:SourceArn": Match.anyValue() } } })]) },
  });
  primary.hasResourceProperties("Custom::S3BucketNotifications", {
    NotificationConfiguration: {
      TopicConfigurations: [Match.objectLike({
        Events: ["s3:ObjectCreated:*"],
        Filter: { Key: { FilterRules: Match.arrayWith([{ Name: "suffix", Value: "head.json" }, { Name: "prefix", Value: "site/.fansync/" }]) } },
      })],
    },
  });
  const outputs = Object.keys(primary.toJSON().Outputs as Record<string, unknown>);
  assert.ok(outputs.includes("EventQueueweb") && outputs.includes("HeadTopicArn"), outputs.join(", "));
});
