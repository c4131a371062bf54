/**
 * The demo's event plumbing (docs/events.md): one SNS topic per bucket, one SQS queue per web node
 * subscribed to its bucket's topic, all on the embedded server (fauxqs serves SQS and SNS). fauxqs's
 * S3 sends no bucket notifications (2.4.1 answers PutBucketNotificationConfiguration with a 200,
 * keeps nothing and publishes nothing on a PUT), so the relay stands in for S3's: the demo's gate
 * tells it of every object written, and a write of a location's `.fansync/head.json` is published
 * to that bucket's topic in the shape of S3's ObjectCreated record. Nodes read the messages as
 * hints only, exactly as they read S3's.
 */

/** The part of the embedded server the plumbing uses. */
export interface DemoEventServer {
  createQueue(name: string): { queueUrl: string };
  createTopic(name: string): { topicArn: string };
  subscribe(o: { topic: string; queue: string }): unknown;
  publish(topic: string, message: string): unknown;
}

/** The demo's topics and queues, and the relay. */
export interface DemoEvents {
  /** A queue for `node`, subscribed to the topic of `bucket`; its URL for `--events`. */
  queueFor(node: string, bucket: string): string;
  /** The gate saw a PUT of `objectPath` (`/bucket/key`, path style) succeed. */
  relay(objectPath: string): void;
  /** Head writes relayed so far. */
  readonly relayed: number;
}

/** Topic and queue names stay within SQS's and SNS's alphabet. */
const nameOf = (s: string) => s.replace(/[^A-Za-z0-9_-]/g, "-").slice(0, 70);

/** Set up the plumbing for `buckets` on `server`. */
export function startDemoEvents(server: DemoEventServer, buckets: readonly string[]): DemoEvents {
  const topics = new Map(buckets.map((b) => [b, `fansync-demo-head-${nameOf(b)}`] as const));
  for (const t of topics.values()) server.createTopic(t);
  let relayed = 0;
  return {
    queueFor(node, bucket) {
      const topic = topics.get(bucket);
      if (!topic) throw new Error(`demo events: no topic for bucket ${bucket}`);
      const queue = `fansync-demo-${nameOf(node)}`;
      const { queueUrl } = server.createQueue(queue);
      server.subscribe({ topic, queue });
      return queueUrl;
    },
    relay(objectPath) {
      const { bucket, key } = headWrite(objectPath) ?? {};
      const topic = bucket === undefined ? undefined : topics.get(bucket);
      if (!topic || key === undefined) return;
      relayed++;
      server.publish(topic, s3CreatedEvent(bucket as string, key));
    },
    get relayed() {
      return relayed;
    },
  };
}

/** The bucket and key of a path-style object path when it is a location's head, else undefined. */
export function headWrite(objectPath: string): { bucket: string; key: string } | undefined {
  const p = objectPath.split("?")[0] ?? "";
  const slash = p.indexOf("/", 1);
  if (!p.startsWith("/") || slash < 0) return undefined;
  let key: string;
  try {
    key = decodeURIComponent(p.slice(slash + 1));
  } catch {
    return undefined;
  }
  return key === ".fansync/head.json" || key.endsWith("/.fansync/head.json") ? { bucket: p.slice(1, slash), key } : undefined;
}

/** The message S3 publishes for an object written (the fields a reader of S3's events looks at). */
function s3CreatedEvent(bucket: string, key: string): string {
  return JSON.stringify({
    Records: [{ eventVersion: "2.1", eventSource: "aws:s3", eventTime: new Date().toISOString(), eventName: "ObjectCreated:Put", s3: { bucket: { name: bucket, arn: `arn:aws:s3:::${bucket}` }, object: { key } } }],
  });
}

/** A web node's event queue as its status file last said. */
export interface NodeEvents {
  readonly node: string;
  /** Messages taken (hints that woke it); undefined when its status has no events. */
  readonly messages: number | undefined;
  readonly state: string | undefined;
}

/** The demo's closing lines on events: which nodes events woke, and that the relay stood in for S3. */
export function formatWoken(nodes: readonly NodeEvents[], relayed: number, interval: string): string[] {
  const woken = nodes.filter((n) => (n.messages ?? 0) > 0);
  return [
    `Events: ${woken.length} of ${nodes.length} web node processes woken by events (${woken.map((n) => n.node).join(", ") || "none"}); their poll interval is ${interval}, so every change from another writer reached them through a message`,
    ...nodes.map((n) => `  ${n.node}: ${n.messages ?? 0} message(s), queue ${n.state ?? "not used"}`),
    `  the relay published ${relayed} head write(s) to the buckets' SNS topics, standing in for S3's ObjectCreated notification (fauxqs's S3 sends none)`,
  ];
}
