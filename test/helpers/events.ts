/**
 * Event plumbing on the test server (moto serves S3, SNS and SQS on one endpoint): a queue, an
 * optional topic, and the bucket's notification for a location's head, as docs/events.md sets up.
 */
import { PutBucketNotificationConfigurationCommand } from "@aws-sdk/client-s3";
import { CreateTopicCommand, SNSClient, SubscribeCommand } from "@aws-sdk/client-sns";
import { CreateQueueCommand, DeleteQueueCommand, GetQueueAttributesCommand, SendMessageCommand, SQSClient } from "@aws-sdk/client-sqs";
import type { TestServer } from "./s3-server.ts";

/** Clients for the server's SQS and SNS. */
export function eventClients(server: TestServer): { sqs: SQSClient; sns: SNSClient } {
  const o = { endpoint: server.endpoint, region: "us-east-1", credentials: { accessKeyId: "test", secretAccessKey: "test" } };
  return { sqs: new SQSClient(o), sns: new SNSClient(o) };
}

/** A fresh queue; returns its URL and ARN. */
export async function createQueue(sqs: SQSClient, name: string): Promise<{ url: string; arn: string }> {
  const url = (await sqs.send(new CreateQueueCommand({ QueueName: name }))).QueueUrl as string;
  const attrs = await sqs.send(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ["QueueArn"] }));
  return { url, arn: attrs.Attributes?.QueueArn as string };
}

/** The bucket's notification for `<prefix>.fansync/head.json` straight into the queue (S3 → SQS). */
export async function notifyQueue(server: TestServer, bucket: string, prefix: string, queueArn: string): Promise<void> {
  await server.client.send(new PutBucketNotificationConfigurationCommand({
    Bucket: bucket,
    NotificationConfiguration: {
      QueueConfigurations: [{ QueueArn: queueArn, Events: ["s3:ObjectCreated:*"], Filter: { Key: { FilterRules: [{ Name: "prefix", Value: `${prefix}.fansync/` }, { Name: "suffix", Value: "head.json" }] } } }],
    },
  }));
}

/** S3 → SNS topic → the queue: returns the topic ARN. */
export async function notifyTopic(server: TestServer, sns: SNSClient, bucket: string, prefix: string, queueArn: string, topic: string): Promise<string> {
  const arn = (await sns.send(new CreateTopicCommand({ Name: topic }))).TopicArn as string;
  await sns.send(new SubscribeCommand({ TopicArn: arn, Protocol: "sqs", Endpoint: queueArn }));
  await server.client.send(new PutBucketNotificationConfigurationCommand({
    Bucket: bucket,
    NotificationConfiguration: {
      TopicConfigurations: [{ TopicArn: arn, Events: ["s3:ObjectCreated:*"], Filter: { Key: { FilterRules: [{ Name: "prefix", Value: `${prefix}.fansync/` }, { Name: "suffix", Value: "head.json" }] } } }],
    },
  }));
  return arn;
}

/** Remove the bucket's notifications (a "lost" event). */
export async function notifyNothing(server: TestServer, bucket: string): Promise<void> {
  await server.client.send(new PutBucketNotificationConfigurationCommand({ Bucket: bucket, NotificationConfiguration: {} }));
}

/** Put `n` messages of any body into the queue. */
export async function sendMessages(sqs: SQSClient, url: string, bodies: readonly string[]): Promise<void> {
  await Promise.all(bodies.map((b) => sqs.send(new SendMessageCommand({ QueueUrl: url, MessageBody: b }))));
}

/** Delete the queue. */
export async function deleteQueue(sqs: SQSClient, url: string): Promise<void> {
  await sqs.send(new DeleteQueueCommand({ QueueUrl: url }));
}
