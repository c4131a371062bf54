/**
 * The plumbing of events (docs/events.md), for `fansync events` and `fansync doctor`: the bucket's
 * notification for a location's head → an SNS topic → one SQS queue per node. Every call here is
 * idempotent (CreateTopic, CreateQueue, Subscribe return what exists), so running setup or register
 * again repairs instead of duplicating.
 */
import { createHash } from "node:crypto";
import { GetBucketNotificationConfigurationCommand, PutBucketNotificationConfigurationCommand, type S3Client, type TopicConfiguration } from "@aws-sdk/client-s3";
import { CreateTopicCommand, GetTopicAttributesCommand, ListSubscriptionsByTopicCommand, SetTopicAttributesCommand, type SNSClient, SubscribeCommand, UnsubscribeCommand } from "@aws-sdk/client-sns";
import { CreateQueueCommand, DeleteQueueCommand, GetQueueAttributesCommand, GetQueueUrlCommand, ListQueueTagsCommand, type SQSClient, SetQueueAttributesCommand, TagQueueCommand } from "@aws-sdk/client-sqs";
import type { Location } from "../core/location.ts";
import { metaPrefix } from "../core/location.ts";

/** The id of fansync's entry in the bucket's notification configuration, per location. */
export function notificationId(loc: Location): string {
  return `fansync-head-${createHash("sha256").update(`${loc.bucket}/${loc.prefix}`).digest("hex").slice(0, 12)}`;
}

/** The topic name fansync uses for a location (one topic per location; many queues subscribe). */
export function topicName(loc: Location): string {
  return `fansync-${loc.bucket.replace(/[^A-Za-z0-9_-]/g, "-").slice(0, 40)}-${createHash("sha256").update(`${loc.bucket}/${loc.prefix}`).digest("hex").slice(0, 8)}`;
}

/** The bucket's notification entry for the location's head, if there is one (fansync's own, or any matching the head key). */
export async function readHeadNotification(s3: S3Client, loc: Location): Promise<TopicConfiguration | { QueueArn: string } | undefined> {
  const cfg = await s3.send(new GetBucketNotificationConfigurationCommand({ Bucket: loc.bucket }));
  const headKey = `${metaPrefix(loc)}head.json`;
  const covers = (rules: { Name?: string; Value?: string }[] | undefined) => (rules ?? []).every((r) => (r.Name?.toLowerCase() === "prefix" ? headKey.startsWith(r.Value ?? "") : r.Name?.toLowerCase() === "suffix" ? headKey.endsWith(r.Value ?? "") : true));
  const created = (events: string[] | undefined) => (events ?? []).some((e) => e === "s3:ObjectCreated:*" || e === "s3:ObjectCreated:Put");
  const topic = (cfg.TopicConfigurations ?? []).find((t) => created(t.Events) && covers(t.Filter?.Key?.FilterRules));
  if (topic) return topic;
  const queue = (cfg.QueueConfigurations ?? []).find((q) => created(q.Events) && covers(q.Filter?.Key?.FilterRules));
  return queue?.QueueArn ? { QueueArn: queue.QueueArn } : undefined;
}

/**
 * The topic for `loc` (created if missing, with a policy that lets only this bucket's S3 events
 * publish to it) and the bucket's notification for the head key (other entries kept). Returns the topic ARN.
 */
export async function setupTopic(s3: S3Client, sns: SNSClient, loc: Location): Promise<string> {
  const arn = (await sns.send(new CreateTopicCommand({ Name: topicName(loc) }))).TopicArn as string;
  const policy = {
    Version: "2012-10-17",
    Statement: [{
      Sid: "fansync-s3-publish",
      Effect: "Allow",
      Principal: { Service: "s3.amazonaws.com" },
      Action: "SNS:Publish",
      Resource: arn,
      Condition: { ArnLike: { "aws:SourceArn": `arn:aws:s3:::${loc.bucket}` } },
    }],
  };
  await sns.send(new SetTopicAttributesCommand({ TopicArn: arn, AttributeName: "Policy", AttributeValue: JSON.stringify(policy) }));
  const id = notificationId(loc);
  const current = await s3.send(new GetBucketNotificationConfigurationCommand({ Bucket: loc.bucket }));
  const mine: TopicConfiguration = {
    Id: id,
    TopicArn: arn,
    Events: ["s3:ObjectCreated:*"],
    Filter: { Key: { FilterRules: [{ Name: "prefix", Value: metaPrefix(loc) }, { Name: "suffix", Value: "head.json" }] } },
  };
  await s3.send(new PutBucketNotificationConfigurationCommand({
    Bucket: loc.bucket,
    NotificationConfiguration: {
      TopicConfigurations: [...(current.TopicConfigurations ?? []).filter((t) => t.Id !== id), mine],
      ...(current.QueueConfigurations?.length ? { QueueConfigurations: current.QueueConfigurations } : {}),
      ...(current.LambdaFunctionConfigurations?.length ? { LambdaFunctionConfigurations: current.LambdaFunctionConfigurations } : {}),
      ...(current.EventBridgeConfiguration ? { EventBridgeConfiguration: current.EventBridgeConfiguration } : {}),
    },
  }));
  return arn;
}

