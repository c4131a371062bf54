// The ceiling of a Node + @aws-sdk/client-s3 client on this server: a bare loop with 32 requests
// in flight, no listing, no comparison, no state. Run as a child process like every other tool.
// BENCH_SDK_CHECKSUMS=WHEN_REQUIRED sends no request checksums and validates none, as fansync's
// client does; otherwise the SDK's defaults apply (CRC32 on every PutObject, validated GETs).
//   node sdk-loop.ts put <dir> <bucket> <prefix> <keys-file>
//   node sdk-loop.ts get <bucket> <prefix> <dir> <keys-file>
// The keys file lists relative paths, one per line (the generator's listing, so no LIST is needed).
import { S3Client, PutObjectCommand, GetObjectCommand } from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import { createReadStream, createWriteStream, mkdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { pipeline } from "node:stream/promises";
import type { Readable } from "node:stream";

const IN_FLIGHT = 32;
// fauxqs rejects single PUTs over ~11 MiB (S3-SERVERS.md): big files go multipart in 8 MiB parts.
const PART = 8 << 20;

const [mode, a, b, c, keysFile] = process.argv.slice(2);
if ((mode !== "put" && mode !== "get") || !a || !b || c === undefined || !keysFile) {
  process.stderr.write("usage: sdk-loop.ts put <dir> <bucket> <prefix> <keys> | get <bucket> <prefix> <dir> <keys>\n");
  process.exit(2);
}
const endpoint = process.env.BENCH_ENDPOINT;
if (!endpoint) {
  process.stderr.write("BENCH_ENDPOINT is not set\n");
  process.exit(2);
}
const paths = readFileSync(keysFile, "utf8").split("\n").filter((l) => l !== "");
const whenRequired = process.env.BENCH_SDK_CHECKSUMS === "WHEN_REQUIRED";
const client = new S3Client({
  endpoint,
  region: process.env.AWS_REGION ?? "us-east-1",
  forcePathStyle: true,
  ...(whenRequired ? { requestChecksumCalculation: "WHEN_REQUIRED", responseChecksumValidation: "WHEN_REQUIRED" } : {}),
});

const keyOf = (prefix: string, p: string): string => (prefix === "" ? p : `${prefix.replace(/\/$/, "")}/${p}`);

async function putOne(dir: string, bucket: string, prefix: string, p: string): Promise<void> {
  const file = join(dir, p);
  const size = statSync(file).size;
  const Key = keyOf(prefix, p);
  if (size > PART) {
    await new Upload({ client, params: { Bucket: bucket, Key, Body: createReadStream(file) }, partSize: PART, queueSize: 4 }).done();
  } else {
    await client.send(new PutObjectCommand({ Bucket: bucket, Key, Body: readFileSync(file), ContentLength: size }));
  }
}

async function getOne(bucket: string, prefix: string, dir: string, p: string): Promise<void> {
  const res = await client.send(new GetObjectCommand({ Bucket: bucket, Key: keyOf(prefix, p) }));
  const file = join(dir, p);
  mkdirSync(dirname(file), { recursive: true });
  await pipeline(res.Body as Readable, createWriteStream(file));
}

let next = 0;
async function worker(): Promise<void> {
  while (next < paths.length) {
    const p = paths[next++] as string;
    if (mode === "put") await putOne(a as string, b as string, c as string, p);
    else await getOne(a as string, b as string, c as string, p);
  }
}

try {
  await Promise.all(Array.from({ length: IN_FLIGHT }, () => worker()));
} finally {
  client.destroy();
}
