/**
 * Transfers on every core (issue 25). A push's or a pull's main thread was the bottleneck: each
 * small file costs it a signed request, the socket writes, a sha256 (and an MD5 for a PUT) and the
 * file's reads or writes, while the second core waited. Here transfer threads (worker_threads)
 * each run the same transfer functions (transfer.ts) with their own keep-alive connections and
 * blocking file calls, and the main thread takes its share as well; it keeps everything else: the
 * plan, the retries (one policy, adapters/retry.ts), the staging record and renames of a pull, the
 * ledger, the server-side copies and the commit of a push. A thread only ever writes the temp file
 * it was given, verified, or nothing; it only ever PUTs the bytes it hashed, after the main thread
 * recorded them (the `sending` note of a push).
 *
 * Errors come back as the classes the engines decide on (ObjectMoved, TransferCorrupt,
 * FileChanging, a retryable RemoteError, LocalIoError…), rebuilt from plain data ({@link sendError}).
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
import type { DataPathHandle, ObjectStore, PutResult } from "../adapters/object-store.ts";
import { S3HttpError } from "../adapters/s3-errors.ts";
import type { FileFacts, Uploaded } from "./transfer.ts";

// How much more a transfer on the main thread weighs than one on a transfer thread (see pick).
const HERE_WEIGHT = 2;

/** Fewer small transfers than this are not worth starting threads for (each loads its modules: ~50 ms of CPU, ~25 MiB). */
const MIN_TRANSFERS_FOR_THREADS = 200;

/**
 * The default number of transfer threads: one per core beside the main thread's, at most 3 (each
 * costs ~25 MiB of memory, and the main thread transfers its share too).
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
  readonly cause?: SentError | undefined;
}

/** Messages to a transfer thread. */
export type ToThread =
  | { readonly t: "get"; readonly id: number; readonly key: string; readonly entry: Entry; readonly tmp: string }
  | { readonly t: "put"; readonly id: number; readonly key: string; readonly abs: string; readonly threshold: number; readonly path: string; readonly cacheControl: string | undefined; readonly ask: boolean }
  | { readonly t: "send"; readonly id: number }
  | { readonly t: "drop"; readonly id: number }
  | { readonly t: "abort"; readonly id: number }
  | { readonly t: "creds"; readonly credentials: PlainCredentials };

/**
 * A transfer thread's answer: "done" ends a job ("get", "send", or a "hash" of a file that is gone
 * or large), "hashed" asks the main thread what to do with the bytes it holds. `attempts`: the
 * requests sent since its last answer, by command (the run's request metrics).
 */
export type FromThread = { readonly id: number; readonly attempts: Readonly<Record<string, number>> } & (
  | { readonly t: "done"; readonly ok: true; readonly put?: PutResult | undefined; readonly file?: "gone" | "large" | undefined }
  | { readonly t: "done"; readonly ok: false; readonly error: SentError }
  | { readonly t: "hashed"; readonly facts: FileFacts; readonly md5: string }
);

// The classes an error may be rebuilt as: every fansync error, and the adapters' own the
// transfer path throws. Anything else comes back as a plain Error with its own properties (a
// socket's `code`, an S3 answer's `$metadata`), which is all isRetryable reads.
const CLASSES: ReadonlyMap<string, { prototype: object }> = new Map(
  [...Object.values(coreErrors as Record<string, unknown>), S3HttpError, BodyTooLarge]
    .filter((v): v is { name: string; prototype: object } => typeof v === "function" && v.prototype instanceof Error)
    .map((c) => [c.name, c]),
);

/** `err` as plain data: its class name, message, cause and the own properties that can be copied. */
export function sendError(err: unknown, depth = 0): SentError {
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
  // The cause too (an errno error under a LocalIoError: the uploader reads its code), not forever.
  const cause = e.cause !== undefined && depth < 3 ? sendError(e.cause, depth + 1) : undefined;
  return { cls: e.constructor?.name ?? "Error", name: e.name, message: e.message, stack: e.stack, props, ...(cause ? { cause } : {}) };
}

/** The error {@link sendError} described, of the same class where it is one fansync decides on. */
export function receiveError(s: SentError): Error {
  const proto = (CLASSES.get(s.cls) ?? Error).prototype;
  const e = Object.create(proto) as Error;
  const cause = s.cause ? receiveError(s.cause) : undefined;
  for (const [k, v] of Object.entries({ ...s.props, name: s.name, message: s.message, stack: s.stack, cause })) {
    if (v !== undefined) Object.defineProperty(e, k, { value: v, writable: true, configurable: true, enumerable: !["stack", "message", "cause"].includes(k) });
  }
  return e;
}

/**
 * What a thread runs: the module beside this one (.ts from source, .js from dist/), or in the single
 * executable, which has no module file, the script its build bundled in (release/bundle.ts);
 * undefined when neither is there (transfers then stay on the main thread).
 */
