/**
 * What runs after each generation, from the resolved config: CloudFront invalidations and the
 * `--on-publish` hook for writers, the `--on-apply` hook for nodes (docs/events.md). Both run on
 * their own queues; a one-shot command waits for them (`flush`) before it exits.
 */
import type { Config } from "../core/config.ts";
import { formatLocation } from "../core/location.ts";
import type { Logger } from "../adapters/logger.ts";
import type { StateDir } from "../adapters/state-dir.ts";
import { HookRunner } from "../engine/hooks.ts";
import type { GenerationDone } from "../engine/job-deps.ts";
import { awsEnv } from "./wiring.ts";

/** The observers of one job's generations. */
export interface AfterGeneration {
  notify(g: GenerationDone): void;
  /** Wait for every queued invalidation and hook. */
  flush(): Promise<void>;
}

/** The observers a job's config asks for, or undefined when it asks for none. */
export async function afterGenerationFor(cfg: Config, role: "publish" | "apply", state: StateDir, log: Logger, signal: AbortSignal): Promise<AfterGeneration | undefined> {
  const parts: AfterGeneration[] = [];
  const deps = { log: log.child({ component: role === "publish" ? "after-publish" : "after-apply" }), signal, now: () => new Date() };
  if (role === "publish" && cfg.cloudfrontDistribution.length > 0) {
    // Loaded only when asked for: a writer without a CDN never pays for the CloudFront client.
    const [{ createCloudFrontClient }, { CloudFrontApi }, { CdnInvalidator }] = await Promise.all([import("../adapters/aws-clients.ts"), import("../adapters/cloudfront.ts"), import("../engine/cdn-invalidator.ts")]);
    const api = new CloudFrontApi(createCloudFrontClient({ endpointUrl: cfg.endpointUrl, profile: cfg.profile, aws: awsEnv() }));
    parts.push(new CdnInvalidator(cfg.cloudfrontDistribution.map((d) => ({ id: d.id, location: d.location && formatLocation(d.location) })), api, deps));
  }
  const command = role === "publish" ? cfg.onPublish : cfg.onApply;
  const name = role === "publish" ? "on-publish" : "on-apply";
  if (command) parts.push(new HookRunner({ name, command, timeoutMs: cfg.hookTimeout, recordFile: state.hookRecord(name), env: process.env }, deps));
  if (parts.length === 0) return undefined;
  return {
    notify: (g) => parts.forEach((p) => p.notify(g)),
    flush: async () => void (await Promise.all(parts.map((p) => p.flush()))),
  };
}
