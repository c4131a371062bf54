/**
 * The write lease (`lease.json`): one writer at a time prepares a generation of a location. Read,
 * take (or renew), check before a head is written, release. Its time to live is the caller's
 * option (`leaseTtlMs`; the CLI reads FANSYNC_LEASE_TTL), never a setting read here.
 */
import os from "node:os";
import { randomBytes } from "node:crypto";
import { ConditionFailed, RaceError } from "../core/errors.ts";
import type { Location } from "../core/location.ts";
import { metaPrefix } from "../core/location.ts";
import { metaKeys } from "../core/manifest.ts";
import type { ObjectStore } from "../adapters/object-store.ts";
import type { StateDir } from "../adapters/state-dir.ts";
import { readJson, writeJson } from "../adapters/state-files.ts";

/** A lease document is a few hundred bytes. */
const LEASE_MAX_BYTES = 64 * 1024;

/**
 * How long a write lease lives without renewal unless the caller says otherwise; its holder renews
 * it every third of that. (FANSYNC_LEASE_TTL shortens it for tests of writers that stall past it:
 * read by the CLI, commands/wiring.ts, and passed down as `leaseTtlMs`.)
 */
export const DEFAULT_LEASE_TTL_MS = 60_000;
/** The shortest time to live a lease may be given. */
export const MIN_LEASE_TTL_MS = 1000;
// A new lease is read back after this pause: two writers that both saw no lease have then both
// written theirs, the last write won, and exactly one of them reads its own id back.
const LEASE_SETTLE_MS = 1000;
const LEASE_FORMAT = "fansync-lease/1";

/**
 * `lease.json`: who may publish to a location, and until when. It is never deleted: a writer that
 * is done overwrites it as `released` (expired at that moment, for readers that predate the field),
 * so the next writer takes it with If-Match. Deleting it left a delete marker on a versioned bucket,
 * and versitygw refuses `If-None-Match: *` over a delete marker (issue 13): every push after the
 * first failed there.
 */
export interface LeaseDoc {
  readonly format: typeof LEASE_FORMAT;
  readonly writer: string;
  readonly expires: string;
  readonly time: string;
  /** Given up by `writer`: free for anyone, whatever the clocks say. */
  readonly released?: boolean;
}

function parseLease(body: Uint8Array): LeaseDoc | undefined {
  try {
    const o = JSON.parse(Buffer.from(body).toString("utf8")) as Partial<LeaseDoc> | null;
    if (o?.format !== LEASE_FORMAT || typeof o.writer !== "string" || typeof o.expires !== "string" || !Number.isFinite(Date.parse(o.expires))) return undefined;
    return o as LeaseDoc;
  } catch {
    return undefined; // a damaged lease is treated as absent: the head's read-back still guards
  }
}

/** Read the write lease of a location; undefined when there is none, it is damaged or it was released. */
export async function readLease(store: ObjectStore, loc: Location): Promise<LeaseDoc | undefined> {
  const doc = (await readLeaseState(store, loc))?.doc;
  return doc?.released ? undefined : doc;
}

async function readLeaseState(store: ObjectStore, loc: Location): Promise<{ doc: LeaseDoc | undefined; etag: string } | undefined> {
  const res = await store.get(metaKeys.lease(metaPrefix(loc)), { maxBytes: LEASE_MAX_BYTES });
  return res.status === "ok" ? { doc: parseLease(res.body), etag: res.etag } : undefined;
}

function leaseRace(loc: Location, l: LeaseDoc, why: string, conditional: boolean): RaceError {
  const how = conditional ? "" : " (this server has no conditional writes, so one uploader at a time holds the lease)";
  return new RaceError(`${why}: uploader ${l.writer} holds the write lease of s3://${loc.bucket}/${loc.prefix} until ${l.expires}${how}`);
}

/**
 * Take or renew the single-writer lease. A live lease of another writer refuses with
 * {@link RaceError}; so does a lease we held and lost. Where the server enforces conditions the
 * lease is written with If-Match on the one there (If-None-Match: * only for a location's very
 * first lease), so two writers cannot both take it; elsewhere a fresh lease is read back after a
 * pause, so two writers starting together cannot both go on. The lease lives `ttlMs` unless renewed.
 */
