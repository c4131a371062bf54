/**
 * A daemon's own state as its status page, /healthz, /readyz and /metrics show it, and the pure
 * rules that turn it into a verdict for a load balancer (/healthz) and for alerting (/readyz).
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
  /** The generation complete in the docroot (0: none yet); undefined for a job without a docroot (push, replicate). */
  readonly serving?: number | undefined;
  /** Free text shown on the page: docroot, source, regions. */
  readonly detail: string;
}

/** The answer of /healthz or /readyz: 200 when `ok`; `text` is the body, its first word `word`. */
export interface HealthVerdict {
  readonly ok: boolean;
  readonly word: "OK" | "STALE" | "DEGRADED" | "EMPTY" | "STARTING" | "ERROR" | "LAGGING" | "STUCK";
  readonly text: string;
}

function verdict(ok: boolean, word: HealthVerdict["word"], rest: string): HealthVerdict {
  return { ok, word, text: `${word} ${rest}` };
}

/**
 * /readyz: the job is in step with its source. Ready when the last run succeeded, the job is less
 * than `maxLagMs` behind its source, and a polling job has run recently (a hung poll loop must not
 * keep answering 200). For alerting, not for routing traffic to a web node: see {@link judgeHealth}.
 */
export function judgeSource(s: SelfState, nowMs: number, maxLagMs: number): HealthVerdict {
  if (s.status === "STARTING" || s.lastAttempt === null) return verdict(false, "STARTING", "no run has finished yet");
  if (s.lastError !== null) return verdict(false, "ERROR", `generation ${s.generation}: ${s.lastError}`);
  if (s.lagSeconds * 1000 > maxLagMs) return verdict(false, "LAGGING", `generation ${s.generation} of ${s.headGeneration}, ${Math.round(s.lagSeconds)}s behind (limit ${Math.round(maxLagMs / 1000)}s)`);
  if (s.expectEveryMs !== undefined) {
    const silent = nowMs - Date.parse(s.lastAttempt);
    const limit = Math.max(maxLagMs, 10 * s.expectEveryMs);
    if (silent > limit) return verdict(false, "STUCK", `no run for ${Math.round(silent / 1000)}s (limit ${Math.round(limit / 1000)}s)`);
  }
  return verdict(true, "OK", `generation ${s.generation}`);
}

/**
 * /healthz, the check a load balancer routes by. A node that serves a docroot (pull, sync) is
 * healthy while the docroot holds a complete generation, whatever its source does: an S3 blip
 * must not drain a whole fleet at once (issue 23). The body says OK, STALE (more than `maxLagMs`
 * behind) or DEGRADED (the source failed, or no run lately) and why; only a docroot with no
 * complete generation answers 503 (EMPTY). A job without a docroot (push, replicate) answers
 * what its source rule says.
 */
export function judgeHealth(s: SelfState, nowMs: number, maxLagMs: number): HealthVerdict {
  const src = judgeSource(s, nowMs, maxLagMs);
  if (s.serving === undefined) return src;
  const g = `generation ${s.serving}`;
  if (s.serving <= 0) return verdict(false, "EMPTY", `no complete generation in the docroot yet; ${src.text}`);
  switch (src.word) {
    case "OK":
      return verdict(true, "OK", g);
    case "LAGGING":
      return verdict(true, "STALE", `${g}: ${src.text.slice(src.word.length + 1)}`);
    case "ERROR":
      return verdict(true, "DEGRADED", `${g}: the last run failed: ${s.lastError ?? ""}`);
    default:
      return verdict(true, "DEGRADED", `${g}: ${src.text.slice(src.word.length + 1)}`);
  }
}
