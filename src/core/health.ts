/**
 * A daemon's own state as its status page, /healthz and /metrics show it, and the pure rule that
 * turns it into a health verdict for a load balancer.
 */

/** What the daemon knows about its own job. */
export interface SelfState {
  readonly role: "push" | "pull" | "replicate" | "sync";
  /** STARTING until the first run ends. */
  readonly status: "STARTING" | "OK" | "STALE" | "ERROR";
  readonly generation: number;
  readonly headGeneration: number;
  readonly lagSeconds: number;
  readonly lastSuccess: string | null;
  readonly lastAttempt: string | null;
  readonly lastError: string | null;
  /** A polling job runs at least this often; a longer silence means it is stuck. */
  readonly expectEveryMs?: number | undefined;
  /** Free text shown on the page: docroot, source, regions. */
  readonly detail: string;
}

/** The /healthz answer. */
export interface HealthVerdict {
  readonly ok: boolean;
  readonly text: string;
}

/**
 * Healthy when the last run succeeded, the job is less than `maxLagMs` behind its source, and a
 * polling job has run recently (a hung poll loop must not keep answering 200).
 */
export function judgeHealth(s: SelfState, nowMs: number, maxLagMs: number): HealthVerdict {
  if (s.status === "STARTING" || s.lastAttempt === null) return { ok: false, text: "STARTING no run has finished yet" };
  if (s.lastError !== null) return { ok: false, text: `ERROR generation ${s.generation}: ${s.lastError}` };
  if (s.lagSeconds * 1000 > maxLagMs) return { ok: false, text: `LAGGING generation ${s.generation} of ${s.headGeneration}, ${Math.round(s.lagSeconds)}s behind (limit ${Math.round(maxLagMs / 1000)}s)` };
  if (s.expectEveryMs !== undefined) {
    const silent = nowMs - Date.parse(s.lastAttempt);
    const limit = Math.max(maxLagMs, 10 * s.expectEveryMs);
    if (silent > limit) return { ok: false, text: `STUCK no run for ${Math.round(silent / 1000)}s (limit ${Math.round(limit / 1000)}s)` };
  }
  return { ok: true, text: `OK generation ${s.generation}` };
}
