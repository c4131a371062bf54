/**
 * The S3 adapter: every request fansync sends goes through here. One bucket per store; keys are
 * full keys (prefix included). Errors come out as RemoteError unless the caller handles a status.
 * The engines see it only as an {@link ObjectStore} (adapters/object-store.ts).
 */
import {
  CopyObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type S3Client,
} from "@aws-sdk/client-s3";
import type { Readable } from "node:stream";
import { ConditionFailed, RegionMissing } from "../core/errors.ts";
import { capBody, readCapped } from "./bounded-io.ts";
import { type ContentStore, type LeanHttp, leanContentStore } from "./lean-http.ts";
import {
  type CopySource, type CredentialFacts, type DataPathHandle, type GetResult, type ListedKey, type ListOnce, type ObjectAttrs, type ObjectStore, type PutResult,
  realVersion, type StreamResult, unquoteEtag, type VersioningState,
} from "./object-store.ts";
import { deleteAllVersions, getWithChecksum, listAllPaged, listPrefixOnce, putWithSha256, readBucketVersioning, readCredentials } from "./s3-probes.ts";
import { errName, httpStatus, isAbsent, readStatus, streamFailure, toRemoteError } from "./s3-errors.ts";

export type { CopySource, GetResult, ObjectAttrs, PutResult, StreamResult } from "./object-store.ts";
export { realVersion } from "./object-store.ts";

/** Requests against one bucket, on the wire. */
export class S3Store implements ObjectStore {
  readonly client: S3Client;
  readonly bucket: string;
  /** For messages: where this store points. */
  readonly endpoint: string;
  /** For messages: the AWS profile its credentials come from, if one was named. */
  readonly profile: string | undefined;
  /** The lean data path for content objects (single PUT, GET); undefined: everything on the SDK. */
  private readonly data: LeanHttp | undefined;
  private readonly lean: ContentStore | undefined;

  constructor(opts: { client: S3Client; bucket: string; endpoint: string; profile?: string | undefined; data?: LeanHttp | undefined }) {
    this.client = opts.client;
    this.bucket = opts.bucket;
    this.endpoint = opts.endpoint;
    this.profile = opts.profile;
    this.data = opts.data;
    this.lean = opts.data && leanContentStore(opts.data, opts.bucket, { endpoint: opts.endpoint, profile: opts.profile });
  }

  /**
   * Settle what the SDK resolves lazily, before a job starts: the region and the credentials. A
   * setting that can never work fails here, once, with what to set (exit 3), instead of on every
   * request of a daemon's loop ("Region is missing" every 2 s).
   */
  async checkRunnable(): Promise<void> {
    try {
      await this.client.config.region();
    } catch {
      // The SDK's own words ("Region is missing") add nothing to ours.
      throw new RegionMissing(`no AWS region for s3://${this.bucket}${this.profile ? ` (profile ${JSON.stringify(this.profile)})` : ""}: set AWS_REGION`, {
        hint: "AWS_REGION in the environment (/etc/fansync/fansync.env for the units), a region in the AWS profile, or --endpoint-url for an S3-compatible server",
      });
    }
    try {
      await this.client.config.credentials();
    } catch (err) {
      throw toRemoteError(err, `s3://${this.bucket}`, this.endpoint, this.profile);
    }
  }

  /**
   * GET a small object into memory, optionally conditional (If-None-Match / If-Match) or by version.
   * `maxBytes` is required: a body above it is refused unread (adapters/bounded-io.ts), so no
   * reader holds more than it declared it would.
   */
  async get(key: string, opts: { maxBytes: number; ifNoneMatch?: string; ifMatch?: string; versionId?: string; signal?: AbortSignal }): Promise<GetResult> {
    try {
      const res = await this.client.send(
        new GetObjectCommand({
          Bucket: this.bucket,
          Key: key,
          ...(opts.ifNoneMatch ? { IfNoneMatch: opts.ifNoneMatch } : {}),
          ...(opts.ifMatch ? { IfMatch: opts.ifMatch } : {}),
          ...(opts.versionId ? { VersionId: opts.versionId } : {}),
        }),
        { abortSignal: opts.signal },
      );
      const body = await readCapped(res.Body as Readable, opts.maxBytes, `s3://${this.bucket}/${key}`, res.ContentLength);
      return { status: "ok", body, etag: res.ETag ?? "", versionId: realVersion(res.VersionId) };
    } catch (err) {
      const s = readStatus(err);
      if (s) return { status: s };
      throw toRemoteError(err, `GET s3://${this.bucket}/${key}`, this.endpoint, this.profile);
    }
  }

