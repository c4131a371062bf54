// The raw ceiling: a bare keep-alive `node:http` loop sending the same signed PutObject/GetObject
// requests as the SDK loop, 32 in flight, with no SDK middleware at all. Each request is read,
// hashed (SigV4's payload sha256, as the SDK does over plain http) and signed with the SDK's own
// SignatureV4 (@smithy/signature-v4) and static bench credentials: what is left is Node's HTTP
// stack, hashing and signing. Run as a child process like every other tool:
//   node http-loop.ts put <dir> <bucket> <prefix> <keys-file>
//   node http-loop.ts get <bucket> <prefix> <dir> <keys-file>
import { Agent, request, type IncomingMessage } from "node:http";
import { createWriteStream, mkdirSync, readFileSync } from "node:fs";
import { open } from "node:fs/promises";
import { dirname, join } from "node:path";
import { pipeline } from "node:stream/promises";
import { SignatureV4 } from "@smithy/signature-v4";
import { Sha256 } from "@smithy/core/checksum";

const IN_FLIGHT = 32;
// As the SDK loop: fauxqs refuses single PUTs over ~11 MiB, so bigger files go multipart in 8 MiB parts.
const PART = 8 << 20;

const [mode, a, b, c, keysFile] = process.argv.slice(2);
if ((mode !== "put" && mode !== "get") || !a || !b || c === undefined || !keysFile) {
  process.stderr.write("usage: http-loop.ts put <dir> <bucket> <prefix> <keys> | get <bucket> <prefix> <dir> <keys>\n");
  process.exit(2);
}
const endpoint = new URL(process.env.BENCH_ENDPOINT ?? "");
const paths = readFileSync(keysFile, "utf8").split("\n").filter((l) => l !== "");
const agent = new Agent({ keepAlive: true, maxSockets: IN_FLIGHT });
const signer = new SignatureV4({
  service: "s3",
  region: process.env.AWS_REGION ?? "us-east-1",
  credentials: { accessKeyId: process.env.AWS_ACCESS_KEY_ID ?? "bench", secretAccessKey: process.env.AWS_SECRET_ACCESS_KEY ?? "benchsecret" },
  sha256: Sha256,
  // S3 signs the path as sent, encoded once (no double encoding).
  uriEscapePath: false,
});

/** The S3 way of encoding a key in a path: every byte but unreserved characters and "/". */
const encodeKey = (key: string): string => key.split("/").map((s) => encodeURIComponent(s).replace(/[!'()*]/g, (ch) => `%${ch.charCodeAt(0).toString(16).toUpperCase()}`)).join("/");
const keyOf = (prefix: string, p: string): string => (prefix === "" ? p : `${prefix.replace(/\/$/, "")}/${p}`);

type Sent = { res: IncomingMessage };

/** Signs and sends one request; resolves with the response (body not read yet). */
async function send(method: string, bucket: string, key: string, query: Record<string, string>, body: Buffer | undefined): Promise<Sent> {
  const headers: Record<string, string> = { host: endpoint.host };
  if (body !== undefined) headers["content-length"] = String(body.length);
  const signed = await signer.sign({
    method,
    protocol: endpoint.protocol,
    hostname: endpoint.hostname,
    port: Number(endpoint.port),
    path: `/${bucket}/${encodeKey(key)}`,
    query,
    headers,
    body,
  });
  const qs = new URLSearchParams(query).toString();
  return new Promise((resolve, reject) => {
    const req = request(
      { agent, host: endpoint.hostname, port: endpoint.port, method, path: `/${bucket}/${encodeKey(key)}${qs ? `?${qs}` : ""}`, headers: signed.headers },
      (res) => {
        if ((res.statusCode ?? 500) >= 300) {
          const chunks: Buffer[] = [];
          res.on("data", (ch: Buffer) => chunks.push(ch));
          res.on("end", () => reject(new Error(`${method} ${key}${qs ? `?${qs}` : ""}: HTTP ${res.statusCode} ${Buffer.concat(chunks).toString().slice(0, 200)}`)));
          return;
        }
        resolve({ res });
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

/** Reads a response body to the end (as a string: small XML answers). */
async function text(res: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const ch of res) chunks.push(ch as Buffer);
  return Buffer.concat(chunks).toString();
}

async function putOne(dir: string, bucket: string, prefix: string, p: string): Promise<void> {
  const file = join(dir, p);
  const key = keyOf(prefix, p);
  const fh = await open(file);
  try {
    const size = (await fh.stat()).size;
    if (size <= PART) {
      const body = Buffer.alloc(size);
      if (size > 0) await fh.read(body, 0, size, 0);
      await text((await send("PUT", bucket, key, {}, body)).res);
      return;
    }
    // Plain multipart, parts one after the other (the file-level parallelism is the loop's).
    const created = await text((await send("POST", bucket, key, { uploads: "" }, Buffer.alloc(0))).res);
    const uploadId = /<UploadId>([^<]+)<\/UploadId>/.exec(created)?.[1];
    if (uploadId === undefined) throw new Error(`no UploadId for ${key}: ${created.slice(0, 200)}`);
    const etags: string[] = [];
    for (let off = 0, n = 1; off < size; off += PART, n++) {
      const body = Buffer.alloc(Math.min(PART, size - off));
      await fh.read(body, 0, body.length, off);
      const { res } = await send("PUT", bucket, key, { partNumber: String(n), uploadId }, body);
      etags.push(String(res.headers.etag ?? ""));
      await text(res);
    }
    const xml = `<CompleteMultipartUpload>${etags.map((e, i) => `<Part><PartNumber>${i + 1}</PartNumber><ETag>${e}</ETag></Part>`).join("")}</CompleteMultipartUpload>`;
    await text((await send("POST", bucket, key, { uploadId }, Buffer.from(xml))).res);
  } finally {
    await fh.close();
  }
}

async function getOne(bucket: string, prefix: string, dir: string, p: string): Promise<void> {
  const { res } = await send("GET", bucket, keyOf(prefix, p), {}, undefined);
  const file = join(dir, p);
  mkdirSync(dirname(file), { recursive: true });
  await pipeline(res, createWriteStream(file));
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
  agent.destroy();
}
