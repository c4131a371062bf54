/**
 * A small HTTP proxy on 127.0.0.1 in front of the S3 server: counts every request fansync sends
 * and can inject faults (latency, error statuses, resets mid-body, truncated bodies, stalls,
 * trickling bodies, holds).
 */
import http from "node:http";

/** One request seen by the proxy. */
export interface SeenRequest {
  readonly method: string;
  readonly url: string;
  readonly status: number;
}

/** What to do with a request: pass it through, or break it in a chosen way. */
export type Fault =
  | { kind: "none" }
  | { kind: "delay"; ms: number }
  | { kind: "status"; status: number; code: string }
  | { kind: "reset-mid-body" }
  /** Forward the request, let the server do the work, and drop its whole answer (the connection dies). */
  | { kind: "drop-answer" }
  | { kind: "truncate" }
  | { kind: "stall" }
  /** Pass the answer through one byte every `everyMs` (a body that trickles: no inactivity timeout fires). */
  | { kind: "trickle"; everyMs: number }
  /** Forward the request only once `until` settles (a barrier: two writers meet at the head PUT). */
  | { kind: "hold"; until: Promise<unknown> }
  /**
   * Answer without asking the server: `status` with a body of `bytes` bytes of `fill` (Infinity: a
   * body that never ends, sent chunked), made on the fly (nothing on disk); `everyMs`: one byte at a
   * time, this far apart (a trickle). A hostile or broken server, or whoever wrote the bucket.
   */
  | { kind: "synth"; status: number; bytes: number; fill?: number; everyMs?: number; headers?: Record<string, string> }
  /** Forward the request, then answer with its ETag header rewritten (a proxy that weakens ETags: `W/"…"`). */
  | { kind: "rewrite-etag"; to: (etag: string) => string }
  /** Answer 200 with this ETag without forwarding anything (a server that says it stored what it did not). */
  | { kind: "swallow"; etag: string };

