/** Reading a bucket back in tests: list keys, fetch bytes and metadata. */
import { GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, PutObjectCommand, type S3Client } from "@aws-sdk/client-s3";
import { gunzipSync } from "node:zlib";

/** Every key under a prefix (paged; used only on moto or small fauxqs listings). */
export async function listKeys(client: S3Client, bucket: string, prefix = ""): Promise<string[]> {
  const keys: string[] = [];
  let token: string | undefined;
  do {
    const res = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }));
    for (const o of res.Contents ?? []) if (o.Key) keys.push(o.Key);
    token = res.NextContinuationToken;
  } while (token);
  return keys.sort();
}

/** An object's bytes. */
export async function getBytes(client: S3Client, bucket: string, key: string): Promise<Buffer> {
  const res = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  return Buffer.from(await (res.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray());
}

/** An object's headers. */
export async function headObject(client: S3Client, bucket: string, key: string) {
  return client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
}

/** Write raw bytes (to plant hostile or broken control objects). */
export async function putBytes(client: S3Client, bucket: string, key: string, body: Buffer | string): Promise<void> {
  await client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
}

/** The head document of a location. */
export async function readHeadDoc(client: S3Client, bucket: string, prefix: string): Promise<Record<string, unknown>> {
  return JSON.parse((await getBytes(client, bucket, `${prefix}.fansync/head.json`)).toString("utf8")) as Record<string, unknown>;
}

/** Entries of the manifest the head names. */
export async function readManifestDoc(client: S3Client, bucket: string, prefix: string): Promise<{ header: Record<string, unknown>; entries: Record<string, unknown>[] }> {
  const head = await readHeadDoc(client, bucket, prefix);
  const lines = gunzipSync(await getBytes(client, bucket, head.manifestKey as string)).toString("utf8").split("\n").filter(Boolean);
  return { header: JSON.parse(lines[0] as string) as Record<string, unknown>, entries: lines.slice(1).map((l) => JSON.parse(l) as Record<string, unknown>) };
}

/**
 * Compare a Content-Type by media type, as servers differ in parameters (some add `;charset=utf-8`,
 * some drop the one sent); a charset, where there is one, must still be UTF-8.
 */
export function assertMediaType(contentType: string | undefined, want: string, what = "Content-Type"): void {
  const [type, ...params] = (contentType ?? "").split(";").map((p) => p.trim().toLowerCase());
  if (type !== want) throw new Error(`${what}: media type ${JSON.stringify(type)}, expected ${JSON.stringify(want)} (Content-Type ${JSON.stringify(contentType)})`);
  const charset = params.find((p) => p.startsWith("charset="));
  if (charset !== undefined && charset.replace(/"/g, "") !== "charset=utf-8") throw new Error(`${what}: ${charset}, expected UTF-8 (Content-Type ${JSON.stringify(contentType)})`);
}
