/**
 * `fansync doctor`'s report: what each finding means (status, and what fansync will do about it),
 * rendered as text lines or one JSON document, and the exit code. Pure: the probing that gathers
 * the facts lives in engine/doctor-checks.ts.
 */
import { ExitCode, type ExitCodeValue } from "./errors.ts";
import { formatAge, formatBytes } from "./units.ts";

/** A check's verdict. SKIP: not run (--no-write, or an earlier check failed). */
export type CheckStatus = "OK" | "WARN" | "FAIL" | "SKIP";

/** The checks, in the order they are printed. */
export const CHECK_NAMES = [
  "credentials", "bucket", "read-write", "clock", "conditional-writes", "versioning", "multipart-etag", "checksums", "listing-order", "fansync-data",
] as const;

/** One of {@link CHECK_NAMES}. */
export type CheckName = (typeof CHECK_NAMES)[number];

/** The checks that write probe objects (skipped by --no-write). */
export const WRITE_CHECKS: readonly CheckName[] = ["read-write", "conditional-writes", "multipart-etag", "checksums", "listing-order"];

/** One line of the report. */
export interface Check {
  readonly name: CheckName;
  readonly status: CheckStatus;
  /** What was found. */
  readonly detail: string;
  /** What fansync will do about it, or what the operator should do. */
  readonly action: string;
  /** The exit code a FAIL maps to (default: remote). */
  readonly exitCode?: ExitCodeValue;
  /** Measured facts, for --json readers. */
  readonly data?: Readonly<Record<string, unknown>>;
}

/** A failed request as the adapters describe it: a RemoteError's (or IntegrityError's) message and hint. */
export interface Failure {
  readonly message: string;
  readonly hint: string | undefined;
  readonly exitCode: ExitCodeValue;
  /** The server answered AccessDenied (a missing permission, not rejected credentials). */
  readonly denied: boolean;
}

const check = (name: CheckName, status: CheckStatus, detail: string, action: string, extra: { exitCode?: ExitCodeValue; data?: Record<string, unknown> } = {}): Check => ({
  name, status, detail, action, ...extra,
});

const failed = (name: CheckName, f: Failure, action?: string): Check =>
  check(name, "FAIL", f.message, action ?? f.hint ?? "see the message", { exitCode: f.exitCode });

/** A check that was not run, and why. */
export function skippedCheck(name: CheckName, why: string): Check {
  return check(name, "SKIP", `skipped: ${why}`, "not checked");
}

// The SDK's feature names for credential providers (@aws-sdk/core setCredentialFeature).
const SOURCES: Readonly<Record<string, string>> = {
  CREDENTIALS_ENV_VARS: "environment variables (AWS_ACCESS_KEY_ID)",
  CREDENTIALS_PROFILE: "a profile in the shared credentials/config files",
  CREDENTIALS_PROFILE_SOURCE_PROFILE: "a profile assuming a role (source_profile)",
  CREDENTIALS_PROFILE_NAMED_PROVIDER: "a profile with credential_source",
  CREDENTIALS_PROFILE_SSO: "an SSO profile",
  CREDENTIALS_PROFILE_SSO_LEGACY: "an SSO profile",
  CREDENTIALS_SSO: "SSO",
  CREDENTIALS_SSO_LEGACY: "SSO",
  CREDENTIALS_PROFILE_PROCESS: "a profile's credential_process",
  CREDENTIALS_PROCESS: "credential_process",
  CREDENTIALS_PROFILE_STS_WEB_ID_TOKEN: "a web identity token (profile)",
  CREDENTIALS_ENV_VARS_STS_WEB_ID_TOKEN: "a web identity token (AWS_WEB_IDENTITY_TOKEN_FILE)",
  CREDENTIALS_HTTP: "the container credentials endpoint (ECS/EKS)",
  CREDENTIALS_IMDS: "the instance role (IMDS)",
  CREDENTIALS_PROFILE_LOGIN: "a profile's aws login session",
  CREDENTIALS_LOGIN: "an aws login session",
};

