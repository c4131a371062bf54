/**
 * A second location that a test can take down and bring back: a bucket on the suite's own server,
 * reached through a proxy on its own port. Down, the port refuses connections (what a region whose
 * server is gone looks like to fansync); up, the proxy listens on the same port again. Works the
 * same on every server, S3_ENDPOINT included: no second server is started.
 */
import type { S3Client } from "@aws-sdk/client-s3";
import { startProxy, type Proxy } from "./proxy.ts";
import { emptyBucket, type TestServer } from "./s3-server.ts";

/** A bucket behind a proxy port that can go down. */
export interface DownableBucket {
  readonly bucket: string;
  /** The proxy's URL: give it to fansync as this location's endpoint. */
  readonly endpoint: string;
  /** Straight to the server (works while the region is down). */
  readonly client: S3Client;
  /** Close the port: every request fails with ECONNREFUSED. */
  down(): Promise<void>;
  /** Listen on the same port again; `lostData` first empties the bucket (a region that came back empty). */
  up(opts?: { lostData?: boolean }): Promise<void>;
  close(): Promise<void>;
}

/** Create a bucket named after `hint` behind its own proxy port. */
export async function downableBucket(server: TestServer, hint: string): Promise<DownableBucket> {
  const bucket = await server.bucket(hint);
  let proxy: Proxy | undefined = await startProxy(server.endpoint);
  const port = Number(new URL(proxy.url).port);
  const endpoint = proxy.url;
  return {
    bucket,
    endpoint,
    client: server.client,
    async down() {
      await proxy?.close();
      proxy = undefined;
    },
    async up(opts = {}) {
      if (opts.lostData) await emptyBucket(server.client, bucket);
      // The port was free a moment ago; another process may take it in between: try a few times.
      for (let i = 0; ; i++) {
        try {
          proxy = await startProxy(server.endpoint, { port });
          return;
        } catch (err) {
          if (i >= 20 || (err as NodeJS.ErrnoException).code !== "EADDRINUSE") throw err;
          await new Promise((r) => setTimeout(r, 250));
        }
      }
    },
    async close() {
      await proxy?.close();
      proxy = undefined;
    },
  };
}
