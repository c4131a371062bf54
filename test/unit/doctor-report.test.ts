import assert from "node:assert/strict";
import { test } from "node:test";
import {
  bucketCheck, type Check, CHECK_NAMES, type CheckName, checksumCheck, clockCheck, conditionalCheck, credentialsCheck, dataCheck, exitCodeOf,
  type Failure, listingCheck, multipartCheck, orderChecks, readWriteCheck, renderFailures, renderJson, renderText, skippedCheck, versioningCheck, withCleanup,
} from "../../src/core/doctor-report.ts";
import { ExitCode } from "../../src/core/errors.ts";

const where = { location: "s3://site/www/", endpoint: "http://127.0.0.1:9000" };
const denied: Failure = { message: "PUT s3://site/www/.fansync/doctor/x/read-write: access denied", hint: "the identity lacks permission", exitCode: ExitCode.remote, denied: true };
const unreachable: Failure = { message: "list s3://site/www/: cannot reach http://127.0.0.1:9 (ECONNREFUSED)", hint: "check --endpoint-url", exitCode: ExitCode.remote, denied: false };
const T0 = Date.parse("2026-01-01T12:00:00Z");
const date = (ms: number) => new Date(ms).toUTCString();

test("credentials: the source is named, only the key id's tail is shown, none is a config FAIL", () => {
  const ok = credentialsCheck({ ok: true, keyTail: "WXYZ", temporary: true, expiration: "2026-01-01T13:00:00.000Z", sources: ["CREDENTIALS_ENV_VARS"] });
  assert.equal(ok.status, "OK");
  assert.match(ok.detail, /environment variables.*\.\.\.WXYZ.*temporary, expires 2026-01-01T13:00:00.000Z/);
  const unknown = credentialsCheck({ ok: true, keyTail: undefined, temporary: false, expiration: undefined, sources: [] });
  assert.match(unknown.detail, /does not report.*not shown/);
  const none = credentialsCheck({ ok: false, error: "CredentialsProviderError: Could not load credentials from any providers" });
  assert.deepEqual([none.status, none.exitCode], ["FAIL", ExitCode.config]);
  assert.match(none.action, /AWS_PROFILE.*AWS_ACCESS_KEY_ID.*instance role/);
});

test("bucket: listed, read-only (a puller's policy) or the adapter's failure with its hint", () => {
  assert.match(bucketCheck({ kind: "listed", keyCount: 0 }, where).detail, /s3:\/\/site\/www\/ at http:\/\/127\.0\.0\.1:9000: listing allowed, the prefix is empty/);
  const ro = bucketCheck({ kind: "read-only", headFound: false }, where);
  assert.equal(ro.status, "WARN");
  assert.match(ro.action, /puller/);
  const both = bucketCheck({ kind: "denied", failure: { ...denied, message: "list s3://site/www/: access denied" } }, where);
  assert.deepEqual([both.status, both.detail], ["FAIL", "list s3://site/www/: access denied; reading head.json was refused too"]);
  assert.match(both.action, /push first/);
  const down = bucketCheck({ kind: "failed", failure: unreachable }, where);
  assert.deepEqual([down.status, down.detail, down.action, down.exitCode], ["FAIL", unreachable.message, "check --endpoint-url", ExitCode.remote]);
});

test("clock: within a minute OK, above 60 s WARN, above 15 min FAIL; the sign says which side is ahead", () => {
  const at = (skewMs: number) => clockCheck({ serverDate: date(T0), receivedAtMs: T0 + 500 + skewMs });
  const rows: [number, string, number][] = [[0, "OK", 0], [59_000, "OK", 59], [-61_000, "WARN", -61], [14 * 60_000, "WARN", 840], [-16 * 60_000, "FAIL", -960]];
  for (const [skew, status, secs] of rows) {
    const c = at(skew);
    assert.equal(c.status, status, `skew ${skew}`);
    assert.equal(c.data?.skewSeconds, secs);
  }
  assert.match(at(-61_000).detail, /61 s behind/);
  assert.match(at(120_000).detail, /120 s ahead of/);
  assert.equal(at(-16 * 60_000).exitCode, ExitCode.remote);
  assert.equal(clockCheck(undefined).status, "SKIP");
  assert.equal(clockCheck({ serverDate: undefined, receivedAtMs: T0 }).status, "WARN");
  assert.equal(clockCheck({ serverDate: "yesterday-ish", receivedAtMs: T0 }).status, "WARN");
});

