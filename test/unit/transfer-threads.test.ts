/**
 * Errors across a transfer thread's boundary (engine/transfer-threads.ts): the main thread decides
 * on a download's failure by its class (ObjectMoved: the next run converges; TransferCorrupt,
 * truncated or not; a fatal local error) and by isRetryable, so what a thread throws must arrive
 * as the same class with the same fields, through a real structured clone.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { FansyncError, LocalIoError, ObjectMoved, RemoteError, TransferCorrupt } from "../../src/core/errors.ts";
import { BodyTooLarge } from "../../src/adapters/bounded-io.ts";
import { isRetryable, S3HttpError } from "../../src/adapters/s3-errors.ts";
import { receiveError, sendError } from "../../src/engine/transfer-threads.ts";

/** Through the structured clone a worker's postMessage makes. */
const across = (err: unknown): Error => receiveError(structuredClone(sendError(err)));

test("fansync errors keep their class, exit code, hint, retryable and own fields", () => {
  const moved = across(new ObjectMoved("a.html: precondition-failed"));
  assert.ok(moved instanceof ObjectMoved && moved instanceof FansyncError);
  assert.equal(moved.message, "a.html: precondition-failed");
  assert.equal((moved as ObjectMoved).exitCode, new ObjectMoved("x").exitCode);
  assert.equal((moved as ObjectMoved).hint, new ObjectMoved("x").hint);

  const cut = across(new TransferCorrupt("b.css: got 3 bytes", true));
  assert.ok(cut instanceof TransferCorrupt);
  assert.equal((cut as TransferCorrupt).truncated, true);
  assert.equal(isRetryable(cut), isRetryable(new TransferCorrupt("b.css: got 3 bytes", true)));
  const other = across(new TransferCorrupt("b.css: other bytes", false));
  assert.equal((other as TransferCorrupt).truncated, false);

  const local = across(new LocalIoError("cannot write /srv/x: ENOSPC", { hint: "the disk is full: free space; the next run resumes" }));
  assert.ok(local instanceof LocalIoError);
  assert.equal((local as LocalIoError).hint, "the disk is full: free space; the next run resumes");
  assert.equal(isRetryable(local), false);

  const remote = across(new RemoteError("GET s3://b/k: cannot reach http://h (ECONNRESET)", { retryable: true }));
  assert.ok(remote instanceof RemoteError);
  assert.equal(isRetryable(remote), true);

  const big = across(new BodyTooLarge("s3://b/k", 10, undefined));
  assert.ok(big instanceof BodyTooLarge);
  assert.match(big.message, /is larger than the 10 B it may be/);
});

test("S3 answers and socket errors keep what isRetryable reads", () => {
  const slow = across(new S3HttpError(503, "SlowDown", "Please reduce your request rate", "req-1"));
  assert.ok(slow instanceof S3HttpError);
  assert.equal(slow.name, "SlowDown");
  assert.equal((slow as S3HttpError).$metadata.httpStatusCode, 503);
  assert.equal(isRetryable(slow), true);

  const denied = across(new S3HttpError(403, "AccessDenied", "no", undefined));
  assert.equal(isRetryable(denied), false);

  const reset = Object.assign(new Error("read ECONNRESET"), { code: "ECONNRESET", errno: -104, syscall: "read" });
  const back = across(reset);
  assert.equal((back as NodeJS.ErrnoException).code, "ECONNRESET");
  assert.equal(back.message, "read ECONNRESET");
  assert.equal(isRetryable(back), isRetryable(reset));
  assert.equal(isRetryable(back), true);
});

test("what cannot be cloned is left out, not thrown", () => {
  const err = Object.assign(new Error("odd"), { socket: { write: () => undefined }, code: "EODD" });
  const back = across(err);
  assert.equal(back.message, "odd");
  assert.equal((back as NodeJS.ErrnoException).code, "EODD");
  assert.equal((back as unknown as { socket?: unknown }).socket, undefined);
});
