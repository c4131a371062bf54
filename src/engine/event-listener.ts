/**
 * Events, not polling (issue 24): a node long-polls its own queue, which the bucket's notification
 * for the head key feeds (S3 → SNS → SQS, or S3 → SQS). A message is a hint and nothing more: the
 * listener deletes it and wakes the daemon, which reads and verifies the head as on any poll. So:
 * - a lost message costs latency (the poll interval stays as the safety net);
 * - a garbled, duplicated or forged message costs at most one run (the wake-up coalesces);
 * - a queue that cannot be read (deleted, no permission, endpoint down) is reported (log, status,
 *   metrics) and the daemon polls at its fallback interval until the queue answers again.
 */
import { errorMessage } from "../core/errors.ts";
import type { EventQueue } from "../adapters/event-queue.ts";
import { errName } from "../adapters/s3-errors.ts";
import type { JobDeps } from "./job-deps.ts";
import { sleep } from "./sleep.ts";
import { errorFields } from "../adapters/logger.ts";

/** What the status file, the status page and `fansync status` say about the event queue. */
export interface EventHealth {
  readonly queue: string;
  /** "listening": the queue answers; "failing": it does not, the daemon is polling. */
  readonly state: "listening" | "failing";
  /** Messages taken since the start. */
  readonly messages: number;
  readonly lastMessage: string | null;
  readonly lastError: string | null;
  /** When the current state began. */
  readonly since: string;
}

// A queue that fails is asked again after this long, doubling up to the cap.
const RETRY_MIN_MS = 1000;
const RETRY_MAX_MS = 60_000;
// A self-registered queue's expiry is pushed forward at start and then this often (two requests an
// hour; with `events register --expire-after` of 2 h or more, a running node's queue never expires).
const REFRESH_EXPIRY_MS = 3_600_000;

/** Long-polls one queue and turns each batch of messages into one `onHint()`. */
export class EventListener {
  private readonly queue: EventQueue;
  private readonly onHint: () => void;
  private readonly d: JobDeps;
  private h: EventHealth;
  private readonly retryMinMs: number;
  /** When the queue's expiry is next pushed forward (0: at the first chance). */
  private nextRefresh = 0;
  private refreshWarned = false;

  constructor(queue: EventQueue, onHint: () => void, deps: JobDeps, retryMinMs = RETRY_MIN_MS) {
    this.queue = queue;
    this.retryMinMs = retryMinMs;
    this.onHint = onHint;
    this.d = deps;
    this.h = { queue: queue.url, state: "listening", messages: 0, lastMessage: null, lastError: null, since: deps.now().toISOString() };
  }

  /** The queue's state now. */
  get health(): EventHealth {
    return this.h;
  }

  /** Whether the daemon should poll at its fallback interval (the queue does not answer). */
  get failing(): boolean {
    return this.h.state === "failing";
  }

  /**
   * Keep a self-registered queue alive (its expiry tag), hourly. A failure is a warning, said once:
   * the queue still works; only `fansync events prune` would delete it once the expiry passed.
   */
  private async refreshExpiry(stop: AbortSignal): Promise<void> {
    const now = this.d.now();
    if (!this.queue.refreshExpiry || now.getTime() < this.nextRefresh) return;
    this.nextRefresh = now.getTime() + REFRESH_EXPIRY_MS;
    try {
      const expires = await this.queue.refreshExpiry(now, stop);
      if (expires) this.d.log.debug({ queue: this.queue.url, expires }, "event queue's expiry pushed forward");
    } catch (err) {
      if (stop.aborted || this.refreshWarned) return;
      this.refreshWarned = true;
      this.d.log.warn({ queue: this.queue.url, ...errorFields(err) }, "cannot refresh the event queue's expiry (sqs:ListQueueTags, sqs:TagQueue): `fansync events prune` may delete it once it expires");
    }
  }

  /** Listen until `stop` aborts; never throws. */
  async run(stop: AbortSignal): Promise<void> {
    const { log } = this.d;
    let retryMs = this.retryMinMs;
    while (!stop.aborted) {
      try {
        await this.refreshExpiry(stop);
        const msgs = await this.queue.receive(stop);
        if (this.failing) {
          log.info({ queue: this.queue.url }, "event queue readable again: events on");
          this.h = { ...this.h, state: "listening", lastError: null, since: this.d.now().toISOString() };
          // Events may have been missed while it failed: look at the head once.
          this.onHint();
        }
        retryMs = this.retryMinMs;
        if (msgs.length === 0) continue;
        this.h = { ...this.h, messages: this.h.messages + msgs.length, lastMessage: this.d.now().toISOString() };
        log.debug({ queue: this.queue.url, messages: msgs.length, body: msgs[0]?.body.slice(0, 200) }, "event");
        this.onHint();
        // Deleted after the hint: a failed delete only brings the message back once more (one more hint).
        await this.queue.remove(msgs.map((m) => m.handle), stop).catch((err: unknown) => log.warn({ queue: this.queue.url, ...errorFields(err) }, "could not delete event messages (they come back as one more hint)"));
      } catch (err) {
        if (stop.aborted) break;
        const reason = `${errName(err)}: ${errorMessage(err)}`.slice(0, 300);
        if (!this.failing) {
          log.error({ queue: this.queue.url, ...errorFields(err) }, "cannot read the event queue: polling the head instead until it answers");
          this.h = { ...this.h, state: "failing", since: this.d.now().toISOString() };
          // The daemon may be napping for the long interval: wake it, so it looks at the head now
          // (an event may be lost already) and naps for the fallback interval from then on.
          this.onHint();
        }
        this.h = { ...this.h, lastError: reason };
        await sleep(retryMs, stop);
        retryMs = Math.min(RETRY_MAX_MS, retryMs * 2);
      }
    }
  }
}
