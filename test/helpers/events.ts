/**
 * Event plumbing on the test server (moto serves S3, SNS and SQS on one endpoint): a queue, an
 * optional topic, and the bucket's notification for a location's head, as docs/events.md sets up.
 */
import { PutBucketNotificationConfigurationCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import { CreateTopicCommand, SNSClient, SubscribeCommand } from "@aws-sdk/client-sns";
import { CreateQueueCommand, DeleteQueueCommand, GetQueueAttributesCommand, ReceiveMessageCommand, SendMessageCommand, SQSClient } from "@aws-sdk/client-sqs";
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

/**
 * Whether the server delivers the head's S3 event into SQS within a few seconds (moto; LocalStack
 * started with FANSYNC_LOCALSTACK_SERVICES=s3,sqs,sns): why not, when it does not.
 */
export async function probeEvents(server: TestServer | undefined): Promise<string | undefined> {
  // The harness's own hook reports a server that did not start.
  if (!server) return "no test server";
  try {
    const { sqs } = eventClients(server);
    const bucket = await server.bucket("ev-probe");
    const q = await createQueue(sqs, `fansync-probe-${Date.now()}`);
    await notifyQueue(server, bucket, "", q.arn);
    await server.client.send(new PutObjectCommand({ Bucket: bucket, Key: ".fansync/head.json", Body: "{}" }));
    const deadline = Date.now() + 5000;
    while (Date.now() < deadline) {
      const r = await sqs.send(new ReceiveMessageCommand({ QueueUrl: q.url, WaitTimeSeconds: 1, MaxNumberOfMessages: 10 }));
      if ((r.Messages ?? []).some((m) => m.Body?.includes("head.json"))) return undefined;
    }
    return `${server.label} delivered no S3 event to SQS within 5 s`;
  } catch (err) {
    return `${server.label} serves no SQS or S3 notifications (${(err as Error).name}); LocalStack needs FANSYNC_LOCALSTACK_SERVICES=s3,sqs,sns`;
  }
}
