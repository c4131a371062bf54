/** One shape for every error in a log line (errorFields / errorRecord, adapters/logger.ts). */
import assert from "node:assert/strict";
import { test } from "node:test";
import { errorFields, errorRecord } from "../../src/adapters/logger.ts";
import { RemoteError } from "../../src/core/errors.ts";

test("errorFields: the error as err, and fansync's hint beside it when it has one", () => {
  const e = new RemoteError("GET s3://b/k: access denied", { hint: "check the bucket policy" });
  assert.deepEqual(errorFields(e), { err: e, hint: "check the bucket policy" });
  const plain = new Error("boom");
  assert.deepEqual(errorFields(plain), { err: plain });
});

test("errorRecord: type, message and code, the S3 code standing in for a bare Error's name; the stack only when asked", () => {
  const sdk = Object.assign(new Error("The specified key does not exist."), { code: "NoSuchKey" });
  assert.deepEqual(errorRecord(sdk), { type: "NoSuchKey", message: "The specified key does not exist.", code: "NoSuchKey" });
  const io = Object.assign(new Error("EACCES: permission denied, open '/x'"), { name: "LocalIoError", code: "EACCES" });
  assert.deepEqual(errorRecord(io), { type: "LocalIoError", message: "EACCES: permission denied, open '/x'", code: "EACCES" });
  assert.equal(errorRecord(io).stack, undefined);
  assert.match(errorRecord(io, true).stack ?? "", /LocalIoError/);
  assert.deepEqual(errorRecord("a string was thrown"), { type: "Error", message: "a string was thrown" });
  assert.deepEqual(errorRecord({ name: "TimeoutError", message: "timed out" }), { type: "TimeoutError", message: "timed out" });
});
