/**
 * Events (docs/events.md): the bucket's notification for its head key goes to one SNS topic; each
 * node group gets one SQS queue subscribed to it (raw delivery: the S3 event itself), which its
 * nodes name in `pull --events`. A queue's policy (added by the subscription) lets only that topic
 * send to it; messages live one hour (they are hints: a node down longer reads the head anyway).
 */
import { Duration } from "aws-cdk-lib";
import { EventType, type Bucket } from "aws-cdk-lib/aws-s3";
import { SnsDestination } from "aws-cdk-lib/aws-s3-notifications";
import { Topic } from "aws-cdk-lib/aws-sns";
import { SqsSubscription } from "aws-cdk-lib/aws-sns-subscriptions";
import { Queue } from "aws-cdk-lib/aws-sqs";
import { Construct } from "constructs";
import type { BucketLocation } from "./policies.ts";

/** Props: the bucket, its fansync location, the names' prefix and the node groups. */
export type FansyncEventsProps = {
  readonly bucket: Bucket;
  readonly location: BucketLocation;
  readonly namePrefix: string;
  readonly groups: readonly string[];
};

/** The head topic of one bucket and the queues of its node groups. */
export class FansyncEvents extends Construct {
  readonly topic: Topic;
  readonly queues = new Map<string, Queue>();

  constructor(scope: Construct, id: string, props: FansyncEventsProps) {
    super(scope, id);
    const { bucket, location, namePrefix } = props;
    // Names start with namePrefix: the policies of infra/src/policies.ts grant `<namePrefix>-*`.
    const base = `${namePrefix}-${location.bucket.replace(/[^A-Za-z0-9_-]/g, "-")}`.slice(0, 60);
    this.topic = new Topic(this, "HeadTopic", { topicName: `${base}-head` });
    bucket.addEventNotification(EventType.OBJECT_CREATED, new SnsDestination(this.topic), { prefix: location.metaPrefix, suffix: "head.json" });
    for (const group of props.groups) {
      const queue = new Queue(this, `Queue-${group}`, { queueName: `${base}-${group}`.slice(0, 80), retentionPeriod: Duration.hours(1), receiveMessageWaitTime: Duration.seconds(20), enforceSSL: true });
      this.topic.addSubscription(new SqsSubscription(queue, { rawMessageDelivery: true }));
      this.queues.set(group, queue);
    }
  }
}