/** What the credential chain yielded (never the secret), or why it yielded nothing. */
export type CredentialsFacts =
  | { readonly ok: true; readonly keyTail: string | undefined; readonly temporary: boolean; readonly expiration: string | undefined; readonly sources: readonly string[] }
  | { readonly ok: false; readonly error: string };

/** Check 1: whether the AWS credential chain yields credentials. */
export function credentialsCheck(f: CredentialsFacts): Check {
  if (!f.ok) {
    return check("credentials", "FAIL", `the AWS credential chain found no credentials (${f.error})`,
      "set AWS_PROFILE (or --profile) to a profile in ~/.aws/config, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or run on a host with an instance role; fansync cannot sign a request without them",
      { exitCode: ExitCode.config });
  }
  const src = [...new Set(f.sources.map((s) => SOURCES[s] ?? s))];
  const parts = [
    `found, from ${src.length ? src.join(" via ") : "a source the SDK does not report (an instance or container role, or a custom provider)"}`,
    f.keyTail ? `access key id ...${f.keyTail}` : "access key id not shown (shorter than 12 characters)",
    ...(f.temporary ? [`temporary${f.expiration ? `, expires ${f.expiration}` : ""}`] : []),
  ];
  return check("credentials", "OK", parts.join("; "), "fansync signs every request with these (secrets are never printed or logged)",
    { data: { sources: f.sources, keyTail: f.keyTail ?? null, temporary: f.temporary } });
}

/** What listing the prefix found. */
export type BucketFacts =
  | { readonly kind: "listed"; readonly keyCount: number }
  /** Listing was refused but head.json could be read (or was absent): a puller's read-only policy. */
  | { readonly kind: "read-only"; readonly headFound: boolean }
  /** Listing and reading head.json were both refused. */
  | { readonly kind: "denied"; readonly failure: Failure }
  | { readonly kind: "failed"; readonly failure: Failure };

/** Check 2: endpoint reachable, credentials accepted, bucket there, prefix accessible. */
export function bucketCheck(f: BucketFacts, where: { readonly location: string; readonly endpoint: string }): Check {
  const at = `${where.location} at ${where.endpoint}`;
  if (f.kind === "listed") {
    return check("bucket", "OK", `${at}: listing allowed, the prefix ${f.keyCount > 0 ? "holds objects" : "is empty"}`,
      "fansync lists, reads and writes under this prefix", { data: { listed: true, empty: f.keyCount === 0 } });
  }
  if (f.kind === "read-only") {
    return check("bucket", "WARN", `${at}: listing denied (no s3:ListBucket for this prefix), reading works (head.json ${f.headFound ? "read" : "not there yet"})`,
      "enough for a puller, which never lists; an uploader or replicator needs s3:ListBucket on the prefix (see infra/iam)", { data: { listed: false } });
  }
  if (f.kind === "denied") {
    // Without s3:ListBucket, S3 answers 403 rather than 404 for a key that does not exist, so a
    // puller cannot tell "not published yet" from "no access": pull fails the same way here.
    return failed("bucket", { ...f.failure, message: `${f.failure.message}; reading head.json was refused too` },
      `grant the identity s3:GetObject on the prefix (see infra/iam); a puller without s3:ListBucket is also refused a head.json that does not exist yet, so push first and check again`);
  }
  return failed("bucket", f.failure);
}

/** The server's Date header and this host's clock when it arrived; undefined: no answer at all. */
export type ClockFacts = { readonly serverDate: string | undefined; readonly receivedAtMs: number } | undefined;

/** Leases and the stale rule compare clocks across hosts: a minute off is worth fixing. */
export const SKEW_WARN_MS = 60_000;
/** SigV4 rejects requests signed more than 15 minutes off the server's clock (RequestTimeTooSkewed). */
export const SKEW_FAIL_MS = 15 * 60_000;

