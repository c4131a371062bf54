/**
 * `fansync doctor`'s probing: runs each check against the server and hands the facts to
 * core/doctor-report.ts, which decides what they mean. Writes only under `<meta>doctor/<run id>/`
 * and removes everything it wrote there in a finally, whatever failed in between.
 */
import { randomBytes, createHash } from "node:crypto";
import {
  bucketCheck, type Check, type CheckName, CHECK_NAMES, checksumCheck, type CleanupFacts, clockCheck, conditionalCheck, credentialsCheck,
  dataCheck, type Failure, listingCheck, multipartCheck, orderChecks, readWriteCheck, skippedCheck, versioningCheck, withCleanup, WRITE_CHECKS,
} from "../core/doctor-report.ts";
import { ConditionFailed, errorMessage, ExitCode, FansyncError, RemoteError } from "../core/errors.ts";
import { formatLocation, type Location, metaPrefix } from "../core/location.ts";
import { HEAD_MAX_BYTES, metaKeys } from "../core/manifest.ts";
import { errName, httpStatus, toRemoteError } from "../adapters/s3-errors.ts";
import type { ListOnce, ObjectStore } from "../adapters/object-store.ts";
import { readHead, readManifest } from "./generation-reader.ts";
import { readLease } from "./lease.ts";
import { probeConditionalSupport } from "./publisher.ts";
import { findMovedObjects } from "./transfer.ts";
import type { JobDeps } from "./job-deps.ts";

/** What the checks run against; `now` is this host's clock (the clock check compares it). */
export interface DoctorDeps extends JobDeps {
  readonly store: ObjectStore;
  readonly loc: Location;
}

/** `write: false` (--no-write) skips every check that writes a probe object. */
export interface DoctorOptions {
  readonly write: boolean;
}

// S3's smallest part is 5 MiB (all but the last): 5 MiB + 1 byte is the smallest 2-part upload.
const PART = 5 * 1024 * 1024;
// Cleanup runs after an abort too, so it gets its own deadline instead of the run's signal.
const CLEANUP_TIMEOUT_MS = 30_000;

type Attempt<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly failure: Failure };

/** Run every check (writes only when `opts.write`); returns one Check per name, in report order. */
export async function runDoctor(d: DoctorDeps, opts: DoctorOptions): Promise<Check[]> {
  const found = new Map<CheckName, Check>();
  const set = (c: Check) => {
    found.set(c.name, c);
    d.log.debug({ check: c.name, status: c.status }, c.detail);
  };
  const skipRest = (why: string) => {
    for (const n of CHECK_NAMES) if (!found.has(n)) set(skippedCheck(n, why));
  };

  set(await checkCredentials(d));
  if (found.get("credentials")?.status === "FAIL") {
    skipRest("no credentials, so no request could be signed");
    return orderChecks(found);
  }
  const listing = await d.store.listOnce(d.loc.prefix, d.now, d.signal);
  if (!listing.ok) rethrowIfAborted(d, listing.error);
  set(await checkBucket(d, listing));
  // Any answer, even a refusal, carries the server's Date; only an unreachable server gives none.
  const answered = listing.ok || httpStatus(listing.error) !== undefined;
  set(clockCheck(answered ? { serverDate: listing.serverDate, receivedAtMs: listing.receivedAt.getTime() } : undefined));
  if (found.get("bucket")?.status === "FAIL") {
    skipRest("the bucket check failed");
    return orderChecks(found);
  }

  const versioning = await attempt(d, `read the versioning setting of s3://${d.store.bucket}`, () => d.store.readVersioning(d.signal));
  let putVersionId: boolean | undefined;
  if (opts.write) {
    const probes = new ProbeKeys(`${metaPrefix(d.loc)}doctor/${randomBytes(6).toString("hex")}/`);
    try {
      const rw = await checkReadWrite(d, probes);
      putVersionId = rw.versionId;
      set(rw.check);
      if (rw.check.status === "FAIL") {
        for (const n of WRITE_CHECKS) if (!found.has(n)) set(skippedCheck(n, "the read-write check failed"));
      } else {
        set(await checkConditional(d, probes));
        set(await checkMultipart(d, probes));
        set(await checkChecksums(d, probes));
        set(await checkListing(d, probes));
      }
    } finally {
      const cleanup = await removeProbes(d, probes, versioning.ok ? versioning.value : "unknown");
      const rw = found.get("read-write");
      if (rw) set(withCleanup(rw, cleanup));
    }
  } else {
    for (const n of WRITE_CHECKS) set(skippedCheck(n, "--no-write (this check writes probe objects)"));
  }
  set(versioningCheck(versioning.ok ? { status: versioning.value, putVersionId } : { failure: versioning.failure }));
  set(await checkData(d));
  return orderChecks(found);
}