export async function takeLease(store: ObjectStore, loc: Location, writer: string, now: () => Date, held: boolean, conditional: boolean, ttlMs: number, renew = false): Promise<void> {
  const st = await readLeaseState(store, loc);
  const cur = st?.doc?.released ? undefined : st?.doc;
  // A renewal only extends a lease that is still ours: one released or gone meanwhile was taken
  // over (and given up) by another writer while this one was stalled; writing it again would hide that.
  if (renew && cur?.writer !== writer) {
    throw cur ? leaseRace(loc, cur, "lost the write lease", conditional) : new RaceError(`lost the write lease of s3://${loc.bucket}/${loc.prefix}: it was released or removed while this writer held it`);
  }
  if (cur && cur.writer !== writer && (held || Date.parse(cur.expires) > now().getTime())) {
    throw leaseRace(loc, cur, held ? "lost the write lease" : "another uploader is publishing here", conditional);
  }
  const t = now();
  const doc: LeaseDoc = { format: LEASE_FORMAT, writer, expires: new Date(t.getTime() + ttlMs).toISOString(), time: t.toISOString() };
  const key = metaKeys.lease(metaPrefix(loc));
  const attrs = { contentType: "application/json", cacheControl: "no-store" };
  let settle = !conditional;
  try {
    await store.put(key, Buffer.from(JSON.stringify(doc)), attrs, !conditional ? {} : st ? { ifMatch: st.etag } : { ifNoneMatch: "*" });
  } catch (err) {
    if (!(err instanceof ConditionFailed)) throw err;
    // Ours anyway when the answer to our own write was lost and the SDK's retry hit the condition.
    const back = await readLeaseState(store, loc);
    if (back?.doc?.writer === writer && !back.doc.released) return;
    if (back) {
      const other = back.doc && !back.doc.released ? back.doc : undefined;
      if (other) throw leaseRace(loc, other, "another uploader took the write lease at the same moment", conditional);
      throw new RaceError(`another uploader took and released the write lease of s3://${loc.bucket}/${loc.prefix} while this one was taking it`, { hint: "run again; if it keeps happening, another uploader writes to this location: run a single uploader per prefix" });
    }
    // Refused although there is no lease at all: the key's current version is a delete marker (a
    // lease.json deleted by an older fansync, or by hand) and the server refuses If-None-Match: *
    // over it (versitygw does; AWS does not). Write it unconditionally and settle as on a server
    // without conditional writes: of two writers doing this, exactly one reads its own id back.
    // From then on lease.json exists, and is taken with If-Match.
    await store.put(key, Buffer.from(JSON.stringify(doc)), attrs);
    settle = true;
  }
  if (!settle || (held && cur?.writer === writer)) return;
  await new Promise((r) => setTimeout(r, LEASE_SETTLE_MS));
  const back = await readLease(store, loc);
  if (back?.writer !== writer) {
    if (back) throw leaseRace(loc, back, "another uploader took the write lease at the same moment", conditional);
    throw new RaceError(`the write lease of s3://${loc.bucket}/${loc.prefix} was written but is not there when read back (lease.json ${(await readLeaseState(store, loc)) ? "was released" : "is gone"})`, { hint: "another uploader may be starting at the same moment: run again; run a single uploader per prefix" });
  }
}

/** Before a head is written: the lease must still name us (whoever took it over publishes instead). */
export async function checkLease(store: ObjectStore, loc: Location, writer: string): Promise<void> {
  const cur = await readLease(store, loc);
  if (cur?.writer !== writer) {
    throw cur
      ? leaseRace(loc, cur, "lost the write lease before publishing", true)
      : new RaceError(`lost the write lease of s3://${loc.bucket}/${loc.prefix} before publishing (lease.json is gone or was released)`);
  }
}

/**
 * Give the lease up (end of a push, watch stopping): overwrite ours as released, with If-Match, so
 * a writer that took it over in the meantime keeps it. Never a delete (see {@link LeaseDoc}).
 */
export async function releaseLease(store: ObjectStore, loc: Location, writer: string, now: () => Date = () => new Date()): Promise<void> {
  const st = await readLeaseState(store, loc);
  if (!st?.doc || st.doc.writer !== writer || st.doc.released) return;
  const t = now().toISOString();
  const doc: LeaseDoc = { format: LEASE_FORMAT, writer, expires: t, time: t, released: true };
  try {
    await store.put(metaKeys.lease(metaPrefix(loc)), Buffer.from(JSON.stringify(doc)), { contentType: "application/json", cacheControl: "no-store" }, { ifMatch: st.etag });
  } catch (err) {
    if (!(err instanceof ConditionFailed)) throw err;
    // Someone else holds it now: nothing of ours to give up.
  }
}

/**
 * A writer's lease id, kept in its job's state directory (`writer-id.json`), so a restarted writer
 * (after a crash) takes its own lease back at once instead of waiting for it to expire. Loaded once
 * per StateDir object: writers of one process handed the same one (the replicator's regions) get
 * one id even when they ask at once.
 */
export function loadLeaseId(state: StateDir, label: string | undefined): Promise<string> {
  return state.once("lease-id", async () => {
    const known = await readJson<{ id: string }>(state.writerId);
    if (typeof known?.id === "string" && known.id !== "") return known.id;
    const fresh = `${label ?? ""}${os.hostname()}:${randomBytes(4).toString("hex")}`;
    await writeJson(state.writerId, { id: fresh });
    return fresh;
  });
}