/** Check 4: this host's clock against the server's Date header. */
export function clockCheck(f: ClockFacts): Check {
  if (!f) return skippedCheck("clock", "no answer from the server");
  if (f.serverDate === undefined) return check("clock", "WARN", "the server's answer has no Date header", "fansync cannot compare clocks here; keep NTP running on every host");
  const server = Date.parse(f.serverDate);
  if (!Number.isFinite(server)) return check("clock", "WARN", `the server's Date header ${JSON.stringify(f.serverDate)} is not a date`, "fansync cannot compare clocks here; keep NTP running on every host");
  // The header has whole seconds: the server's clock was somewhere in [date, date + 1 s).
  const skewMs = f.receivedAtMs - (server + 500);
  const secs = Math.round(Math.abs(skewMs) / 1000);
  const found = secs <= 1 ? `this host's clock agrees with the server's (within 1 s; server Date ${f.serverDate})`
    : `this host's clock is ${secs} s ${skewMs > 0 ? "ahead of" : "behind"} the server's (server Date ${f.serverDate})`;
  const data = { skewSeconds: Math.round(skewMs / 1000), serverDate: f.serverDate };
  if (Math.abs(skewMs) > SKEW_FAIL_MS) {
    return check("clock", "FAIL", found, "S3 rejects requests signed more than 15 min off (the SDK corrects its own signing, but the 60 s write lease and the stale rule cannot): fix this host's clock (NTP) before running fansync",
      { exitCode: ExitCode.remote, data });
  }
  if (Math.abs(skewMs) > SKEW_WARN_MS) {
    return check("clock", "WARN", found, "fansync keeps working, but the 60 s write lease and the stale rule (--stale-after) compare clocks across hosts: fix NTP on this host", { data });
  }
  return check("clock", "OK", found, "write leases and the stale rule can rely on this clock", { data });
}

/** What writing, reading back and deleting the probe found. */
export type ReadWriteFacts =
  | { readonly kind: "ok"; readonly bytes: number }
  | { readonly kind: "mismatch"; readonly wrote: number; readonly read: number }
  | { readonly kind: "still-there" }
  | { readonly kind: "failed"; readonly step: "write" | "read back" | "delete"; readonly failure: Failure };

/** Check 3: write, read back byte-equal and delete a small object under the meta prefix. */
export function readWriteCheck(f: ReadWriteFacts, probePrefix: string): Check {
  switch (f.kind) {
    case "ok":
      return check("read-write", "OK", `wrote, read back byte-equal and deleted a ${f.bytes}-byte probe under ${probePrefix}`,
        "fansync can publish here (uploader permissions are in place)");
    case "mismatch":
      return check("read-write", "FAIL", `the probe read back differs from what was written (${f.wrote} bytes written, ${f.read} read)`,
        "this server alters objects: fansync would refuse every download whose sha256 differs; use another server", { exitCode: ExitCode.integrity });
    case "still-there":
      return check("read-write", "FAIL", "the probe could still be read after it was deleted",
        "fansync deletes removed files and old generations after each publish; on this server they would stay: use another server");
    case "failed":
      return failed("read-write", { ...f.failure, message: `${f.step} failed: ${f.failure.message}` },
        f.failure.denied ? `the uploader needs s3:PutObject, s3:GetObject and s3:DeleteObject on the prefix (see infra/iam); with read-only (puller) credentials run doctor --no-write` : undefined);
  }
}

/** What became of doctor's probe objects after the write checks. */
export interface CleanupFacts {
  readonly probes: number;
  /** Keys the delete did not remove, and why. */
  readonly leftKeys: readonly string[];
  readonly error?: string | undefined;
  /** Old versions and delete markers: undefined when the bucket is unversioned (nothing to do). */
  readonly versions?: { readonly deleted: number; readonly left: number } | { readonly error: string; readonly versioning: "Enabled" | "Suspended" | "unknown" };
}

