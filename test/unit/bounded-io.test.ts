/** The byte caps and the request deadline of adapters/bounded-io.ts, on in-process streams. */
import assert from "node:assert/strict";
import { Readable } from "node:stream";
import { test } from "node:test";
import { BodyTooLarge, capBody, ERROR_BODY_MAX_BYTES, readCapped, readErrorBody, RequestDeadline } from "../../src/adapters/bounded-io.ts";
import { manifestMaxBytes, MAX_MANIFEST_LINE } from "../../src/core/manifest.ts";

/** A body that never ends, counting what was pulled from it. */
function endless(chunk = 64 * 1024): { body: Readable; pulled: () => number } {
  let n = 0;
  const body = new Readable({
    read() {
      n += chunk;
      this.push(Buffer.alloc(chunk, 0x20));
    },
  });
  return { body, pulled: () => n };
}

async function drain(r: Readable): Promise<number> {
  let n = 0;
  for await (const c of r) n += (c as Buffer).length;
  return n;
}

test("readCapped: a body up to the cap is read whole; one byte more is refused and the source destroyed", async () => {
  assert.deepEqual(await readCapped(Readable.from([Buffer.from("abc"), Buffer.from("de")]), 5, "x"), Buffer.from("abcde"));
  const e = endless();
  await assert.rejects(readCapped(e.body, 1024 * 1024, "s3://b/head.json"), (err: unknown) => err instanceof BodyTooLarge && /head\.json is larger than the 1\.0 MiB it may be \(reading stopped/.test(err.message));
  assert.ok(e.body.destroyed);
  assert.ok(e.pulled() < 2 * 1024 * 1024, `pulled ${e.pulled()} bytes`);
});

test("readCapped and capBody: a declared length above the cap is refused before a byte is read", async () => {
  const e = endless();
  await assert.rejects(readCapped(e.body, 10, "k", 400 * 1024 * 1024), /declares 400\.0 MiB: refused unread/);
  assert.equal(e.pulled(), 0);
  const e2 = endless();
  await assert.rejects(drain(capBody(e2.body, 10, "k", 11)), BodyTooLarge);
  assert.equal(e2.pulled(), 0);
});

test("capBody: passes exactly the cap, fails at cap + 1 and stops reading", async () => {
  assert.equal(await drain(capBody(Readable.from([Buffer.alloc(3000), Buffer.alloc(1000)]), 4000, "k")), 4000);
  const e = endless();
  await assert.rejects(drain(capBody(e.body, 3 * 1024 * 1024, "s3://b/big.bin")), /big\.bin is larger than the 3\.0 MiB/);
  assert.ok(e.body.destroyed);
  assert.ok(e.pulled() < 4 * 1024 * 1024, `pulled ${e.pulled()} bytes`);
});

test("readErrorBody: a short document whole; a long one cut at the cap and its source destroyed", async () => {
  const doc = Buffer.from("<Error><Code>SlowDown</Code></Error>");
  assert.deepEqual(await readErrorBody(Readable.from([doc])), { bytes: doc, cut: false });
  const e = endless(1000);
  const r = await readErrorBody(e.body);
  assert.equal(r.cut, true);
  assert.equal(r.bytes.length, ERROR_BODY_MAX_BYTES);
  assert.ok(e.body.destroyed);
});

test("RequestDeadline: fires after its base when nothing moves; bytes moved extend it at the floor rate", async () => {
  const fired: number[] = [];
  const t0 = Date.now();
  new RequestDeadline(50, () => fired.push(Date.now() - t0));
  const slow = new RequestDeadline(50, () => fired.push(-1));
  slow.moved(256 * 1024); // one more second at 256 KiB/s
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(fired.length, 1);
  assert.ok((fired[0] as number) >= 45);
  slow.dispose();
  const d = new RequestDeadline(20, () => fired.push(-2));
  d.dispose();
  await new Promise((r) => setTimeout(r, 60));
  assert.deepEqual(fired.filter((f) => f < 0), [], "a disposed deadline never fires; the extended one had not yet");
});

test("manifestMaxBytes: the lines a head's count allows, never less than one full line per entry", () => {
  assert.ok(manifestMaxBytes(0) >= MAX_MANIFEST_LINE);
  assert.ok(manifestMaxBytes(1_000_000) >= 1_000_001 * MAX_MANIFEST_LINE);
});
