/**
 * CDN invalidation after each generation (issue 24): one CloudFront invalidation per generation
 * and distribution, for exactly the paths it changed and deleted (or the wildcard rule of
 * core/invalidation-plan.ts). It runs on its own queue: a generation never waits for the CDN, a
 * backlog (the CDN slower than the writer) is merged into one invalidation, a failure is retried
 * with backoff, and CloudFront's in-progress limits are respected by counting this process's own
 * invalidations still in progress.
 */
import { createHash } from "node:crypto";
import { CLOUDFRONT_MAX_PATHS_IN_PROGRESS, CLOUDFRONT_MAX_WILDCARDS_IN_PROGRESS, DEFAULT_COLLAPSE_ABOVE, planInvalidation } from "../core/invalidation-plan.ts";
import type { CdnApi } from "../adapters/cloudfront.ts";
import { errName, httpStatus } from "../adapters/s3-errors.ts";
import type { GenerationDone, JobDeps } from "./job-deps.ts";
import { sleep } from "./sleep.ts";
import { errorFields } from "../adapters/logger.ts";

/** One distribution, for every location (undefined) or one location's generations (its s3:// URL). */
export interface Distribution {
  readonly id: string;
  readonly location: string | undefined;
}

// Tries of one invalidation, and the pauses between them (doubling).
const TRIES = 6;
const FIRST_PAUSE_MS = 1000;
const MAX_PAUSE_MS = 60_000;
// Errors that another try cannot fix: a wrong id, no permission, a batch CloudFront refuses.
const FINAL = new Set(["NoSuchDistribution", "AccessDenied", "InvalidArgument", "MissingBody", "InconsistentQuantities", "InvalidationBatchAlreadyExists"]);

interface InFlight {
  readonly id: string;
  readonly paths: number;
  readonly wildcards: number;
}

/** Per distribution: what waits, what is in progress, and the worker. */
interface Lane {
  readonly d: Distribution;
  pending: GenerationDone[];
  inFlight: InFlight[];
  running: Promise<void> | undefined;
}

/** Queues and sends invalidations; `notify` after each generation, `flush` before a one-shot command exits. */
export class CdnInvalidator {
  private readonly lanes: Lane[];
  private readonly api: CdnApi;
  private readonly d: JobDeps;
  private readonly collapseAbove: number;
  private readonly firstPauseMs: number;

  constructor(distributions: readonly Distribution[], api: CdnApi, deps: JobDeps, tuning: { collapseAbove?: number; firstPauseMs?: number } = {}) {
    this.lanes = distributions.map((d) => ({ d, pending: [], inFlight: [], running: undefined }));
    this.api = api;
    this.d = deps;
    this.collapseAbove = tuning.collapseAbove ?? DEFAULT_COLLAPSE_ABOVE;
    this.firstPauseMs = tuning.firstPauseMs ?? FIRST_PAUSE_MS;
  }

  /** A generation was published: invalidate its paths in every distribution that serves its location. */
  notify(g: GenerationDone): void {
    if (g.changed.length === 0 && g.deleted.length === 0) return;
    for (const lane of this.lanes) {
      if (lane.d.location !== undefined && lane.d.location !== g.location) continue;
      lane.pending.push(g);
      lane.running ??= this.drain(lane).finally(() => (lane.running = undefined));
    }
  }

  /** Wait until every queued invalidation was sent (or given up). */
  async flush(): Promise<void> {
    while (this.lanes.some((l) => l.running)) await Promise.all(this.lanes.map((l) => l.running));
  }

  private async drain(lane: Lane): Promise<void> {
    while (lane.pending.length > 0 && !this.d.signal.aborted) {
      // A backlog goes out as one invalidation (the union of its paths).
      const batch = lane.pending.splice(0);
      await this.send(lane, batch);
    }
  }

  private async send(lane: Lane, batch: readonly GenerationDone[]): Promise<void> {
    const { log, signal } = this.d;
    const dist = lane.d.id;
    const last = batch[batch.length - 1] as GenerationDone;
    const generations = batch.map((g) => g.generation);
    const reference = `fansync-${createHash("sha256").update(last.location).digest("hex").slice(0, 12)}-${generations.join("+").slice(0, 80)}`;
    let pause = this.firstPauseMs;
    for (let attempt = 1; attempt <= TRIES && !signal.aborted; attempt++) {
      try {
        await this.refresh(lane);
        const used = lane.inFlight.reduce((a, f) => ({ paths: a.paths + f.paths, wildcards: a.wildcards + f.wildcards }), { paths: 0, wildcards: 0 });
        const plan = planInvalidation(batch.flatMap((g) => g.changed), batch.flatMap((g) => g.deleted), {
          collapseAbove: this.collapseAbove,
          pathBudget: CLOUDFRONT_MAX_PATHS_IN_PROGRESS - used.paths,
          wildcardBudget: CLOUDFRONT_MAX_WILDCARDS_IN_PROGRESS - used.wildcards,
        });
        if (plan.kind === "none") return;
        if (plan.kind === "wait") throw Object.assign(new Error(plan.reason), { name: "TooManyInvalidationsInProgress" });
        const started = Date.now();
        const id = await this.api.create(dist, plan.paths, reference, signal);
        lane.inFlight.push({ id, paths: plan.paths.length, wildcards: plan.wildcards });
        log.info({ distribution: dist, invalidation: id, generation: last.generation, generations: generations.length > 1 ? generations : undefined, paths: plan.paths.length, wildcards: plan.wildcards, first: plan.paths.slice(0, 5), durationMs: Date.now() - started }, "CDN invalidation created");
        return;
      } catch (err) {
        if (signal.aborted) return;
        const name = errName(err);
        const final = FINAL.has(name) || (httpStatus(err) === 403);
        if (final || attempt === TRIES) {
          log.error({ distribution: dist, generation: last.generation, ...errorFields(err), tries: attempt }, `CDN invalidation failed: the CDN may serve the old files of generation ${last.generation} until they expire (invalidate by hand: aws cloudfront create-invalidation --distribution-id ${dist} --paths '/*')`);
          return;
        }
        log.warn({ distribution: dist, generation: last.generation, ...errorFields(err), retryInMs: pause }, "CDN invalidation failed; retrying");
        await sleep(pause, signal);
        pause = Math.min(MAX_PAUSE_MS, pause * 2);
      }
    }
  }

  /** Forget this process's invalidations that finished (the rest count against CloudFront's limits). */
  private async refresh(lane: Lane): Promise<void> {
    const still: InFlight[] = [];
    for (const f of lane.inFlight) {
      const going = await this.api.inProgress(lane.d.id, f.id, this.d.signal).catch(() => true);
      if (going) still.push(f);
    }
    lane.inFlight = still;
  }
}
