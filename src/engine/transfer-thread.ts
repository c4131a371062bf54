/**
 * A transfer thread (see transfer-threads.ts): GETs content objects into the temp files the main
 * thread names, and reads, hashes and PUTs small files, each by the same functions as on the main
 * thread (transfer.ts), with its own keep-alive connections and blocking file calls. No SDK client
 * is loaded here: the signer's facts come from the main thread's {@link DataPathSpec}.
 */
import { parentPort, workerData } from "node:worker_threads";
import { type DataPathSpec, LeanHttp, leanContentStore, type PlainCredentials } from "../adapters/lean-http.ts";
import type { ObjectAttrs } from "../adapters/object-store.ts";
import { contentAttrs } from "./object-attrs.ts";
import { batched, type FromThread, sendError, type ToThread } from "./transfer-threads.ts";
import { downloadTo, hashIfSmall, type HashedFile, sendSmall, transferBuffers } from "./transfer.ts";

const spec = workerData as DataPathSpec;
if (!parentPort) throw new Error("transfer-thread.ts runs only as a transfer thread");
const port = parentPort;

let credentials: PlainCredentials = spec.credentials;
// Request attempts since the last answer, by command: each answer carries them to the run's metrics.
let attempts: Record<string, number> = {};
const data = LeanHttp.fromSpec(spec, () => credentials, { notify: (command) => void (attempts[command] = (attempts[command] ?? 0) + 1) });
const store = leanContentStore(data, spec.bucket, spec);
const buffers = transferBuffers();
const running = new Map<number, AbortController>();
// Files hashed and waiting for the main thread's word (send or drop), by job.
const held = new Map<number, HashedFile & { readonly key: string; readonly attrs: ObjectAttrs }>();

port.on("message", (batch: ToThread[]) => {
  for (const m of batch) take(m);
});

function take(m: ToThread): void {
  switch (m.t) {
    case "creds":
      credentials = m.credentials;
      return;
    case "abort":
      running.get(m.id)?.abort(new DOMException("This operation was aborted", "AbortError"));
      release(m.id);
      return;
    case "drop":
      release(m.id);
      return;
    case "get":
      void job(m.id, async (signal) => {
        await downloadTo(store, m.key, m.entry, m.tmp, signal, buffers, { syncWrites: true });
        return { t: "done", ok: true };
      });
      return;
    case "put":
      void job(m.id, async (signal) => {
        const h = hashIfSmall(m.abs, m.threshold, buffers);
        if (h === "gone" || h === "large") return { t: "done", ok: true, file: h };
        held.set(m.id, { ...h, key: m.key, attrs: contentAttrs({ path: m.path, ...h.facts }, () => m.cacheControl) });
        const hashed: Answer = { t: "hashed", facts: h.facts, md5: h.md5 };
        // Asked: the main thread's word (send or drop) comes next. Else it is told, and the bytes go.
        if (m.ask) return hashed;
        answer({ id: m.id, attempts: {}, ...hashed } as FromThread);
        return send(m.id, signal);
      });
      return;
    case "send":
      void job(m.id, (signal) => send(m.id, signal));
  }
}

// Answers go as one array per turn of the event loop, as the main thread's messages do.
const answer = batched<FromThread>((batch) => port.postMessage(batch));

/** PUT the bytes a "put" hashed and held. */
async function send(id: number, signal: AbortSignal): Promise<Answer> {
  const h = held.get(id);
  if (!h) throw new Error(`no hashed file for transfer ${id}`);
  try {
    return { t: "done", ok: true, put: await sendSmall(store, h.key, h, h.attrs, signal) };
  } finally {
    release(id);
  }
}

function release(id: number): void {
  const h = held.get(id);
  if (!h) return;
  held.delete(id);
  if (h.pooled) buffers.give(h.pooled);
}

type Answer = FromThread extends infer A ? (A extends unknown ? Omit<A, "id" | "attempts"> : never) : never;

/** Run one step of job `id` and answer it (its error as plain data). */
async function job(id: number, run: (signal: AbortSignal) => Promise<Answer>): Promise<void> {
  const ac = new AbortController();
  running.set(id, ac);
  let result: Answer;
  try {
    result = await run(ac.signal);
  } catch (err) {
    release(id);
    result = { t: "done", ok: false, error: sendError(err) };
  } finally {
    running.delete(id);
  }
  answer({ id, attempts, ...result } as FromThread);
  attempts = {};
}

