/**
 * The lean data path (adapters/lean-http.ts) against a real server: content objects go up and come
 * down byte for byte with their headers, and every failure reads as the SDK path's would (one
 * shared suite run on both paths, as tus-node-server runs one store suite on every store).
 * versitygw checks every signature, so a wrongly signed request fails there.
 */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import type { Readable } from "node:stream";
import { describe, test } from "node:test";
import { createS3Client } from "../../src/adapters/s3-client.ts";
import { LeanHttp } from "../../src/adapters/lean-http.ts";
import { S3Store } from "../../src/adapters/s3-store.ts";
import { FansyncError } from "../../src/core/errors.ts";
import { isRetryable } from "../../src/adapters/s3-errors.ts";
import { useServer } from "../helpers/ctx.ts";
import { startProxy } from "../helpers/proxy.ts";
import { getBytes, headObject } from "../helpers/s3.ts";
import { serverLabel } from "../helpers/s3-server.ts";

const ctx = useServer();
const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

/** The same bucket behind both data paths; `endpoint` may be a proxy in front of the server. */
function stores(bucket: string, endpoint = ctx.server.endpoint, requestTimeoutMs?: number): { lean: S3Store; sdk: S3Store } {
  const client = createS3Client({ endpointUrl: endpoint, pathStyle: true, profile: undefined, maxSockets: 8, requestTimeoutMs });
  return {
    lean: new S3Store({ client, bucket, endpoint, data: new LeanHttp(client, { maxSockets: 8, requestTimeoutMs }) }),
    sdk: new S3Store({ client, bucket, endpoint }),
  };
}

async function readAll(body: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of body) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

const KEYS = ["site/index.html", "site/sp ace/f i.txt", "site/plus+pct%hash#amp&eq=semi;at@dollar$.css", "site/(paren)!star*'q~.js", "site/caf\u00e9/x.html", "site/cafe\u0301/x.html", "site/empty.txt"];