/** Whether the topic exists (GetTopicAttributes answers). */
export async function topicExists(sns: SNSClient, topicArn: string): Promise<boolean> {
  try {
    await sns.send(new GetTopicAttributesCommand({ TopicArn: topicArn }));
    return true;
  } catch (err) {
    if ((err as { name?: string }).name === "NotFoundException" || (err as { name?: string }).name === "NotFound") return false;
    throw err;
  }
}

const SUBSCRIPTION_TAG = "fansync-subscription";
const TOPIC_TAG = "fansync-topic";
// Self-registered queues expire (docs/events.md): `fansync-expires` is when (ISO time), and
// `fansync-expire-after` how long a node that runs with the queue pushes it forward (seconds).
const EXPIRES_TAG = "fansync-expires";
const EXPIRE_AFTER_TAG = "fansync-expire-after";

/** The expiry tags of a self-registered queue that expires `expireAfterMs` after `now`. */
export function expiryTags(expireAfterMs: number, now: Date): Record<string, string> {
  return { [EXPIRES_TAG]: new Date(now.getTime() + expireAfterMs).toISOString(), [EXPIRE_AFTER_TAG]: String(Math.round(expireAfterMs / 1000)) };
}

/** Whether a queue's tags say it expired before `now` (a queue without an expiry never does: the CDK stack's, or one made by hand). */
export function queueExpired(tags: Readonly<Record<string, string>>, now: Date): boolean {
  const at = Date.parse(tags[EXPIRES_TAG] ?? "");
  return Number.isFinite(at) && at < now.getTime();
}

/**
 * A node that runs with a self-registered queue keeps it alive: the expiry moves to `now` plus the
 * queue's own `fansync-expire-after`. Returns the new expiry, or undefined for a queue that does not
 * expire (nothing is written then). Two requests (ListQueueTags, TagQueue); the listener calls it hourly.
 */
export async function refreshQueueExpiry(sqs: SQSClient, url: string, now: Date, signal?: AbortSignal): Promise<string | undefined> {
  const tags = (await sqs.send(new ListQueueTagsCommand({ QueueUrl: url }), { abortSignal: signal })).Tags ?? {};
  const afterS = Number(tags[EXPIRE_AFTER_TAG]);
  if (!(afterS > 0)) return undefined;
  const next = expiryTags(afterS * 1000, now);
  await sqs.send(new TagQueueCommand({ QueueUrl: url, Tags: next }), { abortSignal: signal });
  return next[EXPIRES_TAG];
}

/** What `prune` did with one of the topic's SQS subscriptions. */
export interface PrunedQueue {
  readonly queueArn: string;
  readonly url: string | undefined;
  /** "deleted": expired, unsubscribed and deleted; "kept": not expired or no expiry; "unreadable": left alone (why in `detail`). */
  readonly outcome: "deleted" | "kept" | "unreadable";
  readonly detail: string;
}

/**
 * Unsubscribe and delete the topic's subscribed queues whose expiry passed (nodes that stopped
 * without `unregister`). Queues without an expiry tag and queues it cannot read are left alone.
 */
export async function pruneExpiredQueues(sqs: SQSClient, sns: SNSClient, topicArn: string, now: Date): Promise<PrunedQueue[]> {
  const out: PrunedQueue[] = [];
  let next: string | undefined;
  do {
    const page = await sns.send(new ListSubscriptionsByTopicCommand({ TopicArn: topicArn, NextToken: next }));
    for (const sub of page.Subscriptions ?? []) {
      if (sub.Protocol !== "sqs" || !sub.Endpoint) continue;
      // arn:aws:sqs:<region>:<account>:<name>
      const [, , , , account, name] = sub.Endpoint.split(":");
      let url: string | undefined;
      try {
        url = (await sqs.send(new GetQueueUrlCommand({ QueueName: name, QueueOwnerAWSAccountId: account }))).QueueUrl as string;
        const tags = (await sqs.send(new ListQueueTagsCommand({ QueueUrl: url }))).Tags ?? {};
        if (!queueExpired(tags, now)) {
          out.push({ queueArn: sub.Endpoint, url, outcome: "kept", detail: tags[EXPIRES_TAG] ? `expires ${tags[EXPIRES_TAG]}` : "no expiry" });
          continue;
        }
        if (sub.SubscriptionArn && sub.SubscriptionArn.startsWith("arn:")) await sns.send(new UnsubscribeCommand({ SubscriptionArn: sub.SubscriptionArn }));
        await sqs.send(new DeleteQueueCommand({ QueueUrl: url }));
        out.push({ queueArn: sub.Endpoint, url, outcome: "deleted", detail: `expired ${tags[EXPIRES_TAG]}` });
      } catch (err) {
        out.push({ queueArn: sub.Endpoint, url, outcome: "unreadable", detail: (err as Error).name });
      }
    }
    next = page.NextToken;
  } while (next);
  return out;
}

