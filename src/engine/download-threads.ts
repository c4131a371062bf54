/**
 * Downloads on every core (issue 25). A pull's main thread was the bottleneck: each small file
 * costs it a signed GET, a socket write, a sha256 and four file-system hand-offs, while the second
 * core waited. Here transfer threads (worker_threads) each run the same {@link downloadTo} with
 * their own keep-alive connections and blocking file writes; the main thread keeps everything
 * else: the plan, the retries (one policy, adapters/retry.ts), the staging record, the renames
 * and the commit. A thread only ever writes the temp file it was given, verified, or nothing.
 *
 * Errors come back as the classes the puller decides on (ObjectMoved, TransferCorrupt, a
 * retryable RemoteError, LocalIoError…), rebuilt from plain data ({@link sendError}).
 */
import { existsSync } from "node:fs";
import { availableParallelism } from "node:os";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import * as coreErrors from "../core/errors.ts";
import type { Entry } from "../core/manifest.ts";
import { BodyTooLarge } from "../adapters/bounded-io.ts";
import type { Logger } from "../adapters/logger.ts";
import type { PlainCredentials } from "../adapters/lean-http.ts";
import type { DataPathHandle, ObjectStore } from "../adapters/object-store.ts";
import { S3HttpError } from "../adapters/s3-errors.ts";

/** Fewer small downloads than this are not worth starting threads for (each loads its modules: ~50 ms of CPU). */
export const MIN_DOWNLOADS_FOR_THREADS = 200;

/**
 * The default number of transfer threads: one per core beside the main thread's, at most 3 (each
 * costs ~30 MiB of memory, and the main thread downloads its share too).
 */
export function defaultTransferThreads(): number {
  return Math.max(0, Math.min(3, availableParallelism() - 1));
}

/** An error as plain data, to cross from a transfer thread to the main thread. */
export interface SentError {
  readonly cls: string;
  readonly name: string;
  readonly message: string;
  readonly stack: string | undefined;
  readonly props: Record<string, unknown>;
}

/** Messages to a transfer thread. */
export type ToThread =
  | { readonly t: "get"; readonly id: number; readonly key: string; readonly entry: Entry; readonly tmp: string }
  | { readonly t: "abort"; readonly id: number }
  | { readonly t: "creds"; readonly credentials: PlainCredentials };

/** A transfer thread's answer to one "get": `attempts` requests were sent for it. */
export type FromThread = { readonly id: number; readonly attempts: number } & ({ readonly ok: true } | { readonly ok: false; readonly error: SentError });

// The classes an error may be rebuilt as: every fansync error, and the adapters' own the
// transfer path throws. Anything else comes back as a plain Error with its own properties (a
// socket's `code`, an S3 answer's `$metadata`), which is all isRetryable reads.
const CLASSES: ReadonlyMap<string, { prototype: object }> = new Map(
  [...Object.values(coreErrors as Record<string, unknown>), S3HttpError, BodyTooLarge]
    .filter((v): v is { name: string; prototype: object } => typeof v === "function" && v.prototype instanceof Error)
    .map((c) => [c.name, c]),
);

/** `err` as plain data: its class name, message and the own properties that can be copied. */
export function sendError(err: unknown): SentError {
  const e = err instanceof Error ? err : new Error(String(err));
  const props: Record<string, unknown> = {};
  for (const k of Object.keys(e)) {
    if (k === "cause" || k === "name" || k === "message" || k === "stack") continue;
    const v = (e as unknown as Record<string, unknown>)[k];
    try {
      props[k] = structuredClone(v);
    } catch {
      // A property that cannot cross (a socket, a function) says nothing the decision needs.
    }
  }
  return { cls: e.constructor?.name ?? "Error", name: e.name, message: e.message, stack: e.stack, props };
}

/** The error {@link sendError} described, of the same class where it is one fansync decides on. */
export function receiveError(s: SentError): Error {
  const proto = (CLASSES.get(s.cls) ?? Error).prototype;
  const e = Object.create(proto) as Error;
  for (const [k, v] of Object.entries({ ...s.props, name: s.name, message: s.message, stack: s.stack })) {
    if (v !== undefined) Object.defineProperty(e, k, { value: v, writable: true, configurable: true, enumerable: k !== "stack" && k !== "message" });
  }
  return e;
}

/** Where the thread's module is: beside this one, as .ts from source or .js from dist/; undefined in a bundle. */
function threadModule(): URL | undefined {
  const ext = import.meta.url.endsWith(".ts") ? ".ts" : ".js";
  const url = new URL(`./download-thread${ext}`, import.meta.url);
  // In the single executable import.meta.url is the executable's own: there is no module file
  // beside it, and downloads stay on the main thread.
  return url.protocol === "file:" && existsSync(fileURLToPath(url)) ? url : undefined;
}

interface Pending {
  readonly resolve: () => void;
  readonly reject: (err: Error) => void;
  readonly thread: Slot;
}

interface Slot {
  readonly worker: Worker;
  inFlight: number;
}

