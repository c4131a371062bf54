/**
 * Prometheus metrics of a daemon (prom-client, its own registry): what was transferred, what failed
 * and why, where the job stands, and how many requests it sent. Fed by {@link TransferEvents}, by
 * the S3 client's request observer, and by the daemon after each run.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { Role, TransferEvents } from "../core/transfer-events.ts";
import type { RequestObservers } from "./s3-client.ts";
import type { BuildInfo } from "./version.ts";

/** A daemon's metrics; one per process. */
export class Metrics {
  readonly registry = new Registry();
  private readonly files: Counter<"role" | "op">;
  private readonly bytes: Counter<"role">;
  private readonly errors: Counter<"role" | "class">;
  private readonly runs: Counter<"role" | "result">;
  private readonly generation: Gauge<"role">;
  private readonly headGeneration: Gauge<"role">;
  private readonly lag: Gauge<"role">;
  private readonly lastSuccess: Gauge<"role">;
  private readonly batch: Histogram<"role">;
  private readonly requests: Counter<"command">;
  private readonly kept: Counter<"reason">;
  private readonly conflicts: Counter;
  private readonly eventsListening: Gauge;
  private readonly eventMessages: Counter;
  private eventsSeen = 0;
  private readonly skipped: Gauge<"role">;
  private readonly unapplied: Gauge<"role">;
  private readonly detach: () => void;

  /** `requests`: the run's request observers (every store of the run tells them); none: requests are not counted. */
  constructor(build: BuildInfo, requests?: RequestObservers) {
    const r = [this.registry];
    this.files = new Counter({ name: "fansync_files_transferred_total", help: "Files transferred (op: upload, copy, download, skip)", labelNames: ["role", "op"], registers: r });
    this.bytes = new Counter({ name: "fansync_bytes_transferred_total", help: "Bytes of file content transferred", labelNames: ["role"], registers: r });
    this.errors = new Counter({ name: "fansync_errors_total", help: "Failures by error class (per file, or per run when a run fails as a whole)", labelNames: ["role", "class"], registers: r });
    this.runs = new Counter({ name: "fansync_runs_total", help: "Runs (pull, push batch, replication round) by result", labelNames: ["role", "result"], registers: r });
    this.generation = new Gauge({ name: "fansync_generation", help: "Generation this job has (pull: in the docroot; push: published; replicate: oldest region)", labelNames: ["role"], registers: r });
    this.headGeneration = new Gauge({ name: "fansync_head_generation", help: "Newest generation this job has seen at its source", labelNames: ["role"], registers: r });
    this.lag = new Gauge({ name: "fansync_lag_seconds", help: "How long this job has been behind its source (0 when in step)", labelNames: ["role"], registers: r });
    this.lastSuccess = new Gauge({ name: "fansync_last_success_timestamp_seconds", help: "Unix time of the last successful run", labelNames: ["role"], registers: r });
    this.batch = new Histogram({ name: "fansync_batch_files", help: "Files transferred per batch", labelNames: ["role"], buckets: [1, 10, 100, 1000, 10_000, 100_000], registers: r });
    this.requests = new Counter({ name: "fansync_s3_requests_total", help: "S3 requests sent, retries included, by command", labelNames: ["command"], registers: r });
    this.kept = new Counter({ name: "fansync_sync_kept_versions_total", help: "Versions a two-way node kept outside the docroot (reason: conflict, not-owned, older-than-base)", labelNames: ["reason"], registers: r });
    this.conflicts = new Counter({ name: "fansync_sync_conflicts_total", help: "Paths a two-way node found changed both here and in the bucket", registers: r });
    this.eventsListening = new Gauge({ name: "fansync_events_listening", help: "With --events: 1 while the event queue answers, 0 while it fails and the daemon polls instead", registers: r });
    this.eventMessages = new Counter({ name: "fansync_events_messages_total", help: "With --events: messages taken from the event queue", registers: r });
    this.skipped = new Gauge({ name: "fansync_skipped_paths", help: "Paths the last scan could not carry and skipped (names that cannot be keys, unreadable files)", labelNames: ["role"], registers: r });
    this.unapplied = new Gauge({ name: "fansync_paths_not_replaced", help: "Paths of the current generation this node could not replace or delete (an immutable file); the rest is applied", labelNames: ["role"], registers: r });
    new Gauge({ name: "fansync_build_info", help: "This fansync build: version, git commit, Node.js version", labelNames: ["version", "commit", "nodeVersion"], registers: r })
      .set({ version: build.version, commit: build.commit, nodeVersion: process.version }, 1);
    // Unprefixed: the standard process_* and nodejs_* names every Node.js dashboard expects.
    collectDefaultMetrics({ register: this.registry });
    const count = (command: string) => this.requests.inc({ command: command.replace(/Command$/, "") });
    this.detach = requests?.add(count) ?? (() => {});
  }

  /** The observer the uploader and puller call per file. */
  events(): TransferEvents {
    let n = 0;
    return {
      start: () => void (n = 0),
      file: ({ role, op, bytes }) => {
        n++;
        this.files.inc({ role, op });
        if (bytes > 0) this.bytes.inc({ role }, bytes);
      },
      failed: ({ role, errorClass }) => this.errors.inc({ role, class: errorClass }),
      end: ({ role }) => this.batch.observe({ role }, n),
    };
  }

  /** Record a finished run. */
  recordRun(role: Role, r: { ok: boolean; generation: number; headGeneration: number; lagSeconds: number; errorClass?: string | undefined; unapplied?: number | undefined; at: Date }): void {
    this.runs.inc({ role, result: r.ok ? "ok" : "error" });
    this.unapplied.set({ role }, r.unapplied ?? 0);
    this.generation.set({ role }, r.generation);
    this.headGeneration.set({ role }, r.headGeneration);
    this.lag.set({ role }, r.lagSeconds);
    if (r.ok) this.lastSuccess.set({ role }, Math.floor(r.at.getTime() / 1000));
    else this.errors.inc({ role, class: r.errorClass ?? "Error" });
  }

  /** The event queue's state (engine/event-listener.ts). */
  recordEvents(h: { readonly state: "listening" | "failing"; readonly messages: number }): void {
    this.eventsListening.set(h.state === "listening" ? 1 : 0);
    if (h.messages > this.eventsSeen) this.eventMessages.inc(h.messages - this.eventsSeen);
    this.eventsSeen = h.messages;
  }

  /** A two-way node kept a losing version. */
  recordKept(reason: string): void {
    this.kept.inc({ reason });
  }

  /** A two-way node settled `n` conflicts. */
  recordConflicts(n: number): void {
    this.conflicts.inc(n);
  }

  /** How many paths the last scan skipped. */
  recordSkipped(role: Role, n: number): void {
    this.skipped.set({ role }, n);
  }

  /** Prometheus text exposition. */
  async text(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }

  /** Stop counting requests (tests create several). */
  close(): void {
    this.detach();
  }
}
