/**
 * `fansync events setup|register|unregister|check`: the event plumbing of docs/events.md, for sites
 * that do not create it with the CDK stack (infra/).
 *   setup s3://bucket/prefix       the location's SNS topic and the bucket's notification for its head (the bucket owner, once)
 *   register --topic ARN           this node's own queue, subscribed to the topic; prints the URL for `pull --events`
 *   unregister --queue URL         unsubscribe and delete that queue
 *   prune --topic ARN              unsubscribe and delete the topic's self-registered queues whose expiry passed
 *   check s3://bucket/prefix --queue URL   notification, topic, subscription and a round trip through them
 */
import os from "node:os";
import { PublishCommand } from "@aws-sdk/client-sns";
import { DeleteMessageBatchCommand, ReceiveMessageCommand } from "@aws-sdk/client-sqs";
import type { Config } from "../core/config.ts";
import { ExitCode, UsageError } from "../core/errors.ts";
import { formatLocation, type Location } from "../core/location.ts";
import { createS3Client } from "../adapters/s3-client.ts";
import { createSnsClient, createSqsClient } from "../adapters/aws-clients.ts";
import { isSubscribed, pruneExpiredQueues, readHeadNotification, readQueue, registerQueue, setupTopic, topicExists, unregisterQueue } from "../adapters/event-plumbing.ts";
import { parseDuration } from "../core/units.ts";
import { settingsFor } from "../core/config.ts";
import { awsEnv } from "./wiring.ts";

/** What the subcommands take besides the config. */
export interface EventsOptions {
  readonly action: "setup" | "register" | "unregister" | "check" | "prune";
  readonly location: Location | undefined;
  readonly topic: string | undefined;
  readonly queue: string | undefined;
  readonly queueName: string | undefined;
  /** register: `--expire-after` as given (a duration; default {@link DEFAULT_EXPIRE_AFTER}). */
  readonly expireAfter: string | undefined;
}

/** A self-registered queue expires this long after its node last ran with it (register's default). */
export const DEFAULT_EXPIRE_AFTER = "7d";
// A running node pushes its queue's expiry forward hourly: a shorter expiry could be pruned under it.
const SAFE_EXPIRE_AFTER_MS = 2 * 3_600_000;

// A round trip longer than this is reported as not received.
const ROUND_TRIP_MS = 25_000;

/** Run one subcommand; prints what it made (stdout) and returns the exit code. */
export async function events(cfg: Config, o: EventsOptions, signal: AbortSignal): Promise<number> {
  const aws = { endpointUrl: cfg.endpointUrl, profile: cfg.profile, aws: awsEnv() };
  const need = <T>(v: T | undefined, what: string): T => {
    if (v === undefined) throw new UsageError(`fansync events ${o.action} needs ${what}`, { hint: "fansync events --help" });
    return v;
  };
  switch (o.action) {
    case "setup": {
      const loc = need(o.location, "an s3://bucket/prefix location");
      const sns = createSnsClient(aws);
      const arn = await setupTopic(createS3Client({ ...settingsFor(cfg, loc), maxSockets: 4, aws: aws.aws }), sns, loc);
      process.stdout.write(`${arn}\n`);
      return ExitCode.ok;
    }
    case "register": {
      const topic = need(o.topic, "--topic ARN (printed by `fansync events setup`, or the CDK stack's output)");
      const name = o.queueName ?? `fansync-${os.hostname().replace(/[^A-Za-z0-9_-]/g, "-").slice(0, 60)}`;
      const afterMs = parseDuration(o.expireAfter ?? DEFAULT_EXPIRE_AFTER);
      if (!afterMs) throw new UsageError(`--expire-after ${JSON.stringify(o.expireAfter)}: expected a duration such as 7d, 12h or 90m`);
      if (afterMs < SAFE_EXPIRE_AFTER_MS) process.stderr.write(`fansync: warning: --expire-after ${o.expireAfter} is under 2h: a node running with this queue pushes its expiry forward only hourly, so \`fansync events prune\` may delete it while in use\n`);
      const r = await registerQueue(createSqsClient(aws), createSnsClient(aws, topic), topic, name, { afterMs, now: new Date() });
      process.stdout.write(`${r.url}\n`);
      return ExitCode.ok;
    }
    case "prune": {
      const topic = need(o.topic, "--topic ARN (printed by `fansync events setup`)");
      const r = await pruneExpiredQueues(createSqsClient(aws), createSnsClient(aws, topic), topic, new Date());
      for (const q of r) process.stdout.write(`${q.outcome.padEnd(10)} ${q.url ?? q.queueArn}  ${q.detail}\n`);
      // A queue it could not read is left alone and said: exit 4, as a partial run.
      return r.some((q) => q.outcome === "unreadable") ? ExitCode.partial : ExitCode.ok;
    }
    case "unregister": {
      const queue = need(o.queue, "--queue URL");
      const r = await unregisterQueue(createSqsClient(aws, queue), createSnsClient(aws), queue);
      process.stdout.write(`deleted ${queue}${r.subscription ? ` and its subscription ${r.subscription}` : ""}\n`);
      return ExitCode.ok;
    }
    case "check":
      return check(cfg, need(o.location, "an s3://bucket/prefix location"), need(o.queue, "--queue URL"), signal);
  }
}