/** Amend check 3 with the cleanup that ran after all write checks (in a finally). */
export function withCleanup(c: Check, f: CleanupFacts): Check {
  const data = { ...c.data, cleanup: { probes: f.probes, left: f.leftKeys.length } };
  if (f.leftKeys.length > 0) {
    return check(c.name, "FAIL", `${c.detail}; ${f.leftKeys.length} probe object(s) could not be deleted (${f.error ?? "error"}): ${f.leftKeys.join(", ")}`,
      "delete them by hand; fansync's uploader needs s3:DeleteObject on the prefix to remove deleted files", { exitCode: c.exitCode ?? ExitCode.remote, data });
  }
  const v = f.versions;
  if (v && "error" in v) {
    const note = `old versions of the probes could not be listed or removed (${v.error})`;
    if (v.versioning === "unknown") return { ...c, detail: `${c.detail}; if the bucket is versioned, ${note}`, data };
    return check(c.name, c.status === "OK" ? "WARN" : c.status, `${c.detail}; ${note}`,
      "a lifecycle rule that expires noncurrent versions removes them (fansync's policies grant no s3:ListBucketVersions or s3:DeleteObjectVersion)", { ...(c.exitCode ? { exitCode: c.exitCode } : {}), data });
  }
  if (v && v.left > 0) {
    return check(c.name, c.status === "OK" ? "WARN" : c.status, `${c.detail}; ${v.left} old version(s) of the probes could not be deleted`,
      "a lifecycle rule that expires noncurrent versions removes them (fansync's policies grant no s3:DeleteObjectVersion)", { ...(c.exitCode ? { exitCode: c.exitCode } : {}), data });
  }
  const versions = v && v.deleted > 0 ? ` (${v.deleted} old version(s) and delete marker(s) removed too)` : "";
  return { ...c, detail: `${c.detail}; no probe object left${versions}`, data };
}

/**
 * What the conditional-write probe found, per header; and whether `If-None-Match: *` is written on a
 * key just deleted (a delete marker on a versioned bucket): undefined when not asked (the header is
 * ignored anyway, or an older report).
 */
export type ConditionalFacts =
  | { readonly ifNoneMatch: boolean; readonly ifMatch: boolean; readonly overDeleteMarker?: boolean | undefined }
  | { readonly failure: Failure };

/** Check 5: whether If-None-Match: * and If-Match are enforced on PUT. */
export function conditionalCheck(f: ConditionalFacts): Check {
  if ("failure" in f) return failed("conditional-writes", { ...f.failure, message: `the conditional-write probe failed: ${f.failure.message}` });
  const data = { ifNoneMatch: f.ifNoneMatch, ifMatch: f.ifMatch, honoured: f.ifNoneMatch && f.ifMatch, ifNoneMatchOverDeleteMarker: f.overDeleteMarker ?? null };
  const said = (refused: boolean) => (refused ? "refused (412)" : "overwrote the object");
  const found = `If-None-Match: * on an existing key ${said(f.ifNoneMatch)}; If-Match with a wrong ETag ${said(f.ifMatch)}`;
  if (data.honoured && f.overDeleteMarker === false) {
    // versitygw on a versioned bucket (issue 13); AWS writes the object there.
    return check("conditional-writes", "WARN",
      `honoured, except over a delete marker: ${found}; If-None-Match: * on a key whose current version is a delete marker refused (412), where AWS writes the object`,
      "fansync releases its write lease by overwriting it, so pushes work here; a location whose head.json was deleted cannot be published again (its first head is written with If-None-Match: *): to start one over, delete head.json's old versions too, or use a new prefix",
      { data });
  }
  if (data.honoured) {
    return check("conditional-writes", "OK", `honoured: ${found}`, "fansync writes head.json conditionally: two uploaders can never interleave generations", { data });
  }
  return check("conditional-writes", "WARN", `ignored: ${found}`,
    "fansync falls back to a read-back check after writing head.json; run a single uploader per location", { data });
}

/** The bucket's versioning setting, and whether the probe PUT got a VersionId (undefined: no write). */
export type VersioningFacts =
  | { readonly status: "Enabled" | "Suspended" | "off"; readonly putVersionId: boolean | undefined }
  | { readonly failure: Failure };

const VERSIONING_OFF_ACTION =
  "a killed push can leave objects holding next-generation bytes until the next run; `fansync rollback` can only restore from retained copies or a local docroot; enable versioning for point-in-time rollback";

