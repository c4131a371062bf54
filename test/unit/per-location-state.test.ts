/**
 * Two locations in one process share no state (issue 26: module-level state became objects passed
 * in): each writer's lease lives as long as its own option says, each run's metrics count only the
 * requests of the stores built for it, and a location's writers share what their StateDir object
 * holds (the capability cache, the lease id) but not another location's.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, test } from "node:test";
import { MemoryStore, MemoryWorld } from "../../src/adapters/memory-store.ts";
import { Metrics } from "../../src/adapters/metrics.ts";
import { RequestObservers } from "../../src/adapters/s3-client.ts";
import { silentLogger } from "../../src/adapters/logger.ts";
import { jobStateDir, locationStateDir } from "../../src/adapters/state-dir.ts";
import { BUILD_INFO } from "../../src/adapters/version.ts";
import { metaPrefix, parseLocation } from "../../src/core/location.ts";
import { metaKeys } from "../../src/core/manifest.ts";
import { GenerationWriter } from "../../src/engine/generation-writer.ts";
import { readLease } from "../../src/engine/lease.ts";

const roots: string[] = [];
after(() => {
  for (const r of roots) rmSync(r, { recursive: true, force: true });
});
function tmp(): string {
  const d = mkdtempSync(path.join(os.tmpdir(), "fansync-loc-"));
  roots.push(d);
  return d;
}

const T0 = new Date("2026-01-01T00:00:00.000Z");

test("two writers in one process, each on its own location: each lease lives as long as its own writer's option says", async () => {
  const world = new MemoryWorld();
  const base = tmp();
  const writer = (bucket: string, leaseTtlMs: number | undefined) => {
    world.bucket(bucket);
    const url = `s3://${bucket}/site/`;
    const store = new MemoryStore({ world, bucket });
    const w = new GenerationWriter(
      { loc: parseLocation(url), store, state: jobStateDir(base, "push", { url }), shared: locationStateDir(base, url), retain: 5, leaseTtlMs },
      { log: silentLogger(), signal: new AbortController().signal, now: () => T0 },
    );
    return { w, store, loc: parseLocation(url) };
  };
  const short = writer("short", 5_000);
  const long = writer("long", 90_000);
  const dflt = writer("default", undefined);
  try {
    for (const x of [short, long, dflt]) await x.w.hold();
    const expiry = async (x: typeof short) => Date.parse((await readLease(x.store, x.loc))?.expires ?? "") - T0.getTime();
    assert.equal(await expiry(short), 5_000);
    assert.equal(await expiry(long), 90_000);
    assert.equal(await expiry(dflt), 60_000, "no option: the 60 s default");
  } finally {
    for (const x of [short, long, dflt]) await x.w.release();
  }
  // Released: each lease.json says so, in its own bucket.
  for (const x of [short, long, dflt]) {
    const res = await x.store.get(metaKeys.lease(metaPrefix(x.loc)), { maxBytes: 65_536 });
    assert.equal(res.status, "ok");
    if (res.status === "ok") assert.equal(JSON.parse(res.body.toString("utf8")).released, true);
  }
});

test("a server that ignores conditional writes is remembered for its own location only: a writer of another location in the same process still uses them", async () => {
  const world = new MemoryWorld();
  const base = tmp();
  const make = (bucket: string, ignores: boolean) => {
    world.bucket(bucket);
    const url = `s3://${bucket}/site/`;
    const store = new MemoryStore({ world, bucket, quirks: { ignoresConditionalWrites: ignores } });
    const shared = locationStateDir(base, url);
    const w = new GenerationWriter(
      { loc: parseLocation(url), store, state: jobStateDir(base, "push", { url }), shared, retain: 5 },
      { log: silentLogger(), signal: new AbortController().signal, now: () => new Date() },
    );
    return { w, shared };
  };
  const lax = make("lax", true);
  const strict = make("strict", false);
  // Both at once, as the replicator's regions do.
  await Promise.all([lax.w.hold(), strict.w.hold()]);
  await Promise.all([lax.w.release(), strict.w.release()]);
  const cached = (shared: { capabilities: string }) => JSON.parse(readFileSync(shared.capabilities, "utf8")) as Record<string, boolean>;
  assert.deepEqual(cached(lax.shared), { "memory lax": false });
  assert.deepEqual(cached(strict.shared), { "memory strict": true });
});

test("each run's metrics count the requests of its own stores only", async () => {
  const a = new RequestObservers();
  const b = new RequestObservers();
  const ma = new Metrics(BUILD_INFO, a);
  const mb = new Metrics(BUILD_INFO, b);
  try {
    a.notify("GetObjectCommand");
    a.notify("PutObjectCommand");
    b.notify("GetObjectCommand");
    const count = async (m: Metrics, command: string) => Number(new RegExp(`^fansync_s3_requests_total\\{command="${command}"\\} (\\d+)$`, "m").exec((await m.text()).body)?.[1] ?? 0);
    assert.equal(await count(ma, "GetObject"), 1);
    assert.equal(await count(ma, "PutObject"), 1);
    assert.equal(await count(mb, "GetObject"), 1);
    assert.equal(await count(mb, "PutObject"), 0);
  } finally {
    ma.close();
    mb.close();
  }
  // Closed: no longer counting.
  a.notify("GetObjectCommand");
  assert.match((await ma.text()).body, /^fansync_s3_requests_total\{command="GetObject"\} 1$/m);
});
