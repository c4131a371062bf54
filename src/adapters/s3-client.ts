/** Builds S3 clients from resolved settings; the only place that knows the SDK's client options. */
import { S3Client } from "@aws-sdk/client-s3";
import { NodeHttpHandler, type NodeHttpHandlerOptions } from "@smithy/node-http-handler";
import type { HttpHandlerOptions, HttpResponse } from "@smithy/types";
import { Agent as HttpAgent } from "node:http";
import { Agent as HttpsAgent } from "node:https";
import { Readable } from "node:stream";
import { declaredLength, ERROR_BODY_MAX_BYTES, readErrorBody, RequestDeadline } from "./bounded-io.ts";
import { nameForStatus, parseS3ErrorXml } from "./s3-errors.ts";
import { SDK_MAX_ATTEMPTS } from "./retry.ts";
import { type AwsEnv, NO_AWS_ENV } from "./aws-env.ts";

/** Connection settings for one location. */
export interface ClientSettings {
  readonly endpointUrl: string | undefined;
  readonly pathStyle: boolean | undefined;
  readonly profile: string | undefined;
  readonly maxSockets: number;
  /**
   * Inactivity timeout per request (default 60 s): a connection silent this long fails and is
   * retried. Also the base of each request's whole deadline (adapters/bounded-io.ts).
   */
  readonly requestTimeoutMs?: number | undefined;
  /** The AWS variables of the environment (endpoint, region, profile), as the CLI read them; none: as if unset. */
  readonly aws?: AwsEnv | undefined;
  /** Told of every request attempt of this client (a daemon's metrics count them). */
  readonly requests?: RequestObservers | undefined;
}

/**
 * Called with the command name (e.g. "GetObjectCommand") for every request attempt, retries
 * included, of the clients (SDK and lean data path) it is handed. The commands build one per run
 * and give it to every store they build and to the daemon's metrics, which subscribe.
 */
export class RequestObservers {
  private readonly observers = new Set<(command: string) => void>();

  /** Observe every request from now on; returns the function that stops it. */
  add(observer: (command: string) => void): () => void {
    this.observers.add(observer);
    return () => void this.observers.delete(observer);
  }

  /** Tell every observer of one request attempt. */
  notify(command: string): void {
    for (const o of this.observers) o(command);
  }
}

/**
 * Create an S3 client. Region and credentials come from the standard AWS chain only; with an explicit
 * endpoint and no region configured anywhere, us-east-1 is assumed (what S3-compatible servers expect).
 * Checksums are sent only when an operation requires them: the SDK's default CRC32 with aws-chunked
 * bodies is not understood by every S3-compatible server and could land framing bytes in objects.
 */
export function createS3Client(s: ClientSettings): S3Client {
  const aws = s.aws ?? NO_AWS_ENV;
  const endpoint = s3EndpointOf(s);
  const regionFromEnv = aws.region;
  const agentOpts = { keepAlive: true, maxSockets: s.maxSockets };
  const client = new S3Client({
    ...(endpoint ? { endpoint } : {}),
    forcePathStyle: s.pathStyle ?? Boolean(endpoint),
    ...(s.profile ? { profile: s.profile } : {}),
    ...(!regionFromEnv && endpoint && !s.profile && !aws.profile ? { region: "us-east-1" } : {}),
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED",
    maxAttempts: SDK_MAX_ATTEMPTS,
    requestHandler: new BoundedHttpHandler(s.requestTimeoutMs ?? 60_000, {
      httpAgent: new HttpAgent(agentOpts),
      httpsAgent: new HttpsAgent(agentOpts),
      connectionTimeout: 5000,
      // socketTimeout, not requestTimeout: this smithy version only logs a warning when
      // requestTimeout passes (unless throwOnRequestTimeout), so a stalled connection hung forever;
      // and requestTimeout ends at the response headers, while a body can stall too. socketTimeout
      // fails a request whose socket is silent that long, before or during the body.
      socketTimeout: s.requestTimeoutMs ?? 60_000,
    }),
  });
  // The deserialize step runs inside the SDK's retry loop: once per attempt.
  const requests = s.requests;
  if (requests) {
    client.middlewareStack.add(
      (next, context) => async (args) => {
        requests.notify(context.commandName ?? "unknown");
        return next(args);
      },
      { step: "deserialize", name: "fansyncRequestObserver" },
    );
  }
  return client;
}