/** Check 6: GetBucketVersioning, cross-checked with the probe's VersionId. */
export function versioningCheck(f: VersioningFacts): Check {
  if ("failure" in f) {
    return check("versioning", "WARN", `cannot read the versioning setting: ${f.failure.message}`,
      "fansync works either way (its IAM policies grant no s3:GetBucketVersioning); ask the bucket owner whether versioning is on");
  }
  const data = { status: f.status, putVersionId: f.putVersionId ?? null };
  if (f.status === "Enabled" && f.putVersionId === false) {
    return check("versioning", "WARN", "reported Enabled, but a PUT returned no VersionId (the server does not implement versioning)",
      `fansync treats the bucket as unversioned: pullers read objects with If-Match on the ETag; ${VERSIONING_OFF_ACTION}`, { data });
  }
  if (f.status === "Enabled") {
    return check("versioning", "OK", "enabled", "manifests record each object's VersionId: pullers read exactly the bytes a generation names, and overwritten bytes stay retrievable", { data });
  }
  return check("versioning", "WARN", f.status === "Suspended" ? "suspended (new writes keep no old versions)" : "off", VERSIONING_OFF_ACTION, { data });
}

/** The ETag of a 2-part multipart upload, or why it failed. */
export type MultipartFacts = { readonly etag: string; readonly parts: number } | { readonly failure: Failure };

/** Check 7: the ETag form of a multipart upload. */
export function multipartCheck(f: MultipartFacts): Check {
  if ("failure" in f) {
    return failed("multipart-etag", { ...f.failure, message: `a 2-part multipart upload (5 MiB + 1 byte) failed: ${f.failure.message}` },
      `files at or above --multipart-threshold (default 8 MiB) would fail to upload${f.failure.hint ? `: ${f.failure.hint}` : ""}`);
  }
  const suffix = /-(\d+)"?$/.exec(f.etag);
  const data = { etag: f.etag, suffix: suffix ? Number(suffix[1]) : null };
  const found = suffix
    ? `a ${f.parts}-part upload got ETag ${f.etag}, with the -${suffix[1]} suffix (not an MD5 of the bytes)`
    : `a ${f.parts}-part upload got ETag ${f.etag}, without a -N suffix`;
  return check("multipart-etag", "OK", found, "fansync stores sha256 in object metadata and never relies on an ETag being an MD5", { data });
}

/** What a PUT with a sha256 checksum and a GET with ChecksumMode ENABLED found. */
export type ChecksumFacts =
  | { readonly sent: string; readonly putEcho: string | undefined; readonly getEcho: string | undefined; readonly bytesEqual: boolean }
  | { readonly failure: Failure };

const CHECKSUM_ACTION = "fansync verifies sha256 itself on every download either way";

/** Check 8: whether the server stores and returns x-amz-checksum-sha256. */
export function checksumCheck(f: ChecksumFacts): Check {
  if ("failure" in f) {
    return check("checksums", "WARN", `a PUT with x-amz-checksum-sha256 failed: ${f.failure.message}`,
      `fansync sends checksums only where S3 requires them, so its uploads are not affected; ${CHECKSUM_ACTION}`);
  }
  const data = { stored: f.getEcho !== undefined, matches: f.getEcho === f.sent, bytesEqual: f.bytesEqual };
  if (!f.bytesEqual) {
    return check("checksums", "WARN", "an object written with x-amz-checksum-sha256 reads back with different bytes (aws-chunked framing stored?)",
      `fansync sends checksums only where S3 requires them, so its own uploads are not affected; ${CHECKSUM_ACTION}`, { data });
  }
  if (f.getEcho === undefined) {
    return check("checksums", "OK", `the server ${f.putEcho === undefined ? "does not store" : "acknowledged but does not return"} x-amz-checksum-sha256`, CHECKSUM_ACTION, { data });
  }
  if (f.getEcho !== f.sent) {
    return check("checksums", "WARN", "the server returned an x-amz-checksum-sha256 that does not match the bytes", `fansync does not rely on it; ${CHECKSUM_ACTION}`, { data });
  }
  return check("checksums", "OK", "the server stores x-amz-checksum-sha256 and returns it (matches the bytes)", CHECKSUM_ACTION, { data });
}

