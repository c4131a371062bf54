/**
 * A transfer thread (see download-threads.ts): GETs content objects into the temp files the main
 * thread names, each verified by the same {@link downloadTo} as on the main thread, with its own
 * keep-alive connections and blocking file writes. No SDK client is loaded here: the signer's
 * facts come from the main thread's {@link DataPathSpec}.
 */
import { parentPort, workerData } from "node:worker_threads";
import { type DataPathSpec, LeanHttp, type PlainCredentials } from "../adapters/lean-http.ts";
import { streamFailure } from "../adapters/s3-errors.ts";
import type { Entry } from "../core/manifest.ts";
import type { FromThread, SentError, ToThread } from "./download-threads.ts";
import { sendError } from "./download-threads.ts";
import { downloadTo, transferBuffers } from "./transfer.ts";

const spec = workerData as DataPathSpec;
const port = parentPort;
if (!port) throw new Error("download-thread.ts runs only as a transfer thread");

let credentials: PlainCredentials = spec.credentials;
// Request attempts since the last answer: each answer carries them to the run's request metrics.
let attempts = 0;
const data = LeanHttp.fromSpec(spec, () => credentials, { notify: () => void attempts++ });
const buffers = transferBuffers();
const running = new Map<number, AbortController>();
const reader = {
  getStream: (key: string, o: { maxBytes: number; ifMatch?: string; versionId?: string; signal?: AbortSignal }) =>
    data.getStream(spec.bucket, key, o).catch((err: unknown) => streamFailure(err, `GET s3://${spec.bucket}/${key}`, spec.endpoint, spec.profile)),
};

port.on("message", (m: ToThread) => {
  if (m.t === "creds") credentials = m.credentials;
  else if (m.t === "abort") running.get(m.id)?.abort(new DOMException("This operation was aborted", "AbortError"));
  else void get(m.id, m.key, m.entry, m.tmp);
});

async function get(id: number, key: string, entry: Entry, tmp: string): Promise<void> {
  const ac = new AbortController();
  running.set(id, ac);
  let outcome: { ok: true } | { ok: false; error: SentError };
  try {
    await downloadTo(reader, key, entry, tmp, ac.signal, buffers, { syncWrites: true });
    outcome = { ok: true };
  } catch (err) {
    outcome = { ok: false, error: sendError(err) };
  } finally {
    running.delete(id);
  }
  const answer: FromThread = { id, attempts, ...outcome };
  attempts = 0;
  port?.postMessage(answer);
}