test("read-write: OK, altered bytes (integrity), a failed step names it and suggests --no-write when denied", () => {
  assert.equal(readWriteCheck({ kind: "ok", bytes: 53 }, "www/.fansync/doctor/x/").status, "OK");
  const mm = readWriteCheck({ kind: "mismatch", wrote: 53, read: 120 }, "p/");
  assert.deepEqual([mm.status, mm.exitCode], ["FAIL", ExitCode.integrity]);
  const w = readWriteCheck({ kind: "failed", step: "write", failure: denied }, "p/");
  assert.equal(w.status, "FAIL");
  assert.match(w.detail, /^write failed: PUT .*access denied/);
  assert.match(w.action, /--no-write/);
  assert.equal(readWriteCheck({ kind: "failed", step: "read back", failure: unreachable }, "p/").action, "check --endpoint-url");
});

test("cleanup: leftover probes turn the check into a FAIL naming the keys; unremovable old versions are a WARN", () => {
  const ok = readWriteCheck({ kind: "ok", bytes: 53 }, "p/");
  const clean = withCleanup(ok, { probes: 4, leftKeys: [] });
  assert.equal(clean.status, "OK");
  assert.match(clean.detail, /no probe object left$/);
  assert.match(withCleanup(ok, { probes: 4, leftKeys: [], versions: { deleted: 8, left: 0 } }).detail, /8 old version\(s\)/);
  const left = withCleanup(ok, { probes: 4, leftKeys: ["p/.fansync/doctor/x/multipart"], error: "AccessDenied" });
  assert.equal(left.status, "FAIL");
  assert.match(left.detail, /1 probe object\(s\) could not be deleted \(AccessDenied\): p\/\.fansync\/doctor\/x\/multipart/);
  assert.equal(withCleanup(ok, { probes: 4, leftKeys: [], versions: { deleted: 0, left: 3 } }).status, "WARN");
  assert.equal(withCleanup(ok, { probes: 4, leftKeys: [], versions: { error: "access denied", versioning: "Enabled" } }).status, "WARN");
  const unknown = withCleanup(ok, { probes: 4, leftKeys: [], versions: { error: "access denied", versioning: "unknown" } });
  assert.equal(unknown.status, "OK");
  assert.match(unknown.detail, /if the bucket is versioned/);
  // A check that already failed stays failed, with its own exit code.
  const mm = readWriteCheck({ kind: "mismatch", wrote: 1, read: 2 }, "p/");
  assert.equal(withCleanup(mm, { probes: 1, leftKeys: [], versions: { deleted: 0, left: 1 } }).exitCode, ExitCode.integrity);
});

test("conditional writes: honoured only when both headers are refused; else the read-back fallback is named", () => {
  assert.equal(conditionalCheck({ ifNoneMatch: true, ifMatch: true }).status, "OK");
  for (const f of [{ ifNoneMatch: false, ifMatch: false }, { ifNoneMatch: true, ifMatch: false }, { ifNoneMatch: false, ifMatch: true }]) {
    const c = conditionalCheck(f);
    assert.equal(c.status, "WARN");
    assert.match(c.detail, /^ignored/);
    assert.equal(c.action, "fansync falls back to a read-back check after writing head.json; run a single uploader per location");
    assert.deepEqual(c.data, { ...f, honoured: false, ifNoneMatchOverDeleteMarker: null });
  }
  assert.match(conditionalCheck({ ifNoneMatch: true, ifMatch: false }).detail, /If-None-Match: \* on an existing key refused \(412\); If-Match with a wrong ETag overwrote the object/);
  assert.equal(conditionalCheck({ failure: unreachable }).status, "FAIL");
});

test("conditional writes: If-None-Match refused over a delete marker (versitygw, versioned) is a WARN that says what still works", () => {
  const ok = conditionalCheck({ ifNoneMatch: true, ifMatch: true, overDeleteMarker: true });
  assert.equal(ok.status, "OK");
  assert.equal(ok.data?.ifNoneMatchOverDeleteMarker, true);
  const dm = conditionalCheck({ ifNoneMatch: true, ifMatch: true, overDeleteMarker: false });
  assert.equal(dm.status, "WARN");
  assert.match(dm.detail, /^honoured, except over a delete marker: .*a delete marker refused \(412\), where AWS writes the object$/);
  assert.match(dm.action, /^fansync releases its write lease by overwriting it, so pushes work here; a location whose head\.json was deleted cannot be published again/);
  assert.deepEqual(dm.data, { ifNoneMatch: true, ifMatch: true, honoured: true, ifNoneMatchOverDeleteMarker: false });
});

