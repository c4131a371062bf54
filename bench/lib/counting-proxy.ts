// A counting HTTP proxy in front of the S3 server: every tool talks to it, so request counts are
// measured the same way for all of them instead of trusting each tool's own statistics.
import { createServer, request as httpRequest, Agent, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

/** Request counts by kind and bytes moved through the proxy. */
export type ProxyCounts = {
  /** By kind: HTTP method, except that a GET on a bucket root (a listing) counts as LIST. */
  requests: Record<string, number>;
  /** Request body bytes sent by the tool (uploads). */
  bytesUp: number;
  /** Response body bytes received by the tool (downloads). */
  bytesDown: number;
};

/** A running proxy. */
export type CountingProxy = {
  port: number;
  endpoint: string;
  /** A copy of the counters so far. */
  snapshot(): ProxyCounts;
  close(): Promise<void>;
};

/** Counters accumulated between two snapshots (after − before). */
export function diffCounts(after: ProxyCounts, before: ProxyCounts): ProxyCounts {
  const requests: Record<string, number> = {};
  for (const [k, v] of Object.entries(after.requests)) {
    const d = v - (before.requests[k] ?? 0);
    if (d !== 0) requests[k] = d;
  }
  return { requests, bytesUp: after.bytesUp - before.bytesUp, bytesDown: after.bytesDown - before.bytesDown };
}

/** Total number of requests in a count. */
export function totalRequests(c: ProxyCounts): number {
  return Object.values(c.requests).reduce((a, b) => a + b, 0);
}

/**
 * Classifies a path-style request. A GET whose path is only `/bucket` or `/bucket/` is a listing
 * (ListObjects/V2, or GetBucketLocation etc. with a query, which tools send rarely).
 */
export function requestKind(method: string, url: string): string {
  const path = url.split("?", 1)[0] ?? "/";
  const segments = path.split("/").filter((s) => s !== "");
  if (method === "GET" && segments.length === 1) return "LIST";
  return method;
}

// Hop-by-hop headers must not be forwarded; `expect` is dropped because this proxy already answered
// 100-continue to the client and streams the body upstream straight away.
const HOP_BY_HOP = new Set(["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te", "trailer", "expect"]);

/**
 * One answered request, as an observer sees it once the response has been sent in full. `target`:
 * the X-Amz-Target header of an AWS JSON-protocol call (SQS's `AmazonSQS.ReceiveMessage`…).
 */
export type ProxiedRequest = { method: string; url: string; status: number; endMs: number; target?: string };

/**
 * Starts a streaming, keep-alive proxy on 127.0.0.1 forwarding to `upstream` (http://host:port).
 * `observe`, when given, is told of every request once its response is complete (the simulated
 * fleet classifies requests by key and status, and times the head's publication with it).
 * `delayMs` > 0 holds each request that long before it goes upstream and each answer that long
 * before it goes back: a WAN's latency in both directions, for every tool alike.
 */
export async function startCountingProxy(upstream: string, observe?: (r: ProxiedRequest) => void, delayMs = 0, maxSockets = 256): Promise<CountingProxy> {
  const target = new URL(upstream);
  // maxSockets: a fleet of event-driven nodes holds one 20 s long poll open per node.
  const agent = new Agent({ keepAlive: true, maxSockets });
  const counts: ProxyCounts = { requests: {}, bytesUp: 0, bytesDown: 0 };

  // A WAN delay: `then` runs delayMs later (at once without one). The request body waits, paused, in
  // the socket meanwhile; the answer's body waits in the upstream response.
  const later = (then: () => void): void => {
    if (delayMs > 0) setTimeout(then, delayMs);
    else then();
  };
  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    req.pause();
    later(() => forward(req, res));
  };
  const forward = (req: IncomingMessage, res: ServerResponse): void => {
    const method = req.method ?? "GET";
    const kind = requestKind(method, req.url ?? "/");
    counts.requests[kind] = (counts.requests[kind] ?? 0) + 1;
    const headers: Record<string, string | string[]> = {};
    for (const [k, v] of Object.entries(req.headers)) {
      if (v !== undefined && !HOP_BY_HOP.has(k)) headers[k] = v;
    }
    // The Host header is part of the SigV4 signature: forward it unchanged (it names the proxy).
    const up = httpRequest(
      { host: target.hostname, port: target.port, method, path: req.url, headers, agent },
      (upRes) => later(() => {
        const outHeaders: Record<string, string | string[]> = {};
        for (const [k, v] of Object.entries(upRes.headers)) {
          if (v !== undefined && !HOP_BY_HOP.has(k)) outHeaders[k] = v;
        }
        res.writeHead(upRes.statusCode ?? 502, upRes.statusMessage, outHeaders);
        upRes.on("data", (chunk: Buffer) => {
          counts.bytesDown += chunk.length;
        });
        upRes.pipe(res);
        upRes.on("error", () => res.destroy());
        if (observe !== undefined) {
          const amzTarget = req.headers["x-amz-target"];
          upRes.on("end", () => observe({ method, url: req.url ?? "/", status: upRes.statusCode ?? 0, endMs: Date.now(), ...(typeof amzTarget === "string" ? { target: amzTarget } : {}) }));
        }
      }),
    );
    up.on("error", (err) => {
      if (!res.headersSent) {
        res.writeHead(502, { "content-type": "text/plain" });
        res.end(`proxy: upstream error: ${err.message}`);
      } else {
        res.destroy(err);
      }
    });
    req.on("data", (chunk: Buffer) => {
      counts.bytesUp += chunk.length;
    });
    req.pipe(up);
    req.on("error", () => up.destroy());
  };

  const server = createServer({ keepAliveTimeout: 30_000 }, handle);
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    endpoint: `http://127.0.0.1:${port}`,
    snapshot: () => ({ requests: { ...counts.requests }, bytesUp: counts.bytesUp, bytesDown: counts.bytesDown }),
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      agent.destroy();
    },
  };
}
