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

test("credentials about to expire are renewed for the threads before their next request (an instance role, SSO)", async () => {
  const { createServer } = await import("node:http");
  const { mkdtempSync, readFileSync, rmSync } = await import("node:fs");
  const { tmpdir } = await import("node:os");
  const path = await import("node:path");
  const { createHash } = await import("node:crypto");
  const { TransferThreads } = await import("../../src/engine/transfer-threads.ts");
  const body = Buffer.from("<p>renewed</p>\n");
  const etag = `"${createHash("md5").update(body).digest("hex")}"`;
  const keysSeen: string[] = [];
  const server = createServer((req, res) => {
    keysSeen.push(/Credential=([^/]+)\//.exec(req.headers.authorization ?? "")?.[1] ?? "none");
    res.writeHead(200, { "content-length": String(body.length), etag, "content-type": "text/html" });
    res.end(body);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as { port: number }).port;
  const dir = mkdtempSync(path.join(tmpdir(), "fansync-threads-"));
  let renewed = 0;
  // The first credentials expire in a minute: inside the 5-minute margin, so they are renewed at once.
  const store = {
    dataPath: async () => ({
      spec: {
        bucket: "b", baseUrl: `http://127.0.0.1:${port}/b`, signingRegion: "us-east-1",
        credentials: { accessKeyId: "AKIDOLD", secretAccessKey: "s1", sessionToken: "t1", expirationMs: Date.now() + 60_000 },
        clockOffsetMs: 0, maxSockets: 4, requestTimeoutMs: 5000, caBundle: undefined, endpoint: `http://127.0.0.1:${port}`, profile: undefined,
      },
      credentials: async () => {
        renewed++;
        return { accessKeyId: "AKIDNEW", secretAccessKey: "s2", sessionToken: "t2", expirationMs: Date.now() + 3_600_000 };
      },
      attempted: () => undefined,
    }),
  };
  const silent = { debug: () => undefined } as unknown as Parameters<typeof TransferThreads.start>[2];
  const pool = await TransferThreads.start(store, { threads: 1, small: 1000 }, silent);
  assert.ok(pool, "the pool started");
  const entry = { path: "a.html", size: body.length, mtimeMs: 1_700_000_000_000, mode: 0o644, sha256: createHash("sha256").update(body).digest("hex"), etag };
  try {
    const signal = new AbortController().signal;
    // This thread's share first (held open), so the next transfer goes to the transfer thread.
    let releaseHere: () => void = () => undefined;
    const here = pool.download("b/a.html", entry, path.join(dir, "here.tmp"), signal, () => new Promise<void>((r) => (releaseHere = r)));
    await new Promise((r) => setImmediate(r));
    await pool.download("b/a.html", entry, path.join(dir, "t.tmp"), signal, async () => assert.fail("expected to run on the transfer thread"));
    releaseHere();
    await here;
    assert.equal(renewed, 1);
    assert.deepEqual(keysSeen, ["AKIDNEW"], "the thread signed with the renewed credentials");
    assert.deepEqual(readFileSync(path.join(dir, "t.tmp")), body);
  } finally {
    await pool.close();
    server.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