test("versioning: Enabled OK; off/Suspended WARN with the rollback advice; Enabled without VersionIds is caught", () => {
  assert.equal(versioningCheck({ status: "Enabled", putVersionId: true }).status, "OK");
  assert.equal(versioningCheck({ status: "Enabled", putVersionId: undefined }).status, "OK");
  const off = versioningCheck({ status: "off", putVersionId: undefined });
  assert.equal(off.status, "WARN");
  assert.match(off.action, /a killed push can leave objects holding next-generation bytes.*enable versioning for point-in-time rollback/);
  assert.equal(versioningCheck({ status: "Suspended", putVersionId: false }).status, "WARN");
  assert.match(versioningCheck({ status: "Enabled", putVersionId: false }).detail, /no VersionId/);
  const cannot = versioningCheck({ failure: denied });
  assert.equal(cannot.status, "WARN");
  assert.match(cannot.detail, /cannot read/);
});

test("multipart ETag: the -N suffix is reported, either form is OK; a failed upload is a FAIL", () => {
  const dashed = multipartCheck({ etag: '"c47a7d7c2402fb23fa87f46f0347c2ff-2"', parts: 2 });
  assert.deepEqual([dashed.status, dashed.data?.suffix], ["OK", 2]);
  const plain = multipartCheck({ etag: '"c47a7d7c2402fb23fa87f46f0347c2ff"', parts: 2 });
  assert.deepEqual([plain.status, plain.data?.suffix], ["OK", null]);
  assert.match(plain.detail, /without a -N suffix/);
  const bad = multipartCheck({ failure: { ...unreachable, message: "EntityTooSmall (HTTP 400)" } });
  assert.equal(bad.status, "FAIL");
  assert.match(bad.action, /--multipart-threshold/);
});

test("checksums: stored and matching, not stored, mismatching, altered bytes, refused", () => {
  const s = "abc=";
  assert.equal(checksumCheck({ sent: s, putEcho: s, getEcho: s, bytesEqual: true }).status, "OK");
  const none = checksumCheck({ sent: s, putEcho: undefined, getEcho: undefined, bytesEqual: true });
  assert.equal(none.status, "OK");
  assert.match(none.detail, /does not store/);
  assert.equal(checksumCheck({ sent: s, putEcho: s, getEcho: "xyz=", bytesEqual: true }).status, "WARN");
  assert.equal(checksumCheck({ sent: s, putEcho: s, getEcho: s, bytesEqual: false }).status, "WARN");
  assert.equal(checksumCheck({ failure: denied }).status, "WARN");
  for (const c of [none, checksumCheck({ failure: denied })]) assert.match(c.action, /verifies sha256 itself/);
});

