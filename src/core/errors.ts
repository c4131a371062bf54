/**
 * Error classes and the exit-code table. Commands throw these; only the entry file maps them to
 * process exit codes. Classification of remote failures is by error name / HTTP status, never text.
 */

/** The documented exit codes (README "Exit codes" mirrors this table; so does `man fansync`). */
export const ExitCode = {
  ok: 0,
  fatal: 1,
  usage: 2,
  config: 3,
  partial: 4,
  guard: 5,
  race: 6,
  remote: 7,
  integrity: 8,
  localIo: 9,
  locked: 75,
  /** SIGINT (Ctrl-C) stopped a one-shot run: 128 + 2, as shells report it. */
  interrupted: 130,
  /** SIGTERM stopped a one-shot run: 128 + 15. */
  terminated: 143,
} as const;

/** One of the values of {@link ExitCode}. */
export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];

/**
 * Base class: carries the exit code, a hint telling the operator what to do next, and whether trying
 * the same operation again may succeed (`retryable`: the one property every retry decision reads).
 */
export class FansyncError extends Error {
  readonly exitCode: ExitCodeValue;
  readonly hint: string | undefined;
  readonly retryable: boolean;
  constructor(message: string, exitCode: ExitCodeValue, opts: { cause?: unknown; hint?: string; retryable?: boolean } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.exitCode = exitCode;
    this.hint = opts.hint;
    this.retryable = opts.retryable ?? false;
  }
}

/**
 * A one-shot run stopped by a signal before it finished: what it did is kept or redone by the next
 * run. The entry file sets the exit code from the signal (130 for SIGINT, 143 for SIGTERM); the
 * message is the one line an operator sees, never a stack trace of the transfers it cut short.
 */
export class Interrupted extends FansyncError {
  override name = "Interrupted";
  constructor(message: string) {
    super(message, ExitCode.interrupted);
  }
}

/** Bad command-line usage: a malformed flag, URL or argument. */
export class UsageError extends FansyncError {
  override name = "UsageError";
  constructor(message: string, opts: { cause?: unknown; hint?: string } = {}) {
    super(message, ExitCode.usage, opts);
  }
}

/** The configuration (file + flags) failed validation; `problems` lists every error with its key path. */
export class ConfigError extends FansyncError {
  override name = "ConfigError";
  readonly problems: readonly string[];
  constructor(problems: readonly string[], source = "configuration", exitCode: ExitCodeValue = ExitCode.config) {
    super(`invalid ${source}:\n  - ${problems.join("\n  - ")}`, exitCode, {
      hint: "fix the listed keys (see docs/configuration.md) and run again",
    });
    this.problems = problems;
  }
}

/** One failed transfer; `retryable: false` when the server refused it (a 4xx a rerun meets again). */
export interface FailedTransfer {
  readonly path: string;
  readonly error: string;
  readonly retryable?: boolean;
}

/** Some transfers failed; nothing was deleted and the generation was not (fully) applied. */
export class PartialFailureError extends FansyncError {
  override name = "PartialFailureError";
  readonly failed: readonly FailedTransfer[];
  constructor(message: string, failed: readonly FailedTransfer[], hint?: string) {
    // Only a glitch (network, 5xx, throttling, a source that moved on) goes away by itself; a refusal
    // must not be promised a retry that meets it again (issue 13: LocalStack's 400 on every run).
    const refused = failed.filter((f) => f.retryable === false).length;
    const auto = refused === 0
      ? "the next run retries the failed files"
      : `${refused} of the failures ${refused === 1 ? "is a refusal" : "are refusals"} by the server (HTTP 4xx), which a rerun meets again: fix ${refused === 1 ? "its" : "their"} cause first (see the error logged per file)${refused < failed.length ? "; the others are retried by the next run" : ""}`;
    // Retryable when anything in it may go away by itself: a daemon backs off and tries again.
    super(message, ExitCode.partial, { hint: refused === 0 && hint !== undefined ? hint : auto, retryable: refused < failed.length || failed.length === 0 });
    this.failed = failed;
  }
}

/** The delete guard refused a plan. */
export class GuardError extends FansyncError {
  override name = "GuardError";
  constructor(message: string, hint?: string) {
    super(message, ExitCode.guard, { hint: hint ?? "check the source, then rerun with --force if the deletions are intended" });
  }
}

/** Another writer moved the head between our read and our conditional write. */
export class RaceError extends FansyncError {
  override name = "RaceError";
  constructor(message: string, opts: { cause?: unknown; hint?: string } = {}) {
    super(message, ExitCode.race, { ...opts, hint: opts.hint ?? "another uploader writes to this location: run a single uploader per prefix" });
  }
}

/** The remote side failed: unreachable endpoint, credentials, missing bucket or head. */
export class RemoteError extends FansyncError {
  override name = "RemoteError";
  constructor(message: string, opts: { cause?: unknown; hint?: string; retryable?: boolean } = {}) {
    super(message, ExitCode.remote, opts);
  }
}

/**
 * A conditional request's condition failed (412/409): a head or lease someone else moved, a copy
 * source that changed or vanished. The caller decides what it means (a lost race, a fallback).
 */
export class ConditionFailed extends FansyncError {
  override name = "ConditionFailed";
  constructor(message: string, opts: { cause?: unknown } = {}) {
    super(message, ExitCode.race, opts);
  }
}

