/**
 * Wiring shared by the commands: from a resolved {@link Config} to the adapters a job is given (S3
 * stores, state directories). The engines in src/engine never see a Config.
 */
import os from "node:os";
import path from "node:path";
import type { Config } from "../core/config.ts";
import { settingsFor } from "../core/config.ts";
import { UsageError } from "../core/errors.ts";
import type { Location } from "../core/location.ts";
import { parseDuration } from "../core/units.ts";
import { createS3Client, RequestObservers, s3EndpointOf } from "../adapters/s3-client.ts";
import { type AwsEnv, parseAwsEnv } from "../adapters/aws-env.ts";
import { LeanHttp } from "../adapters/lean-http.ts";
import { S3Store } from "../adapters/s3-store.ts";
import { type JobRole, jobStateDir, locationStateDir, type StateDir } from "../adapters/state-dir.ts";
import { readSigningKey, readTrustedKeys } from "../adapters/keys.ts";
import { formatLocation } from "../core/location.ts";
import { checkSite, type SigningKey, trustedKeyOf, type TrustPolicy } from "../core/signing.ts";
import type { EventQueue } from "../adapters/event-queue.ts";
import { DEFAULT_LEASE_TTL_MS, MIN_LEASE_TTL_MS } from "../engine/lease.ts";
import { DEFAULT_DRAIN_DEADLINE_MS } from "../engine/drain.ts";

/**
 * FANSYNC_REQUEST_TIMEOUT (a duration: "5s", "500ms") lowers the per-request socket timeout from
 * its 60 s default, for links where a stalled connection must fail over quickly (and for the stall
 * tests). An environment setting, not a flag: it tunes the transport, not what a run does.
 */
function requestTimeoutFromEnv(): number | undefined {
  const raw = process.env.FANSYNC_REQUEST_TIMEOUT;
  if (raw === undefined || raw === "") return undefined;
  const ms = parseDuration(raw);
  if (ms === undefined || ms < 100) throw new UsageError(`FANSYNC_REQUEST_TIMEOUT=${JSON.stringify(raw)} is not a duration of at least 100ms`, { hint: "write it as 5s or 500ms, or unset it" });
  return ms;
}

/**
 * FANSYNC_DATA_PATH=sdk sends content objects through the SDK client too (the escape hatch from
 * the lean data path, adapters/lean-http.ts); unset or "lean": the lean path.
 */
function leanDataPath(): boolean {
  const raw = process.env.FANSYNC_DATA_PATH;
  if (raw === undefined || raw === "" || raw === "lean") return true;
  if (raw === "sdk") return false;
  throw new UsageError(`FANSYNC_DATA_PATH=${JSON.stringify(raw)} is not "lean" or "sdk"`, { hint: "unset it, or set it to sdk to send content objects through the AWS SDK" });
}

/**
 * FANSYNC_LEASE_TTL (a duration, at least 1s) shortens the writers' 60 s write lease, for tests of
 * writers that stall past it; anything else keeps the default.
 */
export function leaseTtlMs(): number {
  const ms = parseDuration(process.env.FANSYNC_LEASE_TTL ?? "");
  return ms !== undefined && ms >= MIN_LEASE_TTL_MS ? ms : DEFAULT_LEASE_TTL_MS;
}

/** The AWS variables fansync reads itself (endpoints, region, profile, CA bundle): read here, passed down. */
export function awsEnv(): AwsEnv {
  return parseAwsEnv(process.env);
}

// One set of request observers per run (its resolved config): every store of the run tells it,
// and the daemon's metrics count from it. A reloaded config starts a new run, with its own.
const runRequests = new WeakMap<Config, RequestObservers>();

/** The request observers of the run of `cfg` (see {@link storeFor}, commands/monitor-setup.ts). */
export function requestsOf(cfg: Config): RequestObservers {
  let r = runRequests.get(cfg);
  if (!r) {
    r = new RequestObservers();
    runRequests.set(cfg, r);
  }
  return r;
}

/**
 * FANSYNC_DRAIN_DEADLINE (a duration) shortens or lengthens how long a stopping daemon lets its work
 * in flight finish before aborting its requests (30 s): a unit file whose TimeoutStopSec is shorter,
 * and the tests. Anything that is not a duration keeps the default.
 */
export function drainDeadlineMs(): number {
  return parseDuration(process.env.FANSYNC_DRAIN_DEADLINE ?? "") ?? DEFAULT_DRAIN_DEADLINE_MS;
}

/**
 * FANSYNC_SAMPLE_EVERY (ms) shortens the status page chart's sampling period; the tests use it to
 * see several samples in seconds instead of minutes. Operators have no reason to change the 30 s default.
 */
export function sampleEveryMs(): number {
  const v = Number(process.env.FANSYNC_SAMPLE_EVERY);
  return Number.isFinite(v) && v >= 100 ? v : 30_000;
}