test("fansync data: nothing yet, a head with a live/expired/no lease, a damaged head (exit 8)", () => {
  assert.match(dataCheck({ kind: "empty" }).detail, /nothing published yet/);
  const head = { kind: "head" as const, generation: 7, files: 3, bytes: 1536, writer: "web1:42:abc", time: new Date(T0 - 90_000).toISOString(), nowMs: T0 };
  const free = dataCheck({ ...head, lease: undefined });
  assert.equal(free.detail, "generation 7: 3 files, 1.5 KiB, written by web1:42:abc at 2026-01-01T11:58:30.000Z (90 s ago); write lease free");
  assert.match(free.action, /next push publishes generation 8/);
  const held = dataCheck({ ...head, lease: { writer: "web1:43:def", expires: new Date(T0 + 30_000).toISOString() } });
  assert.match(held.detail, /write lease held by web1:43:def until/);
  assert.deepEqual((held.data?.lease as { held: boolean }).held, true);
  assert.match(dataCheck({ ...head, lease: { writer: "w", expires: new Date(T0 - 1).toISOString() } }).detail, /expired at/);
  const moved = dataCheck({ ...head, lease: undefined, dirty: 2, moved: ["index.html"] });
  assert.equal(moved.status, "WARN");
  assert.match(moved.detail, /1 object\(s\) the head names hold other bytes \(an interrupted commit overwrote them\): index\.html/);
  assert.match(moved.action, /fansync push --verify/);
  const intact = dataCheck({ ...head, lease: undefined, dirty: 2, moved: [] });
  assert.equal(intact.status, "OK");
  assert.match(intact.detail, /2 object\(s\) marked by a commit in progress or interrupted hold the manifest's bytes/);
  const bad = dataCheck({ kind: "failed", failure: { message: "head.json: generation is not a positive integer", hint: "damaged", exitCode: ExitCode.integrity, denied: false } });
  assert.deepEqual([bad.status, bad.exitCode], ["FAIL", ExitCode.integrity]);
  assert.match(bad.detail, /^head\.json is damaged: head\.json: generation is not a positive integer/);
  assert.match(bad.action, /exit 8/);
});

test("listing order: complete and in UTF-8 byte order is OK; out of order, dropped or repeated keys a WARN (fauxqs); a failed listing a WARN", () => {
  const bytes = (a: string, b: string) => Buffer.compare(Buffer.from(a), Buffer.from(b));
  const written = ["B", "a", "caf\u00e9", "cafe\u0301", "\uff21", "\u{1F600}"].map((k) => `p/${k}`).sort(bytes);
  const ok = listingCheck({ written, listed: written, pages: 2, pageSize: 3 });
  assert.equal(ok.status, "OK");
  assert.equal(ok.detail, "6 keys with non-ASCII names (NFC and NFD twins among them), listed 3 per page in 2 page(s): complete and in UTF-8 byte order, as S3 lists");
  assert.deepEqual(ok.data, { keys: 6, listed: 6, pages: 2, byteOrder: true, missing: 0, repeated: 0 });
  // What fauxqs does: localeCompare order, and paging that drops one key and repeats another.
  const locale = [...written].sort((a, b) => a.localeCompare(b));
  const bad = listingCheck({ written, listed: [...locale.slice(0, 4), locale[3] as string, locale[5] as string], pages: 2, pageSize: 3 });
  assert.equal(bad.status, "WARN");
  assert.match(bad.detail, /: out of UTF-8 byte order, 1 missing, 1 repeated$/);
  assert.match(bad.action, /^pullers and uploaders never list; .*, so syncing is not affected; tools that sync by listing/);
  const failedList = listingCheck({ failure: { message: "LIST s3://b/p/: InternalError (HTTP 500)", hint: undefined, exitCode: ExitCode.remote, denied: false } });
  assert.deepEqual([failedList.status, failedList.detail], ["WARN", "a paged listing of keys with non-ASCII names failed: LIST s3://b/p/: InternalError (HTTP 500)"]);
});

const all = (status: Check["status"]): Map<CheckName, Check> => new Map(CHECK_NAMES.map((n) => [n, { name: n, status, detail: `${n} found`, action: `${n} action` }]));

test("rendering: one text line per check in order, one JSON document, FAIL lines for stderr", () => {
  const found = all("OK");
  found.delete("checksums");
  found.set("versioning", { name: "versioning", status: "WARN", detail: "off", action: "enable it", data: { status: "off" } });
  const checks = orderChecks(found);
  assert.deepEqual(checks.map((c) => c.name), [...CHECK_NAMES]);
  assert.equal(checks[7]?.status, "SKIP");
  const text = renderText(checks, where).split("\n");
  assert.equal(text[0], "fansync doctor: s3://site/www/ at http://127.0.0.1:9000");
  assert.equal(text[6], "versioning         WARN  off -> enable it");
  assert.equal(text[11], "8 OK, 1 WARN, 0 FAIL, 1 skipped: fansync can run here; read the WARN lines");
  const json = JSON.parse(renderJson(checks)) as { name: string; status: string; data?: unknown }[];
  assert.deepEqual(json.map((c) => c.name), [...CHECK_NAMES]);
  assert.deepEqual(json[5], { name: "versioning", status: "WARN", detail: "off", action: "enable it", data: { status: "off" } });
  assert.equal(renderJson(checks).split("\n").length, 2, "one line");
  assert.equal(renderFailures(checks), "");
  found.set("bucket", bucketCheck({ kind: "failed", failure: unreachable }, where));
  assert.equal(renderFailures(orderChecks(found)), `fansync doctor: bucket: ${unreachable.message}\n  what to do: check --endpoint-url\n`);
});

test("exit code: 0 with WARN and SKIP, else the first FAIL's code in report order", () => {
  const found = all("WARN");
  found.set("clock", skippedCheck("clock", "no answer"));
  assert.equal(exitCodeOf(orderChecks(found)), ExitCode.ok);
  found.set("fansync-data", dataCheck({ kind: "failed", failure: { message: "m", hint: undefined, exitCode: ExitCode.integrity, denied: false } }));
  assert.equal(exitCodeOf(orderChecks(found)), ExitCode.integrity);
  found.set("credentials", credentialsCheck({ ok: false, error: "none" }));
  assert.equal(exitCodeOf(orderChecks(found)), ExitCode.config);
  found.set("credentials", { name: "credentials", status: "FAIL", detail: "d", action: "a" });
  assert.equal(exitCodeOf(orderChecks(found)), ExitCode.remote, "a FAIL without its own code is a remote failure");
});