  /**
   * GET an object as a stream, by version or with If-Match on the expected ETag. `maxBytes` is
   * required (the manifest's size of the object): the body errors at the first byte past it, and a
   * larger declared length is refused before a byte is read (adapters/bounded-io.ts).
   */
  async getStream(key: string, opts: { maxBytes: number; ifMatch?: string; versionId?: string; signal?: AbortSignal }): Promise<StreamResult> {
    if (this.lean) return this.lean.getStream(key, opts);
    const what = `s3://${this.bucket}/${key}`;
    try {
      const res = await this.client.send(
        new GetObjectCommand({
          Bucket: this.bucket,
          Key: key,
          ...(opts.versionId ? { VersionId: opts.versionId } : opts.ifMatch ? { IfMatch: opts.ifMatch } : {}),
        }),
        { abortSignal: opts.signal },
      );
      const attrs: ObjectAttrs = {
        contentType: res.ContentType ?? "application/octet-stream",
        cacheControl: res.CacheControl,
        ...(res.Metadata ? { metadata: res.Metadata } : {}),
      };
      return { status: "ok", body: capBody(res.Body as Readable, opts.maxBytes, what, res.ContentLength), etag: res.ETag ?? "", size: res.ContentLength ?? -1, attrs };
    } catch (err) {
      return streamFailure(err, `GET ${what}`, this.endpoint, this.profile);
    }
  }

  /**
   * What a transfer thread needs to GET this bucket's content objects itself (see
   * engine/transfer-threads.ts): undefined without the lean data path (FANSYNC_DATA_PATH=sdk).
   */
  async dataPath(): Promise<DataPathHandle | undefined> {
    const data = this.data;
    if (!data) return undefined;
    return {
      spec: await data.spec(this.bucket, { endpoint: this.endpoint, profile: this.profile }),
      credentials: () => data.credentials(),
      attempted: (command, n) => data.attempted(command, n),
    };
  }

  /** HEAD an object (by version or with If-Match) for its headers (and version id); undefined when it is not that object. */
  async headAttrs(key: string, opts: { ifMatch?: string; versionId?: string; signal?: AbortSignal } = {}): Promise<(ObjectAttrs & { readonly versionId?: string | undefined }) | undefined> {
    try {
      const res = await this.client.send(
        new HeadObjectCommand({
          Bucket: this.bucket,
          Key: key,
          ...(opts.versionId ? { VersionId: opts.versionId } : opts.ifMatch ? { IfMatch: opts.ifMatch } : {}),
        }),
        { abortSignal: opts.signal },
      );
      // Some servers ignore If-Match on HEAD (fauxqs): the ETag is compared here as well.
      if (!opts.versionId && opts.ifMatch && res.ETag && unquoteEtag(res.ETag) !== unquoteEtag(opts.ifMatch)) return undefined;
      const versionId = realVersion(res.VersionId);
      return { contentType: res.ContentType ?? "application/octet-stream", cacheControl: res.CacheControl, ...(res.Metadata ? { metadata: res.Metadata } : {}), ...(versionId ? { versionId } : {}) };
    } catch (err) {
      const s = readStatus(err);
      if (s === "not-found" || s === "precondition-failed") return undefined;
      throw toRemoteError(err, `HEAD s3://${this.bucket}/${key}`, this.endpoint, this.profile);
    }
  }

  /** PUT bytes, optionally conditional; a failed condition throws {@link ConditionFailed}. */
  async put(key: string, body: Uint8Array, attrs: ObjectAttrs, cond: { ifMatch?: string; ifNoneMatch?: string } = {}, signal?: AbortSignal): Promise<PutResult> {
    try {
      const res = await this.client.send(
        new PutObjectCommand({
          Bucket: this.bucket,
          Key: key,
          Body: body,
          ContentLength: body.byteLength,
          ContentType: attrs.contentType,
          ...(attrs.cacheControl ? { CacheControl: attrs.cacheControl } : {}),
          ...(attrs.metadata ? { Metadata: { ...attrs.metadata } } : {}),
          ...(cond.ifMatch ? { IfMatch: cond.ifMatch } : {}),
          ...(cond.ifNoneMatch ? { IfNoneMatch: cond.ifNoneMatch } : {}),
        }),
        { abortSignal: signal },
      );
      return { etag: res.ETag ?? "", versionId: realVersion(res.VersionId) };
    } catch (err) {
      const status = httpStatus(err);
      if ((cond.ifMatch || cond.ifNoneMatch) && (status === 412 || status === 409 || errName(err) === "PreconditionFailed")) {
        throw new ConditionFailed(`conditional write of ${key} failed (HTTP ${status})`, { cause: err });
      }
      throw toRemoteError(err, `PUT s3://${this.bucket}/${key}`, this.endpoint, this.profile);
    }
  }