/** A few transfer threads sharing one run's small downloads. */
export class DownloadThreads {
  private readonly slots: Slot[];
  private readonly pending = new Map<number, Pending>();
  private readonly handle: DataPathHandle;
  private nextId = 1;
  // Downloads running on this thread (see download).
  private hereInFlight = 0;
  private expirationMs: number | undefined;
  private refreshing: Promise<void> | undefined;
  private broken: Error | undefined;

  private constructor(handle: DataPathHandle, slots: Slot[]) {
    this.handle = handle;
    this.slots = slots;
    this.expirationMs = handle.spec.credentials.expirationMs;
  }

  /**
   * Threads for `store`'s GETs, or undefined where they cannot help or run: fewer than 2 threads
   * asked, a store without a data path for threads (the SDK path, the in-memory store), or no
   * thread module (the single executable).
   */
  static async start(store: Pick<ObjectStore, "dataPath">, threads: number, log: Logger): Promise<DownloadThreads | undefined> {
    if (threads < 1 || !store.dataPath) return undefined;
    const module = threadModule();
    if (!module) return undefined;
    const handle = await store.dataPath();
    if (!handle) return undefined;
    const slots: Slot[] = [];
    for (let i = 0; i < threads; i++) {
      // No stdin/stdout of its own; its module logs nothing (its errors come back as answers).
      const worker = new Worker(module, { workerData: handle.spec, stdout: false, stderr: false });
      slots.push({ worker, inFlight: 0 });
    }
    const pool = new DownloadThreads(handle, slots);
    for (const slot of slots) {
      slot.worker.on("message", (m: FromThread) => pool.answered(m));
      slot.worker.on("error", (err) => pool.fail(slot, err));
      slot.worker.on("exit", (code) => pool.fail(slot, new Error(`a transfer thread exited (code ${code})`)));
    }
    log.debug({ threads }, "downloads run on transfer threads");
    return pool;
  }

  /**
   * Download `entry` (object `key`) into the new temp file `tmp`, verified: what {@link downloadTo}
   * does, on the least busy thread, this one included (`here` runs it on this thread). One try:
   * retrying is the caller's. A thread that finishes faster has fewer in flight and gets more.
   */
  async download(key: string, entry: Entry, tmp: string, signal: AbortSignal, here: () => Promise<void>): Promise<void> {
    signal.throwIfAborted();
    if (this.broken) throw this.broken;
    const slot = this.slots.reduce((a, b) => (b.inFlight < a.inFlight ? b : a));
    if (this.hereInFlight <= slot.inFlight) {
      this.hereInFlight++;
      try {
        return await here();
      } finally {
        this.hereInFlight--;
      }
    }
    await this.freshCredentials();
    const id = this.nextId++;
    const done = new Promise<void>((resolve, reject) => this.pending.set(id, { resolve, reject, thread: slot }));
    slot.inFlight++;
    const abort = (): void => slot.worker.postMessage({ t: "abort", id } satisfies ToThread);
    signal.addEventListener("abort", abort, { once: true });
    slot.worker.postMessage({ t: "get", id, key, entry: plainEntry(entry), tmp } satisfies ToThread);
    try {
      await done;
    } finally {
      signal.removeEventListener("abort", abort);
    }
  }

  /** Stop every thread (the end of the run, whatever its outcome). */
  async close(): Promise<void> {
    this.broken ??= new Error("the transfer threads were closed");
    await Promise.all(this.slots.map((s) => s.worker.terminate().catch(() => undefined)));
  }

  private answered(m: FromThread): void {
    const p = this.pending.get(m.id);
    if (!p) return;
    this.pending.delete(m.id);
    p.thread.inFlight--;
    if (m.attempts > 0) this.handle.attempted("GetObjectCommand", m.attempts);
    if (m.ok) p.resolve();
    else p.reject(receiveError(m.error));
  }

  /** A thread that died fails what it had in flight, and the run (a bug, or out of memory: never retried). */
  private fail(slot: Slot, err: Error): void {
    if (this.broken) return;
    this.broken = new coreErrors.LocalIoError(`a transfer thread stopped: ${err.message}`, { cause: err, hint: "this is a fansync bug unless the machine ran out of memory: run again with --threads 0 and report it" });
    for (const [id, p] of this.pending) {
      if (p.thread !== slot) continue;
      this.pending.delete(id);
      p.reject(this.broken);
    }
  }

  /** Credentials that expire (an instance role, SSO) are renewed for the threads 5 minutes before. */
  private async freshCredentials(): Promise<void> {
    if (this.expirationMs === undefined || Date.now() < this.expirationMs - 5 * 60_000) return;
    this.refreshing ??= (async () => {
      try {
        const credentials = await this.handle.credentials();
        this.expirationMs = credentials.expirationMs;
        for (const s of this.slots) s.worker.postMessage({ t: "creds", credentials } satisfies ToThread);
      } finally {
        this.refreshing = undefined;
      }
    })();
    await this.refreshing;
  }
}

/** The entry's fields as plain data (an Entry may carry more than a thread needs). */
function plainEntry(e: Entry): Entry {
  return { path: e.path, size: e.size, mtimeMs: e.mtimeMs, mode: e.mode, sha256: e.sha256, etag: e.etag, ...(e.versionId !== undefined ? { versionId: e.versionId } : {}) };
}
