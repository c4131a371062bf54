// Classification of S3 answers by error name and HTTP status: which 404s mean "absent".
import assert from "node:assert/strict";
import { test } from "node:test";
import { isAbsent, toRemoteError } from "../../src/adapters/s3-errors.ts";

/** An error shaped like the SDK's: the code as name, the status in $metadata. */
const sdkError = (name: string, status: number) => Object.assign(new Error(`${name} message`), { name, $metadata: { httpStatusCode: status } });

test("only NoSuchKey, NoSuchVersion and a bodiless 404 (NotFound) mean the object is absent", () => {
  for (const [name, status, absent] of [
    ["NoSuchKey", 404, true],
    ["NoSuchVersion", 404, true],
    ["NotFound", 404, true],
    ["XAdminUserNotFound", 404, false],
    ["NoSuchBucket", 404, false],
    ["UnexpectedNotFound", 404, false],
    ["AccessDenied", 403, false],
  ] as const) {
    assert.equal(isAbsent(sdkError(name, status)), absent, name);
  }
});

test("versitygw's 404 XAdminUserNotFound is rejected credentials; another unknown 404 says it is not 'no such key'", () => {
  const creds = toRemoteError(sdkError("XAdminUserNotFound", 404), "GET s3://b/k", "http://127.0.0.1:1");
  assert.equal(creds.message, "GET s3://b/k: the credentials were rejected (XAdminUserNotFound)");
  assert.equal(creds.exitCode, 7);
  assert.equal(creds.retryable, false);
  assert.match(creds.hint ?? "", /^check AWS_ACCESS_KEY_ID/);
  const other = toRemoteError(sdkError("UnexpectedNotFound", 404), "GET s3://b/k", "http://127.0.0.1:1");
  assert.equal(other.message, 'GET s3://b/k: the server answered 404 UnexpectedNotFound, which is not "no such key": a credentials or configuration problem');
  assert.equal(other.exitCode, 7);
  assert.match(other.hint ?? "", /--endpoint-url and path style; `fansync doctor` tells which$/);
  assert.equal(toRemoteError(sdkError("NoSuchBucket", 404), "LIST", "e").message, "LIST: the bucket does not exist");
});