/** What listing the probe keys found: the keys written (in UTF-8 byte order) and what the pages gave. */
export type ListingFacts =
  | { readonly written: readonly string[]; readonly listed: readonly string[]; readonly pages: number; readonly pageSize: number }
  | { readonly failure: Failure };

// fansync itself lists only its own ASCII keys under .fansync/, and only in operator commands.
const LISTING_SCOPE = "pullers and uploaders never list; status, log and rollback list only fansync's own ASCII keys under .fansync/";

/**
 * Check 9: ListObjectsV2, paged, over keys whose UTF-8 byte order differs from UTF-16 and locale
 * order (NFC and NFD twins among them): S3 lists in byte order, and some servers do not (fauxqs
 * sorts with localeCompare and then pages with dropped or repeated keys; shared/S3-SERVERS.md).
 */
export function listingCheck(f: ListingFacts): Check {
  if ("failure" in f) {
    return check("listing-order", "WARN", `a paged listing of keys with non-ASCII names failed: ${f.failure.message}`,
      `${LISTING_SCOPE}; tools that sync by listing (aws s3 sync, rclone) may fail on such keys here`);
  }
  const written = new Set(f.written);
  const seen = new Set<string>();
  let repeated = 0;
  for (const k of f.listed) {
    if (seen.has(k)) repeated++;
    seen.add(k);
  }
  const missing = f.written.filter((k) => !seen.has(k)).length;
  const foreign = f.listed.filter((k) => !written.has(k)).length;
  const ordered = f.listed.every((k, i) => i === 0 || Buffer.compare(Buffer.from(f.listed[i - 1] as string), Buffer.from(k)) < 0);
  const data = { keys: f.written.length, listed: f.listed.length, pages: f.pages, byteOrder: ordered, missing, repeated };
  const what = `${f.written.length} keys with non-ASCII names (NFC and NFD twins among them), listed ${f.pageSize} per page in ${f.pages} page(s)`;
  if (ordered && missing === 0 && repeated === 0 && foreign === 0) {
    return check("listing-order", "OK", `${what}: complete and in UTF-8 byte order, as S3 lists`, `${LISTING_SCOPE}; listings are reliable here either way`, { data });
  }
  const wrong = [...(ordered ? [] : ["out of UTF-8 byte order"]), ...(missing ? [`${missing} missing`] : []), ...(repeated ? [`${repeated} repeated`] : []), ...(foreign ? [`${foreign} not written`] : [])];
  return check("listing-order", "WARN", `${what}: ${wrong.join(", ")}`,
    `${LISTING_SCOPE}, so syncing is not affected; tools that sync by listing (aws s3 sync, rclone) would re-transfer or miss keys here`, { data });
}

/** What the location holds: nothing yet, a head (with the lease, if any), or an unreadable head. */
export type DataFacts =
  | { readonly kind: "empty" }
  | {
      readonly kind: "head";
      readonly generation: number;
      readonly files: number;
      readonly bytes: number;
      readonly writer: string;
      readonly time: string;
      readonly lease: { readonly writer: string; readonly expires: string } | undefined;
      readonly nowMs: number;
      /** How many paths the head marks as possibly overwritten by an unfinished commit. */
      readonly dirty?: number;
      /** Of those, the objects that do hold other bytes than the manifest names. */
      readonly moved?: readonly string[];
    }
  | { readonly kind: "failed"; readonly failure: Failure };

