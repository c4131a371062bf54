/**
 * A daemon's window for operators (`--http`): it keeps the job's own state, reads the fleet now and
 * then, samples everyone's lag for the chart, and serves the page, /metrics, /healthz (what a load
 * balancer routes by: the node serves a complete generation), /readyz (in step with the source)
 * and /status.json. The job only calls {@link Monitor.record} after each run and passes
 * {@link Monitor.events} to its transfers.
 */
import os from "node:os";
import { errorMessage, errorLine } from "../core/errors.ts";
import { type HealthVerdict, judgeHealth, judgeSource, type SelfState } from "../core/health.ts";
import type { Location } from "../core/location.ts";
import { type LagSample, renderStatusPage } from "../core/status-page.ts";
import { Metrics } from "../adapters/metrics.ts";
import type { RequestObservers } from "../adapters/s3-client.ts";
import { type HttpAnswer, startHttpServer, type HttpServer } from "../adapters/http-server.ts";
import type { ObjectStore } from "../adapters/object-store.ts";
import { BUILD_INFO, FANSYNC_VERSION } from "../adapters/version.ts";
import { type FleetStatus, readFleet } from "./fleet.ts";
import type { TransferEvents } from "../core/transfer-events.ts";
import type { JobDeps } from "./job-deps.ts";
import { errorFields } from "../adapters/logger.ts";

/** How the monitor is set up. */
export interface MonitorOptions {
  readonly role: SelfState["role"];
  readonly detail: string;
  readonly listen: { readonly host: string; readonly port: number };
  /** Locations whose heads and node reports the page shows (first: the reference). */
  readonly fleet: readonly { readonly loc: Location; readonly store: ObjectStore }[];
  readonly silentAfterMs: number;
  readonly healthMaxLagMs: number;
  readonly expectEveryMs?: number | undefined;
  /** A job that serves a docroot (pull, sync): the generation complete in it now (0: none). */
  readonly serving?: (() => Promise<number>) | undefined;
  /** How often the fleet is read for the chart (default 30 s). */
  readonly sampleEveryMs?: number;
  /** The run's request observers: /metrics counts the S3 requests of every store of the run. */
  readonly requests?: RequestObservers | undefined;
}

const WINDOW_MS = 3_600_000;
// A page view re-reads the fleet when the last read is older than this.
const FRESH_MS = 5_000;

/** The end of one run, as a job tells it. */
type RunRecord = { ok: boolean; status?: SelfState["status"]; generation: number; headGeneration: number; lagSeconds: number; error?: unknown; unapplied?: number };

/** The operator's window of one daemon. */
export class Monitor {
  readonly metrics: Metrics;
  private self: SelfState;
  private fleet: FleetStatus | undefined;
  private fleetAt: number | null = null;
  private fleetError: string | null = null;
  private reading: Promise<void> | undefined;
  private readonly history: LagSample[] = [];
  private server: HttpServer | undefined;
  private timer: NodeJS.Timeout | undefined;

  private readonly o: MonitorOptions;
  private readonly d: JobDeps;

  constructor(o: MonitorOptions, d: JobDeps) {
    this.o = o;
    this.d = d;
    this.metrics = new Metrics(BUILD_INFO, o.requests);
    this.self = { role: o.role, status: "STARTING", generation: 0, headGeneration: 0, lagSeconds: 0, lastSuccess: null, lastAttempt: null, lastError: null, expectEveryMs: o.expectEveryMs, detail: o.detail };
  }

  /** The transfer observer feeding /metrics. */
  events(): TransferEvents {
    return this.metrics.events();
  }

  /** The event queue's state, for /metrics. */
  recordEvents(h: Parameters<Metrics["recordEvents"]>[0]): void {
    this.metrics.recordEvents(h);
  }

  /** Record the end of a run (a pull, an upload batch, a replication round). */
  record(r: RunRecord): Promise<void> {
    this.apply(r);
    return this.readServing();
  }

  private apply(r: RunRecord): void {
    const at = this.d.now();
    const iso = at.toISOString();
    const lastError = r.ok ? null : errorLine(r.error);
    this.self = {
      ...this.self,
      status: r.status ?? (r.ok ? "OK" : "ERROR"),
      generation: r.generation,
      headGeneration: r.headGeneration,
      lagSeconds: r.lagSeconds,
      lastAttempt: iso,
      lastSuccess: r.ok ? iso : this.self.lastSuccess,
      lastError,
    };
    this.metrics.recordRun(this.o.role, { ok: r.ok, generation: r.generation, headGeneration: r.headGeneration, lagSeconds: r.lagSeconds, errorClass: (r.error as Error | undefined)?.name, unapplied: r.unapplied, at });
  }