/** An S3 store for `loc` with its own connection settings. */
export function storeFor(cfg: Config, loc: Location): S3Store {
  const s = settingsFor(cfg, loc);
  const aws = awsEnv();
  const requests = requestsOf(cfg);
  const maxSockets = Math.max(8, cfg.concurrency * 2);
  const requestTimeoutMs = cfg.timeout ?? requestTimeoutFromEnv();
  const client = createS3Client({ ...s, maxSockets, requestTimeoutMs, aws, requests });
  const endpoint = s3EndpointOf({ ...s, aws }) ?? "AWS S3";
  const data = leanDataPath() ? new LeanHttp(client, { maxSockets, requestTimeoutMs, caBundle: aws.caBundle, requests }) : undefined;
  return new S3Store({ client, bucket: loc.bucket, endpoint, profile: s.profile ?? aws.profile, data });
}

/**
 * Refuse a configuration that can never run, before any job starts: each distinct connection
 * (endpoint and profile) of the command's locations must resolve a region and credentials. Throws
 * RegionMissing or CredentialsMissing (exit 3); daemons would otherwise retry it forever.
 */
export async function checkRunnable(cfg: Config): Promise<void> {
  const locs = [cfg.target, ...cfg.sources, cfg.source, ...cfg.targets, cfg.reportTo].filter((l): l is Location => l !== undefined);
  const seen = new Set<string>();
  for (const loc of locs) {
    const s = settingsFor(cfg, loc);
    const key = JSON.stringify([s.endpointUrl, s.profile]);
    if (seen.has(key)) continue;
    seen.add(key);
    await storeFor(cfg, loc).checkRunnable();
  }
}

/** The base state directory: --state-dir, systemd's STATE_DIRECTORY, XDG, or ~/.local/state. */
export function baseStateDir(cfg: Config): string {
  if (cfg.stateDir) return path.resolve(cfg.stateDir);
  const sd = process.env.STATE_DIRECTORY?.split(":")[0];
  if (sd) return sd;
  const xdg = process.env.XDG_STATE_HOME;
  return path.join(xdg && path.isAbsolute(xdg) ? xdg : path.join(os.homedir(), ".local", "state"), "fansync");
}

/** The state every writer of the location `url` shares on this machine. */
export function locationState(cfg: Config, url: string): StateDir {
  return locationStateDir(baseStateDir(cfg), url);
}

/** A job's own state directory (see adapters/state-dir.ts for the layout). */
export function jobState(cfg: Config, role: JobRole, identity: { docroot?: string; url?: string }): StateDir {
  return jobStateDir(baseStateDir(cfg), role, identity);
}

/**
 * The writer's signing key and site for `loc` (signed generations), or undefined without
 * `signingKey`. The site defaults to the location's s3:// URL: nodes that follow it pin it.
 */
export function signerFor(cfg: Config, loc: Location): { key: SigningKey; site: string } | undefined {
  if (!cfg.signingKey) return undefined;
  const site = cfg.site ?? formatLocation(loc);
  const why = checkSite(site);
  if (why) throw new UsageError(`${site} cannot be the site id of signed generations: ${why}`, { hint: "set --site (config site) to a plain name, e.g. www.example.com" });
  return { key: readSigningKey(cfg.signingKey), site };
}

/**
 * What a job accepts as verified (issue 22: nothing is signed, copied or applied that was not
 * verified first): the `--trusted-key`s and, for a writer that signs, its own public key; the site
 * is the one it signs for, else `--site` (undefined: pinned on first use where the job keeps state).
 * Undefined when the job neither signs nor was given a key: it checks nothing.
 */
export function trustFor(cfg: Config, signer: { readonly key: SigningKey; readonly site: string } | undefined): TrustPolicy | undefined {
  const keys = cfg.trustedKeys.length > 0 ? readTrustedKeys(cfg.trustedKeys) : [];
  if (signer && !keys.some((k) => k.keyId === signer.key.keyId)) keys.push(trustedKeyOf(signer.key));
  if (keys.length === 0) return undefined;
  return { keys, site: signer?.site ?? cfg.site };
}

/** The event queue of `--events` (SQS), or undefined without it. */
export async function eventQueueFor(cfg: Config): Promise<EventQueue | undefined> {
  if (!cfg.events) return undefined;
  // Loaded only with --events: a polling node never pays for the SQS client.
  const [{ createSqsClient }, { SqsEventQueue }] = await Promise.all([import("../adapters/aws-clients.ts"), import("../adapters/event-queue.ts")]);
  return new SqsEventQueue(createSqsClient({ endpointUrl: cfg.endpointUrl, profile: cfg.profile, aws: awsEnv() }, cfg.events), cfg.events);
}
