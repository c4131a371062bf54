/**
 * The lean data path (issue 14): content-object PUT and GET sent through one keep-alive
 * `node:http(s)` agent instead of the SDK's middleware stack, which costs ~0.65 ms of CPU per
 * request on fansync's one JS thread (a bare signed PUT: ~0.2 ms). Everything else (head,
 * manifest, lease, multipart, listing, copy, delete) stays on the SDK client.
 *
 * Nothing here is a second S3 client: the URL comes from the SDK client's own endpoint resolver
 * (path or virtual-hosted style exactly as it would send), the signature from the SDK's own
 * SignatureV4 with the client's resolved credential provider and region, and a failed answer
 * becomes an error of the same shape as the SDK's (`name` = the S3 code, `$metadata.httpStatusCode`)
 * so s3-errors.ts classifies both alike. The payload hash is the sha256 fansync already computed.
 */
import type { S3Client } from "@aws-sdk/client-s3";
import { SignatureV4 } from "@smithy/signature-v4";
import type { AwsCredentialIdentity, AwsCredentialIdentityProvider } from "@smithy/types";
import { createHash, createHmac, type Hash, type Hmac } from "node:crypto";
import { readFileSync } from "node:fs";
import http, { type IncomingHttpHeaders, type IncomingMessage } from "node:http";
import https from "node:https";
import { LocalIoError } from "../core/errors.ts";
import { capBody, declaredLength, readErrorBody, RequestDeadline } from "./bounded-io.ts";
import { type ObjectAttrs, type ObjectStore, type PutResult, realVersion, type StreamResult } from "./object-store.ts";
import { SDK_MAX_ATTEMPTS } from "./retry.ts";
import { isRetryable, parseS3ErrorXml, S3HttpError, streamFailure, toRemoteError } from "./s3-errors.ts";

/** A request target: what is sent on the wire and what the signer sees. */
export interface RequestTarget {
  readonly protocol: "http:" | "https:";
  readonly hostname: string;
  readonly port: number | undefined;
  /** The Host header (with the port when it is not the scheme's default). */
  readonly host: string;
  /** Encoded path, without the query. */
  readonly path: string;
  readonly query: Readonly<Record<string, string>>;
}

/** An answer with its body still unread (a GET streams it to disk). */
export interface LeanResponse {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: IncomingMessage;
}

/**
 * S3's encoding of a key in a path, as the SDK's serializer does it (a greedy label): each
 * segment through encodeURIComponent plus `!'()*`, the slashes kept. The signer is told not to
 * escape the path again (S3 is signed without double encoding).
 */
export function encodeKeyPath(key: string): string {
  return key.split("/").map(escapeUri).join("/");
}