  /** What the docroot holds, read from the job's state after each run (and at the start). */
  private async readServing(): Promise<void> {
    if (!this.o.serving) return;
    try {
      this.self = { ...this.self, serving: await this.o.serving() };
    } catch (err) {
      this.d.log.warn(errorFields(err), "could not read which generation the docroot holds");
    }
  }

  /** Start serving; resolves with the URL once listening (a port in use is a clear error). */
  async start(): Promise<string> {
    // A node restarted while its source is down still serves what its docroot holds.
    await this.readServing();
    this.server = await startHttpServer(this.o.listen, {
      "/": async () => ({ status: 200, type: "text/html; charset=utf-8", body: renderStatusPage(await this.model()) }),
      "/status.json": async () => {
        const m = await this.model();
        return { status: 200, type: "application/json", body: JSON.stringify({ self: m.self, health: m.health, readiness: m.readiness, locations: m.locations, fleet: m.fleet, fleetAt: m.fleetAt, fleetError: m.fleetError, history: m.history }) + "\n" };
      },
      "/healthz": async () => answer(judgeHealth(this.self, this.d.now().getTime(), this.o.healthMaxLagMs)),
      "/readyz": async () => answer(judgeSource(this.self, this.d.now().getTime(), this.o.healthMaxLagMs)),
      "/metrics": async () => {
        const t = await this.metrics.text();
        return { status: 200, type: t.contentType, body: t.body };
      },
    });
    const url = this.server.url;
    this.d.log.info({ url, role: this.o.role }, "status page listening");
    if (this.o.fleet.length > 0) {
      void this.readFleet();
      this.timer = setInterval(() => void this.readFleet(), this.o.sampleEveryMs ?? 30_000);
      this.timer.unref();
    }
    return url;
  }

  /** Stop serving. */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.server?.close();
    this.metrics.close();
  }

  private async model() {
    if (this.o.fleet.length > 0 && (this.fleetAt === null || this.d.now().getTime() - this.fleetAt > FRESH_MS)) {
      // Bounded: a slow bucket must not hang the page; it shows what it has.
      await Promise.race([this.readFleet(), new Promise((r) => setTimeout(r, 3000).unref())]);
    }
    const now = this.d.now().getTime();
    const self = { ...this.self };
    return {
      host: os.hostname(),
      version: FANSYNC_VERSION,
      now,
      self,
      health: judgeHealth(self, now, this.o.healthMaxLagMs),
      readiness: judgeSource(self, now, this.o.healthMaxLagMs),
      locations: this.fleet?.locations ?? [],
      fleet: this.fleet?.fleet,
      fleetAt: this.fleetAt,
      fleetError: this.fleetError,
      history: [...this.history],
      windowMs: WINDOW_MS,
      refreshSeconds: 15,
    };
  }

  /** Read heads and reports once (concurrent callers share the read) and add a chart sample. */
  private readFleet(): Promise<void> {
    this.reading ??= (async () => {
      try {
        const now = this.d.now;
        this.fleet = await readFleet(this.o.fleet, { now, silentAfterMs: this.o.silentAfterMs, signal: this.d.signal, previous: this.fleet });
        this.fleetError = null;
        const t = now().getTime();
        this.fleetAt = t;
        const lags: Record<string, number> = {};
        for (const n of this.fleet.fleet.nodes) lags[n.node] = n.lagSeconds;
        if (Object.keys(lags).length === 0 && this.self.lastAttempt) lags[`this ${this.o.role}`] = this.self.lagSeconds;
        this.history.push({ t, lags });
        while ((this.history[0]?.t ?? t) < t - WINDOW_MS) this.history.shift();
      } catch (err) {
        this.fleetError = errorMessage(err);
        this.d.log.debug(errorFields(err), "could not read the fleet");
      } finally {
        this.reading = undefined;
      }
    })();
    return this.reading;
  }
}

function answer(v: HealthVerdict): HttpAnswer {
  return { status: v.ok ? 200 : 503, type: "text/plain; charset=utf-8", body: v.text + "\n" };
}