function threadModule(): { readonly url: URL } | { readonly script: string } | undefined {
  const script = (globalThis as { __fansyncTransferThreadSource?: unknown }).__fansyncTransferThreadSource;
  if (typeof script === "string") return { script };
  const ext = import.meta.url.endsWith(".ts") ? ".ts" : ".js";
  const url = new URL(`./transfer-thread${ext}`, import.meta.url);
  return url.protocol === "file:" && existsSync(fileURLToPath(url)) ? { url } : undefined;
}

interface Slot {
  readonly worker: Worker;
  inFlight: number;
  /** Send a message to this thread (see {@link batched}). */
  readonly post: (m: ToThread) => void;
}

/**
 * A sender that posts what it is given once per turn of the event loop, as one array: each post
 * wakes the other thread, and on a VM a wake-up costs more than the message. Both sides use it.
 */
export function batched<T>(post: (batch: T[]) => void): (m: T) => void {
  let outbox: T[] = [];
  return (m) => {
    if (outbox.push(m) === 1) setImmediate(() => {
      const batch = outbox;
      outbox = [];
      post(batch);
    });
  };
}

interface Pending {
  readonly slot: Slot;
  readonly answer: (m: FromThread) => void;
  readonly fail: (err: Error) => void;
}

/**
 * What {@link TransferThreads.upload} needs from the uploader: as transfer.ts uploadFile's options,
 * with the object's attributes as object-attrs.ts makes them from the path, its Cache-Control and
 * the file's facts (the thread makes them).
 */
export interface ThreadUpload {
  readonly threshold: number;
  readonly path: string;
  readonly cacheControl: string | undefined;
  readonly instead?: ((f: FileFacts) => Promise<PutResult | undefined>) | undefined;
  readonly sending?: ((f: FileFacts, etag: string) => void) | undefined;
}

/** A few transfer threads sharing one run's small transfers. */
export class TransferThreads {
  private readonly slots: Slot[];
  private readonly pending = new Map<number, Pending>();
  private readonly handle: DataPathHandle;
  private nextId = 1;
  // Transfers running on this thread (see pick).
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
   * Threads for a run's `small` transfers of `store`'s content objects, or undefined where they
   * would not pay or cannot run: no thread asked, fewer small transfers than are worth it, a store
   * without a data path for threads (the SDK path, the in-memory store), or no thread module.
   */
  static async start(store: Pick<ObjectStore, "dataPath">, o: { readonly threads: number; readonly small: number }, log: Logger): Promise<TransferThreads | undefined> {
    const threads = o.threads;
    if (threads < 1 || o.small < MIN_TRANSFERS_FOR_THREADS || !store.dataPath) return undefined;
    const module = threadModule();
    if (!module) return undefined;
    const handle = await store.dataPath();
    if (!handle) return undefined;
    const slots: Slot[] = [];
    for (let i = 0; i < threads; i++) {
      // No stdin/stdout of its own; its module logs nothing (its errors come back as answers).
      const options = { workerData: handle.spec, stdout: false, stderr: false };
      const worker = "url" in module ? new Worker(module.url, options) : new Worker(module.script, { ...options, eval: true });
      slots.push({ worker, inFlight: 0, post: batched((batch) => worker.postMessage(batch)) });
    }
    const pool = new TransferThreads(handle, slots);
    for (const slot of slots) {
      slot.worker.on("message", (batch: FromThread[]) => {
        for (const m of batch) pool.answered(m);
      });
      slot.worker.on("error", (err) => pool.fail(slot, err));
      slot.worker.on("exit", (code) => pool.fail(slot, new Error(`a transfer thread exited (code ${code})`)));
    }
    log.debug({ threads }, "transfers run on transfer threads");
    return pool;
  }

  /**
   * Download `entry` (object `key`) into the new temp file `tmp`, verified: what downloadTo does,
   * on the least busy thread, this one included (`here` runs it on this thread). One try:
   * retrying is the caller's.
   */
  async download(key: string, entry: Entry, tmp: string, signal: AbortSignal, here: () => Promise<void>): Promise<void> {
    const slot = await this.pick(signal);
    if (!slot) return this.runHere(here);
    await this.job(slot, signal, (id) => ({ t: "get", id, key, entry, tmp }), (m) => {
      if (m.t === "done") return "done";
      throw new Error(`a transfer thread answered a download with ${m.t}`);
    });
  }

