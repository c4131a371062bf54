import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import http from "node:http";
import { describe, test } from "node:test";
import {
  DeleteObjectCommand, GetBucketVersioningCommand, ListObjectsV2Command, ListObjectVersionsCommand, PutObjectCommand, S3Client,
} from "@aws-sdk/client-s3";
import { pullerPolicy } from "../../infra/src/policies.ts";
import { type CliResult, runCli } from "../helpers/cli.ts";
import { expectCode, useServer } from "../helpers/ctx.ts";
import { listKeys, putBytes } from "../helpers/s3.ts";
import { emptyBucket, freePort, serverLabel } from "../helpers/s3-server.ts";
import { writeTree } from "../helpers/tree.ts";

const ctx = useServer();
const CHECKS = ["credentials", "bucket", "read-write", "clock", "conditional-writes", "versioning", "multipart-etag", "checksums", "listing-order", "fansync-data"];
const WRITES = ["read-write", "conditional-writes", "multipart-etag", "checksums", "listing-order"];

interface JsonCheck {
  name: string;
  status: string;
  detail: string;
  action: string;
  data?: Record<string, unknown>;
}

/** The one JSON document `doctor --json` prints (log lines, if any, are objects; the report is an array). */
function report(r: CliResult): JsonCheck[] {
  const line = r.stdout.split("\n").find((l) => l.startsWith("["));
  assert.ok(line, `no JSON report in stdout:\n${r.stdout}`);
  return JSON.parse(line) as JsonCheck[];
}

function byName(checks: JsonCheck[], name: string): JsonCheck {
  const c = checks.find((x) => x.name === name);
  assert.ok(c, `no ${name} check`);
  return c;
}

/** The text line of a check: "<name> <STATUS>  <found> -> <action>". */
function lineOf(r: CliResult, name: string): string {
  const line = r.stdout.split("\n").find((l) => l.startsWith(`${name} `));
  assert.ok(line, `no line for ${name} in:\n${r.stdout}`);
  return line;
}

interface Conditional {
  ifNoneMatch: boolean;
  ifMatch: boolean;
  /** `If-None-Match: *` on a key just deleted (a delete marker where versioned) is written; null: not asked. */
  ifNoneMatchOverDeleteMarker: boolean | null;
}

/** What the server does with conditional PUTs, found with the SDK directly (not through fansync). */
async function probeConditional(client: S3Client, bucket: string): Promise<Conditional> {
  const key = `independent/${randomBytes(4).toString("hex")}`;
  await client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: "one" }));
  const refused = async (cond: { IfNoneMatch?: string; IfMatch?: string }) => {
    try {
      await client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: "two", ...cond }));
      return false;
    } catch (err) {
      if ((err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 412) return true;
      throw err;
    }
  };
  const ifNoneMatch = await refused({ IfNoneMatch: "*" });
  const ifMatch = await refused({ IfMatch: '"0123456789abcdef0123456789abcdef"' });
  await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
  const ifNoneMatchOverDeleteMarker = ifNoneMatch ? !(await refused({ IfNoneMatch: "*" })) : null;
  await emptyBucket(client, bucket, key);
  return { ifNoneMatch, ifMatch, ifNoneMatchOverDeleteMarker };
}

/** The conditional-writes line doctor must print for what the server was seen to do. */
function conditionalLine(c: Conditional): RegExp {
  if (!c.ifNoneMatch || !c.ifMatch) return /^conditional-writes WARN +ignored: .* -> fansync falls back to a read-back check after writing head\.json; run a single uploader per location$/;
  if (c.ifNoneMatchOverDeleteMarker === false) {
    return /^conditional-writes WARN +honoured, except over a delete marker: .*If-None-Match: \* on a key whose current version is a delete marker refused \(412\).* -> fansync releases its write lease by overwriting it, so pushes work here; a location whose head\.json was deleted cannot be published again/;
  }
  return /^conditional-writes OK +honoured/;
}

