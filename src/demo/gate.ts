/**
 * The demo's conditional-write gate. The demo's embedded S3 server (fauxqs) ignores `If-Match` and
 * `If-None-Match` on PUT, and `fansync sync` refuses such a server (two writers could fork the
 * chain). The gate stands in front of it, in the demo's own process, and enforces both headers the
 * way S3 does: a conditional PUT waits for every other conditional PUT of the same key, the key's
 * current ETag is read with a HEAD, and the PUT is refused with 412 (or 404 when `If-Match` names a
 * key that does not exist) or forwarded. Everything else passes through untouched. Only the demo
 * uses it: every S3 client in the demo goes through the gate, so no write reaches fauxqs around it.
 * Seeing every write, it also tells `onPut` of each PUT that succeeded: the demo's event relay
 * (events.ts) stands in there for the bucket notifications fauxqs's S3 does not send.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";

/** A running gate: its endpoint and how to stop it. */
export interface DemoGate {
  readonly endpoint: string;
  close(): Promise<void>;
}

/** Start a gate on 127.0.0.1 (a free port) in front of the S3 server at `upstreamPort`. */
export async function startDemoGate(upstreamPort: number, opts: { onPut?: (objectPath: string) => void } = {}): Promise<DemoGate> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
  // One chain of conditional PUTs per key: the check and the write of one never interleave with another's.
  const queues = new Map<string, Promise<void>>();

  const forward = (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> =>
    new Promise((resolve) => {
      const up = http.request({ host: "127.0.0.1", port: upstreamPort, method: req.method, path: req.url, headers: req.headers, agent }, (ur) => {
        res.writeHead(ur.statusCode ?? 502, ur.headers);
        ur.pipe(res);
        ur.once("end", () => {
          // After the whole answer, as S3 notifies after the write.
          if (req.method === "PUT" && (ur.statusCode ?? 0) >= 200 && (ur.statusCode ?? 0) < 300) opts.onPut?.(req.url ?? "/");
          resolve();
        });
        ur.once("error", () => resolve());
      });
      up.once("error", (err) => {
        if (!res.headersSent) res.writeHead(502, { "content-type": "text/plain" });
        res.end(`demo gate: ${err.message}`);
        resolve();
      });
      req.pipe(up);
    });

  const currentEtag = (objectPath: string, headers: http.IncomingHttpHeaders): Promise<string | undefined> =>
    new Promise((resolve, reject) => {
      // The embedded server checks no signatures: the gate's own HEAD goes unsigned.
      const r = http.request({ host: "127.0.0.1", port: upstreamPort, method: "HEAD", path: objectPath, headers: { host: headers.host }, agent }, (res) => {
        res.resume();
        res.once("end", () => resolve(res.statusCode === 200 ? bare(String(res.headers.etag ?? "")) : undefined));
      });
      r.once("error", reject);
      r.end();
    });

  const refuse = (res: http.ServerResponse, status: number, code: string, message: string) => {
    res.writeHead(status, { "content-type": "application/xml" });
    res.end(`<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${message}</Message></Error>`);
  };

  const conditionalPut = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    const objectPath = (req.url ?? "/").split("?")[0] as string;
    const ifMatch = req.headers["if-match"];
    const ifNoneMatch = req.headers["if-none-match"];
    let etag: string | undefined;
    try {
      etag = await currentEtag(objectPath, req.headers);
    } catch (err) {
      req.resume();
      refuse(res, 503, "SlowDown", `demo gate: ${(err as Error).message}`);
      return;
    }
    if (ifNoneMatch !== undefined && (ifNoneMatch.trim() === "*" ? etag !== undefined : etag !== undefined && bare(ifNoneMatch) === etag)) {
      req.resume();
      refuse(res, 412, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold");
      return;
    }
    if (ifMatch !== undefined) {
      if (etag === undefined) {
        req.resume();
        refuse(res, 404, "NoSuchKey", "The specified key does not exist.");
        return;
      }
      if (bare(ifMatch) !== etag) {
        req.resume();
        refuse(res, 412, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold");
        return;
      }
    }
    await forward(req, res);
  };

  const server = http.createServer((req, res) => {
    const conditional = req.method === "PUT" && (req.headers["if-match"] !== undefined || req.headers["if-none-match"] !== undefined);
    if (!conditional) {
      void forward(req, res);
      return;
    }
    const key = (req.url ?? "/").split("?")[0] as string;
    const before = queues.get(key) ?? Promise.resolve();
    const mine = before.then(() => conditionalPut(req, res));
    const tail = mine.catch(() => {});
    queues.set(key, tail);
    void tail.then(() => {
      if (queues.get(key) === tail) queues.delete(key);
    });
  });
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
        agent.destroy();
      }),
  };
}

/** An ETag without quotes or a weak marker. */
function bare(etag: string): string {
  return etag.trim().replace(/^W\//, "").replace(/^"|"$/g, "");
}