/** Check 10: the location's head.json and write lease (reads only). */
export function dataCheck(f: DataFacts): Check {
  if (f.kind === "empty") {
    return check("fansync-data", "OK", "nothing published yet (no head.json)", "the first `fansync push <docroot> <location>` publishes generation 1; pullers wait until then",
      { data: { generation: null } });
  }
  if (f.kind === "failed") {
    const integrity = f.failure.exitCode === ExitCode.integrity;
    return failed("fansync-data", { ...f.failure, message: integrity ? `head.json is damaged: ${f.failure.message}` : f.failure.message },
      integrity ? `pull and push stop with exit 8 at this location until head.json is valid; ${f.failure.hint ?? ""}`.replace(/; $/, "") : undefined);
  }
  const ago = Number.isFinite(Date.parse(f.time)) ? ` (${formatAge((f.nowMs - Date.parse(f.time)) / 1000, { long: true })} ago)` : "";
  const leaseLive = f.lease ? Date.parse(f.lease.expires) > f.nowMs : false;
  const lease = !f.lease ? "write lease free"
    : leaseLive ? `write lease held by ${f.lease.writer} until ${f.lease.expires}`
    : `write lease of ${f.lease.writer} expired at ${f.lease.expires}`;
  const found = `generation ${f.generation}: ${f.files} files, ${formatBytes(f.bytes)}, written by ${f.writer || "?"} at ${f.time || "?"}${ago}; ${lease}`;
  const action = leaseLive ? `an uploader is publishing here now: another uploader is refused until the lease expires; pullers bring nodes to generation ${f.generation}`
    : f.lease ? `an uploader stopped without releasing its lease: the next uploader takes it over; pullers bring nodes to generation ${f.generation}`
    : `pullers bring nodes to generation ${f.generation}; the next push publishes generation ${f.generation + 1}`;
  const data = { generation: f.generation, files: f.files, bytes: f.bytes, writer: f.writer, time: f.time, lease: f.lease ? { ...f.lease, held: leaseLive } : null, dirty: f.dirty ?? 0, moved: f.moved ?? [] };
  const moved = f.moved ?? [];
  if (moved.length > 0) {
    const shown = moved.slice(0, 5).join(", ") + (moved.length > 5 ? ", …" : "");
    return check("fansync-data", "WARN", `${found}; ${moved.length} object(s) the head names hold other bytes (an interrupted commit overwrote them): ${shown}`,
      `nodes skip those files (exit 4, STALE) until a writer repairs them: run \`fansync push --verify\` on the master (or let the uploader run), or \`fansync replicate --verify\` for a region`, { data });
  }
  const marked = f.dirty ? `; ${f.dirty} object(s) marked by a commit in progress or interrupted hold the manifest's bytes` : "";
  return check("fansync-data", "OK", found + marked, action, { data });
}

/** Put checks in report order; a check never reported is listed as skipped. */
export function orderChecks(found: ReadonlyMap<CheckName, Check>): Check[] {
  return CHECK_NAMES.map((n) => found.get(n) ?? skippedCheck(n, "not reached"));
}

/** The report for people: a header, one line per check (name, status, found -> action), a summary. */
export function renderText(checks: readonly Check[], where: { readonly location: string; readonly endpoint: string }): string {
  const lines = [`fansync doctor: ${where.location} at ${where.endpoint}`];
  for (const c of checks) lines.push(`${c.name.padEnd(18)} ${c.status.padEnd(4)}  ${c.detail} -> ${c.action}`);
  const n = (s: CheckStatus) => checks.filter((c) => c.status === s).length;
  const verdict = n("FAIL") > 0 ? "fix the FAIL lines before running fansync here" : n("WARN") > 0 ? "fansync can run here; read the WARN lines" : "fansync can run here";
  lines.push(`${n("OK")} OK, ${n("WARN")} WARN, ${n("FAIL")} FAIL, ${n("SKIP")} skipped: ${verdict}`);
  return lines.join("\n") + "\n";
}

/** The report as one JSON document (one line): an array of checks. */
export function renderJson(checks: readonly Check[]): string {
  return JSON.stringify(checks.map((c) => ({ name: c.name, status: c.status, detail: c.detail, action: c.action, ...(c.data ? { data: c.data } : {}) }))) + "\n";
}

/** The FAIL lines for stderr, in the entry file's `fansync: ... / what to do:` form. */
export function renderFailures(checks: readonly Check[]): string {
  return checks.filter((c) => c.status === "FAIL").map((c) => `fansync doctor: ${c.name}: ${c.detail}\n  what to do: ${c.action}\n`).join("");
}

/** 0 when nothing FAILs (WARN and SKIP allowed), else the exit code of the first FAIL. */
export function exitCodeOf(checks: readonly Check[]): ExitCodeValue {
  const first = checks.find((c) => c.status === "FAIL");
  return first ? (first.exitCode ?? ExitCode.remote) : ExitCode.ok;
}