/** The probe keys of one run, all under one prefix, remembered before each write is attempted. */
class ProbeKeys {
  readonly prefix: string;
  readonly keys = new Set<string>();
  constructor(prefix: string) {
    this.prefix = prefix;
  }
  key(name: string): string {
    const k = this.prefix + name;
    this.keys.add(k);
    return k;
  }
  /** A write the server refused stored nothing: deleting it would only fail again (no s3:DeleteObject). */
  refused(key: string, err: unknown): void {
    const status = httpStatus(err instanceof FansyncError && err.cause !== undefined ? err.cause : err);
    if (status !== undefined && status >= 400 && status < 500) this.keys.delete(key);
  }
}

function rethrowIfAborted(d: DoctorDeps, err: unknown): void {
  if (d.signal.aborted) throw err;
}

/** The adapters' wording of a failure (message + hint), and whether it was a plain AccessDenied. */
function failureOf(err: unknown, what: string, d: DoctorDeps): Failure {
  const e = err instanceof FansyncError ? err : toRemoteError(err, what, d.store.endpoint);
  const root = err instanceof FansyncError && err.cause !== undefined ? err.cause : err;
  return { message: e.message, hint: e.hint, exitCode: e.exitCode, denied: errName(root) === "AccessDenied" };
}

/** Run one step; a failure becomes data for the report, except an abort, which ends the run. */
async function attempt<T>(d: DoctorDeps, what: string, fn: () => Promise<T>, onError?: (err: unknown) => void): Promise<Attempt<T>> {
  try {
    return { ok: true, value: await fn() };
  } catch (err) {
    onError?.(err);
    rethrowIfAborted(d, err);
    return { ok: false, failure: failureOf(err, what, d) };
  }
}

async function checkCredentials(d: DoctorDeps): Promise<Check> {
  try {
    return credentialsCheck({ ok: true, ...(await d.store.readCredentials()) });
  } catch (err) {
    rethrowIfAborted(d, err);
    // The provider chain's own message names what it tried; it never contains a secret.
    return credentialsCheck({ ok: false, error: `${errName(err)}: ${errorMessage(err).split("\n")[0]}` });
  }
}

async function checkBucket(d: DoctorDeps, listing: ListOnce): Promise<Check> {
  const where = { location: formatLocation(d.loc), endpoint: d.store.endpoint };
  if (listing.ok) return bucketCheck({ kind: "listed", keyCount: listing.keyCount }, where);
  const failure = failureOf(listing.error, `list ${formatLocation(d.loc)}`, d);
  if (failure.denied) {
    // A puller's policy has no ListBucket: it may still read, which is all it needs.
    const head = await attempt(d, "read head.json", () => d.store.get(metaKeys.head(metaPrefix(d.loc)), { maxBytes: HEAD_MAX_BYTES, signal: d.signal }));
    if (head.ok) return bucketCheck({ kind: "read-only", headFound: head.value.status === "ok" }, where);
    if (head.failure.denied) return bucketCheck({ kind: "denied", failure }, where);
  }
  return bucketCheck({ kind: "failed", failure }, where);
}