  /**
   * Upload the small file `abs` as `key`: what uploadFile does for one under `o.threshold` bytes
   * (read once, hashed, `instead` asked, `sending` told, one PUT, its answer checked), on the least
   * busy thread, this one included (`here`). The thread reads and hashes; with `instead`, it waits
   * for this thread's word (a server-side copy instead, or the bytes sent); `sending` is told as
   * the bytes go (the ledger's note is buffered either way). "large": the file grew past the
   * threshold, for the caller's multipart path.
   */
  async upload(key: string, abs: string, o: ThreadUpload, signal: AbortSignal, here: () => Promise<Uploaded | undefined>): Promise<Uploaded | undefined | "large"> {
    const slot = await this.pick(signal);
    if (!slot) return this.runHere(here);
    let facts: FileFacts | undefined;
    let instead: PutResult | undefined;
    let file: "gone" | "large" | undefined;
    let put: PutResult | undefined;
    const ask = o.instead !== undefined;
    await this.job(slot, signal, (id) => ({ t: "put", id, key, abs, threshold: o.threshold, path: o.path, cacheControl: o.cacheControl, ask }), async (m, id) => {
      if (m.t === "hashed") {
        facts = m.facts;
        instead = ask ? await o.instead?.(m.facts) : undefined;
        if (instead) {
          slot.post({ t: "drop", id });
          return "done";
        }
        o.sending?.(m.facts, `"${m.md5}"`);
        if (ask) slot.post({ t: "send", id });
        return "more";
      }
      file = m.ok ? m.file : undefined;
      put = m.ok ? m.put : undefined;
      return "done";
    });
    if (file === "gone") return undefined;
    if (file === "large") return "large";
    if (!facts) throw new Error("a transfer thread finished an upload it never hashed");
    const stored = instead ?? put;
    if (!stored) throw new Error("a transfer thread finished an upload without an answer");
    return { ...facts, ...stored };
  }

  /** Stop every thread (the end of the run, whatever its outcome). */
  async close(): Promise<void> {
    this.broken ??= new Error("the transfer threads were closed");
    await Promise.all(this.slots.map((s) => s.worker.terminate().catch(() => undefined)));
  }

  /** The least busy thread for the next transfer, or undefined when this thread is (it runs it itself). */
  private async pick(signal: AbortSignal): Promise<Slot | undefined> {
    signal.throwIfAborted();
    if (this.broken) throw this.broken;
    const slot = this.slots.reduce((a, b) => (b.inFlight < a.inFlight ? b : a));
    // This thread also runs the plan, the retries, the records and the commit: each transfer of
    // its own counts double (profiled at 10k: at par, it stayed ~95% busy while a thread idled 28%).
    if (HERE_WEIGHT * this.hereInFlight <= slot.inFlight) return undefined;
    await this.freshCredentials();
    return slot;
  }

  private async runHere<T>(here: () => Promise<T>): Promise<T> {
    this.hereInFlight++;
    try {
      return await here();
    } finally {
      this.hereInFlight--;
    }
  }

  /**
   * One job on `slot`: its first message, then each answer to `step` until it says "done"; a
   * failed answer rejects. Aborting `signal` aborts the job in the thread.
   */
  private async job(slot: Slot, signal: AbortSignal, first: (id: number) => ToThread, step: (m: FromThread, id: number) => "done" | "more" | Promise<"done" | "more">): Promise<void> {
    const id = this.nextId++;
    const done = new Promise<void>((resolve, reject) => {
      this.pending.set(id, {
        slot,
        fail: reject,
        answer: (m) => {
          if (m.t === "done" && !m.ok) return this.finish(id, () => reject(receiveError(m.error)));
          Promise.resolve()
            .then(() => step(m, id))
            .then((next) => (next === "done" ? this.finish(id, resolve) : undefined), (err: unknown) => {
              // The decision failed on this thread (a copy instead, the note): the thread lets go of the bytes.
              slot.post({ t: "drop", id });
              this.finish(id, () => reject(err));
            });
        },
      });
    });
    slot.inFlight++;
    const abort = (): void => slot.post({ t: "abort", id });
    signal.addEventListener("abort", abort, { once: true });
    slot.post(first(id));
    try {
      await done;
    } finally {
      signal.removeEventListener("abort", abort);
    }
  }

  private finish(id: number, settle: () => void): void {
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    p.slot.inFlight--;
    settle();
  }

  private answered(m: FromThread): void {
    for (const [command, n] of Object.entries(m.attempts)) this.handle.attempted(command, n);
    this.pending.get(m.id)?.answer(m);
  }

  /** A thread that died fails what it had in flight, and the run (a bug, or out of memory: never retried). */
  private fail(slot: Slot, err: Error): void {
    if (this.broken) return;
    this.broken = new coreErrors.LocalIoError(`a transfer thread stopped: ${err.message}`, { cause: err, hint: "this is a fansync bug unless the machine ran out of memory: run again with --threads 0 and report it" });
    for (const [id, p] of this.pending) {
      if (p.slot !== slot) continue;
      this.pending.delete(id);
      p.fail(this.broken);
    }
  }

  /** Credentials that expire (an instance role, SSO) are renewed for the threads 5 minutes before. */
  private async freshCredentials(): Promise<void> {
    if (this.expirationMs === undefined || Date.now() < this.expirationMs - 5 * 60_000) return;
    this.refreshing ??= (async () => {
      try {
        const credentials = await this.handle.credentials();
        this.expirationMs = credentials.expirationMs;
        for (const s of this.slots) s.post({ t: "creds", credentials });
      } finally {
        this.refreshing = undefined;
      }
    })();
    await this.refreshing;
  }
}
