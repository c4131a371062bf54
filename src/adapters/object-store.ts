/**
 * The one interface every engine talks to a bucket through (STYLE.md 15: restic's `Backend`,
 * rclone's `fs.Fs`). `S3Store` implements it on the wire (SDK and lean data path);
 * `MemoryStore` implements it in memory with S3's semantics and switchable server quirks, so engine
 * logic and the seeded simulation run without a server. One store is one bucket; keys are full keys
 * (prefix included). Outcomes a caller decides on are typed results; a failed condition on a write
 * or copy throws `ConditionFailed`; anything else throws `RemoteError` (retryable or not).
 */
import type { Readable } from "node:stream";
import type { DataPathSpec, PlainCredentials } from "./lean-http.ts";

/** Result of a GET that may be conditional. */
export type GetResult =
  | { readonly status: "ok"; readonly body: Buffer; readonly etag: string; readonly versionId: string | undefined }
  | { readonly status: "not-modified" }
  | { readonly status: "not-found" }
  | { readonly status: "precondition-failed" };

/** Result of a streamed GET. */
export type StreamResult =
  | {
      readonly status: "ok";
      readonly body: Readable;
      readonly etag: string;
      readonly size: number;
      /** The stored headers, so a copy to another bucket keeps them. */
      readonly attrs: ObjectAttrs;
    }
  | { readonly status: "not-found" }
  | { readonly status: "precondition-failed" };

/** Result of a write. */
export interface PutResult {
  readonly etag: string;
  readonly versionId: string | undefined;
}

/** Headers and metadata for a content object. */
export interface ObjectAttrs {
  readonly contentType: string;
  readonly cacheControl?: string | undefined;
  readonly metadata?: Readonly<Record<string, string>>;
}

/** Where a server-side copy reads from: a key (optionally a version) guarded by its ETag. */
export interface CopySource {
  readonly bucket: string;
  readonly key: string;
  readonly versionId?: string | undefined;
  /** CopySourceIfMatch; empty: unguarded. */
  readonly etag: string;
}

/** A key as a listing shows it. */
export interface ListedKey {
  readonly key: string;
  readonly size: number;
  readonly lastModified: Date | undefined;
}

/** The bucket's versioning setting: `off` when it was never enabled. */
export type VersioningState = "Enabled" | "Suspended" | "off";

/** What the credential chain yielded, without the secret. */
export interface CredentialFacts {
  /** The access key id's last 4 characters; undefined when the id is too short to show any of it. */
  readonly keyTail: string | undefined;
  /** A session token came with the keys (SSO, assumed role, instance role). */
  readonly temporary: boolean;
  readonly expiration: string | undefined;
  /** The providers the SDK says the keys came from (its own feature names). */
  readonly sources: readonly string[];
}

/** The server's `Date` header, and this host's clock when the answer arrived. */
export interface ServerClock {
  readonly serverDate: string | undefined;
  readonly receivedAt: Date;
}

/** Outcome of {@link ObjectStore.listOnce}: the server's clock is known even when the request failed. */
export type ListOnce =
  | ({ readonly ok: true; readonly keyCount: number } & ServerClock)
  | ({ readonly ok: false; readonly error: unknown } & ServerClock);

/** Requests against one bucket: everything the engines (src/engine) send. */
export interface ObjectStore {
  readonly bucket: string;
  /** For messages: where this store points. */
  readonly endpoint: string;
  /** For messages: the AWS profile its credentials come from, if one was named. */
  readonly profile: string | undefined;

