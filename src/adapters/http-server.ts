/**
 * A minimal read-only HTTP server for the daemons' status endpoints (node:http; four GET routes do
 * not need a framework). Errors inside a handler answer 500 and are never thrown into the daemon.
 */
import { createServer, type Server } from "node:http";
import { UsageError } from "../core/errors.ts";

/** One route's answer. */
export interface HttpAnswer {
  readonly status: number;
  readonly type: string;
  readonly body: string;
}

/** A listening server. */
export interface HttpServer {
  readonly url: string;
  close(): Promise<void>;
}

/** Listen on `listen` and answer GET/HEAD for the given paths (exact match, query ignored). */
export async function startHttpServer(listen: { host: string; port: number }, routes: Readonly<Record<string, () => Promise<HttpAnswer>>>): Promise<HttpServer> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0] as string;
    const route = routes[path];
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD", "content-type": "text/plain" }).end("method not allowed\n");
      return;
    }
    if (!route) {
      res.writeHead(404, { "content-type": "text/plain" }).end(`not found; try ${Object.keys(routes).join(" ")}\n`);
      return;
    }
    route().then(
      (a) => {
        res.writeHead(a.status, { "content-type": a.type, "cache-control": "no-store", "x-content-type-options": "nosniff" });
        res.end(req.method === "HEAD" ? undefined : a.body);
      },
      (err: unknown) => {
        res.writeHead(500, { "content-type": "text/plain" }).end(`internal error: ${(err as Error).message}\n`);
      },
    );
  });
  // Status endpoints must not keep a draining daemon alive.
  server.keepAliveTimeout = 5000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", (err: NodeJS.ErrnoException) =>
      reject(
        new UsageError(`cannot serve --http on ${listen.host}:${listen.port}: ${err.code ?? err.message}`, {
          hint: err.code === "EADDRINUSE" ? "another process uses that port: pick another one" : "check the address (127.0.0.1:9180, or a port alone)",
        }),
      ),
    );
    server.listen(listen.port, listen.host, () => resolve());
  });
  server.unref();
  const addr = server.address();
  const port = typeof addr === "object" && addr ? addr.port : listen.port;
  const host = listen.host.includes(":") ? `[${listen.host}]` : listen.host;
  return {
    url: `http://${host}:${port}/`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
