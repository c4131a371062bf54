import assert from "node:assert/strict";
import { test } from "node:test";
import { GetObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { bucketUrl, encodeKeyPath, objectTarget, wirePath } from "../../src/adapters/lean-http.ts";
import { isRetryable, parseS3ErrorXml, S3HttpError, toRemoteError } from "../../src/adapters/s3-errors.ts";
import { newRunId, tempPathFor } from "../../src/adapters/safe-write.ts";

test("keys are encoded as the SDK's serializer does: each segment escaped (RFC 3986), slashes kept", () => {
  const cases: [string, string][] = [
    ["a/b/c.html", "a/b/c.html"],
    ["sp ace/f i.txt", "sp%20ace/f%20i.txt"],
    ["plus+pct%hash#amp&eq=semi;q?at@dollar$", "plus%2Bpct%25hash%23amp%26eq%3Dsemi%3Bq%3Fat%40dollar%24"],
    ["(paren)!star*'quote", "%28paren%29%21star%2A%27quote"],
    ["caf\u00e9/x", "caf%C3%A9/x"],
    ["cafe\u0301/x", "cafe%CC%81/x"],
    ["tilde~under_dash-dot.", "tilde~under_dash-dot."],
  ];
  for (const [key, want] of cases) assert.equal(encodeKeyPath(key), want, key);
});

test("path style: the bucket is the first path segment; the port stays in the Host header", () => {
  const t = objectTarget(new URL("http://127.0.0.1:9000/my-bucket"), "site/a b.html", { versionId: "v+1/=" });
  assert.deepEqual({ ...t }, { protocol: "http:", hostname: "127.0.0.1", port: 9000, host: "127.0.0.1:9000", path: "/my-bucket/site/a%20b.html", query: { versionId: "v+1/=" } });
  assert.equal(wirePath(t), "/my-bucket/site/a%20b.html?versionId=v%2B1%2F%3D");
});

test("virtual-hosted style: the bucket is in the host name, the key is the whole path", () => {
  const t = objectTarget(new URL("https://my-bucket.s3.eu-west-1.amazonaws.com/"), "index.html");
  assert.equal(t.hostname, "my-bucket.s3.eu-west-1.amazonaws.com");
  assert.equal(t.host, "my-bucket.s3.eu-west-1.amazonaws.com");
  assert.equal(t.port, undefined);
  assert.equal(wirePath(t), "/index.html");
});

test("requests go where the SDK client itself sends them (path or virtual-hosted style, custom endpoint, dotted or short bucket)", async () => {
  const creds = { accessKeyId: "a", secretAccessKey: "b" };
  const cases: [ConstructorParameters<typeof S3Client>[0], string, string][] = [
    [{ region: "eu-west-1" }, "my-bucket", "https://my-bucket.s3.eu-west-1.amazonaws.com/dir/a%20b.html"],
    [{ region: "eu-west-1" }, "my.bucket", "https://s3.eu-west-1.amazonaws.com/my.bucket/dir/a%20b.html"],
    [{ region: "eu-west-1", forcePathStyle: true }, "my-bucket", "https://s3.eu-west-1.amazonaws.com/my-bucket/dir/a%20b.html"],
    [{ region: "us-east-1", endpoint: "http://127.0.0.1:9000", forcePathStyle: true }, "bkt", "http://127.0.0.1:9000/bkt/dir/a%20b.html"],
    // An IP address cannot carry the bucket: path style even without forcePathStyle.
    [{ region: "us-east-1", endpoint: "http://127.0.0.1:9000", forcePathStyle: false }, "bkt", "http://127.0.0.1:9000/bkt/dir/a%20b.html"],
    [{ region: "us-east-1", endpoint: "https://s3.example.net", forcePathStyle: false }, "my-bucket", "https://my-bucket.s3.example.net/dir/a%20b.html"],
    // Not a valid bucket name for a host (under 3 characters): path style.
    [{ region: "us-east-1", endpoint: "https://s3.example.net", forcePathStyle: false }, "b1", "https://s3.example.net/b1/dir/a%20b.html"],
  ];
  for (const [cfg, bucket, want] of cases) {
    const c = new S3Client({ ...cfg, credentials: creds });
    // What the SDK sends for the same GetObject (stopped before the network).
    c.middlewareStack.add((_next) => async (args) => {
      const r = args.request as { protocol: string; hostname: string; port?: number; path: string };
      throw Object.assign(new Error("captured"), { sent: `${r.protocol}//${r.hostname}${r.port ? `:${r.port}` : ""}${r.path}` });
    }, { step: "finalizeRequest", name: "capture" });
    const sdk = await c.send(new GetObjectCommand({ Bucket: bucket, Key: "dir/a b.html" })).then(() => "", (e: { sent?: string }) => e.sent ?? "");
    const { url } = await bucketUrl(c, bucket);
    const t = objectTarget(url, "dir/a b.html");
    const mine = `${t.protocol}//${t.host}${wirePath(t)}`;
    assert.equal(mine, want, JSON.stringify(cfg));
    assert.equal(mine, sdk, `the SDK sends ${JSON.stringify(cfg)} elsewhere`);
    c.destroy();
  }
});

test("an S3 XML error body becomes an error the SDK's classification reads alike", () => {
  assert.deepEqual(parseS3ErrorXml('<?xml version="1.0"?><Error><Code>SlowDown</Code><Message>Please &amp; reduce</Message></Error>'), { code: "SlowDown", message: "Please & reduce" });
  assert.deepEqual(parseS3ErrorXml("<html>bad gateway</html>"), {});
  const slow = new S3HttpError(503, "SlowDown", "reduce", "rid");
  assert.equal(slow.name, "SlowDown");
  assert.equal(slow.$metadata.httpStatusCode, 503);
  assert.equal(isRetryable(slow), true);
  assert.equal(isRetryable(new S3HttpError(500, undefined, undefined)), true);
  assert.equal(isRetryable(new S3HttpError(403, "AccessDenied", "no")), false);
  assert.equal(new S3HttpError(404, undefined, undefined).name, "NotFound");
  assert.equal(new S3HttpError(412, undefined, undefined).name, "PreconditionFailed");
  const denied = toRemoteError(new S3HttpError(403, "SignatureDoesNotMatch", "sig"), "PUT s3://b/k", "http://x");
  assert.match(denied.message, /the credentials were rejected \(SignatureDoesNotMatch\)/);
  assert.equal(denied.retryable, false);
  assert.match(toRemoteError(new S3HttpError(404, "XAdminUserNotFound", "who"), "GET", "http://x").message, /credentials were rejected/);
});

test("temp names: the run's id and a counter, never the same twice in a run nor across runs", () => {
  const a = newRunId();
  const b = newRunId();
  assert.notEqual(a, b);
  const names = new Set<string>();
  for (let i = 0; i < 10_000; i++) names.add(tempPathFor("/root", "d/f.html", a, i));
  for (let i = 0; i < 100; i++) names.add(tempPathFor("/root", "d/f.html", b, i));
  assert.equal(names.size, 10_100);
  for (const n of names) assert.match(n, /^\/root\/d\/\.fansync-tmp-[0-9a-f]{12}[0-9a-z]+-[0-9a-z]+$/);
});