/** A running proxy. */
export interface Proxy {
  readonly url: string;
  readonly requests: SeenRequest[];
  /** Faults injected so far (every answer that was not a plain pass-through), for the figures. */
  readonly injected: number;
  /** Body bytes sent by "synth" answers so far (what a client read before it hung up). */
  readonly synthBytes: number;
  /** Decide per request; default passes everything through. */
  fault: (req: { method: string; url: string }) => Fault;
  reset(): void;
  /** Resolve when a request matching `pred` arrives (or has arrived since the last reset). */
  waitFor(pred: (req: { method: string; url: string }) => boolean, timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

/** Start a proxy forwarding to `target` (http://127.0.0.1:port), on `opts.port` (default: a free one). */
export async function startProxy(target: string, opts: { port?: number } = {}): Promise<Proxy> {
  const t = new URL(target);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
  const sockets = new Set<import("node:net").Socket>();
  const arrived: { method: string; url: string }[] = [];
  const waiters = new Set<{ pred: (req: { method: string; url: string }) => boolean; resolve: () => void }>();
  let injected = 0;
  let synthBytes = 0;
  const proxy: Proxy = {
    url: "",
    requests: [],
    get injected() {
      return injected;
    },
    get synthBytes() {
      return synthBytes;
    },
    fault: () => ({ kind: "none" }),
    reset() {
      this.requests.length = 0;
      arrived.length = 0;
    },
    waitFor(pred, timeoutMs = 30_000) {
      if (arrived.some(pred)) return Promise.resolve();
      return new Promise<void>((resolve, reject) => {
        const w = {
          pred,
          resolve: () => {
            clearTimeout(timer);
            waiters.delete(w);
            resolve();
          },
        };
        const timer = setTimeout(() => {
          waiters.delete(w);
          reject(new Error(`proxy: no matching request within ${timeoutMs} ms`));
        }, timeoutMs);
        waiters.add(w);
      });
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
      agent.destroy();
    },
  };
  const server = http.createServer((req, res) => {
    const seen = { method: req.method ?? "", url: req.url ?? "" };
    arrived.push(seen);
    for (const w of [...waiters]) if (w.pred(seen)) w.resolve();
    const f = proxy.fault(seen);
    if (f.kind !== "none") injected++;
    const record = (status: number) => proxy.requests.push({ method: req.method ?? "", url: req.url ?? "", status });
    if (f.kind === "stall") {
      record(0);
      req.resume();
      return; // never answers; the client's timeout must fire
    }
    if (f.kind === "status") {
      record(f.status);
      req.resume();
      req.on("end", () => {
        res.writeHead(f.status, { "content-type": "application/xml" });
        res.end(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>${f.code}</Code><Message>injected</Message></Error>`);
      });
      return;
    }
    if (f.kind === "swallow") {
      req.resume();
      req.on("end", () => {
        record(200);
        res.writeHead(200, { etag: f.etag, "content-length": "0" });
        res.end();
      });
      return;
    }
    if (f.kind === "synth") {
      record(f.status);
      req.resume();
      req.on("end", () => {
        const finite = Number.isFinite(f.bytes);
        res.writeHead(f.status, { "content-type": "application/octet-stream", etag: '"0123456789abcdef0123456789abcdef"', ...(finite ? { "content-length": String(f.bytes) } : {}), ...f.headers });
        const chunk = Buffer.alloc(f.everyMs ? 1 : 64 * 1024, f.fill ?? 0x20);
        let left = f.bytes;
        const more = (): void => {
          while (left > 0 && !res.destroyed) {
            const part = left >= chunk.length ? chunk : chunk.subarray(0, left);
            left -= part.length;
            synthBytes += part.length;
            if (f.everyMs) {
              res.write(part);
              setTimeout(more, f.everyMs);
              return;
            }
            if (!res.write(part)) {
              res.once("drain", more);
              return;
            }
          }
          if (!res.destroyed) res.end();
        };
        res.on("error", () => undefined);
        more();
      });
      return;
    }
    const forward = () => {
      const up = http.request(
        { host: t.hostname, port: t.port, method: req.method, path: req.url, headers: req.headers, agent },
        (ur) => {
          record(ur.statusCode ?? 0);
          if (f.kind === "drop-answer") {
            ur.resume();
            res.socket?.destroy();
            return;
          }
          if (f.kind === "reset-mid-body" || f.kind === "truncate") {
            const len = Number(ur.headers["content-length"] ?? 0);
            res.writeHead(ur.statusCode ?? 502, ur.headers);
            if (len === 0) {
              // No body to cut (a PUT's answer): the server did the work, the client sees the
              // connection die after the headers.
              ur.resume();
              res.socket?.destroy();
              return;
            }
            let sent = 0;
            ur.on("data", (c: Buffer) => {
              if (sent >= len / 2) return;
              const part = c.subarray(0, Math.max(0, Math.ceil(len / 2) - sent));
              sent += part.length;
              res.write(part);
              if (sent >= len / 2) {
                // Truncate: end the socket early with the full Content-Length promised; reset: RST.
                if (f.kind === "reset-mid-body") res.socket?.resetAndDestroy();
                else res.socket?.destroy();
              }
            });
            return;
          }
          if (f.kind === "rewrite-etag" && typeof ur.headers.etag === "string") ur.headers.etag = f.to(ur.headers.etag);
          res.writeHead(ur.statusCode ?? 502, ur.headers);
          if (f.kind === "trickle") {
            void (async () => {
              for await (const c of ur as AsyncIterable<Buffer>) {
                for (const b of c) {
                  if (res.destroyed) return;
                  res.write(Buffer.of(b));
                  await new Promise((r) => setTimeout(r, f.everyMs));
                }
              }
              res.end();
            })().catch(() => res.destroy());
            return;
          }
          ur.pipe(res);
        },
      );
      up.on("error", () => {
        record(502);
        res.destroy();
      });
      req.pipe(up);
    };
    if (f.kind === "delay") setTimeout(forward, f.ms);
    else if (f.kind === "hold") {
      // Buffer nothing: the request body waits in the socket until the barrier opens.
      req.pause();
      void f.until.then(forward, forward);
    } else forward();
  });
  server.on("connection", (s) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port ?? 0, "127.0.0.1", () => resolve());
  });
  (proxy as { url: string }).url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  return proxy;
}
