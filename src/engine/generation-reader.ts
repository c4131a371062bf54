/**
 * Reading generations: the head (conditionally, the no-op path of every reader), a generation's
 * journal and the manifest a head names. Nothing here writes; publishing is `publisher.ts`, the
 * write lease `lease.ts`.
 */
import { IntegrityError } from "../core/errors.ts";
import type { Location } from "../core/location.ts";
import { metaPrefix } from "../core/location.ts";
import { type FileMap, type Head, HEAD_MAX_BYTES, type Journal, JOURNAL_MAX_BYTES, manifestMaxBytes, metaKeys, parseHead, parseJournal, parseManifest } from "../core/manifest.ts";
import type { ObjectStore } from "../adapters/object-store.ts";

/** The head as read, with the ETag needed for the next conditional write. */
export interface HeadState {
  readonly head: Head;
  readonly etag: string;
}

/** Read the head; undefined when the location has never been published. */
export async function readHead(store: ObjectStore, loc: Location, signal?: AbortSignal): Promise<HeadState | undefined> {
  const res = await readHeadIfChanged(store, loc, undefined, signal);
  return res === "not-modified" ? undefined : res;
}

/**
 * Read the head unless its ETag is still `etag` (one conditional GET: the no-op path of every
 * reader): "not-modified", the head, or undefined when the location has never been published.
 */
export async function readHeadIfChanged(store: ObjectStore, loc: Location, etag: string | undefined, signal?: AbortSignal): Promise<HeadState | "not-modified" | undefined> {
  const meta = metaPrefix(loc);
  const res = await store.get(metaKeys.head(meta), { maxBytes: HEAD_MAX_BYTES, ...(etag ? { ifNoneMatch: etag } : {}), ...(signal ? { signal } : {}) });
  if (res.status === "not-modified" && etag) return "not-modified";
  if (res.status === "not-found") return undefined;
  if (res.status !== "ok") throw new IntegrityError(`unexpected answer reading head.json: ${res.status}`);
  return { head: parseHead(res.body, meta), etag: res.etag };
}

/** Read generation `gen`'s journal; undefined when it is not there (pruned, or never written). */
export async function readJournal(store: ObjectStore, loc: Location, gen: number, signal?: AbortSignal): Promise<Journal | undefined> {
  const res = await store.get(metaKeys.journal(metaPrefix(loc), gen), { maxBytes: JOURNAL_MAX_BYTES, ...(signal ? { signal } : {}) });
  return res.status === "ok" ? parseJournal(res.body, gen) : undefined;
}

/** Read and verify the manifest a head names. */
export async function readManifest(store: ObjectStore, head: Head, signal?: AbortSignal): Promise<{ files: FileMap; bytes: Buffer }> {
  // The head names no manifest size; its file count bounds it (a larger body is refused unread).
  const res = await store.get(head.manifestKey, { maxBytes: manifestMaxBytes(head.files), ...(signal ? { signal } : {}) });
  if (res.status === "not-found") {
    throw new IntegrityError(`head names manifest ${head.manifestKey} (generation ${head.generation}) but it does not exist`, {
      hint: "the bucket is incomplete (replication still arriving?) or damaged; the next run retries",
    });
  }
  if (res.status !== "ok") throw new IntegrityError(`unexpected answer reading ${head.manifestKey}: ${res.status}`);
  // The head's file count bounds what the manifest may inflate to (a gzip bomb stops early).
  return { files: await parseManifest(res.body, head.manifestSha256, head.generation, head.files), bytes: res.body };
}

/** Deltas with more changes than this get no journal (readers fetch the manifest instead). */
export const JOURNAL_MAX_CHANGES = 10_000;

/** What a small change changed, for the info line: up to 10 paths, "+N more" after. */
export function changedPaths(puts: readonly string[], deletes: readonly string[]): string[] {
  const all = [...puts, ...deletes.map((p) => `-${p}`)];
  return all.length <= 10 ? all : [...all.slice(0, 10), `+${all.length - 10} more`];
}