async function checkReadWrite(d: DoctorDeps, probes: ProbeKeys): Promise<{ check: Check; versionId: boolean | undefined }> {
  const key = probes.key("read-write");
  const body = Buffer.concat([Buffer.from("fansync doctor probe\n"), randomBytes(32)]);
  const result = (f: Parameters<typeof readWriteCheck>[0], versionId?: boolean) => ({ check: readWriteCheck(f, probes.prefix), versionId });
  const put = await attempt(d, `PUT s3://${d.store.bucket}/${key}`, () => d.store.put(key, body, { contentType: "application/octet-stream" }, {}, d.signal), (err) => probes.refused(key, err));
  if (!put.ok) return result({ kind: "failed", step: "write", failure: put.failure });
  const versionId = put.value.versionId !== undefined;
  const got = await attempt(d, `GET s3://${d.store.bucket}/${key}`, () => d.store.get(key, { maxBytes: body.length, signal: d.signal }));
  if (!got.ok) return result({ kind: "failed", step: "read back", failure: got.failure }, versionId);
  if (got.value.status !== "ok") {
    return result({ kind: "failed", step: "read back", failure: { message: `the probe just written was ${got.value.status}`, hint: "this server does not read its own writes: use another server", exitCode: ExitCode.remote, denied: false } }, versionId);
  }
  if (!got.value.body.equals(body)) return result({ kind: "mismatch", wrote: body.length, read: got.value.body.length }, versionId);
  const del = await attempt(d, `DELETE s3://${d.store.bucket}/${key}`, () => d.store.deleteMany([key], d.signal));
  if (!del.ok) return result({ kind: "failed", step: "delete", failure: del.failure }, versionId);
  if (del.value.length > 0) {
    const code = del.value[0]?.error ?? "error";
    return result({ kind: "failed", step: "delete", failure: { message: `the server refused to delete the probe (${code})`, hint: undefined, exitCode: ExitCode.remote, denied: code === "AccessDenied" } }, versionId);
  }
  const after = await attempt(d, `GET s3://${d.store.bucket}/${key}`, () => d.store.get(key, { maxBytes: body.length, signal: d.signal }));
  if (after.ok && after.value.status === "ok") return result({ kind: "still-there" }, versionId);
  return result({ kind: "ok", bytes: body.length }, versionId);
}

async function checkConditional(d: DoctorDeps, probes: ProbeKeys): Promise<Check> {
  const key = probes.key("conditional");
  const r = await attempt(d, `conditional PUT s3://${d.store.bucket}/${key}`, () => probeConditionalSupport(d.store, key, d.signal));
  if (!r.ok) return conditionalCheck({ failure: r.failure });
  if (!r.value.ifNoneMatch) return conditionalCheck(r.value);
  const again = probes.key("conditional-deleted");
  const dm = await attempt(d, `conditional PUT s3://${d.store.bucket}/${again} after a delete`, () => createsOverDeleted(d.store, again, d.signal));
  return conditionalCheck(dm.ok ? { ...r.value, overDeleteMarker: dm.value } : { failure: dm.failure });
}

/**
 * Write `key`, delete it, then write it with `If-None-Match: *`: true when that is accepted, as on
 * AWS. On a versioned bucket the delete leaves a delete marker, over which versitygw refuses the
 * write (412): a lease.json or head.json deleted there could never be created again (issue 13).
 */
async function createsOverDeleted(store: ObjectStore, key: string, signal: AbortSignal): Promise<boolean> {
  const attrs = { contentType: "text/plain" };
  await store.put(key, Buffer.from("probe"), attrs, {}, signal);
  const failed = await store.deleteMany([key], signal);
  if (failed.length > 0) throw new RemoteError(`the server refused to delete the probe ${key} (${failed[0]?.error})`);
  try {
    await store.put(key, Buffer.from("probe again"), attrs, { ifNoneMatch: "*" }, signal);
    return true;
  } catch (err) {
    if (err instanceof ConditionFailed) return false;
    throw err;
  }
}

async function checkMultipart(d: DoctorDeps, probes: ProbeKeys): Promise<Check> {
  const key = probes.key("multipart");
  const body = Buffer.alloc(PART + 1, 0x66);
  // Through ObjectStore.upload: the same lib-storage path fansync's large files take.
  const r = await attempt(d, `multipart upload to s3://${d.store.bucket}/${key}`, () =>
    d.store.upload(key, body, { contentType: "application/octet-stream" }, { size: body.length, partSize: PART, queueSize: 2, signal: d.signal }));
  return multipartCheck(r.ok ? { etag: r.value.etag, parts: 2 } : { failure: r.failure });
}

async function checkChecksums(d: DoctorDeps, probes: ProbeKeys): Promise<Check> {
  const key = probes.key("checksum");
  const body = Buffer.concat([Buffer.from("fansync doctor checksum probe\n"), randomBytes(32)]);
  const sent = createHash("sha256").update(body).digest("base64");
  const put = await attempt(d, `PUT s3://${d.store.bucket}/${key} with a sha256 checksum`, () => d.store.putWithSha256(key, body, d.signal));
  if (!put.ok) return checksumCheck({ failure: put.failure });
  const got = await attempt(d, `GET s3://${d.store.bucket}/${key} with ChecksumMode`, () => d.store.getWithChecksum(key, d.signal));
  if (!got.ok) return checksumCheck({ failure: got.failure });
  return checksumCheck({ sent, putEcho: put.value.checksum, getEcho: got.value.checksum, bytesEqual: got.value.body.equals(body) });
}

