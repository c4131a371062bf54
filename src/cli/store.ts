/** Builds the S3 store for a location from the resolved config (per-location endpoint/profile). */
import type { Config } from "../core/config.ts";
import { settingsFor } from "../core/config.ts";
import type { Location } from "../core/location.ts";
import { createS3Client } from "../adapters/s3-client.ts";
import { S3Store } from "../adapters/s3-store.ts";

/** An S3 store for `loc` with its own connection settings. */
export function storeFor(cfg: Config, loc: Location): S3Store {
  const s = settingsFor(cfg, loc);
  const client = createS3Client({ ...s, maxSockets: Math.max(8, cfg.concurrency * 2) });
  const endpoint = s.endpointUrl ?? process.env.AWS_ENDPOINT_URL_S3 ?? process.env.AWS_ENDPOINT_URL ?? "AWS S3";
  return new S3Store({ client, bucket: loc.bucket, endpoint });
}
