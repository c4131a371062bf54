/**
 * The one retry policy for whole-object operations (a transfer, a copy, a download). The SDK retries
 * each HTTP request itself (SDK_MAX_ATTEMPTS, its own backoff for throttling and 5xx); this layer
 * retries the whole operation, which also covers what the SDK cannot see (a body cut short, bytes
 * that fail their sha256, a file that changed while it was read). The two are sized together: one
 * object costs at most SDK_MAX_ATTEMPTS × TRANSFER_TRIES requests in a run, and round loops above
 * (the replicator) never repeat a transfer that already exhausted its tries.
 */
import pRetry from "p-retry";
import { isRetryable } from "./s3-errors.ts";

/** Attempts the SDK makes for one request (its standard retry strategy). */
export const SDK_MAX_ATTEMPTS = 3;
/** Tries of one whole-object operation. */
export const TRANSFER_TRIES = 3;
/** The most requests one object can cost in one run. */
export const MAX_REQUESTS_PER_OBJECT = SDK_MAX_ATTEMPTS * TRANSFER_TRIES;

/** How one operation is retried. */
export interface RetryOptions {
  readonly signal?: AbortSignal | undefined;
  /** Total tries (default {@link TRANSFER_TRIES}). */
  readonly tries?: number;
  /** First pause in ms (doubled per try, with jitter). */
  readonly minTimeoutMs?: number;
  /** Extra refusal on top of {@link isRetryable} (e.g. "an object that moved is not fetched again now"). */
  readonly unless?: (err: unknown) => boolean;
  readonly onRetry?: (err: unknown, triesLeft: number, delayMs: number) => void;
}

/**
 * Run `fn`, trying again on retryable errors with exponential backoff and full jitter (so a
 * throttled server is not hit again by every worker at the same instant), honouring `signal`.
 */
export function withRetry<T>(fn: () => Promise<T>, o: RetryOptions = {}): Promise<T> {
  return pRetry(fn, {
    retries: (o.tries ?? TRANSFER_TRIES) - 1,
    minTimeout: o.minTimeoutMs ?? 250,
    maxTimeout: 10_000,
    factor: 2,
    randomize: true,
    ...(o.signal ? { signal: o.signal } : {}),
    shouldRetry: ({ error }) => isRetryable(error) && !o.unless?.(error),
    ...(o.onRetry
      ? { onFailedAttempt: ({ error, retriesLeft, retryDelay }) => { if (retriesLeft > 0 && isRetryable(error)) o.onRetry?.(error, retriesLeft, retryDelay); } }
      : {}),
  });
}
