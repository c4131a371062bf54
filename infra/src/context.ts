/**
 * Deployment parameters as written (CDK context: cdk.json or `-c key=value`) and as resolved.
 * Pure: one pass collects every problem with its key, so a wrong cdk.json fails once, completely.
 * Values from `-c` arrive as strings and values from cdk.json as JSON, so both forms are accepted.
 */
import { FANSYNC_ROLES, type BucketLocation, type FansyncRole } from "./policies.ts";

/** A bucket and the AWS region it lives in. */
export type BucketSpec = { readonly bucketName: string; readonly region: string };

/** Resolved, frozen deployment parameters. */
export type InfraConfig = Readonly<{
  /** 12-digit account, or undefined for environment-agnostic synthesis. */
  account: string | undefined;
  partition: string;
  /** Prefix of managed policy and role names, so several deployments can share an account. */
  namePrefix: string;
  prefix: string;
  metaPrefix: string;
  primary: BucketSpec;
  regional: readonly BucketSpec[];
  roles: readonly FansyncRole[];
  /** Native S3 Cross-Region Replication from primary to every regional bucket. */
  crr: boolean;
  /** Bucket to put a CloudFront distribution in front of, or undefined for none. */
  cloudFrontBucket: string | undefined;
  noncurrentMetaDays: number;
  abortMultipartDays: number;
  /** Expire noncurrent content versions too; undefined keeps them (the bucket's owner decides). */
  noncurrentContentDays: number | undefined;
  /**
   * IAM policy variable naming the node (e.g. `${aws:PrincipalTag/fansync-node}`): each puller may
   * then write its own report key alone. Undefined: any key under nodes/.
   */
  nodeIdVariable: string | undefined;
  /**
   * Events (docs/events.md): node groups that each get one SQS queue per bucket, subscribed to
   * that bucket's head topic (`pull --events QUEUE_URL`). Empty: no topics, queues or notifications.
   */
  eventGroups: readonly string[];
}>;

/** Every context key this app reads; all live under the `fansync:` namespace. */
export const CONTEXT_KEYS = [
  "account", "partition", "namePrefix", "prefix", "metaPrefix", "primaryBucket", "primaryRegion",
  "regionalBuckets", "roles", "crr", "cloudFrontBucket", "noncurrentMetaDays", "abortMultipartDays",
  "noncurrentContentDays", "nodeIdVariable", "eventGroups",
] as const;

/** Result of parsing: a config, or every problem found. */
export type ParseResult = { readonly ok: true; readonly config: InfraConfig } | { readonly ok: false; readonly errors: readonly string[] };

// S3's rules for new bucket names (dots allowed but not next to each other or to a hyphen).
const BUCKET_NAME = /^(?!xn--)(?!.*\.\.)(?!.*-\.)(?!.*\.-)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;
const REGION = /^[a-z]{2}(-[a-z]+)+-\d$/;