/** The S3 endpoint: --endpoint-url, else AWS_ENDPOINT_URL_S3, else AWS_ENDPOINT_URL; undefined: AWS. */
export function s3EndpointOf(s: Pick<ClientSettings, "endpointUrl" | "aws">): string | undefined {
  const aws = s.aws ?? NO_AWS_ENV;
  return s.endpointUrl ?? aws.serviceEndpoints.S3 ?? aws.endpointUrl;
}

/**
 * The SDK's request handler with the bounds of adapters/bounded-io.ts: each request (its body sent,
 * its answer's body read) ends by its deadline, whatever trickles; an error answer's body is read to
 * a few KiB and its connection dropped, so the SDK's error parser never sees more. A body cut there
 * is passed on empty: the error is then named by its status alone (a 503 stays a retryable 503).
 */
class BoundedHttpHandler extends NodeHttpHandler {
  private readonly baseMs: number;

  constructor(baseMs: number, opts: NodeHttpHandlerOptions) {
    super(opts);
    this.baseMs = baseMs;
  }

  override async handle(request: Parameters<NodeHttpHandler["handle"]>[0], opts: HttpHandlerOptions = {}): Promise<{ response: HttpResponse }> {
    const ac = new AbortController();
    let expired: Error | undefined;
    let body: Readable | undefined;
    const deadline = new RequestDeadline(this.baseMs, (err) => {
      expired = err;
      ac.abort(err);
      body?.destroy(err);
    });
    deadline.moved(declaredLength(request.headers["content-length"]) ?? 0);
    // The caller's signal aborts this request and its body too, until the body ends (a listener
    // removed then, not AbortSignal.any: a run's signal would gain a dependent per request).
    const caller = opts.abortSignal as AbortSignal | undefined;
    const onCaller = () => {
      ac.abort(caller?.reason);
      body?.destroy(caller?.reason instanceof Error ? caller.reason : undefined);
    };
    if (caller?.aborted) ac.abort(caller.reason);
    else caller?.addEventListener("abort", onCaller, { once: true });
    const done = () => caller?.removeEventListener("abort", onCaller);
    let res: { response: HttpResponse };
    try {
      res = await super.handle(request, { ...opts, abortSignal: ac.signal });
    } catch (err) {
      deadline.dispose();
      done();
      throw caller?.aborted ? err : (expired ?? err);
    }
    const response = res.response;
    body = response.body as Readable | undefined;
    if (!(body instanceof Readable)) {
      deadline.dispose();
      done();
      return res;
    }
    body.once("close", done);
    if (response.statusCode >= 300) {
      const { bytes, cut } = await readErrorBody(body);
      deadline.dispose();
      response.body = Readable.from([cut ? cutErrorDocument(bytes, response.statusCode) : bytes]);
      return res;
    }
    deadline.follow(body);
    return res;
  }
}

/**
 * An error document for a body cut at ERROR_BODY_MAX_BYTES (the SDK's XML parser refuses a cut
 * one): the Code that arrived, else the status's name, as the lean path names it.
 */
function cutErrorDocument(start: Buffer, status: number): Buffer {
  const code = parseS3ErrorXml(start.toString("utf8")).code ?? nameForStatus(status);
  const esc = (v: string) => v.replace(/[<>&'"]/g, (c) => `&#${c.charCodeAt(0)};`);
  return Buffer.from(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>${esc(code)}</Code><Message>HTTP ${status}; the error body was not read past ${ERROR_BODY_MAX_BYTES} bytes</Message></Error>`);
}