  /**
   * PUT a content object: `sha256` is the hex sha256 of `body` (fansync computed it already; it is
   * the payload hash of the signature, so the bytes are not hashed again). Unconditional.
   */
  async putContent(key: string, body: Uint8Array, sha256: string, attrs: ObjectAttrs, signal?: AbortSignal): Promise<PutResult> {
    if (!this.lean) return this.put(key, body, attrs, {}, signal);
    return this.lean.putContent(key, body, sha256, attrs, signal);
  }

  /** Multipart upload of a stream through lib-storage (loaded lazily: the no-op paths never need it). */
  async upload(key: string, body: Readable | Buffer, attrs: ObjectAttrs, opts: { size: number; partSize: number; queueSize: number; signal?: AbortSignal }): Promise<PutResult> {
    const { Upload } = await import("@aws-sdk/lib-storage");
    const up = new Upload({
      client: this.client,
      params: {
        Bucket: this.bucket,
        Key: key,
        Body: body,
        ContentLength: opts.size,
        ContentType: attrs.contentType,
        ...(attrs.cacheControl ? { CacheControl: attrs.cacheControl } : {}),
        ...(attrs.metadata ? { Metadata: { ...attrs.metadata } } : {}),
      },
      partSize: opts.partSize,
      queueSize: opts.queueSize,
      // A failed upload is aborted (after its workers stop) so no orphan parts are billed.
      leavePartsOnError: false,
      ...(opts.signal ? { abortController: abortControllerFor(opts.signal) } : {}),
    });
    try {
      const res = await up.done();
      return { etag: res.ETag ?? "", versionId: realVersion(res.VersionId) };
    } catch (err) {
      throw toRemoteError(err, `multipart upload of s3://${this.bucket}/${key}`, this.endpoint, this.profile);
    }
  }

  /**
   * Server-side copy within this bucket (or from another bucket on the same endpoint), guarded by
   * the source ETag. Without `attrs` the source's headers and metadata are kept (a replica, or an
   * old version restored onto its own key).
   */
  async copy(key: string, from: CopySource, attrs: ObjectAttrs | undefined, signal?: AbortSignal): Promise<PutResult> {
    try {
      return await this.sendCopy(key, from, attrs, signal);
    } catch (err) {
      const onto = from.bucket === this.bucket && from.key === key && from.versionId !== undefined;
      if (!(attrs === undefined && onto && httpStatus(err) === 400 && errName(err) === "InvalidRequest")) throw this.copyError(err, key, from);
      // An old version copied onto its own key with its metadata kept: AWS accepts it, LocalStack
      // refuses it every time (400 "copy an object to itself", issue 13). The same copy with
      // MetadataDirective REPLACE and the version's own headers works on every server tried.
      const own = await this.headAttrs(key, { versionId: from.versionId, ...(signal ? { signal } : {}) });
      if (own === undefined) throw new ConditionFailed(`copy source ${from.key} version ${from.versionId} vanished`, { cause: err });
      try {
        return await this.sendCopy(key, from, own, signal);
      } catch (err2) {
        throw this.copyError(err2, key, from);
      }
    }
  }

  private async sendCopy(key: string, from: CopySource, attrs: ObjectAttrs | undefined, signal: AbortSignal | undefined): Promise<PutResult> {
    const src = `${from.bucket}/${encodeURIComponent(from.key).replace(/%2F/g, "/")}${from.versionId ? `?versionId=${encodeURIComponent(from.versionId)}` : ""}`;
    const res = await this.client.send(
      new CopyObjectCommand({
        Bucket: this.bucket,
        Key: key,
        CopySource: src,
        ...(from.etag ? { CopySourceIfMatch: from.etag } : {}),
        ...(attrs
          ? {
              MetadataDirective: "REPLACE" as const,
              ContentType: attrs.contentType,
              ...(attrs.cacheControl ? { CacheControl: attrs.cacheControl } : {}),
              ...(attrs.metadata ? { Metadata: { ...attrs.metadata } } : {}),
            }
          : { MetadataDirective: "COPY" as const }),
      }),
      { abortSignal: signal },
    );
    return { etag: res.CopyObjectResult?.ETag ?? "", versionId: realVersion(res.VersionId) };
  }