/** The bucket's versioning status ("off" when never set); undefined when the server answers 501. */
async function versioningOf(client: S3Client, bucket: string): Promise<string | undefined> {
  try {
    return (await client.send(new GetBucketVersioningCommand({ Bucket: bucket }))).Status ?? "off";
  } catch (err) {
    if ((err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 501) return undefined;
    throw err;
  }
}

const VERSIONING_UNREAD = /^versioning +WARN +cannot read the versioning setting: /;

/** Every version and delete marker under a prefix (what a plain listing does not show). */
async function versionsUnder(client: S3Client, bucket: string, prefix: string): Promise<string[]> {
  const res = await client.send(new ListObjectVersionsCommand({ Bucket: bucket, Prefix: prefix }));
  return [...(res.Versions ?? []), ...(res.DeleteMarkers ?? [])].map((v) => `${v.Key}@${v.VersionId}`);
}

/** A proxy that moves the server's Date header by `shiftMs` (the server's clock, seen from here). */
async function dateShiftProxy(target: string, shiftMs: number): Promise<{ url: string; close(): Promise<void> }> {
  const t = new URL(target);
  const server = http.createServer((req, res) => {
    const up = http.request({ host: t.hostname, port: t.port, method: req.method, path: req.url, headers: req.headers }, (ur) => {
      const headers = { ...ur.headers };
      if (headers.date) headers.date = new Date(Date.parse(headers.date) + shiftMs).toUTCString();
      res.writeHead(ur.statusCode ?? 502, headers);
      ur.pipe(res);
    });
    up.on("error", () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  return {
    url: `http://127.0.0.1:${(server.address() as { port: number }).port}`,
    close: () => {
      server.closeAllConnections();
      return new Promise<void>((r) => server.close(() => r()));
    },
  };
}

// moto checks signatures and IAM policies only after /moto-api/reset-auth lowers its count of
// unauthenticated requests; the IAM calls before that need only a header naming the service.
const IAM_AUTH = "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=00";

async function motoIam(endpoint: string, params: Record<string, string>): Promise<string> {
  const r = await fetch(`${endpoint}/`, { method: "POST", headers: { authorization: IAM_AUTH }, body: new URLSearchParams({ Version: "2010-05-08", ...params }) });
  const text = await r.text();
  if (!r.ok) throw new Error(`moto IAM ${params.Action}: ${r.status} ${text}`);
  return text;
}

async function motoAuth(endpoint: string, on: boolean): Promise<void> {
  const r = await fetch(`${endpoint}/moto-api/reset-auth`, { method: "POST", headers: { "content-type": "text/plain" }, body: on ? "0" : "inf" });
  assert.equal(r.status, 200, "moto reset-auth");
}

describe(`doctor (${serverLabel()})`, () => {
  test("a fresh bucket: exit 0, one line per check with what was found, and nothing left behind", async () => {
    const bucket = await ctx.server.bucket("doctor-fresh");
    const other = await ctx.server.bucket("doctor-probe");
    const cond = await probeConditional(ctx.server.client, other);
    const r = await ctx.cli(["doctor", `s3://${bucket}/www`, ...ctx.flags(ctx.tmp("state"))]);
    expectCode(r, 0);
    assert.match(r.stdout, new RegExp(`^fansync doctor: s3://${bucket}/www/ at ${ctx.server.endpoint}$`, "m"));
    assert.match(lineOf(r, "credentials"), /^credentials +OK +found, from environment variables \(AWS_ACCESS_KEY_ID\)/);
    assert.match(lineOf(r, "bucket"), /^bucket +OK .*listing allowed, the prefix is empty/);
    assert.match(lineOf(r, "read-write"), /^read-write +OK +wrote, read back byte-equal and deleted a \d+-byte probe under www\/\.fansync\/doctor\/[0-9a-f]+\/; no probe object left/);
    assert.match(lineOf(r, "clock"), /^clock +OK +this host's clock agrees with the server's/);
    assert.match(lineOf(r, "conditional-writes"), conditionalLine(cond));
    const versioning = await versioningOf(ctx.server.client, bucket);
    if (versioning === undefined) assert.match(lineOf(r, "versioning"), VERSIONING_UNREAD);
    else if (versioning === "Enabled") assert.match(lineOf(r, "versioning"), /^versioning +OK +enabled -> manifests record each object's VersionId/);
    else assert.match(lineOf(r, "versioning"), /^versioning +WARN +off -> a killed push can leave objects holding next-generation bytes/);
    assert.match(lineOf(r, "multipart-etag"), /^multipart-etag +OK +a 2-part upload got ETag "[0-9a-f]{32}-2", with the -2 suffix/);
    assert.match(lineOf(r, "checksums"), /^checksums +OK +the server stores x-amz-checksum-sha256 and returns it/);
    // Listing order is the server's (fauxqs: locale order): what doctor says must be what was listed.
    assert.match(lineOf(r, "listing-order"), /^listing-order +(OK +8 keys with non-ASCII names .*: complete and in UTF-8 byte order|WARN +(8 keys with non-ASCII names .*: (out of UTF-8 byte order|\d+ missing|\d+ repeated)|a paged listing of keys with non-ASCII names failed: ))/);
    assert.match(lineOf(r, "fansync-data"), /^fansync-data +OK +nothing published yet/);
    assert.match(r.stdout, /^\d+ OK, \d+ WARN, 0 FAIL, 0 skipped: fansync can run here/m);
    assert.equal(r.stderr, "");
    assert.deepEqual(await listKeys(ctx.server.client, bucket), [], "doctor left no object in the bucket");
  });

  test("--json: one document naming every check; conditional writes and versioning as independent probes see them", async (t) => {
    const bucket = await ctx.server.bucket("doctor-json");
    const other = await ctx.server.bucket("doctor-probe");
    const cond = await probeConditional(ctx.server.client, other);
    const r = await ctx.cli(["doctor", `s3://${bucket}/site`, "--json", ...ctx.flags(ctx.tmp("state"))]);
    expectCode(r, 0);
    const checks = report(r);
    assert.deepEqual(checks.map((c) => c.name), CHECKS);
    for (const c of checks) {
      assert.ok(["OK", "WARN"].includes(c.status), `${c.name}: ${c.status} ${c.detail}`);
      assert.ok(c.detail.length > 0 && c.action.length > 0, c.name);
    }
    const cw = byName(checks, "conditional-writes");
    // Both buckets are versioned alike (FANSYNC_TEST_VERSIONING), so the delete-marker answer matches.
    assert.deepEqual(cw.data, { ...cond, honoured: cond.ifNoneMatch && cond.ifMatch });
    assert.equal(cw.status, cond.ifNoneMatch && cond.ifMatch && cond.ifNoneMatchOverDeleteMarker !== false ? "OK" : "WARN");
    const versioning = await versioningOf(ctx.server.client, bucket);
    if (versioning === undefined) assert.match(`versioning WARN  ${byName(checks, "versioning").detail}`, VERSIONING_UNREAD);
    else assert.equal(byName(checks, "versioning").data?.status, versioning);
    assert.match(String(byName(checks, "multipart-etag").data?.etag), /-2"$/);
    assert.deepEqual(byName(checks, "checksums").data, { stored: true, matches: true, bytesEqual: true });
    assert.deepEqual(await listKeys(ctx.server.client, bucket, "site/.fansync/doctor/"), []);
    t.diagnostic(`conditional writes: If-None-Match ${cond.ifNoneMatch ? "honoured" : "ignored"}, If-Match ${cond.ifMatch ? "honoured" : "ignored"}`);
  });

  test("a versioned bucket: no version or delete marker of a probe is left", async (t) => {
    const bucket = await ctx.server.bucket("doctor-versioned", { versioning: true });
    const status = await versioningOf(ctx.server.client, bucket);
    if (status === undefined) return t.skip(`${ctx.server.label} answers GetBucketVersioning with 501 (not implemented)`);
    const other = await ctx.server.bucket("doctor-versioned-probe", { versioning: true });
    const cond = await probeConditional(ctx.server.client, other);
    const r = await ctx.cli(["doctor", `s3://${bucket}/v`, "--json", ...ctx.flags(ctx.tmp("state"))]);
    expectCode(r, 0);
    const checks = report(r);
    const v = byName(checks, "versioning");
    assert.equal(v.data?.status, status);
    // versitygw refuses If-None-Match: * over a delete marker (AWS, moto and LocalStack write):
    // doctor must see it, as the SDK does directly.
    const cw = byName(checks, "conditional-writes");
    assert.equal(cw.data?.ifNoneMatchOverDeleteMarker, cond.ifNoneMatchOverDeleteMarker);
    if (cond.ifNoneMatchOverDeleteMarker === false) assert.equal(cw.status, "WARN");
    // Where the server keeps versions, every probe PUT returned a VersionId.
    if (status === "Enabled") assert.deepEqual([v.status, v.data?.putVersionId], ["OK", true]);
    assert.equal(byName(checks, "read-write").status, "OK");
    assert.deepEqual(await versionsUnder(ctx.server.client, bucket, "v/.fansync/doctor/"), []);
    assert.deepEqual(await listKeys(ctx.server.client, bucket), []);
  });

  test("after a push the data check shows generation and file count; --no-write writes nothing", async () => {
    const bucket = await ctx.server.bucket("doctor-data");
    const root = ctx.tmp("master");
    const state = ctx.tmp("state");
    await writeTree(root, { "index.html": "<h1>hi</h1>", "css/site.css": "body{}", "a/b.txt": "b" });
    expectCode(await ctx.cli(["push", root, `s3://${bucket}/www`, ...ctx.flags(state)]), 0);
    const before = await listKeys(ctx.server.client, bucket);
    const r = await ctx.cli(["doctor", `s3://${bucket}/www`, "--no-write", ...ctx.flags(state)]);
    expectCode(r, 0);
    assert.deepEqual(await listKeys(ctx.server.client, bucket), before, "--no-write changed the bucket");
    for (const n of WRITES) assert.match(lineOf(r, n), /SKIP +skipped: --no-write/);
    assert.match(lineOf(r, "bucket"), /OK .*the prefix holds objects/);
    assert.match(lineOf(r, "fansync-data"), /^fansync-data +OK +generation 1: 3 files, 18 B, written by .* ago\); write lease free -> .*next push publishes generation 2/);
    const j = report(await ctx.cli(["doctor", `s3://${bucket}/www`, "--no-write", "--json", ...ctx.flags(state)]));
    assert.deepEqual(j.filter((c) => c.status === "SKIP").map((c) => c.name), WRITES);
    const data = byName(j, "fansync-data").data ?? {};
    assert.deepEqual([data.generation, data.files, data.bytes, data.lease], [1, 3, 18, null]);
    assert.deepEqual(await listKeys(ctx.server.client, bucket), before);
  });

  test("a damaged head.json is a FAIL naming the problem, exit 8", async () => {
    const bucket = await ctx.server.bucket("doctor-corrupt");
    await putBytes(ctx.server.client, bucket, "p/.fansync/head.json", JSON.stringify({ format: "fansync-head/1", generation: 0 }));
    const r = await ctx.cli(["doctor", `s3://${bucket}/p`, "--no-write", ...ctx.flags(ctx.tmp("state"))]);
    expectCode(r, 8);
    assert.match(lineOf(r, "fansync-data"), /FAIL +head\.json is damaged: head\.json: generation is not a positive integer/);
    assert.match(r.stderr, /^fansync doctor: fansync-data: head\.json is damaged: head\.json: generation is not a positive integer\n {2}what to do: pull and push stop with exit 8/m);
  });

  test("an unreachable endpoint: exit 7 and a stderr line saying so; the later checks are skipped", async () => {
    const port = await freePort();
    const r = await ctx.cli(["doctor", "s3://some-bucket/x", "--endpoint-url", `http://127.0.0.1:${port}`, "--log-format", "json"]);
    expectCode(r, 7);
    assert.match(r.stderr, new RegExp(`^fansync doctor: bucket: list s3://some-bucket/x/: cannot reach http://127\\.0\\.0\\.1:${port} \\(ECONNREFUSED\\)$`, "m"));
    assert.match(r.stderr, /what to do: check --endpoint-url/);
    assert.match(lineOf(r, "clock"), /SKIP +skipped: no answer from the server/);
    assert.match(lineOf(r, "fansync-data"), /SKIP +skipped: the bucket check failed/);
  });

  test("no credentials anywhere: exit 3 and what to set", async () => {
    const bucket = await ctx.server.bucket("doctor-nocreds");
    const r = await runCli(["doctor", `s3://${bucket}/x`, ...ctx.flags(ctx.tmp("state"))], {
      env: {
        AWS_ACCESS_KEY_ID: undefined, AWS_SECRET_ACCESS_KEY: undefined, AWS_SESSION_TOKEN: undefined, AWS_PROFILE: undefined,
        AWS_CONFIG_FILE: "/nonexistent/config", AWS_SHARED_CREDENTIALS_FILE: "/nonexistent/credentials", AWS_EC2_METADATA_DISABLED: "true",
        AWS_CONTAINER_CREDENTIALS_RELATIVE_URI: undefined, AWS_CONTAINER_CREDENTIALS_FULL_URI: undefined, AWS_WEB_IDENTITY_TOKEN_FILE: undefined,
      },
    });
    expectCode(r, 3);
    assert.match(r.stderr, /^fansync doctor: credentials: the AWS credential chain found no credentials \(CredentialsProviderError/m);
    assert.match(r.stderr, /what to do: set AWS_PROFILE .*AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.*instance role/);
    assert.deepEqual(await listKeys(ctx.server.client, bucket), []);
  });

  test("wrong credentials: a FAIL where the server checks them, never a false alarm where it does not", async (t) => {
    const bucket = await ctx.server.bucket("doctor-wrongkey");
    const moto = ctx.server.kind === "moto";
    if (moto) await motoAuth(ctx.server.endpoint, true);
    try {
      // Ask the server itself, with the SDK, whether it rejects this key.
      const wrong = new S3Client({ endpoint: ctx.server.endpoint, forcePathStyle: true, region: "us-east-1", credentials: { accessKeyId: "wrong", secretAccessKey: "wrong" } });
      // The code differs: InvalidAccessKeyId (AWS, moto), 404 XAdminUserNotFound (versitygw).
      const rejected = await wrong.send(new ListObjectsV2Command({ Bucket: bucket, MaxKeys: 1 })).then(() => undefined, (e: { name?: string }) => e.name ?? "Error");
      wrong.destroy();
      const r = await ctx.cli(["doctor", `s3://${bucket}/x`, ...ctx.flags(ctx.tmp("state"))], { AWS_ACCESS_KEY_ID: "wrong", AWS_SECRET_ACCESS_KEY: "wrong" });
      if (rejected) {
        t.diagnostic(`${ctx.server.label} rejects an unknown access key with ${rejected}`);
        expectCode(r, 7);
        assert.match(r.stderr, new RegExp(`^fansync doctor: bucket: list s3://.*: the credentials were rejected \\(${rejected}\\)$`, "m"));
        assert.match(r.stderr, /what to do: check AWS_ACCESS_KEY_ID/);
        assert.match(lineOf(r, "credentials"), /OK/, "the chain did yield credentials; the server refused them");
      } else {
        t.diagnostic(`${ctx.server.label} accepts any access key: doctor can only report what it sees`);
        expectCode(r, 0);
        assert.match(lineOf(r, "bucket"), /OK/);
      }
    } finally {
      if (moto) await motoAuth(ctx.server.endpoint, false);
    }
    assert.deepEqual(await listKeys(ctx.server.client, bucket), []);
  });

  test("read-only (puller) credentials: listing denied is a WARN, --no-write passes, a write check says to use --no-write", async (t) => {
    if (ctx.server.kind !== "moto") return t.skip(`needs IAM users and policies, which only moto's IAM API sets up here (${ctx.server.label})`);
    const bucket = await ctx.server.bucket("doctor-puller");
    await motoIam(ctx.server.endpoint, { Action: "CreateUser", UserName: `puller-${bucket}` });
    const keyXml = await motoIam(ctx.server.endpoint, { Action: "CreateAccessKey", UserName: `puller-${bucket}` });
    const policy = pullerPolicy([{ bucket, prefix: "www/", metaPrefix: "www/.fansync/" }]);
    await motoIam(ctx.server.endpoint, { Action: "PutUserPolicy", UserName: `puller-${bucket}`, PolicyName: "puller", PolicyDocument: JSON.stringify(policy) });
    const env = { AWS_ACCESS_KEY_ID: /<AccessKeyId>(.*?)</.exec(keyXml)?.[1] ?? "", AWS_SECRET_ACCESS_KEY: /<SecretAccessKey>(.*?)</.exec(keyXml)?.[1] ?? "" };
    await motoAuth(ctx.server.endpoint, true);
    let ro: CliResult;
    let rw: CliResult;
    try {
      ro = await ctx.cli(["doctor", `s3://${bucket}/www`, "--no-write", ...ctx.flags(ctx.tmp("state"))], env);
      rw = await ctx.cli(["doctor", `s3://${bucket}/www`, ...ctx.flags(ctx.tmp("state"))], env);
    } finally {
      await motoAuth(ctx.server.endpoint, false);
    }
    expectCode(ro, 0);
    assert.match(lineOf(ro, "bucket"), /WARN .*listing denied .* -> enough for a puller/);
    assert.match(lineOf(ro, "versioning"), /WARN +cannot read the versioning setting: .*access denied/);
    assert.match(lineOf(ro, "credentials"), /access key id \.\.\.[A-Z0-9]{4}[;\s]/);
    assert.ok(!ro.stdout.includes(env.AWS_SECRET_ACCESS_KEY) && !ro.stdout.includes(env.AWS_ACCESS_KEY_ID), "no secret nor whole key id printed");
    expectCode(rw, 7);
    assert.match(lineOf(rw, "read-write"), /FAIL +write failed: PUT .*access denied; no probe object left -> .*run doctor --no-write/);
    assert.deepEqual(await listKeys(ctx.server.client, bucket), []);
  });

  test("clock skew: above a minute is a WARN (exit 0), above 15 minutes a FAIL (exit 7)", async () => {
    const bucket = await ctx.server.bucket("doctor-clock");
    for (const [shiftMs, code, status] of [[3 * 60_000, 0, "WARN"], [-20 * 60_000, 7, "FAIL"]] as const) {
      const proxy = await dateShiftProxy(ctx.server.endpoint, shiftMs);
      try {
        const r = await ctx.cli(["doctor", `s3://${bucket}/c`, "--no-write", "--json", "--endpoint-url", proxy.url, "--log-format", "json"]);
        expectCode(r, code);
        const clock = byName(report(r), "clock");
        assert.equal(clock.status, status);
        // The server's clock runs shiftMs ahead: this host is that much behind (to within 2 s).
        assert.ok(Math.abs((clock.data?.skewSeconds as number) + shiftMs / 1000) <= 2, `skew ${String(clock.data?.skewSeconds)} for a shift of ${shiftMs} ms`);
        if (status === "FAIL") assert.match(r.stderr, /^fansync doctor: clock: this host's clock is \d+ s ahead of the server's/m);
      } finally {
        await proxy.close();
      }
    }
  });
});