/** One event check's outcome (`fansync events check`, `fansync doctor --events`). */
export interface EventCheck {
  readonly name: "notification" | "queue" | "topic" | "subscription" | "round trip";
  readonly status: "OK" | "WARN" | "FAIL";
  readonly detail: string;
}

/** The checks as lines (the events command's output, and doctor's after its own). */
export function renderEventChecks(checks: readonly EventCheck[]): string {
  return checks.map((c) => `${c.status.padEnd(4)} ${c.name.padEnd(13)} ${c.detail}`).join("\n") + "\n";
}

async function check(cfg: Config, loc: Location, queue: string, signal: AbortSignal): Promise<number> {
  const checks = await runEventChecks(cfg, loc, queue, signal);
  process.stdout.write(renderEventChecks(checks));
  return checks.some((c) => c.status === "FAIL") ? ExitCode.partial : ExitCode.ok;
}

/** The notification of the head key, the queue, the topic, the subscription, and a round trip through them. */
export async function runEventChecks(cfg: Config, loc: Location, queue: string, signal: AbortSignal): Promise<EventCheck[]> {
  const aws = { endpointUrl: cfg.endpointUrl, profile: cfg.profile, aws: awsEnv() };
  const s3 = createS3Client({ ...settingsFor(cfg, loc), maxSockets: 4, aws: aws.aws });
  const sqs = createSqsClient(aws, queue);
  const out: EventCheck[] = [];
  const say = (status: EventCheck["status"], name: EventCheck["name"], detail: string) => out.push({ status, name, detail });
  const note = await readHeadNotification(s3, loc).catch((err: unknown) => err as Error);
  let topic: string | undefined;
  if (note instanceof Error) say("FAIL", "notification", `cannot read the notification configuration of s3://${loc.bucket}: ${note.name}`);
  else if (!note) say("FAIL", "notification", `no ObjectCreated notification of s3://${loc.bucket} covers ${formatLocation(loc)}.fansync/head.json (fansync events setup ${formatLocation(loc)})`);
  else if ("TopicArn" in note && note.TopicArn) {
    topic = note.TopicArn;
    say("OK", "notification", `the head's ObjectCreated events go to ${topic}`);
  } else say("OK", "notification", `the head's ObjectCreated events go straight to ${(note as { QueueArn: string }).QueueArn}`);
  const q = await readQueue(sqs, queue).catch((err: unknown) => err as Error);
  if (q instanceof Error) {
    say("FAIL", "queue", `cannot read ${queue}: ${q.name}`);
    return out;
  }
  // A self-registered queue that expired is deleted by the next `events prune`: say so while it works.
  if (q.expires && Date.parse(q.expires) < Date.now()) say("WARN", "queue", `${queue} (${q.arn}) expired ${q.expires}: \`fansync events prune\` deletes it (a node running with it pushes the expiry forward)`);
  else say("OK", "queue", `${queue} (${q.arn})${q.expires ? `, expires ${q.expires}` : ""}`);
  if (!topic) return out;
  const sns = createSnsClient(aws, topic);
  const exists = await topicExists(sns, topic).catch(() => false);
  say(exists ? "OK" : "FAIL", "topic", exists ? topic : `${topic} does not exist or cannot be read`);
  const sub = exists ? await isSubscribed(sns, topic, q.arn).catch(() => false) : false;
  say(sub ? "OK" : "FAIL", "subscription", sub ? `${queue} is subscribed` : `${queue} is not subscribed to ${topic} (fansync events register --topic ${topic})`);
  if (!exists || !sub) return out;
  // A round trip through the topic (not the head: nothing is written to the bucket).
  const token = `fansync-check-${Date.now()}`;
  const started = Date.now();
  await sns.send(new PublishCommand({ TopicArn: topic, Message: JSON.stringify({ fansync: "check", token }) }), { abortSignal: signal });
  let got = false;
  while (!got && Date.now() - started < ROUND_TRIP_MS && !signal.aborted) {
    const r = await sqs.send(new ReceiveMessageCommand({ QueueUrl: queue, MaxNumberOfMessages: 10, WaitTimeSeconds: 5 }), { abortSignal: signal });
    const mine = (r.Messages ?? []).filter((m) => m.Body?.includes(token));
    got = mine.length > 0;
    if (got) await sqs.send(new DeleteMessageBatchCommand({ QueueUrl: queue, Entries: mine.map((m, i) => ({ Id: String(i), ReceiptHandle: m.ReceiptHandle as string })) }));
  }
  if (got) say("OK", "round trip", `a message published to the topic arrived in ${Date.now() - started} ms`);
  else say("WARN", "round trip", `a message published to the topic did not arrive within ${ROUND_TRIP_MS / 1000} s (a running node reading this queue may have taken it)`);
  return out;
}