/** Parse and validate the `fansync:*` context values; `get` is e.g. `app.node.tryGetContext`. */
export function parseInfraContext(get: (key: string) => unknown): ParseResult {
  const errors: string[] = [];
  const raw = (k: (typeof CONTEXT_KEYS)[number]): unknown => get(`fansync:${k}`);
  const fail = (k: string, expected: string, got: unknown): undefined => {
    errors.push(`fansync:${k}: expected ${expected}, got ${JSON.stringify(got)}`);
    return undefined;
  };
  const str = (k: (typeof CONTEXT_KEYS)[number], dflt: string | undefined): string | undefined => {
    const v = raw(k);
    if (v === undefined || v === null) return dflt;
    return typeof v === "string" ? v : fail(k, "a string", v);
  };
  const bool = (k: (typeof CONTEXT_KEYS)[number], dflt: boolean): boolean => {
    const v = raw(k);
    if (v === undefined || v === null) return dflt;
    if (typeof v === "boolean") return v;
    if (v === "true" || v === "false") return v === "true";
    return fail(k, "true or false", v) ?? dflt;
  };
  const days = (k: (typeof CONTEXT_KEYS)[number], dflt: number | undefined): number | undefined => {
    const v = raw(k);
    if (v === undefined || v === null || v === "") return dflt;
    const n = typeof v === "string" && /^\d+$/.test(v) ? Number(v) : v;
    return typeof n === "number" && Number.isInteger(n) && n >= 1 && n <= 36500 ? n : fail(k, "a whole number of days (1..36500)", v);
  };
  // Lists come as JSON arrays from cdk.json or comma-separated from the command line.
  const list = (k: (typeof CONTEXT_KEYS)[number]): unknown[] | undefined => {
    const v = raw(k);
    if (v === undefined || v === null) return undefined;
    if (typeof v === "string") return v.split(",").map((s) => s.trim()).filter((s) => s !== "");
    return Array.isArray(v) ? v : fail(k, "a list", v);
  };

  const account = str("account", undefined);
  if (account !== undefined && !/^\d{12}$/.test(account)) fail("account", "a 12-digit AWS account id", account);
  const partition = str("partition", "aws") ?? "aws";
  if (!/^aws(-[a-z]+)*$/.test(partition)) fail("partition", "an AWS partition such as aws, aws-cn, aws-us-gov", partition);
  const namePrefix = str("namePrefix", "fansync") ?? "fansync";
  if (!/^[A-Za-z0-9+=,.@_-]{1,40}$/.test(namePrefix)) fail("namePrefix", "1..40 characters valid in IAM names", namePrefix);

  // "" means fansync owns the whole bucket; otherwise a "directory" so the CloudFront origin
  // path and the s3:prefix conditions line up with whole path segments.
  const prefix = str("prefix", "") ?? "";
  if (prefix !== "" && (!prefix.endsWith("/") || prefix.startsWith("/") || prefix.includes("//"))) {
    fail("prefix", `"" or a key prefix like "site/" (no leading slash, ending in "/")`, prefix);
  }
  const metaPrefix = str("metaPrefix", `${prefix}.fansync/`) ?? `${prefix}.fansync/`;
  // Checked only when given: a derived one is wrong exactly when prefix is, already reported.
  if (raw("metaPrefix") !== undefined && (metaPrefix === "" || !metaPrefix.endsWith("/") || metaPrefix.startsWith("/") || metaPrefix === prefix)) {
    fail("metaPrefix", "a key prefix ending in \"/\", distinct from prefix", metaPrefix);
  }

  const bucketSpec = (k: (typeof CONTEXT_KEYS)[number], v: unknown): BucketSpec | undefined => {
    // "name@region" on the command line, {bucketName, region} in cdk.json.
    let spec: unknown = v;
    if (typeof v === "string") {
      const at = v.lastIndexOf("@");
      spec = at > 0 ? { bucketName: v.slice(0, at), region: v.slice(at + 1) } : undefined;
    }
    if (typeof spec !== "object" || spec === null) return fail(k, `"bucket@region" or {bucketName, region}`, v);
    const { bucketName, region } = spec as { bucketName?: unknown; region?: unknown };
    if (typeof bucketName !== "string" || !BUCKET_NAME.test(bucketName)) return fail(k, "a valid S3 bucket name", bucketName);
    if (typeof region !== "string" || !REGION.test(region)) return fail(k, "an AWS region such as eu-west-1", region);
    return { bucketName, region };
  };

  const primaryBucket = str("primaryBucket", undefined);
  const primaryRegion = str("primaryRegion", undefined);
  let primary: BucketSpec | undefined;
  if (primaryBucket === undefined || primaryRegion === undefined) {
    errors.push("fansync:primaryBucket and fansync:primaryRegion are required");
  } else {
    primary = bucketSpec("primaryBucket", { bucketName: primaryBucket, region: primaryRegion });
  }
  const regional: BucketSpec[] = [];
  for (const v of list("regionalBuckets") ?? []) {
    const spec = bucketSpec("regionalBuckets", v);
    if (spec) regional.push(spec);
  }
  const names = [primary?.bucketName, ...regional.map((r) => r.bucketName)].filter((n) => n !== undefined);
  const dup = names.find((n, i) => names.indexOf(n) !== i);
  if (dup !== undefined) errors.push(`fansync:regionalBuckets: bucket ${dup} is named twice`);

  const roles: FansyncRole[] = [];
  // By default every role that makes sense here: no replicator without a region to replicate to.
  const defaultRoles = FANSYNC_ROLES.filter((r) => r !== "replicator" || regional.length > 0);
  for (const r of list("roles") ?? defaultRoles) {
    if (FANSYNC_ROLES.includes(r as FansyncRole)) roles.push(r as FansyncRole);
    else fail("roles", `a list of ${FANSYNC_ROLES.join(", ")}`, r);
  }
  const crr = bool("crr", false);
  // Replication, native or fansync's, needs somewhere to replicate to.
  if (crr && regional.length === 0) errors.push("fansync:crr: needs at least one entry in fansync:regionalBuckets");
  if (roles.includes("replicator") && regional.length === 0) {
    errors.push("fansync:roles: replicator needs at least one entry in fansync:regionalBuckets");
  }
  const cloudFrontBucket = str("cloudFrontBucket", undefined) || undefined;
  if (cloudFrontBucket !== undefined && !names.includes(cloudFrontBucket)) {
    fail("cloudFrontBucket", `the primary or a regional bucket name (${names.join(", ")})`, cloudFrontBucket);
  }

  const noncurrentMetaDays = days("noncurrentMetaDays", 7) ?? 7;
  const abortMultipartDays = days("abortMultipartDays", 7) ?? 7;
  const noncurrentContentDays = days("noncurrentContentDays", undefined);
  const nodeIdVariable = str("nodeIdVariable", undefined) || undefined;
  if (nodeIdVariable !== undefined && !/^\$\{aws:[A-Za-z0-9/_:-]+\}$/.test(nodeIdVariable)) {
    fail("nodeIdVariable", "an IAM policy variable such as ${aws:PrincipalTag/fansync-node}", nodeIdVariable);
  }

  const eventGroups: string[] = [];
  for (const g of list("eventGroups") ?? []) {
    // The group name becomes part of queue names (80 characters at most, with the prefix and bucket).
    if (typeof g === "string" && /^[A-Za-z0-9_-]{1,20}$/.test(g) && !eventGroups.includes(g)) eventGroups.push(g);
    else fail("eventGroups", "a list of distinct node group names (letters, digits, _ and -, at most 20)", g);
  }

  if (errors.length > 0 || primary === undefined) return { ok: false, errors };
  return {
    ok: true,
    config: Object.freeze({
      account, partition, namePrefix, prefix, metaPrefix, primary, regional: Object.freeze(regional), roles: Object.freeze(roles),
      crr, cloudFrontBucket, noncurrentMetaDays, abortMultipartDays, noncurrentContentDays, nodeIdVariable,
      eventGroups: Object.freeze(eventGroups),
    }),
  };
}

/** The fansync location (bucket, prefix, meta prefix) of one bucket of the deployment. */
export function locationOf(config: InfraConfig, bucketName: string): BucketLocation {
  return { bucket: bucketName, prefix: config.prefix, metaPrefix: config.metaPrefix };
}
