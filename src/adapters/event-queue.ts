/**
 * The node's event queue (SQS): long-polled for hints that the head changed. Nothing in a message
 * is trusted or even parsed here: a message only says "look at the head now".
 */
import { DeleteMessageBatchCommand, ReceiveMessageCommand, type SQSClient } from "@aws-sdk/client-sqs";
import { refreshQueueExpiry } from "./event-plumbing.ts";

/** One message taken from the queue. */
export interface QueueMessage {
  /** What deleting it needs. */
  readonly handle: string;
  /** The body, only for a debug line (never trusted). */
  readonly body: string;
}

/** What the event listener needs of a queue (an in-memory twin in the unit tests). */
export interface EventQueue {
  readonly url: string;
  /** Wait up to the long-poll time for messages; an empty list when none came. */
  receive(signal: AbortSignal): Promise<readonly QueueMessage[]>;
  /** Delete messages taken (a message not deleted comes back after its visibility timeout: one more hint). */
  remove(handles: readonly string[], signal: AbortSignal): Promise<void>;
  /**
   * Push a self-registered queue's expiry forward (docs/events.md); returns the new expiry, or
   * undefined when the queue has none (the CDK stack's queues).
   */
  refreshExpiry?(now: Date, signal: AbortSignal): Promise<string | undefined>;
}

// SQS's longest long poll: an idle node makes about 180 requests an hour.
const WAIT_SECONDS = 20;

/** An {@link EventQueue} on SQS. */
export class SqsEventQueue implements EventQueue {
  readonly url: string;
  private readonly client: SQSClient;

  constructor(client: SQSClient, url: string) {
    this.client = client;
    this.url = url;
  }

  async receive(signal: AbortSignal): Promise<readonly QueueMessage[]> {
    const out = await this.client.send(new ReceiveMessageCommand({ QueueUrl: this.url, MaxNumberOfMessages: 10, WaitTimeSeconds: WAIT_SECONDS, VisibilityTimeout: 30 }), { abortSignal: signal });
    return (out.Messages ?? []).filter((m) => m.ReceiptHandle).map((m) => ({ handle: m.ReceiptHandle as string, body: (m.Body ?? "").slice(0, 500) }));
  }

  async refreshExpiry(now: Date, signal: AbortSignal): Promise<string | undefined> {
    return refreshQueueExpiry(this.client, this.url, now, signal);
  }

  async remove(handles: readonly string[], signal: AbortSignal): Promise<void> {
    if (handles.length === 0) return;
    await this.client.send(new DeleteMessageBatchCommand({ QueueUrl: this.url, Entries: handles.slice(0, 10).map((h, i) => ({ Id: String(i), ReceiptHandle: h })) }), { abortSignal: signal });
  }
}