// Names whose UTF-8 byte order differs from UTF-16 order (U+FF21 before U+1F600 in bytes, after it
// in UTF-16) and from locale order ("B" before "a"); "café" as NFC and as NFD are twins.
const LISTING_NAMES = ["B", "a", "caf\u00e9", "cafe\u0301", "\uff21", "\u{1F600}", "z\u00df", "zz"];
const LISTING_PAGE = 3;

async function checkListing(d: DoctorDeps, probes: ProbeKeys): Promise<Check> {
  const dir = `${probes.prefix}list/`;
  const written = LISTING_NAMES.map((n) => dir + n).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  for (const key of written) {
    probes.key(key.slice(probes.prefix.length));
    const put = await attempt(d, `PUT s3://${d.store.bucket}/${key}`, () => d.store.put(key, Buffer.from("listing probe"), { contentType: "text/plain" }, {}, d.signal), (err) => probes.refused(key, err));
    if (!put.ok) return listingCheck({ failure: put.failure });
  }
  const r = await attempt(d, `LIST s3://${d.store.bucket}/${dir}, ${LISTING_PAGE} keys a page`, () => d.store.listPaged(dir, LISTING_PAGE, d.signal));
  if (!r.ok) return listingCheck({ failure: r.failure });
  return listingCheck({ written, listed: r.value.keys, pages: r.value.pages, pageSize: LISTING_PAGE });
}

/**
 * Delete every probe key, then, unless the bucket is known to be unversioned, every old version
 * and delete marker under the run's prefix. Never throws: what could not be removed is reported.
 */
async function removeProbes(d: DoctorDeps, probes: ProbeKeys, versioning: "Enabled" | "Suspended" | "off" | "unknown"): Promise<CleanupFacts> {
  const signal = AbortSignal.timeout(CLEANUP_TIMEOUT_MS);
  const keys = [...probes.keys];
  if (keys.length === 0) return { probes: 0, leftKeys: [] };
  let removed: Pick<CleanupFacts, "leftKeys" | "error">;
  try {
    const failed = await d.store.deleteMany(keys, signal);
    removed = { leftKeys: failed.map((f) => f.key), ...(failed.length ? { error: failed[0]?.error } : {}) };
  } catch (err) {
    removed = { leftKeys: keys, error: failureOf(err, "delete the probes", d).message };
  }
  if (versioning === "off") return { probes: keys.length, ...removed };
  try {
    const r = await d.store.deleteAllVersions(probes.prefix, signal);
    return { probes: keys.length, ...removed, versions: { deleted: r.deleted, left: r.failed.length } };
  } catch (err) {
    return { probes: keys.length, ...removed, versions: { error: failureOf(err, "list the probes' versions", d).message, versioning } };
  }
}

async function checkData(d: DoctorDeps): Promise<Check> {
  const head = await attempt(d, `read head.json of ${formatLocation(d.loc)}`, () => readHead(d.store, d.loc, d.signal));
  if (!head.ok) return dataCheck({ kind: "failed", failure: head.failure });
  if (!head.value) return dataCheck({ kind: "empty" });
  const lease = await attempt(d, `read lease.json of ${formatLocation(d.loc)}`, () => readLease(d.store, d.loc));
  if (!lease.ok) return dataCheck({ kind: "failed", failure: lease.failure });
  const h = head.value.head;
  // Objects an unfinished commit marked in the head: verified against the manifest (a HEAD each).
  let moved: string[] = [];
  if (h.dirty && h.dirty.length > 0) {
    const dirty = h.dirty;
    const found = await attempt(d, `verify the objects head.json marks`, async () => {
      const { files } = await readManifest(d.store, h, d.signal);
      return findMovedObjects(d.store, d.loc.prefix, files, dirty, { concurrency: 8, signal: d.signal });
    });
    if (!found.ok) return dataCheck({ kind: "failed", failure: found.failure });
    moved = [...found.value].sort();
  }
  return dataCheck({
    kind: "head", generation: h.generation, files: h.files, bytes: h.bytes, writer: h.writer, time: h.time,
    lease: lease.value ? { writer: lease.value.writer, expires: lease.value.expires } : undefined,
    nowMs: d.now().getTime(),
    dirty: h.dirty?.length ?? 0,
    moved,
  });
}
