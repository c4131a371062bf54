/** Classification of AWS SDK / network errors by name and HTTP status (never by message text). */
import { CredentialsMissing, FansyncError, RemoteError } from "../core/errors.ts";

interface SdkLikeError {
  name?: string;
  code?: string;
  $metadata?: { httpStatusCode?: number };
  $retryable?: unknown;
}

/**
 * A failed answer on the lean data path (adapters/lean-http.ts), shaped as the SDK shapes its
 * service errors (`name` = the S3 code, `$metadata.httpStatusCode`), so everything below
 * classifies both alike.
 */
export class S3HttpError extends Error {
  readonly $metadata: { readonly httpStatusCode: number; readonly requestId?: string | undefined };
  readonly $fault: "client" | "server";

  constructor(status: number, code: string | undefined, message: string | undefined, requestId?: string) {
    super(message ?? code ?? `HTTP ${status}`);
    this.name = code ?? nameForStatus(status);
    this.$metadata = { httpStatusCode: status, requestId };
    this.$fault = status >= 500 ? "server" : "client";
  }
}

/** How the SDK names an answer without an error document (a HEAD, a 304, a proxy's bare status). */
export function nameForStatus(status: number): string {
  return status === 304 ? "NotModified" : status === 404 ? "NotFound" : status === 412 ? "PreconditionFailed" : status === 403 ? "Forbidden" : status === 400 ? "BadRequest" : status === 503 ? "ServiceUnavailable" : status >= 500 ? "InternalError" : "UnknownError";
}

/** Code and Message of an S3 XML error document (`<Error><Code>…</Code><Message>…</Message></Error>`); empty when it is not one. */
export function parseS3ErrorXml(xml: string): { code?: string; message?: string } {
  const code = /<Code>([^<]*)<\/Code>/.exec(xml)?.[1];
  const message = /<Message>([^<]*)<\/Message>/.exec(xml)?.[1];
  return { ...(code ? { code: unescapeXml(code) } : {}), ...(message ? { message: unescapeXml(message) } : {}) };
}

function unescapeXml(s: string): string {
  return s.replace(/&(lt|gt|quot|apos|amp);/g, (_m, e: string) => ({ lt: "<", gt: ">", quot: '"', apos: "'", amp: "&" })[e] as string);
}

/** HTTP status of an SDK error, if it has one. */
export function httpStatus(err: unknown): number | undefined {
  return (err as SdkLikeError | null)?.$metadata?.httpStatusCode;
}

/** Name (or network code) of an error. */
export function errName(err: unknown): string {
  const e = err as SdkLikeError | null;
  return e?.name === "Error" && e.code ? e.code : (e?.name ?? e?.code ?? "Error");
}

const NETWORK = new Set(["ECONNREFUSED", "ECONNRESET", "ENOTFOUND", "EAI_AGAIN", "ETIMEDOUT", "EPIPE", "EHOSTUNREACH", "ENETUNREACH", "TimeoutError", "RequestTimeout", "AbortError"]);
// XAdminUserNotFound: versitygw's answer (HTTP 404) to an access key it does not know.
const CREDENTIALS = new Set(["InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken", "UnrecognizedClientException", "XAdminUserNotFound"]);
// The only answers that mean "this key (or version) does not exist". NotFound is how the SDK names a
// 404 without a body: every 404 to a HEAD. Any other 404 code is not an absent object (issue 13).
const ABSENT = new Set(["NoSuchKey", "NoSuchVersion", "NotFound"]);

/** Whether the server said the object (or the version) does not exist; a 404 with another code does not. */
export function isAbsent(err: unknown): boolean {
  return ABSENT.has(errName(err));
}