/**
 * A node's own queue subscribed to the topic: CreateQueue, a queue policy that lets only that topic
 * send to it, Subscribe (raw delivery: the message is the S3 event itself). The subscription is
 * recorded as a tag of the queue, so `unregister` needs only the queue URL; so is its expiry
 * (`fansync events prune` deletes it once passed; a node running with it pushes it forward). Returns its URL.
 */
export async function registerQueue(sqs: SQSClient, sns: SNSClient, topicArn: string, queueName: string, expiry: { readonly afterMs: number; readonly now: Date }): Promise<{ url: string; arn: string; subscription: string; expires: string }> {
  const url = (await sqs.send(new CreateQueueCommand({ QueueName: queueName, Attributes: { MessageRetentionPeriod: "3600", ReceiveMessageWaitTimeSeconds: "20" } }))).QueueUrl as string;
  const arn = (await sqs.send(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ["QueueArn"] }))).Attributes?.QueueArn as string;
  const policy = {
    Version: "2012-10-17",
    Statement: [{
      Sid: "fansync-topic-only",
      Effect: "Allow",
      Principal: { Service: "sns.amazonaws.com" },
      Action: "sqs:SendMessage",
      Resource: arn,
      Condition: { ArnEquals: { "aws:SourceArn": topicArn } },
    }],
  };
  await sqs.send(new SetQueueAttributesCommand({ QueueUrl: url, Attributes: { Policy: JSON.stringify(policy) } }));
  const subscription = (await sns.send(new SubscribeCommand({ TopicArn: topicArn, Protocol: "sqs", Endpoint: arn, Attributes: { RawMessageDelivery: "true" }, ReturnSubscriptionArn: true }))).SubscriptionArn as string;
  const expires = expiryTags(expiry.afterMs, expiry.now);
  await sqs.send(new TagQueueCommand({ QueueUrl: url, Tags: { [SUBSCRIPTION_TAG]: subscription, [TOPIC_TAG]: topicArn, ...expires } }));
  return { url, arn, subscription, expires: expires[EXPIRES_TAG] as string };
}

/** Unsubscribe the queue (by its tag) and delete it; returns what was removed. */
export async function unregisterQueue(sqs: SQSClient, sns: SNSClient, url: string): Promise<{ subscription: string | undefined }> {
  const tags = (await sqs.send(new ListQueueTagsCommand({ QueueUrl: url }))).Tags ?? {};
  const subscription = tags[SUBSCRIPTION_TAG];
  if (subscription) await sns.send(new UnsubscribeCommand({ SubscriptionArn: subscription }));
  await sqs.send(new DeleteQueueCommand({ QueueUrl: url }));
  return { subscription };
}

/** Whether the queue (by ARN) is subscribed to the topic. */
export async function isSubscribed(sns: SNSClient, topicArn: string, queueArn: string): Promise<boolean> {
  let next: string | undefined;
  do {
    const page = await sns.send(new ListSubscriptionsByTopicCommand({ TopicArn: topicArn, NextToken: next }));
    if ((page.Subscriptions ?? []).some((s) => s.Protocol === "sqs" && s.Endpoint === queueArn)) return true;
    next = page.NextToken;
  } while (next);
  return false;
}

/** The queue's ARN, its topic and its expiry (from register's tags), or throws when the queue cannot be read. */
export async function readQueue(sqs: SQSClient, url: string): Promise<{ arn: string; topic: string | undefined; expires: string | undefined }> {
  const arn = (await sqs.send(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ["QueueArn"] }))).Attributes?.QueueArn as string;
  const tags: Record<string, string> = (await sqs.send(new ListQueueTagsCommand({ QueueUrl: url })).catch(() => ({ Tags: {} }))).Tags ?? {};
  return { arn, topic: tags[TOPIC_TAG], expires: tags[EXPIRES_TAG] };
}