/**
 * An object is not (yet) the one a manifest names (404, or another ETag/version): the writer moved
 * on or replication is still arriving. Fetching it again now gives the same answer, so transfers do
 * not retry it; a later run or round converges (`retryable` says that to the round loops).
 */
export class ObjectMoved extends FansyncError {
  override name = "ObjectMoved";
  constructor(message: string, hint = "the master moved on or replication is still arriving; the next run converges") {
    super(message, ExitCode.partial, { hint, retryable: true });
  }
}

/**
 * Bytes that arrived do not match the manifest (size or sha256). Retried as a transfer fault; a
 * whole object that keeps arriving with other bytes (`truncated` false) is the bucket's integrity
 * problem (exit 8), a short body a network one.
 */
export class TransferCorrupt extends FansyncError {
  override name = "TransferCorrupt";
  readonly truncated: boolean;
  constructor(message: string, truncated: boolean) {
    super(message, ExitCode.integrity, { retryable: true, hint: "the bucket holds data fansync did not write or that was damaged; nothing local was changed" });
    this.truncated = truncated;
  }
}

/**
 * No credentials could be found at all (none in the environment, no such profile, no instance
 * role): a setup problem of this host, exit 3, not a refusal by the server (exit 7).
 */
export class CredentialsMissing extends FansyncError {
  override name = "CredentialsMissing";
  constructor(message: string, opts: { cause?: unknown; hint?: string } = {}) {
    super(message, ExitCode.config, opts);
  }
}

/** No AWS region anywhere in the chain for a location on AWS: nothing can run until one is set. */
export class RegionMissing extends FansyncError {
  override name = "RegionMissing";
  constructor(message: string, opts: { cause?: unknown; hint?: string } = {}) {
    super(message, ExitCode.config, opts);
  }
}

/** Remote data failed validation: corrupt or hostile manifest/journal/head, checksum mismatch. */
export class IntegrityError extends FansyncError {
  override name = "IntegrityError";
  constructor(message: string, opts: { cause?: unknown; hint?: string } = {}) {
    super(message, ExitCode.integrity, { hint: "the bucket holds data fansync did not write or that was damaged; nothing local was changed", ...opts });
  }
}

/**
 * A head a node with trusted keys refuses (docs/guarantees.md, signed generations): unsigned, signed
 * by a key it does not trust, forged, for another site, or the generation it applied with other
 * content. Nothing was written.
 */
export class UntrustedHead extends IntegrityError {
  override name = "UntrustedHead";
  constructor(message: string) {
    super(message, {
      hint: "nothing was changed: someone other than the master may have written this bucket; if the master's key changed, add its new public key with --trusted-key (fansync keygen prints it)",
    });
  }
}

/**
 * The head is older than `--max-age`: its source stopped updating (a frozen mirror, or a master
 * that publishes nothing). Nothing was written; the status is STALE.
 */
export class StaleHead extends IntegrityError {
  override name = "StaleHead";
  constructor(message: string) {
    super(message, { hint: "check that the master publishes (watch --heartbeat keeps a quiet site's head fresh) and that the replicator runs; another source may be fresher" });
  }
}

/** A run did not finish within its deadline (`--run-timeout`): nothing was changed, the next run retries. */
export class RunTimeout extends FansyncError {
  override name = "RunTimeout";
  constructor(message: string) {
    super(message, ExitCode.partial, { retryable: true, hint: "a source is too slow or a body trickles; the next run retries (a first pull of a very large site over a slow link may need a longer --run-timeout)" });
  }
}

/** A local filesystem problem: disk full, unwritable docroot, missing docroot. */
export class LocalIoError extends FansyncError {
  override name = "LocalIoError";
  constructor(message: string, opts: { cause?: unknown; hint?: string; retryable?: boolean } = {}) {
    super(message, ExitCode.localIo, opts);
  }
}

/**
 * A node applied a generation except some paths it cannot replace or delete (an immutable file,
 * `chattr +i`; a file the node may not write): it reports exactly those, and retries them every run.
 */
export class PathsNotReplaced extends LocalIoError {
  override name = "PathsNotReplaced";
  readonly paths: readonly string[];
  readonly generation: number;
  constructor(message: string, paths: readonly string[], generation: number) {
    super(message, { retryable: true, hint: "make those files writable (chattr -i, permissions), then the next run replaces them; everything else is applied" });
    this.paths = paths;
    this.generation = generation;
  }
}

/** A local file changed while it was read for upload: retried, then left for a later batch. */
export class FileChanging extends LocalIoError {
  override name = "FileChanging";
  constructor(message: string) {
    super(message, { retryable: true, hint: "the file is still being written; a later run publishes it" });
  }
}

/** Another run holds the lock (a cron overlap); not a failure of this run. */
export class LockedError extends FansyncError {
  override name = "LockedError";
  constructor(message: string) {
    super(message, ExitCode.locked);
  }
}

/** Narrow an unknown thrown value to a message. */
export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message || err.name;
  return String(err);
}

/** "Name: message" on one line, at most 300 characters: what status files, reports and pages show. */
export function errorLine(err: unknown): string {
  return `${(err as Error | undefined)?.name ?? "Error"}: ${errorMessage(err)}`.replace(/\s+/g, " ").slice(0, 300);
}