  /**
   * GET a small object into memory, optionally conditional (If-None-Match / If-Match) or by version.
   * A body over `maxBytes` is refused unread (`BodyTooLarge`, adapters/bounded-io.ts).
   */
  get(key: string, opts: { maxBytes: number; ifNoneMatch?: string; ifMatch?: string; versionId?: string; signal?: AbortSignal }): Promise<GetResult>;
  /** GET an object as a stream, by version or with If-Match on the expected ETag; at most `maxBytes`. */
  getStream(key: string, opts: { maxBytes: number; ifMatch?: string; versionId?: string; signal?: AbortSignal }): Promise<StreamResult>;
  /** HEAD an object (by version or with If-Match) for its headers and version id; undefined when it is not that object. */
  headAttrs(key: string, opts?: { ifMatch?: string; versionId?: string; signal?: AbortSignal }): Promise<(ObjectAttrs & { readonly versionId?: string | undefined }) | undefined>;
  /** PUT bytes, optionally conditional; a failed condition throws `ConditionFailed`. */
  put(key: string, body: Uint8Array, attrs: ObjectAttrs, cond?: { ifMatch?: string; ifNoneMatch?: string }, signal?: AbortSignal): Promise<PutResult>;
  /** PUT a content object whose hex sha256 the caller computed already. Unconditional. */
  putContent(key: string, body: Uint8Array, sha256: string, attrs: ObjectAttrs, signal?: AbortSignal): Promise<PutResult>;
  /** Multipart upload of a stream (or buffer) of `size` bytes in parts of `partSize`. */
  upload(key: string, body: Readable | Buffer, attrs: ObjectAttrs, opts: { size: number; partSize: number; queueSize: number; signal?: AbortSignal }): Promise<PutResult>;
  /**
   * Server-side copy from this bucket or another one on the same endpoint, guarded by the source
   * ETag. Without `attrs` the source's headers and metadata are kept. A changed or vanished source
   * throws `ConditionFailed`.
   */
  copy(key: string, from: CopySource, attrs: ObjectAttrs | undefined, signal?: AbortSignal): Promise<PutResult>;
  /** Delete keys (a delete marker on a versioned bucket); returns the keys the server failed to delete. */
  deleteMany(keys: readonly string[], signal?: AbortSignal): Promise<{ key: string; error: string }[]>;
  /** Keys under `prefix` (operator commands only), at most `max`; `truncated` says so. */
  list(prefix: string, opts?: { max?: number; signal?: AbortSignal | undefined }): Promise<{ keys: ListedKey[]; truncated: boolean }>;

  // The probes `fansync doctor` needs (engine/doctor-checks.ts): facts about the server itself.
  /** The bucket's versioning setting. */
  readVersioning(signal?: AbortSignal): Promise<VersioningState>;
  /** Resolve the credential chain the way a request would; only the key id's tail comes out. */
  readCredentials(): Promise<CredentialFacts>;
  /** One listing of at most one key under `prefix`, with the server's clock (never throws). */
  listOnce(prefix: string, now: () => Date, signal?: AbortSignal): Promise<ListOnce>;
  /** PUT with a sha256 checksum; returns the checksum the server echoed. */
  putWithSha256(key: string, body: Buffer, signal?: AbortSignal): Promise<{ checksum: string | undefined }>;
  /** GET asking for the stored checksum; returns the bytes and the stored sha256 checksum, if any. */
  getWithChecksum(key: string, signal?: AbortSignal): Promise<{ body: Buffer; checksum: string | undefined }>;
  /** Every key under `prefix` as the server pages it, `pageSize` a page; also how many pages. */
  listPaged(prefix: string, pageSize: number, signal?: AbortSignal): Promise<{ keys: string[]; pages: number }>;
  /** Delete every version and delete marker under `prefix` (doctor's own probes only). */
  deleteAllVersions(prefix: string, signal?: AbortSignal): Promise<{ deleted: number; failed: { key: string; error: string }[] }>;
  /** Close connections (a one-shot command's end). */
  destroy(): void;
  /**
   * What a transfer thread needs to GET this bucket's content objects itself (engine/transfer-threads.ts);
   * undefined (or absent: the in-memory store) when only this thread can.
   */
  dataPath?(): Promise<DataPathHandle | undefined>;
}

/** A store's data path as transfer threads use it. */
export interface DataPathHandle {
  /** Plain data for the threads: the resolved URL, region and credentials. */
  readonly spec: DataPathSpec;
  /** Fresh credentials, for threads whose copy is about to expire. */
  credentials(): Promise<PlainCredentials>;
  /** Count request attempts a thread made (the run's request observers: a daemon's metrics). */
  attempted(command: string, n: number): void;
}

/**
 * A version id, or undefined. Unversioned and suspended buckets answer "null" (CompleteMultipartUpload
 * does, some servers on every write): that is no version, and a reader that asked for
 * `?versionId=null` would trust whatever the key holds instead of checking its ETag.
 */
export function realVersion(v: string | undefined): string | undefined {
  return v === undefined || v === "" || v === "null" ? undefined : v;
}

/** An ETag without quotes or a weak prefix, for comparing two of them. */
export function unquoteEtag(etag: string): string {
  return etag.replace(/^(W\/)?"|"$/g, "");
}