function networkCode(err: unknown): string | undefined {
  let e: unknown = err;
  for (let i = 0; i < 4 && e; i++) {
    const c = (e as { code?: string }).code;
    if (c && NETWORK.has(c)) return c;
    const n = (e as { name?: string }).name;
    if (n && NETWORK.has(n)) return n;
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}

// Throttling answers: retried with backoff and jitter (the server asks the client to slow down).
const THROTTLING = new Set(["SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException"]);

/**
 * Whether trying the same operation again may succeed: throttling, 5xx and network faults yes; a
 * 4xx that cannot change (denied, missing bucket, bad request, a skewed clock) never. fansync's own
 * errors say so themselves (`retryable`), so classification is by class or S3 code, never by text.
 */
export function isRetryable(err: unknown): boolean {
  if (err instanceof FansyncError) return err.retryable;
  const name = errName(err);
  if (THROTTLING.has(name)) return true;
  const status = httpStatus(err);
  if (status !== undefined && (status >= 500 || status === 429)) return true;
  if (status !== undefined && status >= 400) return false;
  return networkCode(err) !== undefined;
}

/** Turn an SDK/network error into a {@link RemoteError} that says what to do (`profile`: --profile or AWS_PROFILE, as the store was built with). */
export function toRemoteError(err: unknown, what: string, endpoint: string, profile?: string): FansyncError {
  if (err instanceof FansyncError) return err;
  if (errName(err) === "CredentialsProviderError") {
    // The SDK's own words name the profile it looked for ("Profile x could not be found …").
    const detail = err instanceof Error && err.message ? err.message.split("\n")[0] : "";
    return new CredentialsMissing(`${what}: no AWS credentials found${profile ? ` for profile ${JSON.stringify(profile)}` : ""}: ${detail}`, {
      cause: err,
      hint: "set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or --profile / AWS_PROFILE naming a profile in ~/.aws/config, or run where an instance role is attached; `fansync doctor` checks the chain",
    });
  }
  const name = errName(err);
  const status = httpStatus(err);
  const net = networkCode(err);
  if (net) {
    return new RemoteError(`${what}: cannot reach ${endpoint} (${net})`, {
      cause: err,
      retryable: true,
      hint: "check --endpoint-url / AWS_ENDPOINT_URL, the network and that the S3 server is up",
    });
  }
  if (CREDENTIALS.has(name) || status === 401) {
    return new RemoteError(`${what}: the credentials were rejected (${name})`, {
      cause: err,
      hint: "check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE or the instance role",
    });
  }
  if (name === "RequestTimeTooSkewed") {
    return new RemoteError(`${what}: the server says this machine's clock is wrong (${name})`, { cause: err, hint: "fix the clock (NTP) on this machine" });
  }
  if (name === "AccessDenied" || status === 403) {
    return new RemoteError(`${what}: access denied`, { cause: err, hint: "the identity lacks permission for this bucket/prefix (see infra/iam)" });
  }
  if (name === "NoSuchBucket") {
    return new RemoteError(`${what}: the bucket does not exist`, { cause: err, hint: "check the bucket name in the s3:// location, or create the bucket" });
  }
  if (status === 404 && !isAbsent(err)) {
    return new RemoteError(`${what}: the server answered 404 ${name}, which is not "no such key": a credentials or configuration problem`, {
      cause: err,
      hint: "check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (some servers answer an unknown key with 404), --endpoint-url and path style; `fansync doctor` tells which",
    });
  }
  const detail = err instanceof Error && err.message && err.message !== name ? `: ${err.message.split("\n")[0]}` : "";
  return new RemoteError(`${what}: ${name}${status ? ` (HTTP ${status})` : ""}${detail}`, { cause: err, retryable: isRetryable(err) });
}

/**
 * What a failed read says about the object: unchanged (304), absent (only NoSuchKey / NoSuchVersion
 * / a bodiless 404: versitygw answers an unknown access key with 404 XAdminUserNotFound, which read
 * as "not found" made pull say "push first"), not the one asked for (412); undefined for any other error.
 */
export function readStatus(err: unknown): "not-modified" | "not-found" | "precondition-failed" | undefined {
  const status = httpStatus(err);
  const name = errName(err);
  if (status === 304 || name === "NotModified") return "not-modified";
  if (name === "NoSuchBucket") return undefined;
  if (isAbsent(err)) return "not-found";
  // A version id the server does not know is answered 400 InvalidArgument by some servers.
  if (status === 412 || name === "PreconditionFailed") return "precondition-failed";
  return undefined;
}

/**
 * A content object's GET that failed, as a streaming reader sees it: not there, or not the object
 * asked for (the caller's ObjectMoved); any other error is thrown as a {@link RemoteError} saying
 * what to do (`what`: e.g. "GET s3://bucket/key"). One rule for the SDK and the lean data path,
 * in this thread or a transfer thread.
 */
export function streamFailure(err: unknown, what: string, endpoint: string, profile: string | undefined): { status: "not-found" | "precondition-failed" } {
  const s = readStatus(err);
  if (s === "not-found" || s === "precondition-failed") return { status: s };
  // Without s3:ListBucket (the puller's least-privilege policy) S3 answers 403, not 404, for a
  // key that does not exist yet: a content object is then "not there yet", and the run retries.
  if (httpStatus(err) === 403 && errName(err) === "AccessDenied") return { status: "not-found" };
  throw toRemoteError(err, what, endpoint, profile);
}
