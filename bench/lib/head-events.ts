// The head's event plumbing for the benches (docs/events.md), made with the SDK: one SNS topic for
// the location's head, one SQS queue per node subscribed to it, and the bucket's notification for
// `<prefix>.fansync/head.json` where the server sends S3 notifications (moto). fauxqs's S3 sends
// none: there the caller relays each head write it sees (`relay`), publishing the same record S3
// would. Used by lib/events-bench.ts (3 nodes) and lib/fleet.ts (hundreds).
import { PutBucketNotificationConfigurationCommand, S3Client } from "@aws-sdk/client-s3";
import { CreateTopicCommand, PublishCommand, SNSClient, SubscribeCommand } from "@aws-sdk/client-sns";
import { CreateQueueCommand, GetQueueAttributesCommand, SQSClient } from "@aws-sdk/client-sqs";

/** The queues made, and how the head's event reaches them. */
export type HeadEvents = {
  /** One queue URL per node, in order. */
  queues: string[];
  /** How a head write becomes a message (for the report). */
  via: string;
  /** Without S3 notifications: publish the head's event (call on each head PUT answered). */
  relay?: () => void;
};

/** Make the topic, `nodes` subscribed queues and the notification (or the relay) for `bucket`/`prefix`. */
export async function setupHeadEvents(o: { endpoint: string; bucket: string; prefix: string; nodes: number; s3Notifications: boolean; name: string }): Promise<HeadEvents> {
  const aws = { endpoint: o.endpoint, region: "us-east-1", credentials: { accessKeyId: "bench", secretAccessKey: "benchsecret" } };
  const sqs = new SQSClient(aws);
  const sns = new SNSClient(aws);
  const topic = (await sns.send(new CreateTopicCommand({ Name: o.name }))).TopicArn as string;
  const queues: string[] = [];
  // A few at a time: hundreds of nodes' queues in seconds, without a burst the server chokes on.
  for (let n = 0; n < o.nodes; n += 16) {
    const batch = Array.from({ length: Math.min(16, o.nodes - n) }, (_, i) => n + i);
    queues.push(...(await Promise.all(batch.map(async (i) => {
      const q = (await sqs.send(new CreateQueueCommand({ QueueName: `${o.name}-${i}` }))).QueueUrl as string;
      const arn = (await sqs.send(new GetQueueAttributesCommand({ QueueUrl: q, AttributeNames: ["QueueArn"] }))).Attributes?.QueueArn as string;
      await sns.send(new SubscribeCommand({ TopicArn: topic, Protocol: "sqs", Endpoint: arn }));
      return q;
    }))));
  }
  const key = `${o.prefix}.fansync/head.json`;
  if (o.s3Notifications) {
    await new S3Client({ ...aws, forcePathStyle: true }).send(new PutBucketNotificationConfigurationCommand({
      Bucket: o.bucket,
      NotificationConfiguration: { TopicConfigurations: [{ TopicArn: topic, Events: ["s3:ObjectCreated:*"], Filter: { Key: { FilterRules: [{ Name: "prefix", Value: `${o.prefix}.fansync/` }, { Name: "suffix", Value: "head.json" }] } } }] },
    }));
    return { queues, via: "the bucket's S3 notification → SNS → one SQS queue per node" };
  }
  const record = () => JSON.stringify({ Records: [{ eventSource: "aws:s3", eventName: "ObjectCreated:Put", eventTime: new Date().toISOString(), s3: { bucket: { name: o.bucket }, object: { key } } }] });
  return {
    queues,
    via: "a relay in the bench publishing each head PUT to SNS (this server's S3 sends no notifications) → one SQS queue per node",
    relay: () => void sns.send(new PublishCommand({ TopicArn: topic, Message: record() })).catch(() => undefined),
  };
}