/** RFC 3986 escaping, as SigV4 wants it (encodeURIComponent leaves `!'()*` alone). */
export function escapeUri(s: string): string {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/**
 * Where an object's request goes, from the bucket's base URL as the SDK's endpoint resolver gave
 * it (`http://host:port/bucket` for path style, `https://bucket.s3.region.amazonaws.com/` for
 * virtual-hosted style) and the key. Pure.
 */
export function objectTarget(base: URL, key: string, query: Readonly<Record<string, string>> = {}): RequestTarget {
  const protocol = base.protocol === "http:" ? "http:" : "https:";
  const prefix = base.pathname.endsWith("/") ? base.pathname.slice(0, -1) : base.pathname;
  return {
    protocol,
    hostname: base.hostname.replace(/^\[|\]$/g, ""),
    port: base.port === "" ? undefined : Number(base.port),
    host: base.host,
    path: `${prefix}/${encodeKeyPath(key)}`,
    query,
  };
}

/** The path and query as sent on the wire (the query in the signer's canonical encoding). */
export function wirePath(t: RequestTarget): string {
  const q = Object.keys(t.query).sort().map((k) => `${escapeUri(k)}=${escapeUri(t.query[k] as string)}`).join("&");
  return q ? `${t.path}?${q}` : t.path;
}

/**
 * A bucket's base URL as the SDK client would send a request to it (its endpoint rules with the
 * client's region, endpoint, forcePathStyle, FIPS/dual-stack settings: path style for a bucket
 * name that cannot be a host name), and the region to sign for. No network.
 */
export async function bucketUrl(client: S3Client, bucket: string): Promise<{ url: URL; signingRegion: string }> {
  const cfg = client.config;
  const region = await cfg.region();
  const ep = cfg.endpoint ? await cfg.endpoint() : undefined;
  const endpoint = ep ? `${ep.protocol}//${ep.hostname}${ep.port ? `:${ep.port}` : ""}${ep.path ?? "/"}` : undefined;
  const resolved = cfg.endpointProvider({
    Bucket: bucket,
    Region: region,
    UseFIPS: await cfg.useFipsEndpoint(),
    UseDualStack: await cfg.useDualstackEndpoint(),
    ForcePathStyle: cfg.forcePathStyle ?? false,
    Accelerate: cfg.useAccelerateEndpoint ?? false,
    ...(endpoint ? { Endpoint: endpoint } : {}),
  });
  const scheme = (resolved.properties?.authSchemes as { signingRegion?: string }[] | undefined)?.[0];
  return { url: new URL(resolved.url.href), signingRegion: scheme?.signingRegion ?? region };
}

/** Told of every request attempt (the run's RequestObservers, adapters/s3-client.ts; a transfer thread's counter). */
export interface AttemptObserver {
  notify(command: string): void;
}

interface BucketRoute {
  readonly base: URL;
  readonly signer: SignatureV4;
}

/**
 * Where the signer's facts come from: the SDK client's own resolved configuration in the main
 * thread ({@link clientSigning}), or a {@link DataPathSpec} handed to a transfer thread, which
 * loads no SDK client ({@link LeanHttp.fromSpec}).
 */
export interface SigningSource {
  /** The bucket's base URL and the region to sign for. */
  bucketUrl(bucket: string): Promise<{ url: URL; signingRegion: string }>;
  readonly credentials: AwsCredentialIdentityProvider;
  /** The client's clock correction (RequestTimeTooSkewed), in ms. */
  clockOffsetMs(): number;
}

/** An SDK client as the signing source: its endpoint rules, credential chain and clock offset. */
export function clientSigning(client: S3Client): SigningSource {
  return {
    bucketUrl: (bucket) => bucketUrl(client, bucket),
    credentials: client.config.credentials,
    clockOffsetMs: () => client.config.systemClockOffset ?? 0,
  };
}

/**
 * Everything a transfer thread needs to GET one bucket's content objects as this process would:
 * plain data (a worker_threads message). The credentials are the resolved ones, in memory only:
 * never written anywhere, never logged; a thread is sent fresh ones before they expire.
 */
export interface DataPathSpec {
  readonly bucket: string;
  readonly baseUrl: string;
  readonly signingRegion: string;
  readonly credentials: PlainCredentials;
  readonly clockOffsetMs: number;
  readonly maxSockets: number;
  readonly requestTimeoutMs: number;
  readonly caBundle: string | undefined;
  /** For messages, as the store says them. */
  readonly endpoint: string;
  readonly profile: string | undefined;
}

/** Resolved credentials as plain data (the expiration in ms since the epoch). */
export interface PlainCredentials {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly sessionToken?: string | undefined;
  readonly expirationMs?: number | undefined;
}

/** Credentials as plain data, for a message to a transfer thread. */
export function plainCredentials(c: AwsCredentialIdentity): PlainCredentials {
  return {
    accessKeyId: c.accessKeyId,
    secretAccessKey: c.secretAccessKey,
    ...(c.sessionToken ? { sessionToken: c.sessionToken } : {}),
    ...(c.expiration ? { expirationMs: c.expiration.getTime() } : {}),
  };
}

/** How long to wait before attempt `n` (1-based) again: the SDK's standard strategy (full jitter, 20 s cap). */
function attemptDelayMs(n: number, throttled: boolean): number {
  return Math.random() * Math.min(20_000, (throttled ? 500 : 100) * 2 ** (n - 1));
}

/** Content-object requests for the buckets of one SDK client, over one keep-alive agent per scheme. */
export class LeanHttp {
  private readonly source: SigningSource;
  private readonly requestTimeoutMs: number;
  private readonly httpAgent: http.Agent;
  private readonly maxSockets: number;
  private httpsAgent: https.Agent | undefined;
  private readonly routes = new Map<string, Promise<BucketRoute>>();
  private readonly caBundle: string | undefined;
  private readonly requests: AttemptObserver | undefined;

  /**
   * `source`: an SDK client (its resolved configuration), or a {@link SigningSource};
   * `caBundle`: AWS_CA_BUNDLE as the CLI read it; `requests`: told of every attempt (the client's own observers).
   */
  constructor(source: S3Client | SigningSource, o: { maxSockets: number; requestTimeoutMs?: number | undefined; caBundle?: string | undefined; requests?: AttemptObserver | undefined }) {
    this.source = "bucketUrl" in source ? source : clientSigning(source);
    this.requestTimeoutMs = o.requestTimeoutMs ?? 60_000;
    this.caBundle = o.caBundle;
    this.requests = o.requests;
    const agentOpts = { keepAlive: true, maxSockets: o.maxSockets };
    this.httpAgent = new http.Agent(agentOpts);
    this.maxSockets = o.maxSockets;
  }

  /** PUT `body` (whose sha256 is `sha256Hex`) with `headers` (content type, metadata…). */
  async put(bucket: string, key: string, body: Uint8Array, sha256Hex: string, headers: Record<string, string>, signal?: AbortSignal): Promise<{ etag: string; versionId: string | undefined }> {
    const res = await this.send("PutObjectCommand", "PUT", bucket, key, {}, { ...headers, "content-length": String(body.byteLength) }, sha256Hex, body, signal);
    res.body.resume();
    return { etag: header(res.headers, "etag") ?? "", versionId: header(res.headers, "x-amz-version-id") };
  }

  /** GET an object; the body is the caller's to read (or to destroy). A non-2xx answer throws. */
  get(bucket: string, key: string, o: { versionId?: string | undefined; ifMatch?: string | undefined; signal?: AbortSignal | undefined }): Promise<LeanResponse> {
    const query: Record<string, string> = o.versionId ? { versionId: o.versionId } : {};
    const headers: Record<string, string> = !o.versionId && o.ifMatch ? { "if-match": o.ifMatch } : {};
    return this.send("GetObjectCommand", "GET", bucket, key, query, headers, EMPTY_SHA256, undefined, o.signal);
  }

  /**
   * GET a content object as a stream capped at `maxBytes` (the manifest's size: a longer body
   * errors at the first byte past it, a larger declared length is refused unread). A non-2xx
   * answer throws (the caller's streamFailure says what it means).
   */
  async getStream(bucket: string, key: string, opts: { maxBytes: number; ifMatch?: string | undefined; versionId?: string | undefined; signal?: AbortSignal | undefined }): Promise<StreamResult & { status: "ok" }> {
    const res = await this.get(bucket, key, opts);
    const h = res.headers;
    const size = declaredLength(h["content-length"]);
    return { status: "ok", body: capBody(res.body, opts.maxBytes, `s3://${bucket}/${key}`, size), etag: header(h, "etag") ?? "", size: size ?? -1, attrs: attrsOf(h) };
  }

  /**
   * What a transfer thread needs to send this client's GETs for `bucket` itself: the resolved
   * URL, region and credentials (see {@link DataPathSpec}).
   */
  async spec(bucket: string, where: { endpoint: string; profile: string | undefined }): Promise<DataPathSpec> {
    const { url, signingRegion } = await this.source.bucketUrl(bucket);
    return {
      bucket,
      baseUrl: url.href,
      signingRegion,
      credentials: plainCredentials(await this.source.credentials()),
      clockOffsetMs: this.source.clockOffsetMs(),
      maxSockets: this.maxSockets,
      requestTimeoutMs: this.requestTimeoutMs,
      caBundle: this.caBundle,
      endpoint: where.endpoint,
      profile: where.profile,
    };
  }

  /** Tell this client's request observers of `n` attempts a transfer thread made. */
  attempted(command: string, n: number): void {
    for (let i = 0; i < n; i++) this.requests?.notify(command);
  }

  /** The current credentials, for a transfer thread whose copy is about to expire. */
  async credentials(): Promise<PlainCredentials> {
    return plainCredentials(await this.source.credentials());
  }

  /**
   * A data path in a transfer thread, from a main thread's {@link spec}: no SDK client is loaded.
   * `current()` gives the credentials to sign with (the thread replaces them as the main thread
   * sends fresh ones).
   */
  static fromSpec(spec: DataPathSpec, current: () => PlainCredentials, requests?: AttemptObserver): LeanHttp {
    const source: SigningSource = {
      bucketUrl: async () => ({ url: new URL(spec.baseUrl), signingRegion: spec.signingRegion }),
      credentials: async () => {
        const c = current();
        return { accessKeyId: c.accessKeyId, secretAccessKey: c.secretAccessKey, ...(c.sessionToken ? { sessionToken: c.sessionToken } : {}), ...(c.expirationMs ? { expiration: new Date(c.expirationMs) } : {}) };
      },
      clockOffsetMs: () => spec.clockOffsetMs,
    };
    return new LeanHttp(source, { maxSockets: spec.maxSockets, requestTimeoutMs: spec.requestTimeoutMs, caBundle: spec.caBundle, requests });
  }

  /** Close the kept-alive sockets (a long-running daemon that drops a store). */
  destroy(): void {
    this.httpAgent.destroy();
    this.httpsAgent?.destroy();
  }

  /**
   * The HTTPS agent, made on first use: AWS_CA_BUNDLE (as the AWS CLI reads it) replaces Node's CA
   * store when set; a plain-HTTP endpoint never reads it, so a stale setting cannot break one.
   */
  private tlsAgent(): https.Agent {
    if (!this.httpsAgent) {
      const caFile = this.caBundle;
      let ca: Buffer | undefined;
      try {
        ca = caFile ? readFileSync(caFile) : undefined;
      } catch (err) {
        throw new LocalIoError(`cannot read AWS_CA_BUNDLE=${caFile}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, { cause: err, hint: "point AWS_CA_BUNDLE at a PEM file of CA certificates, or unset it to use the system's" });
      }
      this.httpsAgent = new https.Agent({ keepAlive: true, maxSockets: this.maxSockets, ...(ca ? { ca } : {}) });
    }
    return this.httpsAgent;
  }

  private route(bucket: string): Promise<BucketRoute> {
    let r = this.routes.get(bucket);
    if (!r) {
      r = this.resolveRoute(bucket);
      r.catch(() => this.routes.delete(bucket));
      this.routes.set(bucket, r);
    }
    return r;
  }

  /** The bucket's base URL and signer, from the client's own resolved configuration. */
  private async resolveRoute(bucket: string): Promise<BucketRoute> {
    const { url, signingRegion } = await this.source.bucketUrl(bucket);
    const signer = new SignatureV4({
      credentials: this.source.credentials,
      region: signingRegion,
      service: "s3",
      sha256: NodeSha256,
      uriEscapePath: false,
      applyChecksum: false,
    });
    return { base: url, signer };
  }

  /** One request, with up to SDK_MAX_ATTEMPTS attempts on a retryable failure (as the SDK would). */
  private async send(command: string, method: string, bucket: string, key: string, query: Record<string, string>, headers: Record<string, string>, payloadSha256: string, body: Uint8Array | undefined, signal: AbortSignal | undefined): Promise<LeanResponse> {
    const { base, signer } = await this.route(bucket);
    const target = objectTarget(base, key, query);
    for (let attempt = 1; ; attempt++) {
      signal?.throwIfAborted();
      this.requests?.notify(command);
      try {
        return await this.attempt(signer, method, target, headers, payloadSha256, body, signal);
      } catch (err) {
        if (attempt >= SDK_MAX_ATTEMPTS || signal?.aborted || !isRetryable(err)) throw err;
        const throttled = err instanceof S3HttpError && (err.$metadata.httpStatusCode === 429 || err.name === "SlowDown" || err.name.startsWith("Throttl"));
        await sleep(attemptDelayMs(attempt, throttled), signal);
      }
    }
  }

  private async attempt(signer: SignatureV4, method: string, t: RequestTarget, headers: Record<string, string>, payloadSha256: string, body: Uint8Array | undefined, signal: AbortSignal | undefined): Promise<LeanResponse> {
    const offset = this.source.clockOffsetMs();
    const signed = await signer.sign(
      {
        method,
        protocol: t.protocol,
        hostname: t.hostname,
        ...(t.port !== undefined ? { port: t.port } : {}),
        path: t.path,
        query: { ...t.query },
        headers: { ...headers, host: t.host, "x-amz-content-sha256": payloadSha256 },
      },
      { signingDate: new Date(Date.now() + offset) },
    );
    // The whole request (body sent, answer read) ends by its deadline (adapters/bounded-io.ts).
    let req: http.ClientRequest | undefined;
    let res: IncomingMessage | undefined;
    const deadline = new RequestDeadline(this.requestTimeoutMs, (err) => {
      req?.destroy(err);
      res?.destroy(err);
    });
    deadline.moved(body?.byteLength ?? 0);
    try {
      res = await new Promise<IncomingMessage>((resolve, reject) => {
        req = (t.protocol === "http:" ? http : https).request({
          method,
          protocol: t.protocol,
          hostname: t.hostname,
          ...(t.port !== undefined ? { port: t.port } : {}),
          path: wirePath(t),
          headers: signed.headers,
          agent: t.protocol === "http:" ? this.httpAgent : this.tlsAgent(),
          ...(signal ? { signal } : {}),
        });
        // A socket silent this long (before or during the body) fails the request, as the SDK
        // client's socketTimeout does.
        req.setTimeout(this.requestTimeoutMs, () => req?.destroy(timeoutError(this.requestTimeoutMs)));
        req.once("error", reject);
        req.once("response", resolve);
        req.end(body);
      });
    } catch (err) {
      deadline.dispose();
      throw err;
    }
    const status = res.statusCode ?? 0;
    if (status >= 200 && status < 300) {
      deadline.follow(res);
      return { status, headers: res.headers, body: res };
    }
    try {
      throw await responseError(res, method);
    } finally {
      deadline.dispose();
    }
  }
}

/** What the data path does for the engines: content objects' GETs and single PUTs. */
export type ContentStore = Pick<ObjectStore, "getStream" | "putContent">;

/**
 * The lean data path as the engines see it, for one bucket: a GET's failure classified (not
 * there, moved, or a RemoteError saying what to do), a PUT's headers from the object's attributes.
 * S3Store delegates to it, and so does a transfer thread (engine/transfer-thread.ts): one code
 * path whichever thread sends. `where`: the endpoint and profile, for messages.
 */
export function leanContentStore(data: LeanHttp, bucket: string, where: { readonly endpoint: string; readonly profile: string | undefined }): ContentStore {
  return {
    async getStream(key, o) {
      try {
        return await data.getStream(bucket, key, o);
      } catch (err) {
        return streamFailure(err, `GET s3://${bucket}/${key}`, where.endpoint, where.profile);
      }
    },
    async putContent(key, body, sha256, attrs, signal): Promise<PutResult> {
      try {
        const headers: Record<string, string> = { "content-type": attrs.contentType };
        if (attrs.cacheControl) headers["cache-control"] = attrs.cacheControl;
        for (const [k, v] of Object.entries(attrs.metadata ?? {})) headers[`x-amz-meta-${k.toLowerCase()}`] = v;
        const res = await data.put(bucket, key, body, sha256, headers, signal);
        return { etag: res.etag, versionId: realVersion(res.versionId) };
      } catch (err) {
        throw toRemoteError(err, `PUT s3://${bucket}/${key}`, where.endpoint, where.profile);
      }
    },
  };
}

type SourceData = string | ArrayBuffer | ArrayBufferView;

/**
 * The signer's sha256 / HMAC-sha256, straight on node:crypto. The SDK's own (@smithy/hash-node)
 * converts every input through its utf8/buffer helpers: with three hashes per signature (one an
 * HMAC of the secret, only to name its cached signing key) that was a third of the signer's CPU.
 */
class NodeSha256 {
  private readonly secret: Uint8Array | undefined;
  private h: Hash | Hmac;

  constructor(secret?: SourceData) {
    this.secret = secret === undefined ? undefined : toBytes(secret);
    this.h = this.fresh();
  }

  private fresh(): Hash | Hmac {
    return this.secret === undefined ? createHash("sha256") : createHmac("sha256", this.secret);
  }

  update(data: SourceData): void {
    if (typeof data === "string") this.h.update(data, "utf8");
    else this.h.update(toBytes(data));
  }

  digest(): Promise<Uint8Array> {
    return Promise.resolve(this.h.digest());
  }

  reset(): void {
    this.h = this.fresh();
  }
}

function toBytes(d: SourceData): Uint8Array {
  if (typeof d === "string") return Buffer.from(d, "utf8");
  if (ArrayBuffer.isView(d)) return new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
  return new Uint8Array(d);
}

/** sha256 of no bytes: the payload hash of a GET. */
const EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

function header(h: IncomingHttpHeaders, name: string): string | undefined {
  const v = h[name];
  return Array.isArray(v) ? v[0] : v;
}

/** A content object's headers and user metadata from a raw answer (as the SDK's GetObject output has them). */
function attrsOf(h: IncomingHttpHeaders): ObjectAttrs {
  const metadata: Record<string, string> = {};
  let any = false;
  for (const [k, v] of Object.entries(h)) {
    if (!k.startsWith("x-amz-meta-") || v === undefined) continue;
    metadata[k.slice(11)] = (Array.isArray(v) ? v[0] : v) ?? "";
    any = true;
  }
  const cacheControl = header(h, "cache-control");
  return { contentType: header(h, "content-type") ?? "application/octet-stream", cacheControl, ...(any ? { metadata } : {}) };
}

/**
 * The S3 error an answer carries (its XML body's Code, else a name from the status, as the SDK names
 * a bodiless answer). Only the body's first few KiB are read, then the connection is dropped.
 */
async function responseError(res: IncomingMessage, method: string): Promise<S3HttpError> {
  const { bytes } = await readErrorBody(res);
  const status = res.statusCode ?? 0;
  // A cut document still names its Code first (the regex reads what arrived).
  const parsed = method === "HEAD" ? {} : parseS3ErrorXml(bytes.toString("utf8"));
  return new S3HttpError(status, parsed.code, parsed.message, header(res.headers, "x-amz-request-id"));
}

function timeoutError(ms: number): Error {
  const e = new Error(`no data on the connection for ${ms} ms`);
  e.name = "TimeoutError";
  return e;
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(done, ms);
    function done(): void {
      signal?.removeEventListener("abort", abort);
      resolve();
    }
    function abort(): void {
      clearTimeout(t);
      reject(signal?.reason);
    }
    signal?.addEventListener("abort", abort, { once: true });
  });
}