  private copyError(err: unknown, key: string, from: { key: string }): Error {
    if (httpStatus(err) === 412 || isAbsent(err)) {
      return new ConditionFailed(`copy source ${from.key} changed or vanished (HTTP ${httpStatus(err)})`, { cause: err });
    }
    return toRemoteError(err, `COPY to s3://${this.bucket}/${key}`, this.endpoint, this.profile);
  }

  /** Delete keys in batches of 1000; returns the keys the server failed to delete. */
  async deleteMany(keys: readonly string[], signal?: AbortSignal): Promise<{ key: string; error: string }[]> {
    const failed: { key: string; error: string }[] = [];
    for (let i = 0; i < keys.length; i += 1000) {
      const batch = keys.slice(i, i + 1000);
      try {
        const res = await this.client.send(
          new DeleteObjectsCommand({ Bucket: this.bucket, Delete: { Objects: batch.map((Key) => ({ Key })), Quiet: true } }),
          { abortSignal: signal },
        );
        for (const e of res.Errors ?? []) failed.push({ key: e.Key ?? "?", error: e.Code ?? "error" });
      } catch (err) {
        throw toRemoteError(err, `DELETE ${batch.length} objects in s3://${this.bucket}`, this.endpoint, this.profile);
      }
    }
    return failed;
  }

  /**
   * Keys under `prefix`, paged, for operator commands only (`status`, `log`, `rollback`): pullers and
   * the uploader never list (some servers' listings are incomplete, see S3-SERVERS.md). Stops after
   * `max` keys (default: all) so a flooded prefix cannot make a status command hang; `truncated` says so.
   */
  async list(prefix: string, opts: { max?: number; signal?: AbortSignal | undefined } = {}): Promise<{ keys: ListedKey[]; truncated: boolean }> {
    const max = opts.max ?? Number.MAX_SAFE_INTEGER;
    const keys: ListedKey[] = [];
    let token: string | undefined;
    try {
      do {
        const res = await this.client.send(
          new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, ...(token ? { ContinuationToken: token } : {}), MaxKeys: Math.min(1000, max - keys.length) }),
          { abortSignal: opts.signal },
        );
        for (const o of res.Contents ?? []) if (o.Key) keys.push({ key: o.Key, size: o.Size ?? 0, lastModified: o.LastModified });
        token = res.IsTruncated ? res.NextContinuationToken : undefined;
      } while (token && keys.length < max);
    } catch (err) {
      throw toRemoteError(err, `LIST s3://${this.bucket}/${prefix}`, this.endpoint, this.profile);
    }
    return { keys, truncated: token !== undefined };
  }

  /** The bucket's versioning setting (doctor). */
  readVersioning(signal?: AbortSignal): Promise<VersioningState> {
    return readBucketVersioning(this.client, this.bucket, signal);
  }

  /** The credential chain's facts, without the secret (doctor). */
  readCredentials(): Promise<CredentialFacts> {
    return readCredentials(this.client);
  }

  /** One ListObjectsV2 of one key, with the server's Date header (doctor). */
  listOnce(prefix: string, now: () => Date, signal?: AbortSignal): Promise<ListOnce> {
    return listPrefixOnce(this.client, this.bucket, prefix, now, signal);
  }

  /** PUT with a sha256 checksum (doctor). */
  putWithSha256(key: string, body: Buffer, signal?: AbortSignal): Promise<{ checksum: string | undefined }> {
    return putWithSha256(this.client, this.bucket, key, body, signal);
  }

  /** GET with ChecksumMode (doctor). */
  getWithChecksum(key: string, signal?: AbortSignal): Promise<{ body: Buffer; checksum: string | undefined }> {
    return getWithChecksum(this.client, this.bucket, key, signal);
  }

  /** Every key under `prefix`, paged as the server pages it (doctor). */
  listPaged(prefix: string, pageSize: number, signal?: AbortSignal): Promise<{ keys: string[]; pages: number }> {
    return listAllPaged(this.client, this.bucket, prefix, pageSize, signal);
  }

  /** Every version and delete marker under `prefix` removed (doctor's probes). */
  deleteAllVersions(prefix: string, signal?: AbortSignal): Promise<{ deleted: number; failed: { key: string; error: string }[] }> {
    return deleteAllVersions(this.client, this.bucket, prefix, signal);
  }

  /** Close the client's sockets. */
  destroy(): void {
    this.client.destroy();
  }
}

function abortControllerFor(signal: AbortSignal): AbortController {
  const ac = new AbortController();
  if (signal.aborted) ac.abort();
  else signal.addEventListener("abort", () => ac.abort(), { once: true });
  return ac;
}