describe(`lean data path (${serverLabel()})`, () => {
  test("content objects go up and come down byte for byte, with Content-Type, Cache-Control and metadata, on odd keys", async () => {
    const bucket = await ctx.server.bucket("lean-bytes");
    const { lean, sdk } = stores(bucket);
    for (const [i, key] of KEYS.entries()) {
      const body = key.endsWith("empty.txt") ? Buffer.alloc(0) : randomBytes(1000 + i * 7919);
      const attrs = { contentType: "text/html; charset=utf-8", cacheControl: "max-age=60", metadata: { sha256: sha(body), mtime: "1700000000000", mode: "644" } };
      const put = await lean.putContent(key, body, sha(body), attrs);
      assert.match(put.etag, /^"?[0-9a-f]{32}"?$/, `${key}: an ETag`);
      // Stored as sent: read back through the SDK itself, and through the lean GET.
      assert.deepEqual(await getBytes(ctx.server.client, bucket, key), body, key);
      const head = await headObject(ctx.server.client, bucket, key);
      assert.equal(head.Metadata?.sha256, sha(body));
      assert.equal(head.CacheControl, "max-age=60");
      const viaLean = await lean.getStream(key, { maxBytes: body.length, ifMatch: put.etag });
      const viaSdk = await sdk.getStream(key, { maxBytes: body.length, ifMatch: put.etag });
      assert.equal(viaLean.status, "ok");
      assert.equal(viaSdk.status, "ok");
      if (viaLean.status !== "ok" || viaSdk.status !== "ok") continue;
      assert.deepEqual(await readAll(viaLean.body), body, key);
      await readAll(viaSdk.body);
      assert.equal(viaLean.etag, viaSdk.etag);
      assert.equal(viaLean.size, body.length);
      assert.deepEqual(viaLean.attrs, viaSdk.attrs, `${key}: the same headers and metadata on both paths`);
    }
  });

  test("a missing key, a wrong ETag and a missing bucket read the same on both paths", async () => {
    const bucket = await ctx.server.bucket("lean-absent");
    const { lean, sdk } = stores(bucket);
    await lean.putContent("k", Buffer.from("v1"), sha(Buffer.from("v1")), { contentType: "text/plain" });
    for (const s of [lean, sdk]) {
      assert.equal((await s.getStream("nope", { maxBytes: 16 })).status, "not-found");
      assert.equal((await s.getStream("k", { maxBytes: 16, ifMatch: '"00000000000000000000000000000000"' })).status, "precondition-failed");
    }
    const gone = stores("fansync-no-such-bucket-lean");
    const errs = await Promise.all([gone.lean, gone.sdk].map((s) => s.putContent("k", Buffer.from("x"), sha(Buffer.from("x")), { contentType: "text/plain" }).then(() => undefined, (e: unknown) => e)));
    for (const e of errs) assert.ok(e instanceof FansyncError, String(e));
    const [a, b] = errs as FansyncError[];
    assert.equal(a?.message, b?.message);
    assert.equal(a?.exitCode, b?.exitCode);
  });

  test("wrong credentials: the lean path fails with the SDK path's error and exit code", async (t) => {
    const bucket = await ctx.server.bucket("lean-creds");
    const saved = { id: process.env.AWS_ACCESS_KEY_ID, secret: process.env.AWS_SECRET_ACCESS_KEY };
    process.env.AWS_SECRET_ACCESS_KEY = "wrong-secret";
    let errs: unknown[];
    try {
      const { lean, sdk } = stores(bucket);
      const body = Buffer.from("secret stuff");
      errs = await Promise.all([lean, sdk].map((s) => s.putContent("k", body, sha(body), { contentType: "text/plain" }).then(() => undefined, (e: unknown) => e)));
    } finally {
      process.env.AWS_ACCESS_KEY_ID = saved.id;
      process.env.AWS_SECRET_ACCESS_KEY = saved.secret;
    }
    if (errs[1] === undefined) {
      t.skip(`${ctx.server.label} checks no credentials`);
      return;
    }
    const [a, b] = errs as FansyncError[];
    assert.ok(a instanceof FansyncError, String(a));
    assert.equal(a.message, b?.message);
    assert.match(a.message, /the credentials were rejected/);
    assert.equal(a.exitCode, b?.exitCode);
    assert.equal(a.retryable, false);
    assert.ok(!a.message.includes("wrong-secret"), "the secret is never in a message");
  });

  test("503 SlowDown and 500 are retried within the request (3 attempts, as the SDK), then fail as retryable", async () => {
    const bucket = await ctx.server.bucket("lean-retry");
    const proxy = await startProxy(ctx.server.endpoint);
    try {
      const { lean } = stores(bucket, proxy.url);
      const body = Buffer.from("retry me");
      let puts = 0;
      proxy.fault = (q) => (q.method === "PUT" && ++puts <= 2 ? { kind: "status", status: puts === 1 ? 503 : 500, code: puts === 1 ? "SlowDown" : "InternalError" } : { kind: "none" });
      await lean.putContent("k", body, sha(body), { contentType: "text/plain" });
      assert.equal(puts, 3, "two failed attempts, the third landed");
      assert.deepEqual(await getBytes(ctx.server.client, bucket, "k"), body);
      let gets = 0;
      proxy.fault = (q) => (q.method === "GET" ? (gets++, { kind: "status", status: 503, code: "SlowDown" }) : { kind: "none" });
      const err = await lean.getStream("k", { maxBytes: 16 }).then(() => undefined, (e: unknown) => e);
      assert.ok(err instanceof FansyncError, String(err));
      assert.equal(gets, 3, "three attempts, no more");
      assert.equal(isRetryable(err), true);
      assert.match(err.message, /SlowDown \(HTTP 503\)/);
      // A 403 is never tried again.
      let denied = 0;
      proxy.fault = (q) => (q.method === "PUT" ? (denied++, { kind: "status", status: 403, code: "AccessDenied" }) : { kind: "none" });
      const no = await lean.putContent("k2", body, sha(body), { contentType: "text/plain" }).then(() => undefined, (e: unknown) => e);
      assert.ok(no instanceof FansyncError && /access denied/.test(no.message), String(no));
      assert.equal(denied, 1);
    } finally {
      await proxy.close();
    }
  });

  test("a stalled answer times out and is tried again; an abort stops the request", async () => {
    const bucket = await ctx.server.bucket("lean-stall");
    const proxy = await startProxy(ctx.server.endpoint);
    try {
      const { lean } = stores(bucket, proxy.url, 500);
      const body = Buffer.from("stall");
      let puts = 0;
      proxy.fault = (q) => (q.method === "PUT" && ++puts === 1 ? { kind: "stall" } : { kind: "none" });
      await lean.putContent("k", body, sha(body), { contentType: "text/plain" });
      assert.equal(puts, 2);
      proxy.fault = () => ({ kind: "stall" });
      const ac = new AbortController();
      setTimeout(() => ac.abort(), 100);
      const t0 = Date.now();
      const err = await lean.getStream("k", { maxBytes: 16, signal: ac.signal }).then(() => undefined, (e: unknown) => e);
      assert.ok(err !== undefined);
      assert.ok(Date.now() - t0 < 400, "aborted before the request timeout");
    } finally {
      await proxy.close();
    }
  });
});
