/**
 * SDK requests that only `fansync doctor` sends: resolving the credential chain, a listing that
 * also yields the server's clock, the versioning setting, a PUT/GET with a sha256 checksum, and the
 * removal of old versions of its own probe objects. S3Store exposes each as a method of
 * ObjectStore (adapters/object-store.ts); everything else goes through S3Store's own requests.
 */
import {
  DeleteObjectsCommand,
  GetBucketVersioningCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  ListObjectVersionsCommand,
  PutObjectCommand,
  type S3Client,
} from "@aws-sdk/client-s3";
import type { CredentialFacts, ListOnce, VersioningState } from "./object-store.ts";

/**
 * Resolve the client's credential chain (env, profile, SSO, container or instance role) the way a
 * request would. Only the key id's tail leaves this function; the secret is never copied.
 */
export async function readCredentials(client: S3Client): Promise<CredentialFacts> {
  // `$source` is the SDK's record of which providers produced the keys (feature name → code).
  const id = (await client.config.credentials()) as { accessKeyId: string; sessionToken?: string; expiration?: Date; $source?: Record<string, unknown> };
  // A 4-character tail of a short key id (local test servers use "test") would be the whole id.
  const keyTail = id.accessKeyId.length >= 12 ? id.accessKeyId.slice(-4) : undefined;
  return {
    keyTail,
    temporary: Boolean(id.sessionToken),
    expiration: id.expiration?.toISOString(),
    sources: Object.keys(id.$source ?? {}),
  };
}

/**
 * ListObjectsV2 with MaxKeys=1 under `prefix`, keeping the raw answer's Date header. A listing and
 * not HeadBucket: fansync's IAM policies grant ListBucket only with an s3:prefix condition, which a
 * HeadBucket never matches, and a HEAD error has no body, so a rejected key could not be told from
 * a missing permission.
 */
export async function listPrefixOnce(client: S3Client, bucket: string, prefix: string, now: () => Date, signal?: AbortSignal): Promise<ListOnce> {
  const cmd = new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, MaxKeys: 1 });
  let serverDate: string | undefined;
  let receivedAt: Date | undefined;
  // The SDK gives a successful command's output without its headers; a middleware on this one
  // command (not the shared client) sees the raw response. Errors carry it as `$response`.
  cmd.middlewareStack.add(
    (next) => async (args) => {
      try {
        const out = await next(args);
        serverDate = headerOf(out.response, "date");
        return out;
      } finally {
        receivedAt = now();
      }
    },
    { step: "deserialize", name: "fansyncServerDate" },
  );
  try {
    const res = await client.send(cmd, { abortSignal: signal });
    return { ok: true, keyCount: res.KeyCount ?? res.Contents?.length ?? 0, serverDate, receivedAt: receivedAt ?? now() };
  } catch (error) {
    return { ok: false, error, serverDate: serverDate ?? headerOf((error as { $response?: unknown }).$response, "date"), receivedAt: receivedAt ?? now() };
  }
}

function headerOf(response: unknown, name: string): string | undefined {
  const h = (response as { headers?: Record<string, string | undefined> } | undefined)?.headers;
  return h?.[name] ?? undefined;
}

/** The bucket's versioning setting: `off` when it was never enabled. */
export async function readBucketVersioning(client: S3Client, bucket: string, signal?: AbortSignal): Promise<VersioningState> {
  const res = await client.send(new GetBucketVersioningCommand({ Bucket: bucket }), { abortSignal: signal });
  return res.Status === "Enabled" || res.Status === "Suspended" ? res.Status : "off";
}

/** PUT with `x-amz-checksum-sha256` (the SDK computes it); returns the checksum the server echoed. */
export async function putWithSha256(client: S3Client, bucket: string, key: string, body: Buffer, signal?: AbortSignal): Promise<{ checksum: string | undefined }> {
  const res = await client.send(
    new PutObjectCommand({ Bucket: bucket, Key: key, Body: body, ContentLength: body.byteLength, ContentType: "application/octet-stream", ChecksumAlgorithm: "SHA256" }),
    { abortSignal: signal },
  );
  return { checksum: res.ChecksumSHA256 };
}

/** GET with ChecksumMode ENABLED; returns the bytes and the stored sha256 checksum, if any. */
export async function getWithChecksum(client: S3Client, bucket: string, key: string, signal?: AbortSignal): Promise<{ body: Buffer; checksum: string | undefined }> {
  const res = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key, ChecksumMode: "ENABLED" }), { abortSignal: signal });
  const body = Buffer.from(await (res.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray());
  return { body, checksum: res.ChecksumSHA256 };
}

/** Every key under `prefix` as ListObjectsV2 pages it, `pageSize` keys a page; also how many pages. */
export async function listAllPaged(client: S3Client, bucket: string, prefix: string, pageSize: number, signal?: AbortSignal): Promise<{ keys: string[]; pages: number }> {
  const keys: string[] = [];
  let pages = 0;
  let token: string | undefined;
  do {
    const res = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, MaxKeys: pageSize, ...(token ? { ContinuationToken: token } : {}) }), { abortSignal: signal });
    pages++;
    for (const o of res.Contents ?? []) if (o.Key !== undefined) keys.push(o.Key);
    token = res.IsTruncated ? res.NextContinuationToken : undefined;
    // A server whose continuation never ends: stop well past what was written.
  } while (token && pages < 100);
  return { keys, pages };
}

/**
 * Delete every version and delete marker under `prefix` (doctor's own probe prefix only): on a
 * versioned bucket a plain delete leaves the probes' bytes behind as noncurrent versions. Returns
 * how many were removed and which the server refused (fansync's policies grant no
 * s3:DeleteObjectVersion; a lifecycle rule for noncurrent versions then removes them).
 */
export async function deleteAllVersions(client: S3Client, bucket: string, prefix: string, signal?: AbortSignal): Promise<{ deleted: number; failed: { key: string; error: string }[] }> {
  const failed: { key: string; error: string }[] = [];
  let deleted = 0;
  let keyMarker: string | undefined;
  let versionMarker: string | undefined;
  do {
    const res = await client.send(
      new ListObjectVersionsCommand({ Bucket: bucket, Prefix: prefix, KeyMarker: keyMarker, VersionIdMarker: versionMarker }),
      { abortSignal: signal },
    );
    const objects = [...(res.Versions ?? []), ...(res.DeleteMarkers ?? [])]
      .filter((v): v is typeof v & { Key: string } => typeof v.Key === "string" && v.Key.startsWith(prefix))
      .map((v) => ({ Key: v.Key, VersionId: v.VersionId }));
    if (objects.length > 0) {
      const del = await client.send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: objects, Quiet: true } }), { abortSignal: signal });
      for (const e of del.Errors ?? []) failed.push({ key: e.Key ?? "?", error: e.Code ?? "error" });
      deleted += objects.length - (del.Errors?.length ?? 0);
    }
    keyMarker = res.IsTruncated ? res.NextKeyMarker : undefined;
    versionMarker = res.IsTruncated ? res.NextVersionIdMarker : undefined;
  } while (keyMarker);
  return { deleted, failed };
}
